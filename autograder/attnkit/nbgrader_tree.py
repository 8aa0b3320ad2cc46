"""The fast path for an nbgrader class: ``submitted/`` to exercise folders, and
the gradebook's scores to compare with.

nbgrader runs its test cells in the student's kernel, where student code can
redefine the grader, so its scores can be forged. The fast path never runs a
notebook: it takes the graded solution cells by their nbgrader metadata (the
same ``notebook_code.module_source`` the test cells use, so both grade the
same code) into one folder per student laid out like ``assignments/``, for
the isolated batch grader. Comparing with the gradebook then names every
student whose nbgrader score is higher than the isolated grade.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from attnkit.items import MODULES, module_totals
from attnkit.notebook_code import NotebookError, module_source, read_notebook

NOTEBOOK_LIMIT = 16 << 20  # a notebook larger than this is not a submission of these exercises


@dataclass
class Extraction:
    folders: dict[str, Path]  # student -> folder with <module>.py files
    notes: dict[str, list[str]]  # student -> problems met while extracting


def is_submitted_tree(path) -> bool:
    """True for an nbgrader ``submitted/`` tree: ``<student>/<assignment>/<assignment>.ipynb``."""
    root = Path(path)
    if not root.is_dir():
        return False
    for student in root.iterdir():
        if student.is_dir() and any((student / m / f"{m}.ipynb").is_file() for m in MODULES):
            return True
    return False


def extract(submitted_dir, dest) -> Extraction:
    """Write ``dest/<student>/<module>.py`` from every submitted notebook."""
    root, dest = Path(submitted_dir), Path(dest)
    if not root.is_dir():
        raise NotebookError(f"{submitted_dir}: no such folder (expected nbgrader's submitted/ tree, "
                            f"<student>/<assignment>/<assignment>.ipynb)")
    folders: dict[str, Path] = {}
    notes: dict[str, list[str]] = {}
    for student_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        student = student_dir.name
        folder = dest / student
        folder.mkdir(parents=True, exist_ok=True)
        folders[student] = folder
        problems = notes.setdefault(student, [])
        for module in MODULES:
            path = student_dir / module / f"{module}.ipynb"
            if not path.is_file() or path.is_symlink():
                continue  # not submitted: the grader reports the missing file
            if path.stat().st_size > NOTEBOOK_LIMIT:
                problems.append(f"{path}: larger than {NOTEBOOK_LIMIT >> 20} MiB; not graded")
                continue
            try:
                source = module_source(read_notebook(path), module)
            except NotebookError as exc:
                problems.append(str(exc))
                continue
            (folder / f"{module}.py").write_text(source)
    return Extraction(folders, notes)


def submitted_to_folders(submitted_dir, dest) -> dict[str, Path]:
    """{student: folder laid out like assignments/} for an nbgrader ``submitted/`` tree."""
    return extract(submitted_dir, dest).folders


# --------------------------------------------------------------------------- the gradebook

def gradebook_path(submitted_dir) -> Path | None:
    """The gradebook of the course whose ``submitted/`` this is, if there is one."""
    path = Path(submitted_dir).resolve().parent / "gradebook.db"
    return path if path.is_file() else None


def gradebook_scores(db_path) -> dict[str, dict[str, float]]:
    """{student: {assignment: nbgrader's score}} for the assignments autograded so far."""
    from nbgrader.api import Gradebook

    scores: dict[str, dict[str, float]] = {}
    with Gradebook(f"sqlite:///{os.fspath(db_path)}") as gb:
        for assignment in gb.assignments:
            for submission in assignment.submissions:
                scores.setdefault(submission.student.id, {})[assignment.name] = float(submission.score)
    return scores


def module_scores(report) -> dict[str, int]:
    """{module: points} of an attnkit report."""
    return module_totals({r.item.key: r.score for r in report.results})


def higher_in_nbgrader(nbgrader: dict[str, dict[str, float]], isolated: dict[str, dict[str, int]],
                       tolerance: float = 1e-6) -> list[str]:
    """One line per student and assignment where nbgrader gave more than the isolated grade."""
    lines = []
    for student in sorted(nbgrader):
        for assignment, nb_score in sorted(nbgrader[student].items()):
            if assignment not in MODULES:
                continue
            ours = isolated.get(student, {}).get(assignment, 0)
            if nb_score > ours + tolerance:
                lines.append(f"{student} {assignment}: nbgrader {nb_score:g}, isolated grade {ours}: "
                             f"the nbgrader score is higher; check this notebook (the isolated grade counts)")
    return lines
