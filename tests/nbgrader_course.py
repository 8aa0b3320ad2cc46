"""The real nbgrader pipeline on a small sample class, from `attnkit course` on:
what `test_nbgrader_pipeline.py` and `test_nbgrader_pipeline_hostile.py` share.

Each of the two files runs one course, one run of each nbgrader command for
all its assignments at once, with half of the sample students (a file is what
the README's test command gives one process, and nbgrader's autograde of every
student in one course was the longest single piece of the suite). The
instructor exports a secret and points ATTNKIT_SOLUTIONS at a private copy of
the solutions. Students (see notebook_samples.py):

- full: the source notebooks' code, all four assignments -> full marks;
- released: the released notebooks unchanged, stages 1 and 4 -> 0;
- wrong: one wrong stage (softmax) -> partial credit, only that item lost;
- stderr: prints to stderr and warns, at the top of a cell and inside the
  graded function -> keeps its marks;
- loop: an infinite loop inside renormalize_masked -> completes, only that item 0;
- forger: a wrong softmax; a solution cell that prints what the kernel can
  learn of the grader's secret and solutions, and one that replaces the grader
  in the kernel -> the feedback holds neither secret nor path; nbgrader gives
  full marks, the isolated grade does not, and the fast path names the student.

Every nbgrader score is compared with `attnkit grade`'s batch path on the same
code written as .py files, and with the fast path on the submitted/ tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attnkit.judge.engine import grade
from attnkit.intake import from_folder
from attnkit.exercises import MODULES, items_of, module_points, module_totals
from attnkit.frontends.nbgrader_tree import extract, gradebook_scores, higher_in_nbgrader, module_scores
from attnkit.sandbox import Limits, Zygote
from notebook_samples import EDITS, SOLUTIONS, student_notebook, submit, write_modules

# Run in the kernel only: a top-level `try` is not a definition, so the grader leaves it out.
ATTACK = """try:  # what can this kernel learn of the grader's secret and solutions?
    import json as _json
    import os as _os
    from attnkit.judge import reference as _reference
    print("environment:", _json.dumps(dict(_os.environ)))
    print("secret:", _reference.secret(), "solutions:", _reference.solutions_dir())
    print("reference softmax:", _reference.solution("simplified_attention.softmax")(torch.tensor([1.0, 2.0])))
except Exception as _exc:
    print("attack failed:", type(_exc).__name__, _exc)


"""
FORGERY = ("import attnkit.kernel.notebook\n"
           "attnkit.kernel.notebook.score = lambda *args, **kwargs: 'full marks'  # nbgrader reads a string as full credit\n\n\n")
# In the first solution cell, so that every test cell after it is forged. Graded
# where it counts, the notebook is its definitions: the import of attnkit and the
# line that replaces its score are left out (nothing graded needs them), so its
# grade is its real code's, the wrong student's. The same lines in a .py file are
# its top level: it imports attnkit, which the sandbox does not offer, and fails.
EDITS["forger"] = {"simplified_attention": EDITS["wrong"]["simplified_attention"] + [
    ("query_scores", "def query_scores(", ATTACK + FORGERY + "def query_scores(")]}

# ITEM_SECONDS: the course's limit per item, and every grading's here: the loop
# student's item spins a CPU for that long each time it is graded.
CELL_TIMEOUT, ITEM_SECONDS = 20, 4
SECRET = "instructor-secret-4c1d"  # what the instructor exports; no kernel may see it
PRIVATE = "private-solutions-9e2f"  # the name of the folder of the solutions nbgrader grades with


def run(args, cwd, env=None):
    env = dict(env or os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")  # nbgrader runs alembic
    done = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def build_course(base: Path, submissions: dict[str, tuple[str, ...]]) -> Path:
    """`attnkit course`, then nbgrader: release, the students' submissions, autograde, feedback, export."""
    root = base / "course"
    solutions = shutil.copytree(SOLUTIONS, base / PRIVATE)
    instructor = dict(os.environ, ATTNKIT_SECRET=SECRET, ATTNKIT_SOLUTIONS=str(solutions))
    run(["attnkit.frontends.cli", "course", str(root), "--cell-timeout", str(CELL_TIMEOUT),
         "--item-timeout", str(ITEM_SECONDS)], cwd=base, env=instructor)
    timings = {}
    start = time.monotonic()
    run(["nbgrader", "generate_assignment", "*"], cwd=root, env=instructor)
    timings["generate_assignment"] = time.monotonic() - start
    for module in MODULES:
        released = json.loads((root / "release" / module / f"{module}.ipynb").read_text())
        for student, modules in submissions.items():
            if module in modules:
                nb = released if student == "released" else student_notebook(released, module, student)
                submit(root, student, module, nb)
    for step in (["autograde", "*"], ["generate_feedback", "*"], ["export"]):
        start = time.monotonic()
        run(["nbgrader", *step], cwd=root, env=instructor)
        timings[step[0]] = time.monotonic() - start
    print(f"nbgrader seconds: {timings}")
    return root


