"""``attnkit course DIR``: a ready nbgrader course (``nbgrader_config.py`` and ``source/``).

nbgrader reads its configuration only from ``./nbgrader_config.py``, so every
nbgrader command is run from DIR. The notebooks' test cells grade in the
kernel's process tree, which nbgrader starts with its own environment: the
config therefore points ``ATTNKIT_SOLUTIONS`` at the kit's reference solutions
(needed for the hidden cases) and sets the per-item time limit.
"""

from __future__ import annotations

import os
from pathlib import Path

from attnkit.items import MODULES
from attnkit.outcomes import GraderError

CONFIG = '''\
# nbgrader configuration of the attention course, written by `attnkit course`.
# Run every nbgrader command from this folder: nbgrader reads ./nbgrader_config.py only.
import os

c = get_config()  # noqa: F821 - provided by nbgrader
c.CourseDirectory.course_id = "attnkit"

# A cell that runs longer than this is interrupted and the notebook goes on.
# A student's infinite loop costs one "try it" cell this long; the test cell of
# a looping item stops after ATTNKIT_ITEM_SECONDS, twice (public + hidden run).
c.Execute.timeout = {cell_timeout}

# The test cells grade with the kit's reference solutions (hidden cases). The
# kernels nbgrader starts inherit this environment. Set ATTNKIT_SECRET in your
# shell, not here, if this folder is shared: it seeds the hidden cases.
os.environ.setdefault("ATTNKIT_SOLUTIONS", {solutions!r})
os.environ.setdefault("ATTNKIT_ITEM_SECONDS", "{item_seconds:g}")
'''


def create(directory: str, cell_timeout: int = 60, item_seconds: float = 10.0) -> list[str]:
    """Write the course into ``directory``; returns the paths written."""
    from attnkit import build
    from attnkit.reference import KIT_ROOT, solutions_dir

    if item_seconds * 2 + 10 > cell_timeout:
        raise GraderError(f"--cell-timeout {cell_timeout} is too short for --item-timeout {item_seconds:g}: "
                          f"a test cell grades twice; use at least {int(item_seconds * 2 + 10)}")
    solutions = solutions_dir().resolve()
    missing = [m for m in MODULES if not (solutions / f"{m}.py").exists()
               or not (KIT_ROOT / "solutions" / f"{m}.py").exists()]
    if missing:
        raise GraderError(f"{solutions}: no reference solution for {', '.join(missing)}; `attnkit course` "
                          f"runs from the kit's repository (or set ATTNKIT_SOLUTIONS)")
    root = Path(directory)
    config = root / "nbgrader_config.py"
    if config.exists() or (root / "source").exists():
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
    config.write_text(CONFIG.format(cell_timeout=int(cell_timeout), item_seconds=item_seconds,
                                    solutions=os.fspath(solutions)))
    written.append(str(config))
    return written
