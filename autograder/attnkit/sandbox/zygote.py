"""The warm worker: torch imported once, one forked child per submission.

``python -I -c "...; zygote(FDS, CONFIG)"`` (started by ``forking.ForkZygote``)
first enters the namespaces it needs (``confine.enter_worker_namespaces``,
while it still has one thread), imports torch and warms it up, decides once
what a child's new root holds, probes what the machine allows, and then waits
on its control sockets (one per grading job). For every spawn request it
forks a child in a PID namespace of its own and hands the grader a pidfd for
it. The child confines itself, receives the submission's files, and serves
the grader until it is killed.

Everything in this file runs next to student code: it imports nothing of the
grader outside the ``attnkit.sandbox`` package.
"""

from __future__ import annotations

import gc
import json
import os
import selectors
import signal
import socket
import sys
import time

from attnkit.sandbox import confine, seccomp  # standard library only: see zygote()


def zygote(control_fds: str, config_json: str) -> None:
    config = json.loads(config_json)
    confine.die_with_parent(config.get("parent"))  # first: the grader may be gone already
    # Before anything starts a thread (numpy's and torch's thread pools): the
    # kernel lets only a single-threaded process enter a new user namespace.
    mode = confine.enter_worker_namespaces() if config.get("isolation", "auto") == "auto" else "none"
    import torch  # the expensive import, paid once per grading run

    # What each child runs, imported here once: a child would otherwise import
    # (and, without bytecode files, compile) it again after every fork.
    from attnkit.sandbox import child, protocol, standins  # noqa: F401

    torch.set_num_threads(1)
    warm_up(torch)
    plan = confine.Plan(binds=confine.python_paths(config.get("exclude", [])), hide=list(config.get("hide", [])))
    pid_namespaces = confine.PidNamespaces() if mode != "none" else None
    isolation = probe(plan, mode, pid_namespaces, torch)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps finished children
    channels = [socket.socket(fileno=int(fd)) for fd in str(control_fds).split(",")]
    selector = selectors.DefaultSelector()
    for ctrl in channels:
        try:
            ctrl.sendall(json.dumps({"ready": True, "isolation": isolation}).encode() + b"\n")
            selector.register(ctrl, selectors.EVENT_READ)
        except OSError:
            ctrl.close()  # that grader is gone already
    while selector.get_map():
        for key, _ in selector.select():
            ctrl = key.fileobj
            try:
                msg, fds, _flags, _addr = socket.recv_fds(ctrl, 65536, 2)
            except OSError:
                msg, fds = b"", []
            if not msg or len(fds) != 2:
                for fd in fds:
                    os.close(fd)
                selector.unregister(ctrl)
                ctrl.close()
                continue
            request = json.loads(msg)
            own_pid_ns = bool(pid_namespaces and pid_namespaces.before_fork())
            # The child's collections then leave the worker's objects alone: fewer
            # of its pages copied on first write (3,700 to 3,100 per submission).
            gc.freeze()
            pid = os.fork()
            if pid == 0:
                try:
                    _child(fds[0], fds[1], request, plan, mode, own_pid_ns, isolation, torch)
                except BaseException:  # noqa: BLE001 - a setup failure: the grader reads why from the output
                    import traceback

                    traceback.print_exc()
                    sys.stderr.flush()
                finally:
                    os._exit(0)
            for fd in fds:
                os.close(fd)
            pidfd = _pidfd(pid)
            reply = json.dumps({"pid": pid, "pidfd": pidfd is not None, "order": request.get("order")}).encode() + b"\n"
            try:
                socket.send_fds(ctrl, [reply], [pidfd] if pidfd is not None else [])
            except OSError:
                selector.unregister(ctrl)
                ctrl.close()
            finally:
                if pidfd is not None:
                    os.close(pidfd)


