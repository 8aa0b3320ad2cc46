"""Gradescope: ``attnkit gradescope-bundle OUT.zip`` and the grader it ships.

The zip holds ``setup.sh`` and ``run_autograder`` at its top, as Gradescope
expects, and the kit (grader, solutions, points) under ``attnkit/``.
``run_autograder`` runs ``python3 -m attnkit.frontends.gradescope``, which grades
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

from attnkit.authoring import distribution
from attnkit.config import KIT_ROOT

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, when the autograder image is built.
set -euo pipefail
apt-get update -qq
apt-get install -y -qq python3 python3-pip python3-venv > /dev/null
python3 -c 'import sys; sys.exit(sys.version_info < (@FLOOR@))' || {
  echo "attnkit needs Python @FLOOR_TEXT@ or newer; this image has $(python3 -V): choose a newer base image" >&2
  exit 1
}
python3 -m venv /autograder/venv
# torch 2.13.0, the CPU build, from PyTorch's CPU index: pip's default torch on
# Linux is the CUDA build (several GB), of no use to the grader.
/autograder/venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
# The kit's dependencies, as its pyproject.toml lists them; the torch above is kept.
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
# Student code runs as a user of its own: where the container forbids namespaces,
# these permissions are what keeps the kit, the secret and the results from it.
chmod -R go-rwx "$SOURCE" "$ROOT/submission" "$ROOT/results" 2>/dev/null || true
cd "$SOURCE"
PYTHONPATH="$SOURCE/attnkit/autograder" ATTNKIT_SOLUTIONS="$SOURCE/attnkit/solutions" \\
  exec "$PYTHON" -m attnkit.frontends.gradescope "$ROOT"
"""


def setup_sh() -> str:
    """SETUP_SH with the kit's Python floor (``requires-python = ">=3.10"``)."""
    floor = distribution.kit().requires_python.removeprefix(">=")
    return SETUP_SH.replace("@FLOOR@", floor.replace(".", ", ")).replace("@FLOOR_TEXT@", floor)


UNCONFINED_MARK = "attnkit_unconfined"  # in the bundle: grade even without every guarantee of the sandbox


def build_bundle(out: str, secret_file: str | None = None, unconfined: bool = False) -> Path:
    """Write the autograder zip; returns its path. ``unconfined``: grade even
    where the container denies the sandbox its namespaces (said in every result)."""
    out_path = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        kit = stage / "attnkit"
        shutil.copytree(KIT_ROOT / "autograder", kit / "autograder",
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
        shutil.copytree(KIT_ROOT / "solutions", kit / "solutions", ignore=shutil.ignore_patterns("__pycache__"))
        (stage / "setup.sh").write_text(setup_sh())
        (stage / "run_autograder").write_text(RUN_AUTOGRADER)
        (stage / "requirements.txt").write_text("".join(f"{d}\n" for d in distribution.kit().dependencies))
        if secret_file:
            (stage / "attnkit_secret").write_text(Path(secret_file).read_text().strip())
        if unconfined:
            (stage / UNCONFINED_MARK).write_text("grade even without every guarantee of the sandbox\n")
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


def intake(root: Path):
    """What the student submitted, by the intake's one rule (nested folders, notebooks,
    regular files only); messages say "your submission", never the grader's paths."""
    from attnkit.intake import IntakeError, Submission, collect
    from attnkit.exercises import MODULES

    try:
        submission = collect(str(root / "submission"), "your submission")
    except IntakeError as exc:
        return Submission("your submission", MODULES, notes=(f"nothing to grade: {exc}",))
    if not submission.found_any():
        return Submission("your submission", MODULES, notes=(submission.nothing_message(),), absent=submission.absent)
    return submission


def main(root: str = "/autograder") -> int:
    from attnkit.judge.engine import grade
    from attnkit.outputs.report import write_json
    from attnkit.sandbox import Zygote, confine
    from attnkit.config import secret_paths

    root_path = Path(root)
    results = root_path / "results" / "results.json"
    start = time.monotonic()
    submission = intake(root_path)
    zygote = Zygote(hide=[*secret_paths(), str(root_path / "source"), str(root_path / "results"),
                          str(root_path / "submission")])
    refusal = zygote.not_for_credit()
    if refusal:  # no results.json: Gradescope shows the run as failed, not as a grade
        zygote.close()
        print(f"attnkit: {refusal}", file=sys.stderr)
        return 2
    try:
        gaps = confine.missing(zygote.ready())
        if gaps and not (root_path / "source" / UNCONFINED_MARK).exists():
            # No results.json: Gradescope shows the instructor a failed autograder, never a grade.
            print("attnkit: refusing to grade: this container does not let the grader " + "; ".join(gaps) +
                  ". Rebuild the bundle with `attnkit gradescope-bundle --unconfined` to grade anyway "
                  "(see the README on what student code can then see).")
            return 1
        report = grade(zygote, submission)
        notice = zygote.notice()
        if notice:
            report.notes.append("isolation was reduced while grading this submission")
    finally:
        zygote.close()
    write_json(report, str(results))
    print(f"attnkit: {report.score}/{report.max_score} in {time.monotonic() - start:.1f} s")
    if notice:
        print(notice, file=sys.stderr)
    return 0


if __name__ == "__main__":
    from attnkit.config import AUTOGRADER_ROOT

    code = main(sys.argv[1] if len(sys.argv) > 1 else AUTOGRADER_ROOT.get())
    sys.stdout.flush()
    os._exit(code)
