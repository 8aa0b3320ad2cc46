"""Where the grader finds its reference and its secret. No heavy imports: the
class runner reads these before anything imports torch."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
KIT_ROOT = PACKAGE_DIR.parents[1]

# The public default lets the kit run out of the box; an instructor sets their
# own secret so that the hidden cases cannot be predicted from this file.
DEFAULT_SECRET = "attnkit-public-default"


def solutions_dir() -> Path:
    return Path(os.environ.get("ATTNKIT_SOLUTIONS", KIT_ROOT / "solutions"))


def secret() -> str:
    return os.environ.get("ATTNKIT_SECRET", DEFAULT_SECRET)


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
