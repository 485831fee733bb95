"""The ground floor of configuration: strict YAML, command-line values and the types a stage's fields accept.

A stage's settings come from two places, its YAML file and ``--key value`` overrides on the command line; an
error names whichever one gave the value (:func:`origin`). Nothing here imports another module of the project
but :mod:`aurora_m.errors`: every layer above reads configuration through these helpers.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from dataclasses import fields
from enum import Enum
from pathlib import Path

import yaml

from .errors import RecipeError

COMMAND_LINE = "command line"


# ----------------------------------------------------------------------------- YAML and types
class _StrictLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (plain YAML keeps the last one silently)."""


def _mapping_without_duplicates(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)
# YAML 1.1 (PyYAML) reads `1e2` and `3e-4` as strings, YAML 1.2 (and every other reader) as numbers: read them as
# numbers, so a value means the same to every check and every step (`weight: 1e2` used to pass validation as a
# string and fail later)
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_yaml(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(path, None, "file not found")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except UnicodeDecodeError as err:
        raise RecipeError(
            path, None, f"not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark else ""
        raise RecipeError(path, None, f"{line}not valid YAML ({getattr(err, 'problem', err)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(path, None, f"expected a mapping of keys to values, got {type(data).__name__}")
    return data


def type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


class CliValue(str):
    """A value given on the command line: a string that argparse will convert to the field's type."""

    def __repr__(self) -> str:
        return repr(str(self))


def typed_cli_value(value, tp):
    """A command-line string as the field's type reads it (``"no"`` -> False for a bool), for fingerprints."""
    if isinstance(value, list):
        return [typed_cli_value(v, typing.get_args(tp)[0] if typing.get_args(tp) else str) for v in value]
    arms = (
        [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) in (typing.Union, types.UnionType)
        else [tp]
    )
    for arm in arms:
        try:
            if arm is bool:
                return value.lower() in ("true", "yes", "1", "on", "t", "y")
            if arm in (int, float):
                return arm(value)
        except ValueError:
            continue
    return str(value)


class BareFlag(CliValue):
    """``--key`` with no value: "true" for a boolean, a missing value for anything else."""


def _cli_value_matches(value: CliValue, tp) -> bool:
    converters = {
        bool: lambda v: v.lower() in ("true", "false", "yes", "no", "1", "0") or int("x"),
        int: int,
        float: float,
    }
    if tp in converters:
        try:
            converters[tp](value)
            return True
        except ValueError:
            return False
    if tp is type(None):
        return value.lower() in ("none", "null")
    if typing.get_origin(tp) is typing.Literal:
        return value in [str(a) for a in typing.get_args(tp)]
    if isinstance(tp, type) and issubclass(tp, Enum):
        return value in {str(m.value) for m in tp}
    return True  # strings, lists of strings and what argparse converts itself


# PyYAML (YAML 1.1) reads a float with an exponent but no dot, or an unsigned exponent, as a string ("3e-4",
# "1.0e3"): the only strings a float key accepts. Any other number in quotes ("0.17", "8") is text, refused alike
# for float and int keys
YAML_11_EXPONENT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def quoted_number_hint(value) -> str:
    """ " (a number in quotes is text: write it without them)" for a quoted number, else ""."""
    if isinstance(value, str) and not isinstance(value, CliValue):
        try:
            float(value)
        except ValueError:
            return ""
        return " (a number in quotes is text: write it without them)"
    return ""


def value_matches(value, tp) -> bool:
    """Whether ``value`` (as YAML or the command line gave it) can fill a dataclass field annotated ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is typing.Any or tp is object:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(value_matches(value, arm) for arm in args)
    if isinstance(value, CliValue):
        return _cli_value_matches(value, tp)
    if origin is typing.Literal:
        return value in args
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        if isinstance(value, str):  # only what YAML 1.1 reads as a string though written as a number: 3e-4
            return bool(YAML_11_EXPONENT.fullmatch(value.strip()))
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, list) or tp is list:
        return (
            isinstance(value, list) and all(value_matches(v, args[0]) for v in value)
            if args
            else isinstance(value, list)
        )
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return isinstance(value, tp) or value in {m.value for m in tp}
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True  # an annotation we do not model: let the dataclass decide


def field_types(dataclass_types) -> dict[str, object]:
    out = {}
    for dc in dataclass_types:
        hints = typing.get_type_hints(dc)
        for f in fields(dc):
            if f.init:
                out.setdefault(f.name, hints.get(f.name, f.type))
    return out


def did_you_mean(word: str, known) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known``, or an empty string: the one spelling of the hint."""
    close = difflib.get_close_matches(str(word), [str(k) for k in known], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_key(file, key, known, where="") -> RecipeError:
    """``key`` may be a path (``mixture[5].wieght``): its last part is what is compared with ``known``."""
    return RecipeError(file, key, f"unknown key{where}{did_you_mean(key.rsplit('.', 1)[-1], known)}")


def from_command_line(value) -> bool:
    """Whether a value (or any item of a list) came from a ``--key value`` override."""
    return isinstance(value, CliValue) or (isinstance(value, list) and any(isinstance(v, CliValue) for v in value))


def origin(config: dict, key: str, file) -> tuple[object, str]:
    """``(where, name)`` for an error about ``config[key]``: ``("command line", "--key")`` for an override,
    ``(file, key)`` for the YAML (and for a key that is not set: its default came from neither)."""
    return (COMMAND_LINE, f"--{key}") if from_command_line(config.get(key)) else (file, key)


def number(value) -> float:
    """A YAML or command-line number (``"2"``, ``"3e-4"``) as a float; NaN for anything else."""
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def check_range(file, config: dict, key: str, low, high, *, low_open=False, high_open=False) -> None:
    """``config[key]``, when set, is a number within the bounds; else one line naming where it came from."""
    if config.get(key) is None:
        return
    x = number(config[key])
    if not ((x > low if low_open else x >= low) and (x < high if high_open else x <= high)):
        bounds = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise RecipeError(*origin(config, key, file), f"expected a number in {bounds}, got {config[key]!r}")


def check_positive(file, config: dict, *keys: str) -> None:
    for key in keys:
        if config.get(key) is not None and not number(config[key]) > 0:
            raise RecipeError(*origin(config, key, file), f"expected a positive number, got {config[key]!r}")


def check_choice(file, config: dict, key: str, allowed) -> None:
    """Every value of ``config[key]`` (one, or a list) is one of ``allowed``; else the closest is suggested."""
    if key not in config:
        return
    several = isinstance(config[key], list)
    for value in config[key] if several else [config[key]]:
        if value not in allowed:
            expected = f"expected {'some' if several else 'one'} of {', '.join(map(str, allowed))}"
            raise RecipeError(
                *origin(config, key, file), f"unknown {value!r}{did_you_mean(value, allowed)}: {expected}"
            )


def is_list(tp) -> bool:
    return (
        tp is list
        or typing.get_origin(tp) is list
        or any(is_list(arm) for arm in typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType))
    )


def check_keys_and_types(file: Path, config: dict, dataclass_types, elsewhere: dict | None = None) -> None:
    """Every key a field of ``dataclass_types``, of a type it accepts. ``elsewhere``: key -> what owns it
    instead (an engine's keys given to a stage on another engine), said in the error."""
    known = field_types(dataclass_types)
    for key, value in config.items():
        if key == "env":
            if not isinstance(value, dict):
                raise RecipeError(file, key, "expected a mapping of environment variables")
            continue
        cli = from_command_line(value)
        where, name = origin(config, key, file)
        if key not in known and key in (elsewhere or {}):
            raise RecipeError(
                where,
                name,
                f"a key of the {elsewhere[key]} engine: set engine: {elsewhere[key]} "
                "on the stage in pipeline.yaml, or leave it out",
            )
        if key not in known:
            names = ", ".join(dc.__name__ for dc in dataclass_types)
            raise unknown_key(where, name, known, f" (not a field of {names})")
        if isinstance(value, BareFlag) and not value_matches(True, known[key]):
            raise RecipeError(where, name, f"missing a value (expected {type_name(known[key])})")
        if not value_matches(value, known[key]):
            shown = f"{value!r}" if cli else f"{type(value).__name__} {value!r}"
            raise RecipeError(where, name, f"expected {type_name(known[key])}, got {shown}{quoted_number_hint(value)}")


def overrides_to_dict(overrides: list[str] | None) -> dict:
    """``["--learning_rate", "2e-4", "--bf16=true", "--eval_models", "a=x", "b=y"]`` as a mapping (of CliValue)."""
    out, args = {}, list(overrides or [])
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise RecipeError("command line", None, f"expected --key value overrides, got {arg!r}")
        key, eq, value = arg[2:].partition("=")
        values = [value] if eq else []
        while not eq and i + 1 < len(args) and not args[i + 1].startswith("--"):
            values.append(args[i + 1])
            i += 1
        typed = [CliValue(v) for v in values] or [BareFlag("true")]  # a bare flag, as argparse reads booleans
        out[key] = typed[0] if len(typed) == 1 else typed
        i += 1
    return out
