"""Writing outputs so that a crash never leaves something that looks complete, and nothing of the user's is lost.

Every write of a finished output goes through here: a file through :func:`atomic_file` (or write_bytes,
write_text, write_json), a folder through :func:`atomic_dir`. Temporary siblings are named
``.NAME.tmp-PID-XXXX`` (one style): the next run removes those whose process is dead
(:func:`sweep_dead_temps`). Finished files and folders get the user's umask, not mkstemp's 0600.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from .errors import RecipeError

logger = logging.getLogger(__name__)
TEMP_TAG = ".tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def apply_umask(path: str | Path) -> None:
    """Open a finished file or folder tree up to what the user's umask allows: mkdtemp makes 0700 folders and some
    writers (safetensors) make 0600 files, which other users and web servers then cannot read."""
    path = Path(path)
    mask = _umask()
    for item in [path, *(path.rglob("*") if path.is_dir() else [])]:
        if not item.is_symlink():
            wanted = (0o777 if item.is_dir() else 0o666) & ~mask
            os.chmod(item, item.stat().st_mode & 0o777 | wanted)


def _temp_prefix(target: Path) -> str:
    return f".{target.name}{TEMP_TAG}{os.getpid()}-"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _dead_temp(path: Path) -> bool:
    """Whether ``path`` is a temporary of ours (``.NAME.tmp-PID-...``) whose process is gone."""
    name = path.name
    if not (name.startswith(".") and TEMP_TAG in name):
        return False
    pid = name.rsplit(TEMP_TAG, 1)[1].split("-", 1)[0]
    return pid.isdigit() and not pid_alive(int(pid))


def _clear_dead_temp(path: Path) -> None:
    """Remove a dead temporary; an old output moved aside by a run killed mid-swap goes back in place first."""
    head = path.name.rsplit(TEMP_TAG, 1)[0]
    if head.endswith(".old"):
        target = path.parent / head[1 : -len(".old")]
        if not target.exists() and (path / target.name).exists():
            os.replace(path / target.name, target)
            logger.warning("restored %s, which a killed run had moved aside", target)
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)


def sweep_dead_temps(folder: str | Path, depth: int = 3) -> list[Path]:
    """Clear temporary files/folders left by processes that died (ours only: named by :func:`atomic_dir`)."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in list(folder.iterdir()):
        if _dead_temp(path):
            _clear_dead_temp(path)
            removed.append(path)
        elif depth > 1 and path.is_dir() and not path.is_symlink():
            removed += sweep_dead_temps(path, depth - 1)
    return removed


def _through_link(target: str | Path) -> Path:
    """Where a write of ``target`` lands: the file or folder a symbolic link points to (a rename onto the link would
    replace the link and leave what it points to as it was)."""
    target = Path(target)
    return target.resolve() if target.is_symlink() else target


@contextlib.contextmanager
def atomic_dir(target: str | Path):
    """Yield a temporary sibling folder; on success it replaces ``target`` in one rename.

    A ``target`` that exists is moved aside first and removed only once the new one is in place. A symbolic
    link is written through: the folder it points to is replaced, the link kept.
    """
    target = _through_link(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _recover(target)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=_temp_prefix(target)))
    try:
        yield tmp
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(built: str | Path, target: str | Path) -> None:
    """``built`` becomes ``target`` in one rename; an existing ``target`` is moved aside first (under a name
    the dead-temp sweep restores if a kill lands between the two renames) and removed once replaced."""
    built, target = Path(built), Path(target)
    apply_umask(built)
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old{TEMP_TAG}{os.getpid()}-"))
        os.replace(target, old / target.name)
        os.replace(built, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(built, target)


def _recover(target: Path) -> None:
    """Clear what dead processes left next to ``target`` (restoring an old one a kill left moved aside)."""
    for path in list(target.parent.glob(f".{target.name}*{TEMP_TAG}*")):
        if _dead_temp(path) and path.name.rsplit(TEMP_TAG, 1)[0] in (f".{target.name}", f".{target.name}.old"):
            _clear_dead_temp(path)


def write_text(path: str | Path, text: str) -> None:
    """Write text through a temporary file and a rename."""
    write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_file(target: str | Path):
    """Yield a temporary sibling path (``.NAME.tmp-PID-XXXX.SUFFIX``: the suffix kept for writers that go by it,
    such as matplotlib); on success it becomes ``target`` in one rename, with the user's umask. A kill leaves
    only the temporary, which the next run's sweep removes. A symbolic link is written through (the link kept)."""
    target = _through_link(target)
    if target.exists() and not target.is_file():  # a folder, a device (/dev/null), a socket: never renamed over
        raise RecipeError(target, None, "exists and is not a regular file: nothing was written over it")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=_temp_prefix(target), suffix=target.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes through a temporary file and a rename."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, obj) -> None:
    """Write JSON through a temporary file and a rename."""
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False, default=str)
        fh.write("\n")


