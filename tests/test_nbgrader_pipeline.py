"""The real nbgrader pipeline on a small sample class, from `attnkit course` on.

One course, one run of each nbgrader command for all assignments at once,
shared by the tests below (the module fixture). The instructor exports a
secret and points ATTNKIT_SOLUTIONS at a private copy of the solutions.
Students (see notebook_samples.py):

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
`nbgrader validate` runs on a student's copy of stage 1, right and wrong.
"""

from __future__ import annotations

import csv
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
from attnkit.exercises import MODULES, items_of, module_points
from attnkit.frontends.nbgrader_tree import extract, gradebook_scores, higher_in_nbgrader, module_scores
from attnkit.sandbox import Limits, Zygote
from notebook_samples import EDITS, SOLUTIONS, student_notebook, submit, write_modules

pytestmark = pytest.mark.slow

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
# In the first solution cell, so that every test cell after it is forged. The
# module rebuilt from these cells imports attnkit, which the sandbox does not
# offer: graded where it counts, it does not even import.
EDITS["forger"] = {"simplified_attention": EDITS["wrong"]["simplified_attention"] + [
    ("query_scores", "def query_scores(", ATTACK + FORGERY + "def query_scores(")]}

SUBMISSIONS = {  # student -> assignments submitted
    "full": MODULES, "released": ("simplified_attention", "multihead_attention"),
    "wrong": ("simplified_attention",), "stderr": ("self_attention",), "loop": ("causal_attention",),
    "forger": ("simplified_attention",),
}
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


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    base = tmp_path_factory.mktemp("nbgrader")
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
        for student, modules in SUBMISSIONS.items():
            if module in modules:
                nb = released if student == "released" else student_notebook(released, module, student)
                submit(root, student, module, nb)
    for step in (["autograde", "*"], ["generate_feedback", "*"], ["export"]):
        start = time.monotonic()
        run(["nbgrader", *step], cwd=root, env=instructor)
        timings[step[0]] = time.monotonic() - start
    print(f"nbgrader seconds: {timings}")
    return root


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.close()


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


@pytest.fixture(scope="module")
def attnkit_items(course, zygote, tmp_path_factory):
    """student -> {item key: points} from the batch grader on the .py files."""
    out = {}
    for student, modules in SUBMISSIONS.items():
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


