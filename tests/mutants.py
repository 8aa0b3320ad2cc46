"""The diagnosis, feedback and pytest-view tests name one module and its edits;
this adapts that call to conftest.make_submission, the one place that builds
submissions from the reference solutions."""

from __future__ import annotations

from pathlib import Path

from conftest import make_submission


def mutant(folder: Path, module: str, *substitutions: tuple[str, str]) -> Path:
    """A copy of the solutions in ``folder`` whose ``module`` has each (old, new)
    applied exactly once; returns the path of that module's file."""
    return make_submission(folder, {module: list(substitutions)}) / f"{module}.py"
