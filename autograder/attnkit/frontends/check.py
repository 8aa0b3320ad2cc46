"""``attnkit check``: the public checker of the self-study handout.

It runs only the public checks (the document's numbers and the stages'
properties, ``items.PUBLIC_KINDS``) through the same isolated runner as
``attnkit grade``, even where the reference solutions happen to be present,
so a student sees what the handout can honestly tell: no reference solution,
no hidden cases. What it grades is found by the intake's rule (nested folders,
notebooks, the file with work in it over an untouched stub); ``--notebooks``
grades the notebook wherever a module has both. ``--github-output`` also writes the report
in the format GitHub Classroom's autograding reporter reads.
"""

from __future__ import annotations

import base64
import json

from attnkit.config import GITHUB_OUTPUT, ITEM_SECONDS_DEFAULT
from attnkit.outputs import report as render
from attnkit.errors import GraderError

NOTE = ("public checks only: the document's values and the stages' properties. This checker holds "
        "no reference solution and no hidden cases; your course's grade also counts hidden "
        "randomized cases, so full marks here are necessary, not sufficient.")


def classroom_result(report) -> dict:
    """GitHub Classroom's runner result: one test per item, points per item."""
    tests = [{"name": r.item.key, "status": "pass" if r.score == r.max_score else "fail",
              "score": r.score, "max_score": r.max_score,
              "message": "; ".join(r.reasons) or "all public checks passed",
              "test_code": f"attnkit check: {r.item.key}", "filename": "", "line_no": 0,
              "duration": 0} for r in report.results]
    return {"version": 1, "status": "pass" if report.score == report.max_score else "fail",
            "max_score": report.max_score, "tests": tests}


def write_github_output(report, path: str) -> None:
    encoded = base64.b64encode(json.dumps(classroom_result(report)).encode()).decode()
    with open(path, "a") as f:
        f.write(f"result={encoded}\n")


def run(path: str, notebooks: bool = False, timeout: float = ITEM_SECONDS_DEFAULT, github_output: str | None = None):
    """Grade ``path`` on the public checks; returns (report, table text). ``notebooks``:
    where a module has both a .py and a notebook, grade the notebook."""
    from attnkit.intake import find

    # What to grade, before the worker (and torch) start: nothing to grade is one line, at once.
    target = find(path, prefer=".ipynb" if notebooks else None)
    from attnkit.judge.engine import grade
    from attnkit.sandbox import Limits, Zygote
    from attnkit.config import secret_paths

    zygote = Zygote(hide=secret_paths())
    try:
        report = grade(zygote, target, Limits(seconds=timeout), public=True)
        notice = zygote.notice().removeprefix("attnkit: note: ")  # '' where nothing is reduced
    finally:
        zygote.close()
    report.notes[:0] = ([notice] if notice else []) + [NOTE]
    if github_output:
        write_github_output(report, github_output)
    return report, render.table(report, f"attnkit check {path}")


def github_output_path(flag: bool) -> str | None:
    if not flag:
        return None
    path = GITHUB_OUTPUT.get()
    if not path:
        raise GraderError("--github-output: GITHUB_OUTPUT is not set (it is, inside a GitHub Actions step)")
    return path
