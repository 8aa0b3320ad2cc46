"""``attnkit course DIR``: a ready nbgrader course (``nbgrader_config.py`` and ``source/``).

nbgrader reads its configuration only from ``./nbgrader_config.py``, so every
nbgrader command is run from DIR. The config starts the course's grading
helper (``attnkit.frontends.nbgrader_helper``) in the nbgrader process, before any
kernel: the helper grades the test cells with the reference solutions and the
hidden-case secret, which the students' kernels never get.
"""

from __future__ import annotations

import os
from pathlib import Path

from attnkit import config
from attnkit.exercises import MODULES
from attnkit.errors import GraderError

CONFIG = '''\
# nbgrader configuration of the attention course, written by `attnkit course`.
# Run every nbgrader command from this folder: nbgrader reads ./nbgrader_config.py only.
import attnkit.frontends.nbgrader_helper

c = get_config()  # noqa: F821 - provided by nbgrader
c.CourseDirectory.course_id = "attnkit"

# A cell that runs longer than this is interrupted and the notebook goes on.
# A student's infinite loop costs one "try it" cell this long. The first test
# cell of a notebook grades all its items, each stopped after {item_seconds:g} s.
c.Execute.timeout = {cell_timeout}

# The test cells are graded by a helper process outside the students' kernels.
# It holds the hidden-case secret (export ATTNKIT_SECRET in the shell that runs
# nbgrader; never write it here: a kernel can read this file) and the reference
# solutions; the kernels get neither, only the helper's socket.
attnkit.frontends.nbgrader_helper.start(solutions={solutions!r}, item_seconds={item_seconds!r})
'''
HELPER_SECONDS = 15  # the helper's first start of its worker (torch) and of the reference


def create(directory: str, cell_timeout: int = config.CELL_SECONDS_DEFAULT,
           item_seconds: float = config.ITEM_SECONDS_DEFAULT) -> list[str]:
    """Write the course into ``directory``; returns the paths written."""
    from attnkit.authoring import build
    from attnkit.judge.reference import KIT_ROOT, solutions_dir

    if item_seconds + HELPER_SECONDS > cell_timeout:
        raise GraderError(f"--cell-timeout {cell_timeout} is too short for --item-timeout {item_seconds:g}: "
                          f"a test cell waits for its item's grading, the first one also for the grader's "
                          f"start; use at least {int(item_seconds + HELPER_SECONDS)}")
    solutions = solutions_dir().resolve()
    missing = [m for m in MODULES if not (solutions / f"{m}.py").exists()
               or not (KIT_ROOT / "solutions" / f"{m}.py").exists()]
    if missing:
        raise GraderError(f"{solutions}: no reference solution for {', '.join(missing)}; `attnkit course` "
                          f"runs from the kit's repository (or set ATTNKIT_SOLUTIONS)")
    root = Path(directory)
    config_file = root / "nbgrader_config.py"
    if config_file.exists() or (root / "source").exists():
        raise GraderError(f"{directory} already holds a course (nbgrader_config.py or source/); "
                          f"choose a new folder, or delete those to regenerate them")
    written = []
    for path, content in build.generated_files(KIT_ROOT).items():
        rel = path.relative_to(KIT_ROOT)
        if rel.parts[0] != "source":
            continue
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        written.append(str(target))
    root.mkdir(parents=True, exist_ok=True)
    # The kit's own solutions are found through the installed kit; only a folder
    # chosen with ATTNKIT_SOLUTIONS is named in the config.
    chosen = os.fspath(solutions) if config.SOLUTIONS.get() else None
    config_file.write_text(CONFIG.format(cell_timeout=int(cell_timeout), item_seconds=float(item_seconds),
                                         solutions=chosen))
    written.append(str(config_file))
    return written
