"""Gradescope: ``attnkit gradescope-bundle OUT.zip`` and the grader it ships.

The zip holds ``setup.sh`` and ``run_autograder`` at its top, as Gradescope
expects, and the kit (grader, solutions, points) under ``attnkit/``.
``run_autograder`` runs ``python3 -m attnkit.gradescope``, which grades
``$AUTOGRADER_ROOT/submission`` (default root ``/autograder``) in the sandbox
and writes ``$AUTOGRADER_ROOT/results/results.json``. The student's code never
sees the kit, the secret, the original submission or the results folder.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from attnkit.items import MODULES
from attnkit.settings import KIT_ROOT

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, when the autograder image is built.
set -euo pipefail
apt-get update -qq
apt-get install -y -qq python3 python3-pip python3-venv > /dev/null
python3 -m venv /autograder/venv
# The CPU build of torch: the default PyPI wheel for Linux carries CUDA (GBs).
/autograder/venv/bin/pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
/autograder/venv/bin/pip install -q -r /autograder/source/requirements.txt
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
SOURCE="$ROOT/source"
PYTHON="${ATTNKIT_PYTHON:-$ROOT/venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
if [ -f "$SOURCE/attnkit_secret" ]; then
  ATTNKIT_SECRET="$(cat "$SOURCE/attnkit_secret")"
  export ATTNKIT_SECRET
fi
cd "$SOURCE"
PYTHONPATH="$SOURCE/attnkit/autograder" ATTNKIT_SOLUTIONS="$SOURCE/attnkit/solutions" \\
  exec "$PYTHON" -m attnkit.gradescope "$ROOT"
"""

REQUIREMENTS = "numpy>=1.24\npytest>=8\nmatplotlib>=3.7\n"


def build_bundle(out: str, secret_file: str | None = None) -> Path:
    """Write the autograder zip; returns its path."""
    out_path = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        kit = stage / "attnkit"
        shutil.copytree(KIT_ROOT / "autograder", kit / "autograder",
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
        shutil.copytree(KIT_ROOT / "solutions", kit / "solutions", ignore=shutil.ignore_patterns("__pycache__"))
        (stage / "setup.sh").write_text(SETUP_SH)
        (stage / "run_autograder").write_text(RUN_AUTOGRADER)
        (stage / "requirements.txt").write_text(REQUIREMENTS)
        if secret_file:
            (stage / "attnkit_secret").write_text(Path(secret_file).read_text().strip())
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out_path, "w", zipfile.ZIP_DEFLATED) as z:
            for path in sorted(stage.rglob("*")):
                if path.is_file():
                    info = zipfile.ZipInfo(str(path.relative_to(stage)), date_time=(2026, 1, 1, 0, 0, 0))
                    executable = path.name in ("setup.sh", "run_autograder")
                    info.external_attr = (0o755 if executable else 0o644) << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    z.writestr(info, path.read_bytes())
    return out_path


def find_exercises(submission: Path, stage: Path) -> list[str]:
    """Copy the exercise files into ``stage``, wherever the student put them
    (Gradescope keeps uploaded folders). Returns notes on what was missing."""
    stage.mkdir(parents=True, exist_ok=True)
    notes = []
    for module in MODULES:
        found = sorted(submission.rglob(f"{module}.py"), key=lambda p: (len(p.parts), str(p)))
        if found:
            shutil.copyfile(found[0], stage / f"{module}.py")
        else:
            notes.append(f"{module}.py was not found in your submission")
    return notes


def main(root: str = "/autograder") -> int:
    from attnkit.grading import grade
    from attnkit.intake import from_folder
    from attnkit.report import write_json
    from attnkit.sandbox import Zygote
    from attnkit.settings import secret_paths

    root_path = Path(root)
    results = root_path / "results" / "results.json"
    start = time.monotonic()
    zygote = Zygote(hide=[*secret_paths(), str(root_path / "source"), str(root_path / "results"), str(root_path / "submission")])
    refusal = zygote.not_for_credit()
    if refusal:  # no results.json: Gradescope shows the run as failed, not as a grade
        zygote.close()
        print(f"attnkit: {refusal}", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="attnkit-submission-") as tmp:
            stage = Path(tmp) / "submission"
            notes = find_exercises(root_path / "submission", stage)
            report = grade(zygote, from_folder(str(stage), MODULES, "your submission"))
            report.notes[:] = notes + [n for n in report.notes if "missing file" not in n]
            notice = zygote.notice()
    finally:
        zygote.close()
    write_json(report, str(results))
    print(f"attnkit: {report.score}/{report.max_score} in {time.monotonic() - start:.1f} s")
    if notice:
        print(notice, file=sys.stderr)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("AUTOGRADER_ROOT", "/autograder"))
    sys.stdout.flush()
    os._exit(code)