def _pidfd(pid: int) -> int | None:
    """A handle on the child that stays right across PID namespaces and PID reuse."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def warm_up(torch) -> None:
    """Run each kind of operation the checks use once, so that every forked child
    inherits torch's lazily initialised state instead of paying for it again.
    Single-threaded (set above), so no thread pool exists to break the fork."""
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    layer = torch.nn.Linear(4, 4).double()
    y = torch.softmax(layer(x) @ x.transpose(-2, -1), dim=-1).masked_fill(
        torch.ones(3, 3, dtype=torch.bool).triu(1), 0.0)
    y = torch.nn.functional.dropout(y, 0.5, training=True)
    (y.sum() + torch.cat([x, x], -1).view(2, 3, 2, 4).transpose(1, 2).sum()).backward()
    torch.manual_seed(0)
    torch.rand(2)


def confine_child(plan, mode: str, own_pid_ns: bool, uid: int | None) -> dict:
    """Steps 2 to 4 of ``confine``; returns what was applied."""
    applied = {"processes": own_pid_ns, "filesystem": False, "network": False, "user": False}
    os.setsid()  # own session and process group, also where no PID namespace was had
    if mode != "none":
        try:
            applied.update(confine.build_root(plan, own_pid_ns))
        except OSError as exc:
            applied["error"] = str(exc)  # what the probe reports
    dropped = confine.drop_privileges(uid, mode)
    applied["user"], applied["own_count"] = dropped["user"], dropped["own_count"]
    confine.die_with_parent()  # after the change of user, which clears it
    return applied


def _child(sock_fd: int, out_fd: int, request: dict, plan, mode: str, own_pid_ns: bool, isolation: dict,
           torch) -> None:
    from attnkit.sandbox import protocol
    from attnkit.sandbox.child import Child, receive_hello

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    baseline = confine.memory_baseline()
    limits = request.get("limits", {})
    applied = confine_child(plan, mode, own_pid_ns, limits.get("uid"))
    confine.close_fds([0, 1, 2, sock_fd])
    sock = socket.socket(fileno=sock_fd)
    sock.setblocking(True)
    workdir = confine.SUBMISSION if applied.get("filesystem") else request.get("workdir")
    if not workdir:  # no new root here and no folder from the grader: nowhere to run
        return
    header = receive_hello(sock, workdir)
    if header is None:
        return
    os.environ.update(HOME="/tmp" if applied.get("filesystem") else workdir, TMPDIR="/tmp")
    sys.path[:] = [workdir] + [p for p in sys.path if p and p not in request.get("exclude", [])]
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    confine.limit_resources(baseline, limits.get("memory_bytes", 0), limits.get("output_bytes", 0),
                            limits.get("files", 64), limits.get("processes", 0),
                            own_count=bool(applied.get("own_count")))
    applied["seccomp"] = seccomp.install()
    child = Child(sock, workdir, torch, tuple(header.get("modules", ())))
    child.hello(header)
    protocol.send(sock, {"kind": protocol.Kind.READY, "applied": applied})
    child.serve()


def probe(plan, mode: str, pid_namespaces, torch) -> dict:
    """What this machine lets the sandbox apply: a throwaway child goes through
    every step and reports which took. Checked once per worker."""
    r, w = os.pipe()
    own_pid_ns = bool(pid_namespaces and pid_namespaces.before_fork())
    pid = os.fork()
    if pid == 0:
        os.close(r)
        result: dict = {}
        try:
            result = confine_child(plan, mode, own_pid_ns, 65533 if mode == "root" else None)
            result["seccomp"] = seccomp.install()
            if result.get("filesystem"):  # the host tree is gone: only our bind mounts remain
                result["filesystem"] = not os.path.exists("/etc/passwd") and all(
                    not os.listdir(h) for h in plan.hidden_inside_binds() if os.path.isdir(h))
            torch.ones(2) @ torch.ones(2)  # and torch still works there
        except Exception as exc:  # noqa: BLE001 - the probe reports, never fails
            result["error"] = f"{type(exc).__name__}: {exc}"
        os.write(w, json.dumps(result).encode())
        os._exit(0)
    os.close(w)
    data = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (chunk := os.read(r, 65536)):
        data += chunk
    os.close(r)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    try:
        found = json.loads(data or b"{}")
    except ValueError:
        found = {}
    keys = ("filesystem", "network", "processes", "user", "seccomp")
    result = {k: bool(found.get(k)) for k in keys}
    result["mode"] = mode
    if found.get("error"):
        result["error"] = str(found["error"])[:300]
    return result


if __name__ == "__main__":
    zygote(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "{}")