def per_assignment(scores: dict[str, float]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for key, value in scores.items():
        module = key.split(".", 1)[0]
        totals[module] = totals.get(module, 0) + value
    return totals


def test_export_and_feedback_for_every_assignment(course):
    rows = list(csv.DictReader(open(course / "grades.csv")))
    got = {(r["student_id"], r["assignment"]): float(r["score"]) for r in rows}
    for student, modules in SUBMISSIONS.items():
        for module in modules:
            assert (course / "feedback" / student / module / f"{module}.html").is_file()
            assert (student, module) in got
    for module in MODULES:
        assert got[("full", module)] == module_points(module)
    for module in SUBMISSIONS["released"]:
        assert got[("released", module)] == 0


def test_every_test_cell_scores_what_attnkit_grade_gives(course, attnkit_items):
    cells = nbgrader_cells(course)
    for student in SUBMISSIONS:
        if student == "forger":
            continue
        assert cells[student] == {k: float(v) for k, v in attnkit_items[student].items()}, student
        assert per_assignment(cells[student]) == per_assignment(attnkit_items[student])


def test_scenarios(course):
    cells = nbgrader_cells(course)
    full = {i.key: float(i.points) for m in MODULES for i in items_of(m)}
    assert cells["full"] == full
    assert set(cells["released"].values()) == {0.0}
    # one wrong stage: partial credit, and only that item loses points
    wrong = cells["wrong"]
    assert 0 < sum(wrong.values()) < module_points("simplified_attention")
    assert wrong.pop("simplified_attention.softmax") < full["simplified_attention.softmax"]
    assert all(v == full[k] for k, v in wrong.items())
    # stderr and warnings in the student's code cost nothing
    assert cells["stderr"] == {k: v for k, v in full.items() if k.startswith("self_attention.")}
    # an infinite loop costs the looping item only, and the notebook completes
    loop = cells["loop"]
    assert loop.pop("causal_attention.renormalize_masked") == 0
    assert loop == {k: v for k, v in full.items() if k.startswith("causal_attention.")
                    and k != "causal_attention.renormalize_masked"}


def test_fast_path_equals_nbgrader_and_names_the_forger(course, zygote, attnkit_items, tmp_path):
    start = time.monotonic()
    extraction = extract(course / "submitted", tmp_path / "folders")
    isolated = {}
    for student, folder in extraction.folders.items():
        report = grade(zygote, from_folder(str(folder), MODULES, student), Limits(seconds=ITEM_SECONDS))
        isolated[student] = {m: s for m, s in module_scores(report).items() if m in SUBMISSIONS[student]}
    elapsed = time.monotonic() - start
    nbgrader = gradebook_scores(course / "gradebook.db")
    for student in SUBMISSIONS:
        assert isolated[student] == per_assignment(attnkit_items[student]), student
        if student != "forger":
            assert nbgrader[student] == {m: float(v) for m, v in isolated[student].items()}, student
    # nbgrader ran the forger's replacement grader in its kernel
    assert nbgrader["forger"]["simplified_attention"] == module_points("simplified_attention")
    assert isolated["forger"]["simplified_attention"] < module_points("simplified_attention")
    flagged = higher_in_nbgrader(nbgrader, isolated)
    assert len(flagged) == 1 and flagged[0].startswith("forger simplified_attention: nbgrader 20")
    print(f"fast path: {elapsed:.1f} s for {len(extraction.folders)} students")


def test_grade_class_takes_the_submitted_tree_and_lists_the_forger(course, attnkit_items, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "attnkit.frontends.cli", "grade-class", str(course / "submitted"),
                           "--out", str(tmp_path / "out"), "--jobs", "2", "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 nbgrader score above the isolated grade" in proc.stdout
    assert "nbgrader score above the isolated grade: forger simplified_attention: nbgrader 20" in proc.stdout
    with open(tmp_path / "out" / "integrity.csv") as f:
        flagged = [(r["students"], r["item"]) for r in csv.DictReader(f) if r["flag"].startswith("nbgrader")]
    assert flagged == [("forger", "simplified_attention")]
    with open(tmp_path / "out" / "grades.csv") as f:
        totals = {row["student"]: int(row["total"]) for row in csv.DictReader(f)}
    assert set(totals) == set(SUBMISSIONS)
    for student in SUBMISSIONS:
        assert totals[student] == sum(per_assignment(attnkit_items[student]).values()), student


def test_no_kernel_sees_the_secret_or_the_solutions_path(course):
    """The forger's kernel printed its environment and what attnkit.judge.reference
    tells it; the test cells were graded by the helper, outside the kernels."""
    forger = (course / "feedback" / "forger" / "simplified_attention" / "simplified_attention.html").read_text()
    assert "environment:" in forger and "ATTNKIT_GRADER" in forger, "the attack did not run under the helper"
    assert "reference softmax:" in forger or "attack failed:" in forger
    for student, modules in SUBMISSIONS.items():
        for module in modules:
            for path in (course / "feedback" / student / module / f"{module}.html",
                         course / "autograded" / student / module / f"{module}.ipynb"):
                text = path.read_text()
                assert SECRET not in text, f"{path} shows the secret"
                assert PRIVATE not in text, f"{path} shows the solutions' path"


def test_validate_passes_a_right_copy_and_fails_a_wrong_one_with_the_reason(course, tmp_path):
    """`nbgrader validate` on a student's machine (no course config, no hidden tests)."""
    module = "simplified_attention"
    released = json.loads((course / "release" / module / f"{module}.ipynb").read_text())
    paths = []
    for student in ("full", "wrong"):
        (tmp_path / student).mkdir()
        paths.append(tmp_path / student / f"{module}.ipynb")
        paths[-1].write_text(json.dumps(student_notebook(released, module, student)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTNKIT_")}
    out = run(["nbgrader", "validate", *map(str, paths)], cwd=tmp_path, env=env).stdout
    right, wrong = out.split("VALIDATION FAILED", 1)
    assert right.strip() == "Success! Your notebook passes all the tests."
    assert "The following cell failed" in wrong and 'score("simplified_attention.softmax", hidden=hidden)' in wrong
    # the reasons, as the grader wrote them
    assert "simplified_attention.softmax: 0 of 5 points: 0/3 on the public checks" in wrong
    assert "stability: softmax of scores of +-1000" in wrong
    assert 'score("simplified_attention.query_scores"' not in wrong, "a right item fails validation"
