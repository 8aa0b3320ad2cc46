"""The grading helper of an nbgrader course: hidden cases are graded outside the kernel.

``nbgrader autograde`` runs a notebook's test cells in the student's kernel,
where the student's code runs too, unsandboxed; whatever that kernel can read
from its environment, a solution cell can print into the feedback that
``generate_feedback`` hands back. So the kernel gets neither the hidden-case
secret nor the path of the reference solutions. The course's
``nbgrader_config.py`` calls ``start()`` in the nbgrader process, before any
kernel starts:

- it starts this module as a process of its own and hands it the secret and
  the solutions' path through a pipe (never its command line or environment);
- the helper makes itself non-dumpable (its ``/proc`` files, memory included,
  are closed to other processes of the same user), listens on a Unix socket in
  a fresh 0700 folder, and grades with the same engine as ``attnkit grade``:
  ``notebook.NotebookGrader``, student code in the children of a warm worker;
- the nbgrader process makes itself non-dumpable too (its
  ``/proc/<pid>/environ`` keeps the secret the instructor exported), removes
  both variables from the environment its kernels inherit, and gives them the
  socket's path alone (``config.GRADER``).

A test cell's ``score()`` sends the item and the path of the saved notebook;
the helper answers with points and reasons, the same lines as any failed
check's feedback, scrubbed of the secret and the solutions' path. It exits
when the nbgrader process does (the end of its stdin). What this cannot close
is in the README ("nbgrader scores can be forged").
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from attnkit import config as settings
from attnkit.kernel.notebook import Grade

HIDDEN_VARS = (settings.SECRET.name, settings.SOLUTIONS.name)  # never in a kernel's environment
PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])
READY_SECONDS = 60.0  # python start-up and the kit's light imports, on a loaded machine
REQUEST_SECONDS = 10.0  # a connected kernel sends its request at once
PR_SET_DUMPABLE = 4


def set_dumpable(flag: bool) -> bool:
    """Non-dumpable: this process's /proc files (environ, mem) belong to root,
    so another process of the same (non-root) user cannot read them. Linux only."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_DUMPABLE, int(flag), 0, 0, 0) == 0


# --------------------------------------------------------------------------- the nbgrader process's side

@dataclass
class Helper:
    proc: subprocess.Popen
    folder: str
    address: str


_helper: Helper | None = None


SOCKET_PATH_MAX = 107  # bytes of a Unix socket's path (sun_path holds 108 with its NUL)


def _socket_folder() -> str:
    """A new private folder for the helper's socket: in the temporary folder,
    unless its path is too long for a socket path (a deep TMPDIR), then in /tmp."""
    folder = tempfile.mkdtemp(prefix="attnkit-grader-")
    if len(os.fsencode(os.path.join(folder, "grader.sock"))) <= SOCKET_PATH_MAX or not os.path.isdir("/tmp"):
        return folder
    os.rmdir(folder)
    return tempfile.mkdtemp(prefix="attnkit-grader-", dir="/tmp")


def start(solutions: str | None = None, item_seconds: float = settings.ITEM_SECONDS_DEFAULT,
          warm: bool | None = None) -> str:
    """Start this process's grading helper (once) and hide the secret from the kernels to come.

    ``solutions``: the reference solutions (default: ``ATTNKIT_SOLUTIONS``, else
    the kit's own). ``warm``: start the worker at once (default: when this is
    ``nbgrader autograde`` or ``validate``). Returns the helper's socket path.
    Never raises: if the helper cannot start, the kernels still lose the secret
    and their test cells say that the helper is not reachable."""
    global _helper
    if _helper is not None:
        return _helper.address
    config = {"secret": os.environ.get(settings.SECRET.name),  # None: the helper keeps the public default
              "solutions": os.fspath(solutions or settings.solutions_dir()),
              "item_seconds": float(item_seconds),
              "warm": any(a in ("autograde", "validate") for a in sys.argv[1:3]) if warm is None else warm}
    folder = _socket_folder()  # 0700: other users cannot reach the socket
    address = os.path.join(folder, "grader.sock")
    env = {k: v for k, v in os.environ.items() if k not in HIDDEN_VARS}
    boot = (f"import sys; sys.path.insert(0, {PACKAGE_PARENT!r}); "
            f"from attnkit.frontends.nbgrader_helper import serve; serve({address!r})")
    set_dumpable(False)
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-c", boot], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env=env, cwd=folder)
        proc.stdin.write(json.dumps(config).encode() + b"\n")
        proc.stdin.flush()  # stdin stays open: the helper exits when it closes with this process
        ready, _, _ = select.select([proc.stdout], [], [], READY_SECONDS)
        line = proc.stdout.readline() if ready else b""
        proc.stdout.close()
        if line.strip() != b"ready":
            print(f"attnkit: the grading helper did not start (exit code {proc.poll()}); the test cells "
                  f"of this run will say so and score 0", file=sys.stderr)
    except OSError as exc:
        print(f"attnkit: the grading helper could not be started ({exc})", file=sys.stderr)
        proc = None
    for var in HIDDEN_VARS:
        os.environ.pop(var, None)
    os.environ[settings.GRADER.name] = address
    _helper = Helper(proc, folder, address)
    atexit.register(stop)
    return address


