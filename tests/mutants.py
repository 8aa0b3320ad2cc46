"""Wrong submissions for the tests, made from the reference solutions by text
substitution so that they never drift from them: a substitution whose text is
no longer in the solution fails loudly instead of silently testing nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

KIT = Path(__file__).resolve().parents[1]
SOLUTIONS = KIT / "solutions"


def mutant(folder: Path, module: str, *substitutions: tuple[str, str]) -> Path:
    """A copy of solutions/ in ``folder`` whose ``module`` has each (old, new)
    applied once; returns the path of that module's file."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in SOLUTIONS.glob("*.py"):
        shutil.copyfile(path, folder / path.name)
    target = folder / f"{module}.py"
    text = target.read_text()
    for old, new in substitutions:
        count = text.count(old)
        assert count == 1, f"solutions/{module}.py holds {old!r} {count} times; update this mutant"
        text = text.replace(old, new)
    target.write_text(text)
    return target
