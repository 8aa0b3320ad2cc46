"""What a notebook's test cell calls: ``score("<module>.<name>", hidden=...)``.

The kernel a test cell runs in is the student's: their code can redefine
anything in it, so nothing is graded or compared in the kernel. ``score``
names the *saved* notebook; its solution cells become ``<module>.py``
(``notebook_code.module_source``, the same function as the fast path for an
nbgrader ``submitted/`` tree) and the batch grader grades that module
(``grading.grade``) in a child of a warm worker. The report is kept per
distinct module source, so the first test cell of a notebook grades all its
items and the others reuse that report.

Where it is graded:

- under nbgrader in an attnkit course, by the course's grading helper
  (``attnkit.frontends.nbgrader_helper``, started by ``nbgrader_config.py``), outside
  the kernel: the kernel holds neither the hidden-case secret nor the path of
  the solutions, and gets back points and reasons only;
- anywhere else (a student's Jupyter, ``nbgrader validate`` of a student's
  copy, the handout), in a warm worker of the kernel's own, started on the
  first call: the public checks, or every check where the reference solutions
  are at hand (an instructor trying the source notebook).

What it returns: nbgrader turns a test cell into points by the value of its
last expression (a plain float from 0 to the cell's points; more fails the
notebook) and gives 0 to a cell that wrote to stderr. So ``score`` returns
plain float points, prints its reasons to stdout and silences stderr and
warnings while it grades. With ``hidden=False`` (the student's copy: nbgrader
removed the hidden-tests block) the public checks are scaled to the cell's
points, so a correct notebook has full marks and passes ``nbgrader
validate``; with ``hidden=True`` (restored by nbgrader at autograde) every
check counts with its own points. Under ``nbgrader validate`` a cell short of
its points also writes its reasons to stderr, the only output the validator
shows.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import os
import socket
import sys
import textwrap
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from attnkit import config

MESSAGE_LIMIT = 1 << 20  # a request or an answer between a kernel and the helper
VALIDATOR_WIDTH = 80  # nbgrader validate cuts longer lines of an error with "..."


@dataclass(frozen=True)
class Grade:
    """One item's grade as plain data: all a test cell learns, and all the helper sends."""

    item: str
    score: int
    max_score: int
    public: bool  # the public checks only, out of their points
    reasons: tuple[str, ...] = ()  # one line per failed check
    notes: tuple[str, ...] = ()  # how it was graded, when that is not the usual way

    def to_json(self) -> dict:
        return {"item": self.item, "score": self.score, "max_score": self.max_score, "public": self.public,
                "reasons": list(self.reasons), "notes": list(self.notes)}

    @classmethod
    def from_json(cls, data: dict) -> Grade:
        return cls(str(data["item"]), int(data["score"]), int(data["max_score"]), bool(data["public"]),
                   tuple(map(str, data.get("reasons", ()))), tuple(map(str, data.get("notes", ()))))


# --------------------------------------------------------------------------- grading a saved notebook

# Stage 4 imports stage 3. With the reference at hand the grader stands it in
# for every stage-3 name, file or no file; without it, the stage-3 file next to
# the notebook serves (the course releases the kit's own with stage 4).
DEPENDS = {"multihead_attention": ("causal_attention",)}


def notebook_submission(path: Path, module: str, public: bool):
    """The ``intake.Submission`` of a saved notebook: ``<module>.py`` from its solution
    cells (as the fast path grades it) and, without the reference, the stage it imports."""
    from attnkit.intake import NOTEBOOK_LIMIT, Submission, read_regular
    from attnkit.exercises import MODULES
    from attnkit.intake.collect import bring_imports, left_out_notes
    from attnkit.intake.notebooks import NotebookError, module_source

    data = read_regular(str(path), NOTEBOOK_LIMIT)
    try:
        nb = json.loads(data)
    except ValueError as exc:
        raise NotebookError(f"{path.name}: not a readable notebook ({exc}); restore it from a checkpoint "
                            f"(File > Revert Notebook to Checkpoint)") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookError(f"{path.name}: not a Jupyter notebook (no list of cells)")
    left_out: list[str] = []
    files = {f"{module}.py": module_source(nb, module, left_out).encode()}
    for dep in DEPENDS.get(module, ()) if public else ():
        neighbour = path.parent / f"{dep}.py"
        if neighbour.is_file():
            files[f"{dep}.py"] = read_regular(str(neighbour))
    # the student's own .py helpers next to the notebook that its code imports, as
    # `attnkit grade` and `attnkit check` bring them; another exercise file only as above
    sources = {f"{module}.py": path.name}
    brought = bring_imports(files, sources, str(path.parent), path.name, path.name,
                            skip=frozenset(f"{m}.py" for m in MODULES))
    notes = left_out_notes(path.name, left_out)
    if brought:
        notes.append(f"{path.name} imports {', '.join(brought)}, next to it: graded with it")
    return Submission(path.name, (module,), files, tuple(notes), sources)


