"""The source notebooks: generated, complete, and graded like the .py files.

No nbgrader run here (see test_nbgrader_pipeline.py): these tests read the
generated notebooks and grade the code extracted from them with the batch
grader, against the points table and `attnkit grade` on the same code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attnkit import build, notebooks
from attnkit.grading import grade
from attnkit.intake import from_folder
from attnkit.items import MODULES, items, items_of
from attnkit.notebook_code import definitions, module_source
from attnkit.reference import doc_inputs
from attnkit.sandbox import Limits, Zygote
from notebook_samples import ROOT, source_notebook, write_modules


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.close()


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def module_scores(report) -> dict[str, int]:
    return {r.item.key: r.score for r in report.results}


def test_generation_is_deterministic_and_on_disk():
    first = {p: c for p, c in notebooks.generate(ROOT).items()}
    second = notebooks.generate(ROOT)
    assert first == second
    for path, content in first.items():
        assert path.read_text() == content, f"{path} is stale: run `attnkit build`"
    assert set(build.generated_files(ROOT)) >= set(first), "build does not cover the notebooks"


@pytest.mark.parametrize("module", MODULES)
def test_one_locked_test_cell_per_item_worth_its_points(module):
    nb = source_notebook(module)
    tests = {nbgrader_meta(c)["grade_id"]: c for c in nb["cells"] if nbgrader_meta(c).get("grade")}
    assert list(tests) == [f"test_{i.name}" for i in items_of(module)]
    for item in items_of(module):
        cell = tests[f"test_{item.name}"]
        meta = nbgrader_meta(cell)
        assert meta["locked"] and meta["points"] == item.points
        source = "".join(cell["source"])
        assert "### BEGIN HIDDEN TESTS" in source and "### END HIDDEN TESTS" in source
        assert source.rstrip().splitlines()[-1] == "points", "the cell must end in its score"
        assert f'score("{item.key}")' in source and f'score("{item.key}", public=True)' in source
    ids = [c["id"] for c in nb["cells"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("module", MODULES)
def test_solution_cells_and_example_input(module):
    nb = source_notebook(module)
    solutions = {nbgrader_meta(c)["grade_id"]: "".join(c["source"]) for c in nb["cells"]
                 if nbgrader_meta(c).get("solution")}
    assert list(solutions) == [i.name for i in items_of(module)]
    for source in solutions.values():
        assert source.count("### BEGIN SOLUTION") == source.count("### END SOLUTION") >= 1
    setup = next(c for c in nb["cells"] if c["id"] == "setup")
    namespace: dict = {}
    # Stage 4 imports stage 3 from the file next to the notebook; not needed for the example.
    code = [line for line in "".join(setup["source"]).splitlines() if not line.startswith("from causal_")]
    exec("\n".join(code), namespace)  # noqa: S102 - our own generated cell
    assert namespace["inputs"].equal(doc_inputs())
    markdown = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert len(markdown) > 1500, "every stage is explained in the notebook"
    assert "heatmap(" in "".join("".join(c["source"]) for c in nb["cells"])


def test_source_notebooks_grade_like_the_solutions(zygote, tmp_path):
    folder = tmp_path / "from_notebooks"
    folder.mkdir()
    for module in MODULES:
        (folder / f"{module}.py").write_text(module_source(source_notebook(module), module))
    report = grade(zygote, from_folder(str(folder), MODULES, "notebooks"), Limits(seconds=10))
    assert module_scores(report) == {k: i.points for k, i in items().items()}
    assert report.score == 100


def test_a_broken_cell_costs_its_own_item_only(zygote, tmp_path):
    nb = source_notebook("simplified_attention")
    for cell in nb["cells"]:
        if nbgrader_meta(cell).get("grade_id") == "softmax" and nbgrader_meta(cell).get("solution"):
            cell["source"] = ["def softmax(scores, dim=-1):\n", "    return (\n"]  # does not compile
        if nbgrader_meta(cell).get("grade_id") == "normalize_by_sum" and nbgrader_meta(cell).get("solution"):
            cell["source"].append("\nprint(normalize_by_sum(torch.ones(3)))\nwhile True:\n    pass\n")
    (tmp_path / "simplified_attention.py").write_text(module_source(nb, "simplified_attention"))
    report = grade(zygote, from_folder(str(tmp_path), ("simplified_attention",), "nb"), Limits(seconds=5))
    scores = module_scores(report)
    assert scores.pop("simplified_attention.softmax") == 0
    assert scores == {i.key: i.points for i in items_of("simplified_attention") if i.name != "softmax"}


def test_definitions_keep_defs_and_drop_top_level_calls():
    code, problem = definitions("import math\nx = 1\nprint(x)\n%time f()\n@dec\ndef f():\n    return x\nf()\n")
    assert problem is None
    assert code.splitlines() == ["import math", "x = 1", "", "", "@dec", "def f():", "    return x"]
    assert definitions("def f(:\n")[1].startswith("SyntaxError")


@pytest.mark.parametrize("module", MODULES)
def test_release_has_stub_bodies_and_no_hidden_tests(module, zygote, tmp_path):
    released = notebooks.release(module, source_notebook(module))
    text = json.dumps(released)
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    (tmp_path / f"{module}.py").write_text(module_source(released, module))
    report = grade(zygote, from_folder(str(tmp_path), (module,), "release"), Limits(seconds=10))
    assert report.score == 0


def test_notebook_scores_equal_attnkit_grade_on_the_same_code(zygote, tmp_path):
    """score() in a kernel's folder against `attnkit grade` of the edited .py files:
    one wrong stage, stderr and warnings in student code."""
    from notebook_samples import student_notebook

    for student, module in (("wrong", "simplified_attention"), ("stderr", "self_attention")):
        folder = tmp_path / student
        folder.mkdir()
        nb = student_notebook(notebooks.release(module, source_notebook(module)), module, student)
        (folder / f"{module}.ipynb").write_text(json.dumps(nb))
        keys = [i.key for i in items_of(module)]
        script = ("import json, sys\nfrom attnkit.notebook import score\n"
                  f"print(json.dumps([score(k) for k in {keys!r}]))")
        env = dict(os.environ, ATTNKIT_ITEM_SECONDS="10")
        run = subprocess.run([sys.executable, "-c", script], cwd=folder, env=env, capture_output=True,
                             text=True, timeout=300)
        assert run.stderr == "", "score() must keep stderr clean, or nbgrader gives the cell 0"
        from_notebook = dict(zip(keys, json.loads(run.stdout.strip().splitlines()[-1])))
        py = write_modules(tmp_path / f"{student}-py", student, (module,))
        expected = module_scores(grade(zygote, from_folder(str(py), (module,), "py"), Limits(seconds=10)))
        assert from_notebook == {k: float(v) for k, v in expected.items()}
        assert all(isinstance(v, float) for v in from_notebook.values())
    assert from_notebook == {i.key: float(i.points) for i in items_of("self_attention")}


def test_stage_four_never_pays_for_stage_three(tmp_path):
    """With the reference at hand, the multihead test cells stand the reference in
    for stage 3, whatever causal_attention.py sits next to the notebook."""
    module = "multihead_attention"
    (tmp_path / f"{module}.ipynb").write_text(json.dumps(source_notebook(module)))
    (tmp_path / "causal_attention.py").write_text((ROOT / "assignments" / "causal_attention.py").read_text())
    key = "multihead_attention.MultiHeadAttentionWrapper"
    script = ("import json\nfrom attnkit.notebook import score\n"
              f"print(json.dumps([score({key!r}), score({key!r}, public=True)]))")
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert run.stderr == ""
    full, public = json.loads(run.stdout.strip().splitlines()[-1])
    assert full == items()[key].points
    # the public checker has no reference: it runs the stage-3 file it finds, here a stub
    assert public == 0.0


def test_course_folder_and_its_refusals(tmp_path):
    from attnkit.course import create
    from attnkit.outcomes import GraderError

    written = create(str(tmp_path / "course"), cell_timeout=30, item_seconds=5)
    config = (tmp_path / "course" / "nbgrader_config.py").read_text()
    assert "c.Execute.timeout = 30" in config and '"ATTNKIT_ITEM_SECONDS", "5"' in config
    assert sorted(Path(p).relative_to(tmp_path / "course").as_posix() for p in written) == sorted(
        [f"source/{m}/{m}.ipynb" for m in MODULES] + ["source/multihead_attention/causal_attention.py",
                                                       "nbgrader_config.py"])
    with pytest.raises(GraderError, match="already holds a course"):
        create(str(tmp_path / "course"))
    with pytest.raises(GraderError, match="too short"):
        create(str(tmp_path / "other"), cell_timeout=15, item_seconds=10)
