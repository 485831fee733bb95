"""Push one export folder to the Hub as ONE commit: create the repo (private), the branch, check, commit.

Reads an export folder as ``export.py`` wrote it (its marker lists the files and names the repo and
branch) and never writes one: pushing again re-reads the same folder. The steps, in order:

1. check the folder: the files on disk are the ones the marker lists, none a pickle, checkpoint or
   optimizer state; parse the card, ask the Hub to validate its metadata (a bad card refuses the whole
   upload, so it is refused before anything is created);
2. ``create_repo(private=..., exist_ok=True)``; a new branch starts from the repo's first commit
   (``.gitattributes`` only), so it never inherits another variant's files;
3. the overwrite guard: a target branch that already holds files (beside ``.gitattributes``) is refused
   unless ``overwrite``; with it, the commit also deletes what the export no longer has;
4. upload the large files first (``preupload_lfs_files``: Xet where hf_xet is installed, else Git LFS; a 15.5B
   variant is ~31 GB): the Hub keeps what arrived, and asks again only for what it does not hold, so a push
   that was interrupted (Ctrl-C, a lost node, an upload that failed after huggingface_hub's retries) resumes
   with the same command and uploads only what is missing; nothing is visible on the branch yet;
5. ``create_commit`` with every file and ``parent_commit`` = the head the guard looked at: the one commit that
   makes the upload visible; a concurrent change refuses it instead of being overwritten.

Retries: huggingface_hub already retries its paginated GETs and the preupload call (``http_backoff``:
429, 5xx, network errors); repo and branch creation, the refs call and the commit POST are not retried
by it, so those are retried here, with exponential backoff (``Retry-After`` honoured). A commit whose
answer was lost is recognised on retry (the parent moved to a commit with our title) instead of being
reported as a conflict. The token comes from huggingface_hub (HF_TOKEN or ``hf auth login``) and is only
handed to ``HfApi``: never logged, never written.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RecipeError, exception_chain
from ..hub_errors import LOGIN, TOKEN_VALUE
from ..io import atomic_dir, check_output_dir, read_json_or_none, write_json
from ..layout import ExportDir

logger = logging.getLogger(__name__)

RETRY_STATUSES = (429, 500, 502, 503, 504)
HUB_TIMEOUT_S = 300.0  # one read / write on the Hub's connection, not a whole upload
GITATTRIBUTES = ".gitattributes"
# never pushed, whatever a folder holds: pickles, torch checkpoints, optimizer / scheduler / RNG states
EXCLUDED_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
EXCLUDED_PREFIXES = ("checkpoint-", "optimizer", "scheduler", "rng_state", "global_step")
# requests huggingface_hub retries itself (http_backoff): not retried again here
RETRIED_BY_HUB = ("/preupload/", "/tree/", "/commits/")


@dataclass
class PushPlan:
    """What one push commits: every file of the export (path in repo -> local file), and where."""

    export_dir: Path
    repo_id: str
    branch: str | None  # None: the repo's main branch
    private: bool
    files: dict[str, Path] = field(default_factory=dict)
    commit_message: str = ""

    @property
    def revision(self) -> str:
        return self.branch or "main"

    def operations(self) -> list[str]:
        """The plan, one line per operation (what --dry-run prints)."""
        lines = [f"create repo {self.repo_id} ({'private' if self.private else 'public'}, if missing)"]
        if self.branch:
            lines.append(f"create branch {self.branch} of {self.repo_id} (if missing)")
        lines.append(
            f"commit to {self.repo_id}@{self.revision}: {self.commit_message!r} "
            f"({len(self.files)} files, {sum(p.stat().st_size for p in self.files.values()):,} bytes)"
        )
        lines += [f"  add {name} ({path.stat().st_size:,} bytes)" for name, path in sorted(self.files.items())]
        return lines


def excluded(path_in_repo: str) -> bool:
    parts = path_in_repo.split("/")
    return path_in_repo.endswith(EXCLUDED_SUFFIXES) or any(p.startswith(EXCLUDED_PREFIXES) for p in parts)


def plan_push(export_dir: str | Path) -> PushPlan:
    """The commit an export folder makes, checked: refused when the folder is not a complete export of ours."""
    export = ExportDir(export_dir)
    marker = read_json_or_none(export.marker)
    if not marker or "repo_id" not in marker:
        raise RecipeError(
            export.root,
            None,
            f"not an export written by this version of aurora-m (no readable "
            f"{ExportDir.MARKER} naming its repo): export it again",
        )
    from .export import changed_files

    on_disk = {
        p.relative_to(export.root).as_posix(): p
        for p in sorted(export.root.rglob("*"))
        if p.is_file() and p.name != ExportDir.MARKER
    }
    changed = changed_files(export.root, marker)
    if changed:
        raise RecipeError(
            export.root,
            None,
            f"changed since it was exported ({', '.join(changed[:5])}): export it again; nothing was pushed",
        )
    refused = [name for name in on_disk if excluded(name)]
    if refused:
        raise RecipeError(
            export.root,
            None,
            f"holds files that are never pushed ({', '.join(refused[:5])}: "
            f"pickles, checkpoints or optimizer states); nothing was pushed",
        )
    if not any(name.endswith(".safetensors") for name in on_disk):
        raise RecipeError(export.root, None, "has no safetensors weights; nothing was pushed")
    return PushPlan(
        export_dir=export.root,
        repo_id=marker["repo_id"],
        branch=marker.get("branch"),
        private=marker.get("private", True),
        files=on_disk,
        commit_message=f"Upload {marker['variant']} ({marker['recipe']}, aurora-m {marker['aurora_m_version']})",
    )


def write_dry_run(plan: PushPlan, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write exactly the files the commit would hold into ``out_dir`` (plus our marker, never pushed)."""
    from .export import foreign_files

    # an earlier dry run (or export) of ours is replaced only with --overwrite, and never when it holds files
    # the user put there
    out_dir = check_output_dir(
        out_dir, "--out", ExportDir.MARKER, overwrite=overwrite, owner_check=foreign_files(out_dir)
    )
    with atomic_dir(out_dir) as tmp:
        for name, src in plan.files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tmp / name)
        write_json(
            ExportDir(tmp).marker,
            {**read_json_or_none(ExportDir(plan.export_dir).marker), "dry_run": True, "operations": plan.operations()},
        )
    return out_dir


