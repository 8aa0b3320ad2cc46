"""Shared fixtures: one warm worker for the whole test session, the command
line run in-process on it, and a way to build submissions from the reference
solutions so they never drift.

The fast loop (``pytest -m "not slow"``) leaves out the tests marked ``slow``:
the end-to-end runs of real tools (a pip-installed checker, nbgrader, notebook
kernels, the command line as a process, whole classes) and any other test that
takes more than about a second and a half here. DEVELOPERS.md says which to
run when."""

from __future__ import annotations

import io
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from attnkit.judge.engine import grade
from attnkit.intake import from_folder
from attnkit.exercises import MODULES
from attnkit.sandbox import Limits, Zygote, confine
from attnkit.sandbox.contract import runner
from attnkit.config import secret_paths

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
ASSIGNMENTS = ROOT / "assignments"
SHARED = ROOT.parent / "shared" / "reference"

# macOS and Windows (or ATTNKIT_SANDBOX=portable) grade on the portable runner: it
# keeps the time and output limits and the data-only channel, not the confinement.
PORTABLE = runner()[0] == "portable"
MEMORY_LIMITED = not PORTABLE or confine.linux()
confined_only = pytest.mark.skipif(PORTABLE, reason="a guarantee of the Linux sandbox that the portable runner "
                                                    "does not give (README: Student code is untrusted)")


# The longest files, first: the README's test command runs the suite on three
# processes, a file to each (pytest-xdist's loadfile), and a long file taken
# last would leave the others idle while it ends.
LONGEST_FIRST = ("test_nbgrader_pipeline.py", "test_nbgrader_pipeline_hostile.py", "test_handout.py", "test_portable.py",
                 "test_unprivileged.py")


def pytest_configure(config):
    # pytest-xdist sends the files with the most tests first unless told not to
    # (its --loadscope-reorder is on by default), whatever the order above says.
    if getattr(config.option, "loadscopereorder", False):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file keeps its own order


@pytest.fixture(scope="session")
def machine_zygote():
    """The runner this machine chooses (a module may replace ``zygote``, never this)."""
    z = Zygote(hide=secret_paths())
    yield z
    z.close()


@pytest.fixture(scope="session")
def zygote(machine_zygote):
    return machine_zygote


class Lent:
    """A warm worker lent to code that starts and closes its own (a command run
    in-process): everything but ``close``, which leaves it to its owner."""

    def __init__(self, zygote):
        self._zygote = zygote

    def __getattr__(self, name):
        return getattr(self._zygote, name)

    def close(self) -> None:
        pass


@pytest.fixture(scope="session")
def class_zygote(tmp_path_factory):
    """A warm worker for grading a class in-process: a channel per job process
    (grade-class asks for four per job), each greeting read here so that a job
    forked later never waits for one."""
    z = Zygote(hide=secret_paths(), channels=8)
    for index in range(8):
        z.use_channel(index)
        z.ready()
    z.use_channel(0)
    yield Lent(z)
    z.close()


def cli_in_process(monkeypatch, lend):
    """A runner of ``attnkit ARGS`` in this process, whose commands get their warm
    worker from ``lend(*args, **kwargs)`` instead of starting one; each run returns
    a CompletedProcess (exit code, stdout, stderr) like a subprocess run."""
    import attnkit.sandbox
    from attnkit.frontends import cli

    monkeypatch.setattr(attnkit.sandbox, "Zygote", lend)

    def run(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
        argv = [str(a) for a in args]
        out, err = io.StringIO(), io.StringIO()
        with monkeypatch.context() as m, redirect_stdout(out), redirect_stderr(err):
            if cwd is not None:
                m.chdir(cwd)
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code
        return subprocess.CompletedProcess(["attnkit", *argv], code, out.getvalue(), err.getvalue())

    return run


@pytest.fixture
def attnkit_cli(zygote, monkeypatch, request):
    """``attnkit ARGS`` run in this process, on the session's warm workers.

    A new process would import torch and start a worker again, seconds a run, and
    prove nothing more of what the command does. Tests of what only a process
    shows (its exit through ``os._exit``, its environment, a kill) still start one."""
    lent = Lent(zygote)

    def lend(*args, channels: int = 1, **kwargs):
        return request.getfixturevalue("class_zygote") if channels > 1 else lent

    return cli_in_process(monkeypatch, lend)


def in_process_pytest(monkeypatch, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """pytest run in ``cwd`` in this process, its plugins loaded from their entry
    points as in a new process, its output captured; a CompletedProcess of it.

    Unlike pytester's in-process run, the modules it imports stay imported: a
    grading run imports torch's lazy parts (sympy among them), which pytester
    would drop and the next run import again, a second each. Only the modules
    of ``cwd`` itself (the kit's excepted) are forgotten, so that another folder's are imported afresh."""
    out, err = io.StringIO(), io.StringIO()
    folder = str(Path(cwd).resolve())
    with monkeypatch.context() as m, redirect_stdout(out), redirect_stderr(err):
        m.chdir(cwd)
        m.delenv("PYTEST_ADDOPTS", raising=False)
        m.setattr(sys, "path", list(sys.path))
        try:
            code = pytest.main(["-p", "no:cacheprovider", *map(str, args)])
        finally:
            for name, module in list(sys.modules.items()):
                # The kit itself stays: forgetting it would leave two copies of
                # its classes and functions (the kit's root is a folder run here).
                if name == "attnkit" or name.startswith("attnkit.") or name in ("conftest", "notebook_samples"):
                    continue
                if str(getattr(module, "__file__", None) or "").startswith(folder + "/"):
                    del sys.modules[name]
    return subprocess.CompletedProcess(["pytest", *map(str, args)], int(code), out.getvalue(), err.getvalue())


def make_submission(folder: Path, edits: dict[str, list[tuple[str, str]]] | None = None,
                    base: Path = SOLUTIONS, drop: tuple[str, ...] = ()) -> Path:
    """Copy the four modules of ``base`` into ``folder`` and apply text edits.

    Each edit (old, new) must match exactly once, so a change to the solutions
    that would silently void the edit fails the test instead.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for module in MODULES:
        if module in drop:
            continue
        text = (base / f"{module}.py").read_text()
        for old, new in (edits or {}).get(module, []):
            assert text.count(old) == 1, f"edit for {module} matches {text.count(old)} times: {old!r}"
            text = text.replace(old, new)
        (folder / f"{module}.py").write_text(text)
    return folder


def grade_folder(zygote, folder: Path, modules=MODULES, limits: Limits | None = None, public: bool = False):
    return grade(zygote, from_folder(str(folder), tuple(modules), str(folder)), limits, public=public)


def scores(report) -> dict[str, int]:
    return {r.item.key: r.score for r in report.results}


def full_marks(modules=MODULES) -> dict[str, int]:
    from attnkit.exercises import items

    return {k: i.points for k, i in items().items() if i.module in modules}