def _start_worker(hide: list[str]):
    """A warm worker whose stdout and stderr go nowhere: in a kernel, bytes on
    fd 2 would reach the cell as stderr, and nbgrader would give it 0."""
    from attnkit.sandbox import Zygote

    saved = os.dup(1), os.dup(2)
    sink = os.open(os.devnull, os.O_WRONLY)
    os.dup2(sink, 1)
    os.dup2(sink, 2)
    try:
        return Zygote(hide=hide)
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, sink):
            os.close(fd)


class NotebookGrader:
    """Grades items of saved notebooks: one warm worker, one report per distinct submission."""

    KEEP = 8  # reports kept: a notebook's test cells run one after another

    def __init__(self, seconds: float, hide: list[str] | None = None):
        self.seconds = seconds
        from attnkit.config import secret_paths

        self.hide = [*secret_paths(), *(hide or [])]
        self.zygote = None
        self.reports: OrderedDict[tuple, object] = OrderedDict()
        self.lock = threading.Lock()
        self.noticed = False  # the reduced-isolation note is said once per kernel

    def worker(self):
        if self.zygote is None or self.zygote.proc.poll() is not None:
            self.zygote = _start_worker(self.hide)
            atexit.register(self.zygote.close)
        return self.zygote

    def notice(self) -> list[str]:
        """The sandbox's one-line note where isolation is reduced (the portable runner of
        macOS and Windows, say), the first time only; to stdout, never stderr (nbgrader
        gives 0 to a cell that writes to stderr)."""
        if self.noticed or self.zygote is None:
            return []
        self.noticed = True
        text = self.zygote.notice()
        return [text] if text else []

    def grade(self, notebook: Path, item_key: str, hidden: bool) -> Grade:
        from attnkit.judge import engine as grading
        from attnkit.exercises import items
        from attnkit.sandbox import Limits

        if item_key not in items():
            raise ValueError(f"{item_key!r} is not a graded item of the kit")
        item = items()[item_key]
        with self.lock:  # one grading at a time; the reference is loaded once
            notes = []
            public = not hidden
            if hidden and not grading.solutions_available():
                public = True
                notes.append("no reference solutions here: public checks only")
            submission = notebook_submission(notebook, item.module, public)
            digest = hashlib.sha256(json.dumps({k: v.hex() for k, v in sorted(submission.files.items())})
                                    .encode()).hexdigest()
            key = (item.module, public, digest)
            report = self.reports.get(key)
            if report is None:
                report = grading.grade(self.worker(), submission, Limits(seconds=self.seconds), public)
                self.reports[key] = report
                while len(self.reports) > self.KEEP:
                    self.reports.popitem(last=False)
        result = report.by_item()[item_key]
        return Grade(item_key, result.score, result.max_score, public, tuple(result.reasons),
                     tuple(self.notice() + notes + list(report.notes)))

    def close(self) -> None:
        if self.zygote is not None:
            self.zygote.close()


# --------------------------------------------------------------------------- the kernel's side

_local: NotebookGrader | None = None


@contextlib.contextmanager
def _quiet():
    """No byte of this block reaches the cell's stderr: Python's, warnings, or fd 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    sink = os.open(os.devnull, os.O_WRONLY)
    os.dup2(sink, 2)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(sink)


def find_notebook(module: str, folder: Path | None = None) -> Path:
    """The saved notebook of ``module``: the one this kernel runs, as Jupyter
    names it, where its name holds the module's (a copy JupyterLab made,
    ``<module>-Copy1.ipynb``, or a download, ``<module> (1).ipynb``, beside the
    untouched original); else ``<module>.ipynb`` in the kernel's folder."""
    from attnkit.intake.notebooks import NotebookError

    folder = folder or Path.cwd()
    candidates = [folder / f"{module}.ipynb"]
    session = config.JPY_SESSION_NAME.get() or ""
    if session.endswith(".ipynb"):
        # relative to the server's root, and the kernel runs in the notebook's folder
        running = Path(session) if Path(session).is_absolute() else folder / Path(session).name
        candidates.insert(0 if module in running.name else 1, running)
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise NotebookError(f"{module}.ipynb is not in {folder}: the test cells grade the saved notebook "
                        f"and find it by its name; rename this notebook back to {module}.ipynb")