# ---------------------------------------------------------------------------------------------- talking to the Hub
def _status(err: BaseException) -> int | None:
    return getattr(getattr(err, "response", None), "status_code", None)


def _url(err: BaseException) -> str:
    for link in exception_chain(err):
        for holder in (getattr(link, "response", None), link):
            try:
                request = getattr(holder, "request", None)
            except RuntimeError:  # httpx2 raises when an error has no request attached
                request = None
            if request is not None:
                return str(request.url)
    return ""


def _network_error(err: BaseException) -> BaseException | None:
    kinds = [ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx"):  # huggingface_hub 2.x talks httpx2, 1.x httpx
        if (lib := sys.modules.get(module)) is not None:
            kinds.append(lib.TransportError)
    return next((e for e in exception_chain(err) if isinstance(e, tuple(kinds))), None)


def _retry_after(err: BaseException) -> float | None:
    headers = getattr(getattr(err, "response", None), "headers", None) or {}
    try:
        return float(headers.get("Retry-After"))
    except (TypeError, ValueError):
        return None


class Retrier:
    """Calls a Hub function again on 429/5xx and network errors, waiting ``backoff_s`` x 2^n (at most 60 s)."""

    def __init__(self, retries: int = 5, backoff_s: float = 1.0):
        self.retries, self.backoff_s = retries, backoff_s

    def transient(self, err: BaseException) -> bool:
        if any(part in _url(err) for part in RETRIED_BY_HUB):
            return False  # huggingface_hub has retried it already
        return _status(err) in RETRY_STATUSES or (_status(err) is None and _network_error(err) is not None)

    def __call__(self, what: str, fn, *args, **kwargs):
        for attempt in range(self.retries + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as err:
                if attempt == self.retries or not self.transient(err):
                    raise
                wait = _retry_after(err)
                wait = min(60.0, self.backoff_s * 2**attempt if wait is None else wait)
                reason = _status(err) or type(_network_error(err)).__name__
                logger.warning("%s: %s, trying again in %.1f s (%d/%d)", what, reason, wait, attempt + 1, self.retries)
                time.sleep(wait)
        raise AssertionError("unreachable")


def _explain(err: BaseException, plan: PushPlan, step: str) -> RecipeError:
    """One line for a Hub failure at ``step``, saying what was and was not changed."""
    nothing = "nothing was committed" if step != "create the repo" else "nothing was created"
    status = _status(err)
    if status == 401:
        why = f"the Hub refused the token (401): log in again {LOGIN} with a token that has write access"
    elif status == 403:
        why = f"the token may not write to {plan.repo_id.split('/')[0]} (403): use a token with write access there"
    elif _network_error(err) is not None:
        why = (
            f"could not reach the Hub ({type(_network_error(err)).__name__}) after retries: check the "
            f"network (or HF_ENDPOINT) and run the same command again"
        )
    else:
        detail = TOKEN_VALUE.sub("hf_***", " ".join(str(err).split()))[:300]
        why = f"the Hub answered {status or type(err).__name__}: {detail}"
    if step == "upload the files":
        nothing += "; what was uploaded stays on the Hub, and the same command uploads only what is missing"
    return RecipeError(
        plan.repo_id, plan.revision, f"could not {step}: {why}; {nothing} (a Hub commit is all or nothing)"
    )


def _landed(api, plan: PushPlan, parent: str) -> str | None:
    """The commit of ours at the head of the branch, when an earlier try's answer was lost; else None."""
    history = api.list_repo_commits(plan.repo_id, revision=plan.revision)
    if len(history) > 1 and history[0].title == plan.commit_message and history[1].commit_id == parent:
        return history[0].commit_id
    return None


def _bound_waits() -> None:
    """huggingface_hub's HTTP client waits forever for an answer (timeout None): a Hub (or proxy) that accepts the
    connection and never answers would hang the push silently. Each read, write and connect gets a limit instead
    (``AURORA_M_HUB_TIMEOUT_S``, default 300 s per operation, not per upload), and a timeout is retried like any
    network error."""
    import os

    import httpx2
    from huggingface_hub.utils import get_session

    session = get_session()
    if session.timeout.read is None:
        limit = float(os.environ.get("AURORA_M_HUB_TIMEOUT_S", HUB_TIMEOUT_S))
        session.timeout = httpx2.Timeout(limit, connect=min(limit, 30.0))


def push(plan: PushPlan, *, overwrite: bool = False, retries: int = 5, backoff_s: float = 1.0) -> str:
    """Push ``plan`` as one commit; returns the commit URL. See the module docstring for the steps."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, ModelCard, get_token
    from huggingface_hub.constants import is_offline_mode

    if is_offline_mode():
        raise RecipeError(None, "HF_HUB_OFFLINE", "is set: pushing needs the Hub; unset it (or use --dry-run)")
    token = get_token()
    if not token:
        raise RecipeError(None, None, f"no Hugging Face token: log in {LOGIN} with a token that has write access")
    _bound_waits()
    api, retry = HfApi(token=token), Retrier(retries, backoff_s)
    card_path = ExportDir(plan.export_dir).card
    try:
        card = ModelCard.load(card_path)
    except ValueError as err:
        raise RecipeError(card_path, None, f"card metadata does not parse: {err}") from None
    step = "validate the card"
    try:
        try:
            retry("validate card", card.validate, repo_type="model")
        except ValueError as err:  # the Hub's 400: its list of what is wrong
            raise RecipeError(
                card_path,
                None,
                f"the Hub refused the card's metadata: {' '.join(str(err).split())}; nothing was pushed",
            ) from None
        step = "create the repo"
        retry("create repo", api.create_repo, plan.repo_id, private=plan.private, exist_ok=True)
        step = "create the branch"
        branches = {b.name: b.target_commit for b in retry("list refs", api.list_repo_refs, plan.repo_id).branches}
        if plan.branch and plan.branch not in branches:
            first = api.list_repo_commits(plan.repo_id)[-1].commit_id  # .gitattributes only
            retry("create branch", api.create_branch, plan.repo_id, branch=plan.branch, revision=first, exist_ok=True)
            branches = {b.name: b.target_commit for b in retry("list refs", api.list_repo_refs, plan.repo_id).branches}
        parent = branches[plan.revision]
        step = "check the branch"
        there = [f for f in api.list_repo_files(plan.repo_id, revision=parent) if f != GITATTRIBUTES]
        if there and not overwrite:
            shown = ", ".join(sorted(there)[:4]) + (", ..." if len(there) > 4 else "")
            raise RecipeError(
                plan.repo_id,
                plan.revision,
                f"already holds files ({shown}): pass --overwrite to replace them in one commit; nothing was pushed",
            )
        operations = [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path))
            for name, path in sorted(plan.files.items())
        ]
        operations += [CommitOperationDelete(path_in_repo=name) for name in sorted(set(there) - set(plan.files))]
        step = "upload the files"
        size = sum(path.stat().st_size for path in plan.files.values())
        logger.info("%s@%s: uploading %d files (%s bytes; what the Hub holds already is skipped)", plan.repo_id,
                    plan.revision, len(plan.files), f"{size:,}")  # fmt: skip
        additions = [op for op in operations if isinstance(op, CommitOperationAdd)]
        retry("upload", api.preupload_lfs_files, plan.repo_id, additions, revision=plan.revision)
        step = "commit"
        logger.info(
            "%s@%s: committing %d files on top of %s", plan.repo_id, plan.revision, len(plan.files), parent[:12]
        )
        tries = {"n": 0}

        def commit():
            tries["n"] += 1
            try:
                return api.create_commit(
                    plan.repo_id,
                    operations,
                    commit_message=plan.commit_message,
                    revision=plan.revision,
                    parent_commit=parent,
                ).commit_url
            except Exception as err:
                if tries["n"] > 1 and _status(err) in (409, 412) and (oid := _landed(api, plan, parent)):
                    logger.info("%s: an earlier try had landed (its answer was lost)", plan.repo_id)
                    return f"{api.endpoint}/{plan.repo_id}/commit/{oid}"
                raise

        url = retry("commit", commit)
    except RecipeError:
        raise
    except Exception as err:
        if step == "commit" and _status(err) in (409, 412):
            raise RecipeError(
                plan.repo_id,
                plan.revision,
                f"changed while pushing (its head is no longer "
                f"{parent[:12]}: someone else committed): nothing was "
                f"committed; run the command again (the overwrite "
                f"guard looks again)",
            ) from None
        raise _explain(err, plan, step) from None
    logger.info("%s@%s: pushed %s", plan.repo_id, plan.revision, url)
    return url