def fixtures(submissions: dict[str, tuple[str, ...]]):
    """A test file's module fixtures: its course (nbgrader run on ``submissions``),
    a worker, and the students' code graded as .py files."""

    @pytest.fixture(scope="module")
    def course(tmp_path_factory):
        return build_course(tmp_path_factory.mktemp("nbgrader"), submissions)

    @pytest.fixture(scope="module")
    def zygote():
        z = Zygote()
        yield z
        z.close()

    @pytest.fixture(scope="module")
    def attnkit_items(course, zygote, tmp_path_factory):
        return graded_as_files(zygote, submissions, tmp_path_factory)

    return course, zygote, attnkit_items


def shared_tests(submissions: dict[str, tuple[str, ...]]):
    """The tests every half of the class takes, for a test file to bind at its top level."""

    def test_export_and_feedback_for_every_assignment(course):
        check_export_and_feedback(course, submissions)

    def test_every_test_cell_scores_what_attnkit_grade_gives(course, attnkit_items):
        check_cells_equal_attnkit_grade(course, submissions, attnkit_items)

    return test_export_and_feedback_for_every_assignment, test_every_test_cell_scores_what_attnkit_grade_gives


def nbgrader_cells(course: Path) -> dict[str, dict[str, float]]:
    """student -> {item key: score of its test cell} from the gradebook."""
    from nbgrader.api import Gradebook

    out: dict[str, dict[str, float]] = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for module in MODULES:
            for submission in gb.find_assignment(module).submissions:
                for nb in submission.notebooks:
                    for g in nb.grades:
                        name = g.name.removeprefix("test_")
                        out.setdefault(submission.student.id, {})[f"{module}.{name}"] = float(g.score)
    return out


def graded_as_files(zygote, submissions: dict, tmp_path_factory) -> dict[str, dict[str, float]]:
    """student -> {item key: points} from the batch grader on the .py files."""
    out = {}
    for student, modules in submissions.items():
        folder = tmp_path_factory.mktemp(f"py-{student}")
        if student == "released":
            for module in modules:
                (folder / f"{module}.py").write_text((Path(__file__).parents[1] / "assignments" /
                                                     f"{module}.py").read_text())
        else:
            write_modules(folder, student, modules)
        report = grade(zygote, from_folder(str(folder), tuple(modules), student), Limits(seconds=ITEM_SECONDS))
        out[student] = {r.item.key: r.score for r in report.results}
    return out


def full_points() -> dict[str, float]:
    return {i.key: float(i.points) for m in MODULES for i in items_of(m)}


def check_export_and_feedback(course: Path, submissions: dict) -> None:
    import csv

    rows = list(csv.DictReader(open(course / "grades.csv")))
    got = {(r["student_id"], r["assignment"]): float(r["score"]) for r in rows}
    for student, modules in submissions.items():
        for module in modules:
            assert (course / "feedback" / student / module / f"{module}.html").is_file()
            assert (student, module) in got
    for module in submissions.get("full", ()):
        assert got[("full", module)] == module_points(module)
    for module in submissions.get("released", ()):
        assert got[("released", module)] == 0


def isolated_items(student: str, attnkit_items: dict) -> dict[str, float]:
    """What grading a student's notebooks gives: their code as .py files would,
    the forger's aside, whose notebook is graded by its definitions alone (the
    wrong student's code), where its .py file fails to import."""
    return attnkit_items["wrong"] if student == "forger" else attnkit_items[student]


def check_cells_equal_attnkit_grade(course: Path, submissions: dict, attnkit_items: dict) -> None:
    cells = nbgrader_cells(course)
    for student in submissions:
        if student == "forger":
            continue
        assert cells[student] == {k: float(v) for k, v in attnkit_items[student].items()}, student
        assert module_totals(cells[student]) == module_totals(attnkit_items[student])


def check_fast_path(course: Path, submissions: dict, zygote, attnkit_items: dict, tmp_path: Path):
    """The fast path on the submitted/ tree gives each student what `attnkit grade`
    gives their .py files, and nbgrader gives the same, the forger aside.
    Returns nbgrader's scores, the isolated grades and the assignments nbgrader
    scored above the isolated grade."""
    start = time.monotonic()
    extraction = extract(course / "submitted", tmp_path / "folders")
    isolated = {}
    for student, folder in extraction.folders.items():
        report = grade(zygote, from_folder(str(folder), MODULES, student), Limits(seconds=ITEM_SECONDS))
        isolated[student] = {m: s for m, s in module_scores(report).items() if m in submissions[student]}
    elapsed = time.monotonic() - start
    nbgrader = gradebook_scores(course / "gradebook.db")
    assert set(isolated) == set(submissions)
    for student in submissions:
        assert isolated[student] == module_totals(isolated_items(student, attnkit_items)), student
        if student != "forger":
            assert nbgrader[student] == {m: float(v) for m, v in isolated[student].items()}, student
    print(f"fast path: {elapsed:.1f} s for {len(extraction.folders)} students")
    return nbgrader, isolated, higher_in_nbgrader(nbgrader, isolated)


def check_no_secret_shown(course: Path, submissions: dict) -> None:
    for student, modules in submissions.items():
        for module in modules:
            for path in (course / "feedback" / student / module / f"{module}.html",
                         course / "autograded" / student / module / f"{module}.ipynb"):
                text = path.read_text()
                assert SECRET not in text, f"{path} shows the secret"
                assert PRIVATE not in text, f"{path} shows the solutions' path"