def file_digest(path: str | Path) -> str:
    """A file's content digest (blake2b, 128 bits), read in 1 MiB chunks: what markers record of what we wrote."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def read_json(path: str | Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_json_or_none(path: str | Path):
    """A JSON file we wrote, or None when it is missing or was cut short (a kill mid-write elsewhere)."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def check_output_dir(
    path: str | Path,
    what: str,
    marker_name: str,
    *,
    overwrite: bool = False,
    owner_check=None,
    also_ours: tuple[str, ...] = (),
) -> Path:
    """Refuse an output folder we did not make; replace one of ours only with ``overwrite``.

    ``marker_name`` is the file that makes a folder ours (``also_ours``: files that do too, such as a
    lock taken just before the marker is written). An empty folder is fine. ``owner_check``
    (marker dict -> message or None) can refuse a folder that is ours but belongs to something else.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RecipeError(path, None, f"{what} is a file, expected a folder; nothing was changed")
    check_writable(path, what)
    if path.is_dir() and any(path.iterdir()):
        marker = path / marker_name
        if not marker.is_file() and not any((path / name).is_file() for name in also_ours):
            raise RecipeError(
                path,
                None,
                f"{what} exists and was not written by aurora-m (no {marker_name}); "
                f"choose a new or empty folder: nothing in it was touched",
            )
        if owner_check is not None:
            problem = owner_check(read_json_or_none(marker) or {})
            if problem:
                raise RecipeError(path, None, problem)
        if not overwrite:
            raise RecipeError(
                path,
                None,
                f"{what} already exists: pass --overwrite to replace it "
                f"(the old one is kept until the new one is complete)",
            )
    return path


def check_writable(path: str | Path, what: str) -> Path:
    """A folder we can create and write into, or one line saying why not (tried, not guessed: root ignores modes,
    read-only mounts and /proc do not)."""
    path = Path(path)
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # bytes that are no UTF-8: every record we write names its folder in UTF-8 JSON
        shown = str(path).encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise RecipeError(shown, None, f"{what}: the name is not UTF-8 text: choose a UTF-8 name") from None
    probe_parent = path
    while not probe_parent.exists() and probe_parent != probe_parent.parent:
        probe_parent = probe_parent.parent
    if not probe_parent.is_dir():
        raise RecipeError(path, None, f"{what}: {probe_parent} is a file, expected a folder")
    try:
        probe = tempfile.mkdtemp(dir=probe_parent, prefix=f".probe{TEMP_TAG}{os.getpid()}-")
        os.rmdir(probe)
    except OSError as err:
        raise RecipeError(path, None, f"{what}: {probe_parent} is not writable ({err.strerror})") from None
    return path


def unlisted_files(out_dir: str | Path, marker_name: str):
    """An ``owner_check`` for :func:`check_output_dir`: an earlier output of ours whose marker lists the files it
    wrote is still ours only while it holds no other file (the user's notes are never replaced away)."""

    def check(marker: dict) -> str | None:
        root = Path(out_dir)
        listed = {f["path"] if isinstance(f, dict) else f for f in marker.get("files", [])} | {marker_name}
        foreign = sorted(
            rel
            for rel in (p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir())
            if rel not in listed
        )
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            return f"holds files aurora-m did not write ({shown}): move them elsewhere first; nothing was changed"
        return None

    return check


def human_size(n: float | None) -> str:
    """Bytes as people read them, in SI units (1 KB = 1000 B); ``unknown`` for None."""
    if n is None:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)
