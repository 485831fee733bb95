"""The process side of the code sandbox, started by ``sandbox.LocalSandbox`` as ``python -I -S _supervisor.py``.

This file stays whole: it runs as a standalone script (no ``site``, standard library only, no project imports),
so it cannot import a sibling module, and everything it runs must be in this one file.

Standard library only and no ``site``: nothing of the evaluator (its environment, imports, open files)
reaches a program. It is a fork server: each stdin line is a job (JSON: ``settings`` and ``program``), each
stdout line the result of one, ``STATUS<TAB>SECONDS<TAB>DETAIL``. Each job runs in a fresh child.

Processes of one job (``ns=user``)::

    server (one per worker, the evaluator's user)
      └ supervisor                             times the program, kills it on timeout, writes the id maps
          └ unsharer                           new user, network, PID and IPC namespaces
              └ init (PID 1 of the namespace)  reaps, reports the program's exit status, and when it
                  └ program                    exits the kernel kills everything left in the namespace

The program process drops to an unprivileged identity (as root: a per-worker uid, with read-only access to
root's files kept so the interpreter stays importable), gets resource limits, ``no_new_privs`` and a
Landlock domain (writes only in its directory; reads only of the interpreter and system libraries; no TCP;
no signals to or abstract sockets of processes outside it) before its first line runs.
"""

import ctypes
import os
import resource
import select
import signal
import socket
import stat
import sys
import time
import traceback

CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x10000000, 0x20000000, 0x40000000
PR_SET_PDEATHSIG, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 1, 28, 38, 47
PR_SET_CHILD_SUBREAPER, PR_CAP_AMBIENT_CLEAR_ALL = 36, 4
# NOROOT(+locked): uid 0 gains no capabilities on exec; NO_SETUID_FIXUP(+locked): capabilities survive setuid
SECUREBITS = 0b1111
CAP_DAC_READ_SEARCH = 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522
INSIDE_UID = 1000  # the program's uid inside its user namespace when the supervisor is root

# Landlock (include/uapi/linux/landlock.h); the syscall numbers are the same on every architecture
SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_TRUNCATE = 1 << 14
FS_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | (1 << 15)  # ... | IOCTL_DEV
FS_READ = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1

SETUP_FAILED = 121  # the program process's exit code when it could not be confined (then nothing of it ran)
OUTPUT, PROGRAM = "output.txt", "program.py"

libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    pass


def check(result: int, what: str) -> int:
    if result == -1:
        raise SetupError(f"{what}: {os.strerror(ctypes.get_errno())}")
    return result


class RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def landlock_abi() -> int:
    abi = libc.syscall(ctypes.c_long(SYS_CREATE_RULESET), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(abi, 0)


def landlock(workdir: str, readable: list[str]) -> None:
    """Confine this process and its future children: everything in ``workdir``; reading and running the
    ``readable`` trees; writing /dev/null; nothing else on the file system; no TCP; no signals out."""
    abi = landlock_abi()
    if abi < 1:
        raise SetupError("Landlock is not available on this kernel")
    handled_fs = FS_BY_ABI.get(abi, FS_BY_ABI[5])
    attr = RulesetAttr(
        handled_fs,
        NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0,
    )
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = check(
        libc.syscall(ctypes.c_long(SYS_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)),
        "landlock_create_ruleset",
    )
    rules = [
        (workdir, handled_fs),
        ("/dev/null", FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE),
        *((path, FS_READ) for path in readable),
    ]
    try:
        for path, access in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a system path this machine does not have
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    access &= FS_FILE_RIGHTS  # a rule on a file takes file rights only
                rule = PathBeneathAttr(access & handled_fs, fd)
                check(
                    libc.syscall(
                        ctypes.c_long(SYS_ADD_RULE),
                        ctypes.c_int(ruleset),
                        ctypes.c_int(1),
                        ctypes.byref(rule),
                        ctypes.c_uint32(0),
                    ),
                    f"landlock_add_rule {path}",
                )
            finally:
                os.close(fd)
        check(
            libc.syscall(ctypes.c_long(SYS_RESTRICT_SELF), ctypes.c_int(ruleset), ctypes.c_uint32(0)),
            "landlock_restrict_self",
        )
    finally:
        os.close(ruleset)


def set_capabilities(keep: int) -> None:
    header = CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (CapData * 2)(CapData(keep, keep, 0), CapData(0, 0, 0))
    check(libc.capset(ctypes.byref(header), data), "capset")
    check(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient capabilities")


def disable_sockets() -> None:
    """Best effort, for machines without network namespaces or Landlock: Python's socket API refuses."""

    def refuse(*args, **kwargs):
        raise PermissionError("network access is disabled in the code sandbox")

    class NoSocket(socket.socket):
        def __init__(self, *args, **kwargs):
            refuse()

    socket.socket = NoSocket
    for name in ("create_connection", "create_server", "socketpair", "fromfd", "getaddrinfo"):
        setattr(socket, name, refuse)


def report(errors_fd: int, exc: BaseException) -> None:
    try:
        os.write(errors_fd, f"{type(exc).__name__}: {exc}".encode(errors="replace")[:2000])
    except OSError:
        pass


def process_limit(opts: dict, separate_uid: bool) -> int:
    """RLIMIT_NPROC counts every process of the uid: exact for a uid of its own, or inside a user namespace
    (Linux 5.14+ counts per namespace); otherwise the user's processes now plus the limit (best effort)."""
    limit = int(opts["nproc"])
    release = tuple(int(x) for x in os.uname().release.split(".")[:2] if x.isdigit())
    if separate_uid or (opts["ns"] == "user" and release >= (5, 14)):
        return limit
    uid, tasks = os.getuid(), 0
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and os.stat(f"/proc/{pid}").st_uid == uid:
                tasks += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            continue
    return tasks + limit


def confine(opts: dict, pipes: dict, source: bytes) -> None:
    """Everything between fork and the program's first line, in the program's own process. Leaves the
    ``done`` pipe on fd 3 and the ``errors`` pipe on fd 4 (closed before the program runs)."""
    os.setsid()  # its own session and process group, inside the namespace when there is one
    in_userns, uid = opts["ns"] == "user", int(opts.get("uid") or 0)
    privileged = in_userns or os.geteuid() == 0  # capabilities to give up (in its user namespace, or all)
    if privileged:
        check(libc.prctl(PR_SET_SECUREBITS, SECUREBITS, 0, 0, 0), "securebits")
    if uid:  # root: a uid of the worker's own (mapped to INSIDE_UID in the user namespace)
        target = INSIDE_UID if in_userns else uid
        os.setgroups([])
        os.setresgid(target, target, target)
        os.setresuid(target, target, target)
    memory = int(opts["memory_mb"]) << 20
    cpu = int(float(opts["timeout"])) + 1
    for limit, value in (
        (resource.RLIMIT_AS, (memory, memory)),
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_FSIZE, (int(opts["output_cap"]),) * 2),
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_NPROC, (process_limit(opts, uid > 0),) * 2),
    ):
        resource.setrlimit(limit, value)
    if privileged:
        # in its own user namespace as root, reading root's files (the interpreter may live in /root) stays
        # allowed and Landlock decides which; never outside one (open_by_handle_at would pass Landlock by)
        set_capabilities(1 << CAP_DAC_READ_SEARCH if in_userns and uid and opts["landlock"] == "1" else 0)
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    workdir = opts["dir"]
    os.chdir(workdir)
    os.environ.clear()  # the whole environment: fixed, with the program's own directory as HOME and TMPDIR
    os.environ.update({k: v.replace("{dir}", workdir) for k, v in opts["env"].items()})
    with open(PROGRAM, "wb") as f:
        f.write(source)
    out = os.open(OUTPUT, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    done, errors = os.dup(pipes["done"]), os.dup(pipes["errors"])  # above 2, so 3 and 4 are free to take
    os.dup2(done, 3)
    os.dup2(errors, 4)
    pipes.update(done=3, errors=4)
    os.closerange(5, 1 << 16)
    if opts["landlock"] == "1":
        landlock(workdir, [p for p in opts["read"].split(os.pathsep) if p])
    if opts["ns"] != "user" and not (opts["landlock"] == "1" and landlock_abi() >= 4):
        disable_sockets()


def run_program(source: bytes, opts: dict, done_fd: int, errors_fd: int, nonce: bytes) -> None:
    """The program process: confine, then run the source as ``__main__``; never returns."""
    pipes = {"done": done_fd, "errors": errors_fd}
    try:
        confine(opts, pipes, source)
    except BaseException as exc:  # noqa: BLE001 - reported to the supervisor, which reports an error
        report(pipes["errors"], exc)
        os._exit(SETUP_FAILED)
    os.close(4)  # from here on the program runs: it cannot report a sandbox error
    path = os.path.join(opts["dir"], PROGRAM)  # written by confine: tracebacks show its lines
    sys.argv = [path]
    sys.path[:] = [opts["dir"], *sys.path, *(p for p in opts["syspath"].split(os.pathsep) if p)]
    namespace = {"__name__": "__main__", "__builtins__": __builtins__, "__file__": path}
    code = 1
    try:
        exec(compile(source, path, "exec"), namespace)
        os.write(3, nonce)  # reached the end: how "passed" tells itself from an early exit(0)
        code = 0
    except SystemExit as exc:
        sys.stderr.write(f"SystemExit: exit({exc.code!r}) called before the program's end\n")
    except BaseException:  # noqa: BLE001 - the program's failure, shown as Python would
        traceback.print_exc()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - a full output file: the outcome is decided already
        pass
    os._exit(code)


def read_available(fd: int) -> bytes:
    """What is in the pipe now: a stray process still holding its other end must not block the supervisor."""
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    return b"".join(chunks)


def write_id_maps(pid: int, opts: dict) -> None:
    uid, gid, separate = os.getuid(), os.getgid(), int(opts.get("uid") or 0)
    if separate:  # root: itself as 0 (its files stay readable), the program as a per-worker uid
        maps = {"uid_map": f"0 0 1\n{INSIDE_UID} {separate} 1\n", "gid_map": f"0 0 1\n{INSIDE_UID} {separate} 1\n"}
    else:
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")  # what an unprivileged user gives up to map its group
        maps = {"uid_map": f"{uid} {uid} 1\n", "gid_map": f"{gid} {gid} 1\n"}
    for name, text in maps.items():
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(text)


def unsharer(opts: dict, source: bytes, pipes: dict, nonce: bytes) -> None:
    """New namespaces, then the namespace's init, whose exit it waits for; never returns."""
    code = 1
    try:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC), "unshare")
        os.write(pipes["ready_w"], b"u")
        if os.read(pipes["mapped_r"], 1) != b"m":
            raise SetupError("the supervisor could not write the user namespace's id maps")
        init = os.fork()
        if init == 0:
            namespace_init(opts, source, pipes, nonce)
        _, status = os.waitpid(init, 0)
        code = os.waitstatus_to_exitcode(status) & 0xFF
    except BaseException as exc:  # noqa: BLE001 - reported to the supervisor
        report(pipes["errors_w"], exc)
    os._exit(code)


