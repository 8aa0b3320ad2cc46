"""The fast path's extraction of an nbgrader submitted/ tree, without nbgrader.

(test_nbgrader_pipeline.py compares it with a real nbgrader run.)"""

from __future__ import annotations

import json

import pytest

from attnkit.authoring import notebooks
from attnkit.judge.engine import grade
from attnkit.intake import from_folder
from attnkit.exercises import MODULES, module_points
from attnkit.frontends.nbgrader_tree import (extract, higher_in_nbgrader, is_submitted_tree, module_scores,
                                   submitted_to_folders)
from attnkit.intake.notebooks import NotebookError
from attnkit.sandbox import Limits, Zygote
from notebook_samples import source_notebook, student_notebook


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.close()


def write(path, nb):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))


@pytest.mark.slow
def test_tree_to_folders_and_grades(tmp_path, zygote):
    sub = tmp_path / "submitted"
    for module in MODULES:
        write(sub / "ada" / module / f"{module}.ipynb", source_notebook(module))
    released = notebooks.release("simplified_attention", source_notebook("simplified_attention"))
    write(sub / "bo" / "simplified_attention" / "simplified_attention.ipynb",
          student_notebook(released, "simplified_attention", "wrong"))
    (sub / "cy" / "self_attention").mkdir(parents=True)
    (sub / "cy" / "self_attention" / "self_attention.ipynb").write_text("{not json")
    assert is_submitted_tree(sub) and not is_submitted_tree(tmp_path)

    result = extract(sub, tmp_path / "out")
    assert sorted(result.folders) == ["ada", "bo", "cy"]
    assert sorted(p.name for p in result.folders["ada"].iterdir()) == sorted(f"{m}.py" for m in MODULES)
    assert [p.name for p in result.folders["bo"].iterdir()] == ["simplified_attention.py"]
    assert list(result.folders["cy"].iterdir()) == []
    assert any("self_attention.ipynb: not a readable notebook" in n for n in result.notes["cy"]), result.notes["cy"]
    assert submitted_to_folders(sub, tmp_path / "again").keys() == result.folders.keys()

    ada = grade(zygote, from_folder(str(result.folders["ada"]), MODULES, "ada"), Limits(seconds=10))
    assert ada.score == 100
    bo = module_scores(grade(zygote, from_folder(str(result.folders["bo"]), MODULES, "bo"), Limits(seconds=10)))
    assert 0 < bo["simplified_attention"] < module_points("simplified_attention")
    assert bo["self_attention"] == 0  # not submitted


def test_missing_tree_is_a_clear_error(tmp_path):
    with pytest.raises(NotebookError, match="expected nbgrader's submitted/ tree"):
        extract(tmp_path / "nope", tmp_path / "out")


def test_higher_in_nbgrader():
    nbgrader = {"ada": {"simplified_attention": 20.0, "self_attention": 10.0},
                "bo": {"simplified_attention": 15.0}, "cy": {"other_assignment": 99.0}}
    isolated = {"ada": {"simplified_attention": 20, "self_attention": 7}, "bo": {"simplified_attention": 15}}
    lines = higher_in_nbgrader(nbgrader, isolated)
    assert lines == ["ada self_attention: nbgrader 10, isolated grade 7: the nbgrader score is higher; "
                     "check this notebook (the isolated grade counts)"]


def test_an_assignment_not_in_a_students_tree_is_named_where_nbgrader_puts_it(tmp_path, machine_zygote):
    """A newcomer's review: the rows of an assignment not submitted (or not yet
    released) said 'missing file: expected self_attention.py', which nbgrader's
    students never make; they now name the notebook nbgrader expects."""
    from attnkit.intake import NBGRADER, collect

    folder = tmp_path / "submitted" / "bo"
    write(folder / "simplified_attention" / "simplified_attention.ipynb", source_notebook("simplified_attention"))
    submission = collect(str(folder), "bo", layout=NBGRADER)
    assert submission.absent["self_attention"] == ("no self_attention/self_attention.ipynb in this student's folder "
                                                   "(not submitted, or not released yet)")
    report = grade(machine_zygote, submission, Limits(seconds=10))  # the session's: this file's starts a worker
    row = report.by_item()["self_attention.SelfAttention"]
    assert row.score == 0 and row.summary.startswith("self_attention: nothing graded: no self_attention/")
