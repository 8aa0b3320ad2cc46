"""nbgrader's ``submitted/`` tree: how grade-class knows one, and the gradebook's
scores to compare with.

nbgrader runs its test cells in the student's kernel, where student code can
redefine the grader, so its scores can be forged. The fast path never runs a
notebook: grade-class takes each student's ``<assignment>/<assignment>.ipynb``
through the intake (``intake.collect(..., layout=NBGRADER)``), which extracts
the graded solution cells by their nbgrader metadata (the same
``notebook_code.module_source`` the test cells use, so both grade the same
code), and grades them with the isolated batch grader. The integrity report
then names every assignment whose nbgrader score is higher than the isolated
grade. ``extract`` writes the same extraction to folders, for tools that want files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from attnkit.intake import NBGRADER, IntakeError, collect
from attnkit.judge.integrity import higher_scores
from attnkit.exercises import module_totals
from attnkit.intake.notebooks import NotebookError

TREE_NAMES = ("submitted", "autograded")  # nbgrader's own names for the trees of student notebooks


@dataclass
class Extraction:
    folders: dict[str, Path]  # student -> folder with <module>.py files
    notes: dict[str, list[str]]  # student -> problems met while extracting


def is_submitted_tree(path) -> bool:
    """True for nbgrader's ``submitted/`` (or ``autograded/``) tree. Decided by the
    top level alone, by nbgrader's fixed folder name, never by what one student's
    folder holds: a student cannot turn a plain class into a tree, or back."""
    root = Path(path)
    return root.is_dir() and root.resolve().name in TREE_NAMES


def extract(submitted_dir, dest) -> Extraction:
    """Write ``dest/<student>/<module>.py`` from every submitted notebook, by the
    intake's nbgrader rule (``<student>/<assignment>/<assignment>.ipynb``, regular
    files only, malformed notebooks noted)."""
    root, dest = Path(submitted_dir), Path(dest)
    if not root.is_dir():
        raise NotebookError(f"{submitted_dir}: no such folder (expected nbgrader's submitted/ tree, "
                            f"<student>/<assignment>/<assignment>.ipynb)")
    folders: dict[str, Path] = {}
    notes: dict[str, list[str]] = {}
    for student_dir in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        student = student_dir.name
        problems = notes.setdefault(student, [])
        try:
            sub = collect(str(student_dir), student, layout=NBGRADER, follow=False)
        except IntakeError as exc:
            problems.append(str(exc))
            continue
        folder = dest / student
        folder.mkdir(parents=True, exist_ok=True)
        folders[student] = folder
        for name, data in sub.files.items():
            (folder / name).write_bytes(data)
        problems += [f"{m}: {why}" for m, why in sub.absent.items()]
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
    return [f"{student} {assignment}: nbgrader {theirs:g}, isolated grade {ours:g}: "
            f"the nbgrader score is higher; check this notebook (the isolated grade counts)"
            for student, assignment, theirs, ours in higher_scores(nbgrader, isolated, tolerance)]


def nbgrader_higher(class_dir, per_module: dict[str, dict[str, float]]) -> list:
    """Flags (``integrity``) for the assignments that the gradebook next to an
    nbgrader tree scored higher than the isolated grade."""
    import importlib.util
    import sys

    from attnkit.judge.integrity import nbgrader_flags

    gradebook = gradebook_path(class_dir)
    if gradebook is None:
        return []
    if importlib.util.find_spec("nbgrader") is None:  # a light install: say what would compare it
        print("nbgrader's gradebook not compared: needs nbgrader, which the instructors' extra brings: "
              'pip install "attnkit[course]"', file=sys.stderr)
        return []
    return nbgrader_flags(gradebook_scores(gradebook), per_module)