def _ran_other_code(name: str, saved: list[str]) -> bool:
    """True when the kernel last ran a different version of this solution cell
    than the saved notebook holds (``saved``: its parts, one per cell, where a
    cell was split): the student forgot to save. IPython keeps what it ran with
    its magics already made Python (``%timeit`` as a call), so each saved part is
    made so too before they are compared."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    history = shell.user_ns.get("In", []) if shell is not None else []
    for source in reversed(history):
        if f"def {name}(" in source or f"class {name}(" in source or f"class {name}:" in source:
            return source.strip() not in {_as_run(shell, part).strip() for part in saved}
    return False


def _as_run(shell, source: str) -> str:
    """A cell's source as IPython runs it (what ``In`` holds)."""
    try:
        return shell.transform_cell(source)
    except Exception:  # noqa: BLE001 - a cell IPython cannot read is compared as it is
        return source


def ask_helper(address: str, notebook: Path, item_key: str, hidden: bool) -> Grade:
    """The course's grading helper grades ``item_key`` of ``notebook``, outside this process."""
    from attnkit.errors import GraderError

    request = json.dumps({"item": item_key, "notebook": os.fspath(notebook), "hidden": hidden}).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        try:
            conn.connect(address)
            conn.sendall(request + b"\n")
            conn.shutdown(socket.SHUT_WR)
            answer = _read_message(conn)
        except OSError as exc:
            raise GraderError(f"the course's grading helper is not reachable ({exc.strerror or exc}); the "
                              f"instructor grades this notebook with `attnkit grade-class`") from None
    data = json.loads(answer)
    if "error" in data:
        raise GraderError(data["error"])
    return Grade.from_json(data)


def _read_message(conn: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MESSAGE_LIMIT:
            raise OSError("message too long")
    return data.split(b"\n", 1)[0]


def _grade(item_key: str, hidden: bool, lines: list[str]) -> Grade:
    from attnkit.exercises import items
    from attnkit.intake.notebooks import read_notebook, solution_cell_parts

    if item_key not in items():
        raise ValueError(f"{item_key!r} is not a graded item of the kit")
    item = items()[item_key]
    path = find_notebook(item.module)
    saved = solution_cell_parts(read_notebook(path)).get(item.name, [])
    if _ran_other_code(item.name, saved):
        lines.append(f"note: the saved {path.name} differs from the `{item.name}` you ran last; "
                     f"save the notebook (Ctrl-S) and run this cell again")
    address = config.GRADER.get()
    if address:  # under nbgrader in an attnkit course: never grade in this kernel
        return ask_helper(address, path, item_key, hidden)
    global _local
    if _local is None:
        _local = NotebookGrader(config.item_seconds())
    return _local.grade(path, item_key, hidden)


def points_of(grade: Grade) -> float:
    """The cell's points: every check with its own points, or the public checks scaled to the item."""
    from attnkit.exercises import items

    points = items()[grade.item].points
    if grade.public:
        value = round(points * grade.score / grade.max_score, 2) if grade.max_score else 0.0
    else:
        value = float(grade.score)
    return float(min(max(value, 0.0), points))


def describe(grade: Grade) -> tuple[str, str, list[str]]:
    """What a test cell prints: its points, what was graded where, why points were lost."""
    from attnkit.exercises import PUBLIC_KINDS, items

    item = items()[grade.item]
    value = points_of(grade)
    if grade.public:
        kinds = ", ".join(k for k in item.checks if k in PUBLIC_KINDS)
        rest = ", ".join(f"{k} {p}" for k, p in item.checks.items() if k not in PUBLIC_KINDS)
        head = (f"{item.key}: {value:g} of {item.points} points: {grade.score}/{grade.max_score} on the "
                f"public checks ({kinds}), scaled to the cell's points.")
        where = f"The instructor's grading runs every check ({rest} too) and gives each its own points."
    else:
        head = f"{item.key}: {value:g} of {item.points} points on every check."
        where = f"Points per check: {', '.join(f'{k} {p}' for k, p in item.checks.items())}."
    reasons = [f"({note})" for note in grade.notes] + [f"  {reason}" for reason in grade.reasons]
    return head, where, reasons


def score(item_key: str, hidden: bool = False) -> float:
    """Grade one item of the saved notebook in the kernel's folder; print why; return its points.

    ``hidden=False``: the public checks, scaled to the item's points (the student's copy).
    ``hidden=True``: every check with its own points, hidden randomized cases included."""
    notes: list[str] = []
    value, short = 0.0, True
    with _quiet():
        try:
            grade = _grade(item_key, hidden, notes)
            value = points_of(grade)
            short = grade.score < grade.max_score
            head, where, reasons = describe(grade)
        except Exception as exc:  # noqa: BLE001 - a test cell must end in a number, never a traceback
            head, where, reasons = f"{item_key}: not graded: {exc}", "", []
    print("\n".join(notes + [head] + ([where] if where else []) + reasons))
    if short and config.NBGRADER_EXECUTION.get() == "validate":
        # The validator shows a failed cell's stderr, nothing else: the reasons go there too.
        lines = [textwrap.fill(line, VALIDATOR_WIDTH, subsequent_indent="    ") for line in [head] + reasons]
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()
    return value
