"""What confinement this machine gives a sandboxed program (namespaces, Landlock's ABI, a uid of its own), and
the paths it may read: the Python installation and the system's libraries.
"""

from __future__ import annotations

import ctypes
import os
import site
import sys
import sysconfig
from dataclasses import dataclass

UID_BASE = 61000  # as root, worker slot i runs programs as uid UID_BASE + i (outside the user namespace)


SYSTEM_READABLE = (
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
    "/sys/devices/system/cpu",
)


# The isolation levels a user can require (``code_min_isolation``, ``eval code --min-isolation``), by what each
# has: a level satisfies a minimum when it has everything the minimum has ("landlock" and "namespaces" are not
# ordered: each has what the other lacks). Every level has the process limits, no_new_privs and the fixed
# environment of sandbox.py's docstring.
LEVELS: dict[str, frozenset[str]] = {
    "none": frozenset(),  # own process and limits only: Python's socket API refused, nothing else
    "landlock": frozenset({"landlock"}),  # files confined; TCP too from ABI 4; UDP and the PID space are open
    "namespaces": frozenset({"namespaces"}),  # no network at all, own PID space; files by permissions only
    "full": frozenset({"namespaces", "landlock"}),  # both
}


@dataclass(frozen=True)
class Isolation:
    """What this machine gives the sandbox: ``ns`` "user" (namespaces) or "none"; ``landlock`` ABI (0: none)."""

    ns: str
    landlock: int
    separate_uid: bool

    @property
    def level(self) -> str:
        """The name of this isolation in :data:`LEVELS`."""
        if self.ns == "user":
            return "full" if self.landlock else "namespaces"
        return "landlock" if self.landlock else "none"

    def satisfies(self, minimum: str) -> bool:
        return LEVELS[minimum] <= LEVELS[self.level]

    def record(self, refused: list[str], forced: bool = False) -> dict:
        """What goes on the record (``code.json``, ``results.json``, the card): the level, its parts, and what
        the kernel refused of the stronger levels tried first (each with its reason)."""
        return {
            "level": self.level,
            "namespaces": self.ns == "user",
            "landlock_abi": self.landlock,
            "separate_uid": self.separate_uid,
            "description": self.describe(),
            "refused": list(refused),
            "chosen_by": "the caller" if forced else "probe (the strongest this machine runs)",
        }

    def describe(self) -> str:
        if self.ns == "user":
            parts = ["user, network, PID and IPC namespaces"]
        else:
            parts = ["no namespaces (best effort: no network namespace, no PID namespace)"]
        parts.append(
            f"uid {UID_BASE}+slot"
            if self.separate_uid
            else f"uid {os.getuid()}"
            + (" (no process limit binds root)" if os.getuid() == 0 and self.ns != "user" else "")
        )
        if self.landlock:
            scope = (
                ["file system"]
                + (["TCP"] if self.landlock >= 4 else [])
                + (["signals, abstract sockets"] if self.landlock >= 6 else [])
            )
            parts.append(f"Landlock ABI {self.landlock} ({', '.join(scope)})")
        else:
            parts.append("no Landlock (writes outside the directory are not prevented)")
        return "; ".join(parts)


def landlock_abi() -> int:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return max(libc.syscall(ctypes.c_long(444), None, ctypes.c_size_t(0), ctypes.c_uint32(1)), 0)
    except (OSError, AttributeError):
        return 0


def _readable_paths() -> list[str]:
    """The Python installation (wherever it is, also in /root or a venv) and the system's libraries."""
    paths = {
        sys.prefix,
        sys.exec_prefix,
        sys.base_prefix,
        sys.base_exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        *site.getsitepackages(),
        *(sysconfig.get_paths().get(k, "") for k in ("stdlib", "platstdlib", "purelib", "platlib")),
    }
    return sorted(p for p in paths | set(SYSTEM_READABLE) if p and os.pathsep not in p)


def _site_packages() -> list[str]:
    """Installed packages stay importable (numpy in a completion works), without running ``site``."""
    paths = [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return list(dict.fromkeys(p for p in paths if os.path.isdir(p) and os.pathsep not in p))