def namespace_init(opts: dict, source: bytes, pipes: dict, nonce: bytes) -> None:
    """PID 1: starts the program, reaps whatever gets orphaned, reports the program's wait status and exits;
    the kernel then kills every process left in the namespace before this one's exit completes."""
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    program = os.fork()
    if program == 0:
        os.close(pipes["status_w"])
        run_program(source, opts, pipes["done_w"], pipes["errors_w"], nonce)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(1)
        if pid == program:
            os.write(pipes["status_w"], status.to_bytes(4, "little"))
            os._exit(0)


def wait_exit(pid: int, timeout: float) -> bool:
    """True if the child ``pid`` ended within ``timeout`` seconds (it is not reaped)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # before Linux 5.3: poll
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
            time.sleep(0.002)
        return False
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def descendants(pid: int) -> list[int]:
    """Every living descendant of ``pid``, parents before children (this process is a subreaper, so what
    its descendants orphan comes back under it)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in threads:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except OSError:
                continue
            found.extend(children)
            todo.extend(children)
    return found


def kill_descendants() -> None:
    """Without a PID namespace: kill and reap everything below this process, round after round, since a
    process not yet killed may still fork (a fork bomb) and whatever it orphans comes back here."""
    for _ in range(1000):
        victims = descendants(os.getpid())
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not victims:
            return


