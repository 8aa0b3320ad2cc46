"""Gradescope: ``attnkit gradescope-bundle OUT.zip`` and the grader it ships.

The zip holds ``setup.sh`` and ``run_autograder`` at its top, as Gradescope
expects, and the kit (grader, solutions, points) under ``attnkit/``.
``run_autograder`` runs ``python3 -m attnkit.frontends.gradescope``, which grades
``$AUTOGRADER_ROOT/submission`` (default root ``/autograder``) in the sandbox
and writes ``$AUTOGRADER_ROOT/results/results.json``. The student's code never
sees the kit, the secret, the original submission or the results folder.
Each run draws its own hidden cases, from the secret and a fresh nonce.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from attnkit import config
from attnkit.authoring import distribution
from attnkit.config import PACKAGE_DIR
from attnkit.outputs import templating

# The bundle's layout: the kit's package and its solutions, under source/ once Gradescope unpacks it.
BUNDLED_PACKAGE_ROOT = "attnkit/autograder"  # the folder that holds the attnkit package: run_autograder's PYTHONPATH
BUNDLED_SOLUTIONS = "attnkit/solutions"
SECRET_FILE = "attnkit_secret"  # the bundle's copy of --secret-file, read by run_autograder
REQUIREMENTS = "requirements.txt"  # the kit's dependencies, installed by setup.sh
SCRIPTS = ("setup.sh", "run_autograder")  # Gradescope runs these: executable in the zip
ENTRY = "attnkit.frontends.gradescope"  # what run_autograder runs: this module's main()


def setup_sh() -> str:
    """setup.sh (``templates/setup.sh.j2``) with the kit's Python floor (pyproject's
    ``requires-python``) and the CPU build of torch (``config.CPU_TORCH_INSTALL``)."""
    floor = distribution.kit().requires_python.removeprefix(">=")
    return templating.render(__package__, "setup.sh.j2", floor=floor, floor_tuple=floor.replace(".", ", "),
                             root=config.AUTOGRADER_ROOT.default, cpu_torch_install=config.CPU_TORCH_INSTALL,
                             requirements=REQUIREMENTS)


def run_autograder() -> str:
    """run_autograder (``templates/run_autograder.j2``), with the variables it reads named as config declares them."""
    return templating.render(__package__, "run_autograder.j2", root_var=config.AUTOGRADER_ROOT.name,
                             root=config.AUTOGRADER_ROOT.default, python_var=config.GRADESCOPE_PYTHON.name,
                             secret_var=config.SECRET.name, secret_file=SECRET_FILE,
                             solutions_var=config.SOLUTIONS.name, package_root=BUNDLED_PACKAGE_ROOT,
                             solutions=BUNDLED_SOLUTIONS, module=ENTRY)


UNCONFINED_MARK = "attnkit_unconfined"  # in the bundle: grade even without every guarantee of the sandbox


def build_bundle(out: str, secret_file: str | None = None, unconfined: bool = False) -> Path:
    """Write the autograder zip; returns its path. ``unconfined``: grade even
    where the container denies the sandbox its namespaces (said in every result)."""
    from attnkit.exercises import MODULES

    out_path = Path(out)
    references = {module: config.solution_file(module) for module in MODULES}  # or one line saying where
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        shutil.copytree(PACKAGE_DIR, stage / BUNDLED_PACKAGE_ROOT / PACKAGE_DIR.name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
        (stage / BUNDLED_SOLUTIONS).mkdir(parents=True)
        for module, path in references.items():
            shutil.copyfile(path, stage / BUNDLED_SOLUTIONS / f"{module}.py")
        (stage / "setup.sh").write_text(setup_sh())
        (stage / "run_autograder").write_text(run_autograder())
        (stage / REQUIREMENTS).write_text("".join(f"{d}\n" for d in distribution.kit().dependencies))
        if secret_file:
            (stage / SECRET_FILE).write_text(Path(secret_file).read_text().strip())
        if unconfined:
            (stage / UNCONFINED_MARK).write_text("grade even without every guarantee of the sandbox\n")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out_path, "w", zipfile.ZIP_DEFLATED) as z:
            for path in sorted(stage.rglob("*")):
                if path.is_file():
                    info = zipfile.ZipInfo(str(path.relative_to(stage)), date_time=(2026, 1, 1, 0, 0, 0))
                    executable = path.name in SCRIPTS
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
    # Students resubmit here and read each run's feedback: what it shows of the
    # hidden cases (a value that differs, their own code's message or output)
    # must be of no use to the next submission, so each run draws its own.
    os.environ[config.SECRET.name] = f"{config.secret()}:{os.urandom(16).hex()}"
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
