"""What a notebook's test cell calls: ``score("<module>.<name>")``.

The kernel a test cell runs in is the student's: their code can redefine
anything in it, so nothing is compared here with what the kernel computed.
``score`` reads the *saved* notebook, rebuilds ``<module>.py`` from its
solution cells (``notebook_code.module_source``, the same function as the fast
path for an nbgrader ``submitted/`` tree), and grades the one item with the
batch grader: student code runs in a child of a warm worker, one per kernel,
started on the first call (only that call pays the torch import).

nbgrader turns a test cell into points by the value of its last expression
(a plain float from 0 to the cell's points) and gives 0 to a cell that wrote
anything to stderr. So ``score`` returns a plain float clamped to the item's
points, prints its reasons to stdout, and silences stderr and warnings, its
own and the worker's, while it runs.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

_zygote = None

# Per item; the same default as `attnkit grade`. An instructor may lower it
# (with the cells' c.Execute.timeout) through the environment of nbgrader.
ITEM_SECONDS_VAR = "ATTNKIT_ITEM_SECONDS"


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


def _worker():
    global _zygote
    from attnkit.sandbox import Zygote
    from attnkit.settings import secret_paths

    if _zygote is None or _zygote.proc.poll() is not None:
        # The worker inherits fds 1 and 2; fd 2 is /dev/null inside _quiet, and
        # both stay there for good, away from the cells' output.
        saved = os.dup(1)
        os.dup2(2, 1)
        try:
            _zygote = Zygote(hide=secret_paths())
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        atexit.register(_zygote.close)
    return _zygote


def find_notebook(module: str, folder: Path | None = None) -> Path:
    """The saved notebook of ``module``: ``<module>.ipynb`` in the kernel's folder."""
    from attnkit.notebook_code import NotebookError

    folder = folder or Path.cwd()
    candidates = [folder / f"{module}.ipynb"]
    session = os.environ.get("JPY_SESSION_NAME", "")
    if session.endswith(".ipynb"):
        candidates.append(Path(session))
    for path in candidates:
        if path.is_file():
            return path
    raise NotebookError(f"{module}.ipynb is not in {folder}: the test cells grade the saved notebook "
                        f"and find it by its name; rename this notebook back to {module}.ipynb")


def _ran_other_code(module: str, name: str, saved: str) -> bool:
    """True when the kernel last ran a different version of this solution cell
    than the saved notebook holds: the student forgot to save."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    history = shell.user_ns.get("In", []) if shell is not None else []
    for source in reversed(history):
        if f"def {name}(" in source or f"class {name}(" in source or f"class {name}:" in source:
            return source.strip() != saved.strip()
    return False


# Stage 4 imports stage 3. With the reference at hand the grader stands it in
# for every stage-3 name, whatever file the student has; the names only have to
# exist, and the stage-3 module has to be loaded in the child for the swap.
PLACEHOLDER = {"causal_attention": (
    "# Placeholder written by attnkit.notebook: the grader stands its reference in for these names.\n"
    "def causal_mask(*args, **kwargs):\n    raise NotImplementedError\n\n\n"
    "def mask_scores(*args, **kwargs):\n    raise NotImplementedError\n\n\n"
    "def renormalize_masked(*args, **kwargs):\n    raise NotImplementedError\n\n\n"
    "class CausalAttention:\n    pass\n")}
DEPENDS = {"multihead_attention": ("causal_attention",)}


def grade_item(zygote, folder: str, item_key: str, limits, public: bool):
    """The ItemResult of one item of the module file in ``folder``."""
    from attnkit import grading
    from attnkit.items import items
    from attnkit.scoring import build_report

    from attnkit.intake import from_folder

    item = items()[item_key]
    target = from_folder(folder, (item.module,), f"{item.module}.ipynb")
    session = grading.open_session(zygote, target, limits, public)
    try:
        if not public:
            for dep in DEPENDS.get(item.module, ()):
                try:  # loads the placeholder module into the child, so that its names are swapped
                    session.request(f"{dep}.causal_mask", "call", (2,))
                except Exception:  # noqa: BLE001 - the placeholder raises by design
                    pass
        run = grading.Run(session)
        for check in grading.selected_checks(target, public):
            if check.item == item_key:
                run.run(check)
        return build_report(run.results, (item.module,), public=public).by_item()[item_key]
    finally:
        session.close()


def score(item_key: str, public: bool = False) -> float:
    """Grade one item of the saved notebook in the kernel's folder; print why; return its points."""
    lines: list[str] = []
    points = 0.0
    with _quiet():
        try:
            points = _score(item_key, public, lines)
        except Exception as exc:  # noqa: BLE001 - a test cell must end in a number, never a traceback
            lines.append(f"{item_key}: not graded: {exc}")
    print("\n".join(lines))
    return points


def _score(item_key: str, public: bool, lines: list[str]) -> float:
    from attnkit import grading
    from attnkit.items import MODULES, items
    from attnkit.notebook_code import module_source, read_notebook, solution_cells
    from attnkit.sandbox import Limits

    if item_key not in items():
        raise ValueError(f"{item_key!r} is not a graded item of the kit")
    item = items()[item_key]
    if not public and not grading.solutions_available():
        public = True
        lines.append("(no reference solutions here: public checks only)")
    path = find_notebook(item.module)
    nb = read_notebook(path)
    saved = solution_cells(nb).get(item.name, "")
    if _ran_other_code(item.module, item.name, saved):
        lines.append(f"note: the saved {path.name} differs from the `{item.name}` you ran last; "
                     f"save the notebook (Ctrl-S) and run this cell again")
    folder = tempfile.mkdtemp(prefix="attnkit-nb-")
    try:
        Path(folder, f"{item.module}.py").write_text(module_source(nb, item.module))
        if not public:
            for dep in DEPENDS.get(item.module, ()):
                Path(folder, f"{dep}.py").write_text(PLACEHOLDER[dep])
        else:
            # Without the reference nothing stands in for the other exercise files,
            # so the ones next to the notebook (stage 4 imports stage 3) come along.
            for other in path.parent.glob("*.py"):
                if other.stem != item.module and other.stem in MODULES:
                    shutil.copyfile(other, Path(folder, other.name))
        limits = Limits(seconds=float(os.environ.get(ITEM_SECONDS_VAR, "10")))
        result = grade_item(_worker(), folder, item_key, limits, public)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    what = "public checks" if public else "all checks"
    lines.append(f"{item_key}: {result.score}/{result.max_score} points ({what})")
    lines.extend(f"  {reason}" for reason in result.reasons)
    return float(min(max(result.score, 0), item.points))
