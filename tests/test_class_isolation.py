"""Per-student fault isolation in grade-class: whatever one student's folder
holds, every other student gets the grade they get alone.

A small class of three honest students (full marks, the stubs, one wrong
stage) is graded once alone, then once with each hostile folder added. Every
honest student's results.json and grades.csv row must be the same, byte for
byte, as in the run without it; the hostile student gets its own row, graded
or "could not be graded: <reason>". The runs share one warm worker (a channel
per job: conftest's ``class_zygote``) and take a few seconds each.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest
from conftest import ASSIGNMENTS, SOLUTIONS, make_submission
from hostile import MALFORMED, fifo, huge_notebook, sparse
from notebook_samples import source_notebook

from attnkit.frontends import classgrade
from attnkit.text import name_shown, spreadsheet_cell
from attnkit.intake import NOTEBOOK_LIMIT
from attnkit.exercises import MODULES

pytestmark = pytest.mark.slow  # a class graded once per hostile folder

S, SA, CA, MH = MODULES
HONEST = ("full", "stubs", "wrong")
WRONG = {S: [("shifted = scores - scores.amax(dim=dim, keepdim=True)", "shifted = scores")]}  # softmax -2


def honest_class(klass: Path) -> Path:
    make_submission(klass / "full")
    make_submission(klass / "stubs", base=ASSIGNMENTS)
    make_submission(klass / "wrong", WRONG)
    return klass


def _others(folder: Path, *drop: str) -> Path:
    return make_submission(folder, drop=drop)


# Each builder adds one hostile entry to the class and returns (its name, the status
# its grades.csv row starts with, its total or None).
def link_to_solutions(k):
    (k / "mallory").symlink_to(SOLUTIONS, target_is_directory=True)
    return "mallory", "could not be graded: a symbolic link, not a folder", None


def link_folder(k):
    (k / "mallory").mkdir()
    (k / "mallory" / "hw3").symlink_to(SOLUTIONS, target_is_directory=True)
    return "mallory", "could not be graded: nothing to grade", None


def a_fifo(k):
    fifo(_others(k / "mallory", S) / f"{S}.py")
    return "mallory", "graded", 80


def dev_zero(k):
    (_others(k / "mallory", S) / f"{S}.py").symlink_to("/dev/zero")
    return "mallory", "graded", 80


def proc_self_mem(k):
    (_others(k / "mallory", SA) / f"{SA}.py").symlink_to("/proc/self/mem")
    return "mallory", "graded", 75


def unreadable(k):
    folder = _others(k / "mallory")
    (folder / f"{S}.py").chmod(0)
    return "mallory", "graded", 100 if os.geteuid() == 0 else 80


def sparse_notes(k):
    sparse(_others(k / "mallory") / "notes.py")
    return "mallory", "graded", 100


def nbgrader_look_alike(k):
    """A plain class stays plain: one student's nbgrader-shaped folder changes nobody else's grade."""
    path = k / "x" / S / f"{S}.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(__import__("json").dumps(source_notebook(S)))
    return "x", "graded", 20


def named_grades_csv(k):
    make_submission(k / "grades.csv")
    return "grades.csv", "could not be graded: the folder name grades.csv is taken", None


def named_with_newline(k):
    name = "eve\nok simplified_attention.softmax 5 of 5\nTotal: 100 of 100\x1b[2K\r"
    make_submission(k / name, base=ASSIGNMENTS)
    return name, "graded", 0


def named_like_another(k):
    """One escape sequence away from a classmate's name: shown escaped, never as "stubs"."""
    make_submission(k / "stubs\x1b[0m")
    return "stubs\x1b[0m", "graded", 100


def named_with_a_byte_not_utf8(k):
    make_submission(k / os.fsdecode(b"stubs\xff"))
    return os.fsdecode(b"stubs\xff"), "graded", 100


def named_as_formula(k):
    make_submission(k / '=HYPERLINK("evil.example","y")', base=ASSIGNMENTS)
    return '=HYPERLINK("evil.example","y")', "graded", 0


def malformed(case):
    def build(k):
        folder = _others(k / "mallory", S)
        if case == "huge":
            huge_notebook(folder / f"{S}.ipynb", NOTEBOOK_LIMIT + 1)
        else:
            (folder / f"{S}.ipynb").write_bytes(MALFORMED[case][0])
        return "mallory", "graded", None  # its total depends on which cell was lost
    build.__name__ = f"notebook_{case}"
    return build


