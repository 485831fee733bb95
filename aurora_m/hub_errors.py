"""Hub failures as one-line RecipeErrors that say the fix: offline, gated, missing, not logged in.

huggingface_hub, datasets and transformers each wrap the Hub's answer differently (datasets keeps
only its own message; transformers chains an OSError onto the hub error), so a failure is
recognised by walking its whole exception chain. Messages never include a token.

    with explain_hub_errors("cap.yaml", "mixture[en].dataset", "bigcode/the-stack-dedup"):
        load_dataset("bigcode/the-stack-dedup", ...)
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from .errors import RecipeError, exception_chain

OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
TRUE_VALUES = {"1", "ON", "YES", "TRUE"}  # how huggingface_hub reads its boolean variables
LOGIN = "(`hf auth login` or HF_TOKEN)"
SCRIPT_REFUSED = "Dataset scripts are no longer supported"  # datasets/load.py's message, followed by the file
TOKEN_VALUE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")


def repo_url(repo_id: str, repo_type: str = "dataset") -> str:
    return (
        f"https://huggingface.co/datasets/{repo_id}" if repo_type == "dataset" else f"https://huggingface.co/{repo_id}"
    )


def offline_variables() -> list[str]:
    """The offline switches in effect, including ones read by the libraries at import time."""
    found = [name for name in OFFLINE_VARS if os.environ.get(name, "").strip().upper() in TRUE_VALUES]
    hub_constants = sys.modules.get("huggingface_hub.constants")
    if getattr(hub_constants, "HF_HUB_OFFLINE", False) and "HF_HUB_OFFLINE" not in found:
        found.append("HF_HUB_OFFLINE")
    datasets_config = sys.modules.get("datasets.config")
    if getattr(datasets_config, "HF_HUB_OFFLINE", False) and not found:
        found.append("HF_DATASETS_OFFLINE")
    return found


def _status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def explain(err: BaseException, repo_id: str, repo_type: str = "dataset") -> str | None:
    """What went wrong and how to fix it, in one sentence; None when ``err`` is not a Hub failure."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    chain = exception_chain(err)
    kind = "dataset" if repo_type == "dataset" else "model"
    url = repo_url(repo_id, repo_type)
    # datasets replaces the hub error by its own DatasetNotFoundError and drops the cause: read its message
    datasets_exceptions = sys.modules.get("datasets.exceptions")
    not_found_types = (datasets_exceptions.DatasetNotFoundError,) if datasets_exceptions else ()
    datasets_messages = " ".join(str(e) for e in chain if not_found_types and isinstance(e, not_found_types))

    def first(types):
        return next((e for e in chain if isinstance(e, types)), None)

    script = next((e for e in chain if SCRIPT_REFUSED in str(e)), None)
    if script is not None:  # datasets >= 4 (load.py): a repo that ships a loading script, data_files or not
        found = str(script).rsplit(" ", 1)[-1]
        return (
            f"{kind} {repo_id} ships a loading script ({found}), which datasets >= 4 refuses: read its data files "
            "through a packaged builder (builder: json or parquet, data_files: the repo's files; docs/data.md)"
        )
    if (gated := first(GatedRepoError)) is not None or "is a gated dataset" in datasets_messages:
        unauthenticated = (gated is not None and _status(gated) == 401) or "must be authenticated" in datasets_messages
        if unauthenticated:
            return (
                f"{kind} {repo_id} is gated and you are not logged in: log in {LOGIN}, then accept its terms at {url}"
            )
        return f"{kind} {repo_id} is gated: accept its terms at {url} with the account you log in with {LOGIN}"
    if first(RevisionNotFoundError) is not None or "Revision '" in datasets_messages:
        return f"{kind} {repo_id} has no such revision: check the revision at {url}"
    if first(RepositoryNotFoundError) is not None or "doesn't exist on the Hub" in datasets_messages:
        return (
            f"{kind} {repo_id} not found on the Hub: check the id (namespace/name) at {url}; "
            f"a private repo needs a login {LOGIN}"
        )
    if first(HFValidationError) is not None:
        return f"{repo_id!r} is not an existing folder, nor a valid Hub {kind} id (namespace/name)"
    http = first(HfHubHTTPError)
    if http is not None and _status(http) == 401:
        return f"the Hub refused the token (401 Unauthorized) for {kind} {repo_id}: log in again {LOGIN}"
    if http is not None and _status(http) == 403:
        return (
            f"the token may not read {kind} {repo_id} (403 Forbidden): "
            f"log in with a token that has read access {LOGIN}"
        )
    network = first((ConnectionError, LocalEntryNotFoundError, TimeoutError)) or _httpx_network_error(chain)
    if network is not None:
        switches = offline_variables()
        if switches:
            # from_pretrained finds `hf download`'s files offline; load_dataset only finds what it prepared online
            fetch = f"`hf download {repo_id}`" if kind == "model" else "run once online: it is then cached"
            settings = ", ".join(f"{name}={os.environ.get(name, 1)}" for name in switches)
            return (
                f"{kind} {repo_id} is not in the local cache and offline mode is on ({settings}): "
                f"unset HF_HUB_OFFLINE/HF_DATASETS_OFFLINE or download it first ({fetch})"
            )
        return (
            f"could not reach the Hub for {kind} {repo_id} and it is not in the local cache "
            f"({type(network).__name__}): check the network (or HF_ENDPOINT), or download it first"
        )
    if http is not None and _status(http) is not None:
        status = _status(http)
        hint = "wait and retry, or log in for a higher rate limit" if status == 429 else "retry later"
        return f"the Hub answered {status} for {kind} {repo_id}: {hint}"
    return None


def _httpx_network_error(chain: list[BaseException]) -> BaseException | None:
    for module in ("httpx2", "httpx"):
        lib = sys.modules.get(module)
        if lib is not None and (hit := next((e for e in chain if isinstance(e, lib.TransportError)), None)):
            return hit
    return None


def _one_line(text: str) -> str:
    return TOKEN_VALUE.sub("hf_***", " ".join(text.split()))


@contextlib.contextmanager
def explain_hub_errors(
    file: str | Path | None, key: str | None, repo_id: str, repo_type: str = "dataset"
) -> Iterator[None]:
    """Turn a Hub failure inside the block into ``RecipeError(file, key, <what happened>: <the fix>)``.

    ``repo_type`` is "dataset" or "model" (it picks the page URL and the download hint). Anything
    that is not a Hub failure passes through unchanged.
    """
    if repo_type not in ("dataset", "model"):
        raise ValueError(f"repo_type must be 'dataset' or 'model', not {repo_type!r}")
    try:
        yield
    except RecipeError:
        raise
    except Exception as err:
        message = explain(err, repo_id, repo_type)
        if message is None:
            raise
        raise RecipeError(file, key, _one_line(message)) from err
