"""Shared fixtures: one warm worker for the whole test session, and a way to
build submissions from the reference solutions so they never drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnkit.judge.engine import grade
from attnkit.intake import from_folder
from attnkit.exercises import MODULES
from attnkit.sandbox import Limits, Zygote, confine
from attnkit.sandbox.client import runner
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


@pytest.fixture(scope="session")
def machine_zygote():
    """The runner this machine chooses (a module may replace ``zygote``, never this)."""
    z = Zygote(hide=secret_paths())
    yield z
    z.close()


@pytest.fixture(scope="session")
def zygote(machine_zygote):
    return machine_zygote


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