def stop() -> None:
    global _helper
    helper, _helper = _helper, None
    if helper is None:
        return
    if helper.proc is not None:
        try:
            helper.proc.stdin.close()
            helper.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            helper.proc.kill()
            helper.proc.wait()
    shutil.rmtree(helper.folder, ignore_errors=True)


# --------------------------------------------------------------------------- the helper process

class Scrub:
    """Removes the secret and the solutions' path from anything sent to a kernel."""

    def __init__(self, config: dict):
        solutions = config["solutions"]
        words = (config.get("secret"), solutions, os.path.realpath(solutions))
        self.words = sorted({w for w in words if w and len(w) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for word in self.words:
            text = text.replace(word, "<hidden>")
        return text


def serve(address: str) -> None:
    """The helper's main: read the configuration from stdin, then answer kernels until stdin ends."""
    set_dumpable(False)  # before the secret arrives
    config = json.loads(sys.stdin.readline())
    if config.get("secret") is not None:
        os.environ[settings.SECRET.name] = config["secret"]
    os.environ[settings.SOLUTIONS.name] = config["solutions"]
    warnings.simplefilter("ignore")
    scrub = Scrub(config)

    from attnkit.kernel.notebook import NotebookGrader

    grader = NotebookGrader(config["item_seconds"], hide=[config["solutions"]])
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(address)
    server.listen(8)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sink = os.open(os.devnull, os.O_WRONLY)
    os.dup2(sink, 1)  # the pipe to nbgrader is done with

    def end_with_nbgrader():  # also after a kill -9 of nbgrader: its end of the pipe closes
        sys.stdin.buffer.read()
        grader.close()
        shutil.rmtree(os.path.dirname(address), ignore_errors=True)
        os._exit(0)

    threading.Thread(target=end_with_nbgrader, daemon=True).start()
    if config.get("warm"):
        # The worker is started here, in the main thread: it dies with the thread that started it.
        threading.Thread(target=_warm, args=(grader, grader.worker()), daemon=True).start()
    while True:
        conn, _ = server.accept()
        with conn:
            _answer(conn, grader, scrub)


def _warm(grader, zygote) -> None:
    """Import torch here and load the reference while the worker imports torch
    and nbgrader starts its first kernel."""
    from attnkit.judge import engine as grading
    try:
        with grader.lock:
            grading.solutions_available()
        zygote.ready()
    except Exception:  # noqa: BLE001 - the first request meets the same problem and says it
        pass


def _answer(conn: socket.socket, grader, scrub: Scrub) -> None:
    from attnkit.kernel.notebook import _read_message
    from attnkit.intake.notebooks import NotebookError
    from attnkit.errors import GraderError

    try:
        conn.settimeout(REQUEST_SECONDS)
        request = json.loads(_read_message(conn))
        conn.settimeout(None)
        item, notebook, hidden = request["item"], request["notebook"], request["hidden"]
        if not (isinstance(item, str) and isinstance(notebook, str) and isinstance(hidden, bool)):
            raise ValueError("malformed request")
    except (OSError, ValueError, KeyError, TypeError):
        return  # not a test cell of ours: nothing to answer
    try:
        grade = grader.grade(Path(notebook), item, hidden)
        answer = Grade(grade.item, grade.score, grade.max_score, grade.public,
                       tuple(map(scrub, grade.reasons)), tuple(map(scrub, grade.notes))).to_json()
    except (GraderError, NotebookError, ValueError) as exc:  # the notebook's or the request's fault: say why
        answer = {"error": scrub(str(exc))}
    except Exception as exc:  # noqa: BLE001 - the instructor sees the details, the kernel only that it failed
        print(f"attnkit grading helper: {item} of {notebook}: {type(exc).__name__}: {exc}", file=sys.stderr)
        answer = {"error": f"the grading helper could not grade this ({type(exc).__name__}); "
                           f"the instructor's nbgrader log has the details"}
    try:
        conn.sendall(json.dumps(answer).encode() + b"\n")
    except OSError:
        pass  # the kernel gave up (its cell timed out): the report stays cached for the next cell
