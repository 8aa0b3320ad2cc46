"""Least privilege for the process that runs student code, where the OS allows it.

Applied in the forked child before any student code runs, in this order:
new mount and network namespaces (no network; the kit's solutions, source
notebooks and history, and the class folders hidden under empty read-only
tmpfs mounts), then an unprivileged user of its own (so it cannot read the
grader's memory or environment, and the grader can kill everything it started
by user id), then resource limits. Each step that the OS refuses is reported,
never fatal: the grader says once per run what it could not apply.

Runs next to student code: standard library only.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 0x1000, 0x4000, 0x40000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 1, 4, 36

_libc = ctypes.CDLL(None, use_errno=True)


def _call(fn, *args) -> bool:
    return fn(*args) == 0


def set_dumpable(flag: bool) -> bool:
    """A non-dumpable process's /proc files (environ, mem) belong to root, so a
    student process of the same user cannot read the grader's secret there."""
    return _call(_libc.prctl, PR_SET_DUMPABLE, int(flag), 0, 0, 0)


def die_with_parent() -> bool:
    """SIGKILL when the parent process dies, so nothing runs on after a grader
    that was killed. Cleared by fork and by a change of user: set it after both."""
    import signal as _signal

    parent = os.getppid()
    ok = _call(_libc.prctl, PR_SET_PDEATHSIG, int(_signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the setting took
        os._exit(1)
    return ok


def set_subreaper() -> bool:
    """Orphans of our children are re-parented to us, not to init, so a
    process that escaped with setsid can still be found and killed."""
    return _call(_libc.prctl, PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def namespaces(hide: list[str], expose: list[str] = ()) -> dict:
    """Private mount and network namespaces; hide ``hide`` under empty tmpfs,
    and make the folders in ``expose`` (the Python installation) reachable for
    an unprivileged user even where they sit under a private home."""
    done = {"network": False, "hidden": False, "exposed": False}
    if os.geteuid() != 0 or not _call(_libc.unshare, CLONE_NEWNS | CLONE_NEWNET):
        return done
    done["network"] = True
    if not _call(_libc.mount, b"none", b"/", None, MS_REC | MS_PRIVATE, None):
        return done
    done["exposed"] = _expose(list(expose))
    ok = True
    for path in hide:
        if os.path.isdir(path):
            ok &= _call(_libc.mount, b"tmpfs", path.encode(), b"tmpfs",
                        MS_RDONLY | MS_NOSUID | MS_NODEV, b"size=4k,mode=0555")
    done["hidden"] = ok
    return done


def _blocked_ancestor(path: str) -> tuple[str, str] | None:
    """The first ancestor of ``path`` that others may not enter, and the name
    of the entry under it on the way to ``path``."""
    parts = os.path.realpath(path).strip("/").split("/")
    current = "/"
    for name in parts[:-1] if os.path.isfile(path) else parts:
        try:
            if not os.stat(current).st_mode & 0o001:
                return current, name
        except OSError:
            return None
        current = os.path.join(current, name)
    return None


def _expose(paths: list[str]) -> bool:
    """Cover each closed ancestor (say /root, mode 0700) with a tmpfs others may
    enter, and bind the needed entries (say /root/.pyenv) back into it."""
    for _ in range(4):  # closed folders may nest
        blocked: dict[str, set[str]] = {}
        for path in paths:
            hit = _blocked_ancestor(path)
            if hit:
                blocked.setdefault(hit[0], set()).add(hit[1])
        if not blocked:
            return True
        for folder, names in blocked.items():
            handles = {n: os.open(os.path.join(folder, n), os.O_PATH) for n in names
                       if os.path.exists(os.path.join(folder, n))}
            if not _call(_libc.mount, b"tmpfs", folder.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                         b"size=4k,mode=0711"):
                return False
            for name, fd in handles.items():
                target = os.path.join(folder, name)
                if os.path.isdir(f"/proc/self/fd/{fd}"):
                    os.mkdir(target)
                else:
                    open(target, "w").close()
                ok = _call(_libc.mount, f"/proc/self/fd/{fd}".encode(), target.encode(), None,
                           MS_BIND | MS_REC, None)
                os.close(fd)
                if not ok:
                    return False
    return not any(_blocked_ancestor(p) for p in paths)


def python_paths() -> list[str]:
    """Where this Python finds its standard library and packages."""
    import sys

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    paths |= {p for p in sys.path if p and os.path.isdir(p)}
    return sorted(paths)


def _python_usable() -> bool:
    """After dropping privileges: can we still import from the standard library?"""
    import importlib

    try:
        importlib.import_module("encodings.idna")
        import json  # noqa: F401
        return os.access(os.path.dirname(os.__file__), os.R_OK | os.X_OK)
    except Exception:  # noqa: BLE001
        return False


def drop_privileges(uid: int | None) -> bool:
    if uid is None or os.geteuid() != 0:
        return False
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    return os.getuid() == uid


def limit_resources(memory_bytes: int = 0, output_bytes: int = 0, processes: int = 0) -> None:
    # Writes beyond the output cap fail with EFBIG instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if output_bytes:
        resource.setrlimit(resource.RLIMIT_FSIZE, (output_bytes, output_bytes))
    if memory_bytes:
        with open("/proc/self/statm") as f:
            base = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (base + memory_bytes, base + memory_bytes))
    if processes and os.getuid() != 0:
        # RLIMIT_NPROC counts every process and thread of the real user: only
        # meaningful for a user of our own, which drop_privileges() gave us.
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))


def probe(hide_test_dir: str) -> dict:
    """What this machine lets us apply: run once in a throwaway child."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        result = namespaces([hide_test_dir], python_paths())
        result["user"] = result.pop("exposed") and drop_privileges(65533) and _python_usable()
        result["hidden"] = result["hidden"] and not os.listdir(hide_test_dir) if result["hidden"] else False
        os.write(w, ",".join(k for k, v in result.items() if v).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 1024):
        data += chunk
    os.close(r)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    got = set(data.decode().split(","))
    return {k: k in got for k in ("user", "network", "hidden")}


WORDS = {"user": "run student code as an unprivileged user of its own (so no process limit, and "
                 "student code can read what this user can read)",
         "network": "cut student code off the network",
         "hidden": "hide the kit's solutions from student code"}


def missing(isolation: dict) -> str:
    """One sentence for what the OS did not allow, or '' when everything applied."""
    gaps = [text for key, text in WORDS.items() if not isolation.get(key)]
    if not gaps:
        return ""
    return ("attnkit: note: this machine does not let the grader " + "; ".join(gaps) +
            ". Time, memory and output limits still apply. Run as root, or where user "
            "namespaces are enabled, for full isolation.")


def probe_here() -> dict:
    """``probe`` from a process that has not forked student code: a scratch folder of its own."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="attnkit-probe-")
    try:
        open(os.path.join(folder, "marker"), "w").close()
        return probe(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