def supervise(opts: dict, source: bytes) -> tuple[str, float, str]:
    timeout = float(opts["timeout"])
    nonce = b"P" + os.urandom(16).hex().encode()
    pipes = {}
    for name in ("done", "errors", "status", "ready", "mapped"):
        pipes[f"{name}_r"], pipes[f"{name}_w"] = os.pipe()
    namespaces = opts["ns"] == "user"
    if int(opts.get("uid") or 0):
        os.chown(opts["dir"], int(opts["uid"]), int(opts["uid"]))
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # a killed unsharer's init comes back here to be waited for
    start = time.monotonic()
    child = os.fork()
    if child == 0:
        for name in ("done_r", "errors_r", "status_r", "ready_r", "mapped_w"):
            os.close(pipes[name])
        if namespaces:
            unsharer(opts, source, pipes, nonce)
        run_program(source, opts, pipes["done_w"], pipes["errors_w"], nonce)
    for name in ("done_w", "status_w", "ready_w", "mapped_r"):
        os.close(pipes[name])
    if namespaces and os.read(pipes["ready_r"], 1) == b"u":
        try:
            write_id_maps(child, opts)
            os.write(pipes["mapped_w"], b"m")
        except OSError as exc:
            report(pipes["errors_w"], exc)
    os.close(pipes["mapped_w"])
    os.close(pipes["errors_w"])
    timed_out = not wait_exit(child, timeout)
    seconds = time.monotonic() - start
    if timed_out:
        for kill in (os.kill, os.killpg):  # without namespaces the program leads its own process group
            try:
                kill(child, signal.SIGKILL)
            except OSError:
                pass
    _, status = os.waitpid(child, 0)
    if namespaces:
        while True:  # an init orphaned by the kill above exits once its namespace is empty
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
        status_bytes = read_available(pipes["status_r"])
    else:
        kill_descendants()  # what the program left running (its process group, double forks, new sessions)
        status_bytes = status.to_bytes(4, "little")
    done, errors = read_available(pipes["done_r"]), read_available(pipes["errors_r"])
    if timed_out:
        return "timeout", seconds, f"timed out after {timeout:g} s"
    if errors:
        return "error", seconds, "sandbox setup failed: " + errors.decode(errors="replace")
    if len(status_bytes) != 4:
        return "error", seconds, "the sandbox's init process ended without the program's status"
    status = int.from_bytes(status_bytes, "little")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return "killed", seconds, f"killed by {signal.Signals(sig).name if sig in set(signal.Signals) else sig}"
    code = os.waitstatus_to_exitcode(status)
    if code == 0 and done == nonce:
        return "passed", seconds, ""
    if code == 0:
        return "failed", seconds, "exited with status 0 before the program's end"
    return "failed", seconds, f"exit status {code}"


def result_line(status: str, seconds: float, detail: str) -> bytes:
    return f"{status}\t{seconds:.6f}\t{' '.join(detail.split())}\n".encode()


def run_job(request: dict) -> bytes:
    """One job in a fresh child of the server, so that nothing of one job outlives it into the next."""
    result_r, result_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(result_r)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)  # the server's pipes to the evaluator stay the server's
        os.dup2(null, 1)
        try:
            opts = {k: v if isinstance(v, dict) else str(v) for k, v in request["settings"].items()}
            line = result_line(*supervise(opts, request["program"].encode("utf-8", errors="surrogatepass")))
        except BaseException as exc:  # noqa: BLE001 - the evaluator gets an error outcome, not a hang
            line = result_line("error", 0.0, f"sandbox supervisor: {type(exc).__name__}: {exc}")
        os.write(result_w, line)
        os._exit(0)
    os.close(result_w)
    _, status = os.waitpid(pid, 0)
    line = read_available(result_r)
    os.close(result_r)
    if line:
        return line
    kill_descendants()  # the supervisor was killed (by the program, where nothing stopped its signals)
    if os.WIFSIGNALED(status):
        return result_line("killed", 0.0, f"the sandbox supervisor was killed by signal {os.WTERMSIG(status)}")
    return result_line("error", 0.0, f"the sandbox supervisor ended with wait status {status}")


def serve() -> None:
    """Fork server: one job per stdin line (JSON: settings and program), one result line per job on stdout.
    Forking a warm interpreter per job costs a few milliseconds where starting one costs tens."""
    import json

    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # what a killed supervisor leaves comes back here
    while line := sys.stdin.buffer.readline():
        sys.stdout.buffer.write(run_job(json.loads(line)))
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    serve()
