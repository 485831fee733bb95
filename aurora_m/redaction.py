"""Secrets out of everything we write: saved stage configs, summary.json, model cards, logs of overrides.

A key that names a secret (``hub_token``, ``HF_TOKEN``, ``WANDB_API_KEY``; not ``eos_token``) has its value
replaced, and so does any string holding a Hub token (``hf_...``), wherever it sits.
"""

from __future__ import annotations

import re
from dataclasses import fields, is_dataclass

SECRET_KEY = re.compile(
    r"(?<!eos)(?<!bos)(?<!pad)(?<!unk)(^|_)(token|secret|password|passwd|pass|api_key|key|"
    r"credentials?|auth)$",
    re.IGNORECASE,
)
SECRET_VALUE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")


def redact_overrides(overrides: list[str]) -> list[str]:
    """``["--hub_token", "hf_...", "--lr", "2e-4"]`` with secret values replaced, for summary.json."""
    out, hide_next = [], False
    for arg in overrides:
        if hide_next and not arg.startswith("--"):
            out.append("***")
            continue
        key, eq, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        hide_next = bool(key) and not eq and bool(SECRET_KEY.search(key))
        out.append(f"--{key}=***" if eq and SECRET_KEY.search(key) else SECRET_VALUE.sub("***", arg))
    return out


def redact(value):
    """A copy with secrets replaced, for configs saved next to a run or into a model card."""
    if isinstance(value, dict):
        return {
            k: ("***" if SECRET_KEY.search(str(k)) and v not in (None, "", False) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    if is_dataclass(value):
        return redact({f.name: getattr(value, f.name) for f in fields(value)})
    if isinstance(value, str):
        return SECRET_VALUE.sub("***", value)
    return value
