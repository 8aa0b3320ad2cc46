"""Every setting of the kit, declared once, with what it does: the environment
variables the kit reads, the defaults it falls back on, the versions it pins.
Nothing else in the grader reads the environment for these or spells these
values. No heavy imports: the class runner reads settings before torch loads.

The sandbox is a package of its own that imports nothing of the grader, so
it declares its one variable itself (``sandbox.contract.ISOLATION_VAR``, listed
here too); ``tests/test_config.py`` keeps the two in step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
KIT_ROOT = PACKAGE_DIR.parents[1]  # the repository, for a checkout; meaningless for an installed package


@dataclass(frozen=True)
class Variable:
    """An environment variable the kit reads."""

    name: str
    default: str | None
    description: str

    def get(self) -> str | None:
        value = os.environ.get(self.name, "")
        return value if value else self.default


SECRET = Variable(
    "ATTNKIT_SECRET", "attnkit-public-default",
    "Seeds the hidden cases. The default is public so that the kit runs out of the box; an instructor "
    "grading for credit sets their own, so that no one can predict the hidden inputs.")
SOLUTIONS = Variable(
    "ATTNKIT_SOLUTIONS", None,
    "The folder of the reference solutions. Default: solutions/ of the kit's checkout. The grader "
    "reads it; student code never sees it.")
ITEM_SECONDS = Variable(
    "ATTNKIT_ITEM_SECONDS", None,
    "The per-item time limit of the notebooks' test cells (an nbgrader course sets it from "
    "`attnkit course --timeout`). Default: ITEM_SECONDS_DEFAULT.")
GRADER = Variable(
    "ATTNKIT_GRADER", None,
    "Where a kernel under `nbgrader autograde` reaches the grading helper (a Unix socket); set by "
    "the course's nbgrader_config.py, never by hand.")
SANDBOX = Variable(
    "ATTNKIT_SANDBOX", "auto",
    "auto: every guarantee the machine allows; none: only the limits, the data-only channel and the "
    "syscall filter (to try what the kit does without namespaces); portable: the spawned-process "
    "runner of macOS and Windows, anywhere. Read by the sandbox itself.")
PIN_JOBS = Variable(
    "ATTNKIT_PIN_JOBS", "auto",
    "auto: where grade-class has exactly one job per CPU and the syscall filter applies, each job and "
    "the children that run its students' code share a CPU of their own (faster on a virtual machine); "
    "off: nothing is pinned (a machine busy with other work, whose jobs must be free to move).")
# Other tools' variables the kit reads.
GITHUB_OUTPUT = Variable(
    "GITHUB_OUTPUT", None,
    "Set by GitHub Actions: the file `attnkit check --github-output` appends the Classroom result to.")
AUTOGRADER_ROOT = Variable(
    "AUTOGRADER_ROOT", "/autograder",
    "Gradescope's autograder folder (submission/, results/, source/); the bundle's run_autograder reads it.")
GRADESCOPE_PYTHON = Variable(
    "ATTNKIT_PYTHON", None,
    "The Python the Gradescope bundle's run_autograder grades with (read by that shell script). Default: "
    "the venv setup.sh made, $AUTOGRADER_ROOT/venv/bin/python, else python3; the tests point it at their own.")
JPY_SESSION_NAME = Variable(
    "JPY_SESSION_NAME", None,
    "Set by Jupyter in a kernel: the notebook's path, where a test cell finds the saved notebook.")
NBGRADER_EXECUTION = Variable(
    "NBGRADER_EXECUTION", None,
    "Set by nbgrader in the kernels it runs (validate, autograde): a test cell that `nbgrader validate` "
    "runs also writes its reasons to stderr, the only output the validator shows.")
VARIABLES = (SECRET, SOLUTIONS, ITEM_SECONDS, GRADER, SANDBOX, PIN_JOBS, GITHUB_OUTPUT, AUTOGRADER_ROOT, GRADESCOPE_PYTHON,
             JPY_SESSION_NAME, NBGRADER_EXECUTION)

ITEM_SECONDS_DEFAULT = 10.0  # wall time per graded item; the sandbox's Limits says the same
CELL_SECONDS_DEFAULT = 60  # nbgrader's c.Execute.timeout in a course made by `attnkit course`

# The CPU build of torch the reference tensors were checked on. An open requirement
# on a machine without torch makes pip download a multi-GB CUDA build.
TORCH_PIN = "torch==2.13.0"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CPU_TORCH_INSTALL = f"pip install {TORCH_PIN} --index-url {TORCH_CPU_INDEX}"


def solutions_dir() -> Path:
    return Path(SOLUTIONS.get() or KIT_ROOT / "solutions")


def solution_file(module: str) -> Path:
    """The reference solution of ``module``; GraderError, saying how to point
    the kit at them, where it is not there (a ``pip install .`` without -e
    leaves the checkout behind)."""
    from attnkit.errors import GraderError

    path = solutions_dir() / f"{module}.py"
    if not path.is_file():
        raise GraderError(f"reference solution {path} is missing; the grader needs the kit's solutions/ "
                          f"folder: install the kit from its clone with `pip install -e .`, or set "
                          f"ATTNKIT_SOLUTIONS to the folder")
    return path


def secret() -> str:
    return SECRET.get()


def secret_is_public() -> bool:
    """True where no secret of one's own is set: anyone can compute the hidden cases."""
    return secret() == SECRET.default


def item_seconds() -> float:
    """The notebooks' per-item limit (ATTNKIT_ITEM_SECONDS), or the default."""
    try:
        return float(ITEM_SECONDS.get() or ITEM_SECONDS_DEFAULT)
    except ValueError:
        return ITEM_SECONDS_DEFAULT


def pin_jobs() -> bool:
    """Whether grade-class may pin its jobs (ATTNKIT_PIN_JOBS)."""
    from attnkit.errors import GraderError

    value = (PIN_JOBS.get() or "auto").strip().lower()
    if value not in ("auto", "off"):
        raise GraderError(f"{PIN_JOBS.name}={value!r}: expected auto or off")
    return value == "auto"


def secret_paths() -> list[str]:
    """What student code must never see, wherever it lies: the solutions, the
    kit's checkout (its source notebooks, tests and history) and this package
    (the reference data and the checks). The sandbox shows the child only the
    Python installation anyway; these are covered even inside it (a kit
    installed into site-packages, solutions placed inside a virtual environment)."""
    paths = [PACKAGE_DIR, solutions_dir()]
    if (KIT_ROOT / "pyproject.toml").is_file() and (KIT_ROOT / "autograder").is_dir():
        paths.append(KIT_ROOT)
    return [str(p) for p in paths]
