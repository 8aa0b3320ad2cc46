"""``attnkit check``: the public checker of the self-study handout.

It runs only the public checks (the document's numbers and the stages'
properties, ``items.PUBLIC_KINDS``) through the same isolated runner as
``attnkit grade``, even where the reference solutions happen to be present,
so a student sees what the handout can honestly tell: no reference solution,
no hidden cases. ``--notebooks`` grades the code of the notebooks' solution
cells instead of the ``.py`` files. ``--github-output`` also writes the report
in the format GitHub Classroom's autograding reporter reads.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from pathlib import Path

from attnkit import report as render
from attnkit.items import MODULES
from attnkit.outcomes import GraderError

NOTE = ("public checks only: the document's values and the stages' properties. This checker holds "
        "no reference solution and no hidden cases; your course's grade also counts hidden "
        "randomized cases, so full marks here are necessary, not sufficient.")


def notebooks_to_folder(folder: Path, dest: Path) -> list[str]:
    """Write ``dest/<module>.py`` from each ``<module>.ipynb`` of ``folder``; returns notes."""
    from attnkit.notebook_code import NotebookError, module_source, read_notebook

    notes = []
    for module in MODULES:
        path = folder / f"{module}.ipynb"
        if not path.is_file():
            continue
        try:
            (dest / f"{module}.py").write_text(module_source(read_notebook(path), module))
        except NotebookError as exc:
            notes.append(str(exc))
    # Stage 4 imports stage 3: without a stage-3 notebook, the .py next to it serves.
    if not (dest / "causal_attention.py").exists() and (folder / "causal_attention.py").is_file():
        shutil.copyfile(folder / "causal_attention.py", dest / "causal_attention.py")
    return notes


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


def run(path: str, notebooks: bool = False, timeout: float = 10.0, github_output: str | None = None):
    """Grade ``path`` on the public checks; returns (report, table text)."""
    from attnkit.grading import find, grade
    from attnkit.intake import from_folder
    from attnkit.sandbox import Limits, Zygote
    from attnkit.settings import secret_paths

    folder = Path(path)
    notes: list[str] = []
    tmp = None
    try:
        if notebooks:
            if not folder.is_dir():
                raise GraderError(f"{path}: --notebooks takes the folder that holds the notebooks")
            tmp = Path(tempfile.mkdtemp(prefix="attnkit-check-"))
            notes = notebooks_to_folder(folder, tmp)
            target = from_folder(str(tmp), MODULES, f"{path} (notebooks)")
        else:
            target = find(path)
        zygote = Zygote(hide=secret_paths())
        try:
            report = grade(zygote, target, Limits(seconds=timeout), public=True)
            notes.append(zygote.notice().removeprefix("attnkit: note: "))  # '' where nothing is reduced
        finally:
            zygote.close()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    report.notes[:0] = [n for n in notes if n] + [NOTE]
    if github_output:
        write_github_output(report, github_output)
    return report, render.table(report, f"attnkit check {path}")


def github_output_path(flag: bool) -> str | None:
    if not flag:
        return None
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        raise GraderError("--github-output: GITHUB_OUTPUT is not set (it is, inside a GitHub Actions step)")
    return path
