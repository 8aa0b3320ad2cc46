"""Intake: what to grade, read once as data (``Submission``), by one rule for every path.

``collect`` and ``find`` (the rule: ``collect.py``), safe reading of regular
files (``files.py``), the graded code of a notebook (``notebooks.py``).
"""

from attnkit.intake.collect import (MAX_DEPTH, NBGRADER, PLAIN, SKIPPED_DIRS, SUPPORT_FILES, collect, find,
                                    from_folder, progress)
from attnkit.intake.files import NOTEBOOK_LIMIT, PY_LIMIT, IntakeError, read_regular
from attnkit.intake.submission import Submission

__all__ = ["MAX_DEPTH", "NBGRADER", "NOTEBOOK_LIMIT", "PLAIN", "PY_LIMIT", "SKIPPED_DIRS", "SUPPORT_FILES",
           "IntakeError", "Submission", "collect", "find", "from_folder", "progress", "read_regular"]