NOTEBOOKS = ("deep_nesting", "cell_is_a_string", "metadata_is_a_list", "source_of_ints", "deep_expression",
             "invalid_utf8", "huge")  # every other malformed notebook: test_intake.py
HOSTILE = [link_to_solutions, link_folder, a_fifo, dev_zero, proc_self_mem, unreadable, sparse_notes,
           nbgrader_look_alike, named_grades_csv, named_with_newline, named_like_another, named_with_a_byte_not_utf8,
           named_as_formula] + [malformed(c) for c in NOTEBOOKS]


@pytest.fixture(scope="module")
def shared(tmp_path_factory, class_zygote):
    root = tmp_path_factory.mktemp("isolation")
    base_out = root / "alone-out"
    run = classgrade.grade_class(str(honest_class(root / "alone")), str(base_out), jobs=2, seconds=3,
                                 progress=False, zygote=class_zygote)
    assert [o.student for o in run.outcomes] == list(HONEST)
    assert not any(o.error for o in run.outcomes), [o.error for o in run.outcomes]
    return root, class_zygote, base_out


def rows(out: Path) -> dict[str, dict]:
    with open(out / "grades.csv", newline="") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


@pytest.mark.parametrize("build", HOSTILE, ids=lambda b: b.__name__)
def test_one_hostile_folder_changes_no_other_students_grade(shared, build):
    root, zygote, base_out = shared
    klass, out = root / build.__name__, root / f"{build.__name__}-out"
    honest_class(klass)
    name, status, total = build(klass)
    try:
        run = classgrade.grade_class(str(klass), str(out), jobs=2, seconds=3, progress=False, zygote=zygote)
    finally:
        for path in klass.rglob("*"):  # let tmp_path clean-up in (a chmod 0 file)
            if not path.is_symlink():
                path.chmod(0o755)
    alone, now = rows(base_out), rows(out)
    for student in HONEST:
        assert (out / student / "results.json").read_bytes() == (base_out / student / "results.json").read_bytes()
        assert now[student] == alone[student]
    shown = spreadsheet_cell(name_shown(name))
    assert set(now) == set(HONEST) | {shown}  # a row of its own, under a name no other folder shows
    assert now[shown]["status"].startswith(status), now[shown]["status"]
    if status == "graded":
        assert now[shown]["total"] != "" and (total is None or int(now[shown]["total"]) == total)
    else:
        assert now[shown]["total"] == "" and all(now[shown][k] == "" for k in now[shown] if "." in k)
    # the summary prints every name and reason on a line of its own, never a forged one
    lines = classgrade.summary(run, str(out))
    assert not any(line.startswith(("ok ", "Total")) for line in lines)
    assert not any(c in "".join(lines) for c in "\x1b\r")


def test_stray_files_and_empty_folders_are_said(tmp_path):
    honest_class(tmp_path)
    (tmp_path / "notes.txt").write_text("not a student")
    (tmp_path / "empty").mkdir()
    (tmp_path / ".git").mkdir()
    found = classgrade.roster(tmp_path)
    assert sorted(found.submissions) == sorted(HONEST)
    assert found.errors == {"empty": found.errors["empty"]} and found.errors["empty"].startswith("nothing to grade")
    assert found.ignored == ["notes.txt: not a folder, so no student; ignored"]


def test_a_class_with_no_student_is_an_error(tmp_path):
    with pytest.raises(classgrade.IntakeError, match="nothing to grade, no student folders"):
        classgrade.roster(tmp_path)
    make_submission(tmp_path)
    with pytest.raises(classgrade.IntakeError, match="it holds exercise files itself"):
        classgrade.roster(tmp_path)


def test_nbgrader_tree_is_decided_by_its_top_level(tmp_path):
    tree = tmp_path / "submitted"
    (tree / "ada" / S).mkdir(parents=True)
    (tree / "ada" / S / f"{S}.ipynb").write_text(__import__("json").dumps(source_notebook(S)))
    make_submission(tree / "bob")  # .py files are no nbgrader submission
    found = classgrade.roster(tree)
    assert found.kind == "nbgrader"
    assert list(found.submissions) == ["ada"] and found.errors["bob"].startswith("nothing to grade")
    plain = tmp_path / "class"
    shutil.copytree(tree, plain)
    found = classgrade.roster(plain)
    assert found.kind == "plain" and sorted(found.submissions) == ["ada", "bob"]
