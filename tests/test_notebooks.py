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

from attnkit.authoring import build, notebooks
from attnkit.judge.engine import grade
from attnkit.intake import from_folder
from attnkit.exercises import MODULES, items, items_of
from attnkit.intake.notebooks import definitions, module_source
from attnkit.judge.reference import doc_inputs
from attnkit.sandbox import Limits, Zygote
from notebook_samples import ROOT, source_notebook, write_modules

pytestmark = pytest.mark.slow  # notebook kernels, each importing torch


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
        assert source.rstrip().splitlines()[-1] == f'score("{item.key}", hidden=hidden)', \
            "the cell must end in its score"
        hidden = source[source.index("### BEGIN HIDDEN TESTS"):source.index("### END HIDDEN TESTS")]
        assert "hidden = False" in source.split("### BEGIN")[0] and "\nhidden = True" in hidden
        # the comment says what is graded where, in lines nbgrader validate shows uncut
        comment = " ".join(line[2:] for line in source.splitlines() if line.startswith("# "))
        assert comment.startswith(f"{item.points} points. Here, in your copy: the public checks (")
        for kind, points in item.checks.items():
            assert f"{kind} {points}" in comment
        assert all(len(line) <= 83 for line in source.split("### BEGIN")[0].splitlines())
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


def run_cells(folder: Path, calls: str, env: dict | None = None) -> list:
    """Test-cell calls in a fresh process in ``folder`` (a kernel without nbgrader); their values."""
    script = f"import json\nfrom attnkit.kernel.notebook import score\nprint(json.dumps({calls}))"
    run = subprocess.run([sys.executable, "-c", script], cwd=folder, capture_output=True, text=True,
                         timeout=300, env=env)
    assert run.stderr == "", "score() must keep stderr clean, or nbgrader gives the cell 0"
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_notebook_scores_equal_attnkit_grade_on_the_same_code(zygote, tmp_path):
    """score() in a kernel's folder against `attnkit grade` of the edited .py files:
    one wrong stage, stderr and warnings in student code. Without the hidden
    block (hidden=False) a cell scales its public checks to its points."""
    from notebook_samples import student_notebook

    for student, module in (("wrong", "simplified_attention"), ("stderr", "self_attention")):
        folder = tmp_path / student
        folder.mkdir()
        nb = student_notebook(notebooks.release(module, source_notebook(module)), module, student)
        (folder / f"{module}.ipynb").write_text(json.dumps(nb))
        keys = [i.key for i in items_of(module)]
        env = dict(os.environ, ATTNKIT_ITEM_SECONDS="10")
        values = run_cells(folder, f"[[score(k, hidden=True), score(k)] for k in {keys!r}]", env)
        every = {k: v[0] for k, v in zip(keys, values)}
        public = {k: v[1] for k, v in zip(keys, values)}
        py = write_modules(tmp_path / f"{student}-py", student, (module,))
        expected = module_scores(grade(zygote, from_folder(str(py), (module,), "py"), Limits(seconds=10)))
        assert every == {k: float(v) for k, v in expected.items()}
        shown = grade(zygote, from_folder(str(py), (module,), "py"), Limits(seconds=10), public=True)
        assert public == {r.item.key: round(r.item.points * r.score / r.max_score, 2) for r in shown.results}
        assert all(isinstance(v, float) for v in [*every.values(), *public.values()])
    full = {i.key: float(i.points) for i in items_of("self_attention")}
    assert every == full and public == full, "a right notebook has full marks in both modes"
    # the wrong softmax: its public checks (example 1, stability 2 of 5 points) all fail
    assert run_cells(tmp_path / "wrong", '[score("simplified_attention.softmax")]') == [0.0]


def test_a_public_score_is_scaled_to_the_cell_and_says_so():
    from attnkit.kernel.notebook import Grade, describe, points_of

    key = "simplified_attention.softmax"  # 5 points: example 1, hidden 2, stability 2
    partial = Grade(key, 2, 3, public=True, reasons=("example: off",))
    assert points_of(partial) == 3.33
    head, where, reasons = describe(partial)
    assert head.startswith(f"{key}: 3.33 of 5 points: 2/3 on the public checks (example, stability)")
    assert "hidden 2" in where and reasons == ["  example: off"]
    assert points_of(Grade(key, 3, 3, public=True)) == 5.0
    assert points_of(Grade(key, 4, 5, public=False)) == 4.0
    assert points_of(Grade(key, 9, 5, public=False)) == 5.0, "above its points fails a whole nbgrader notebook"


def test_stage_four_never_pays_for_stage_three(tmp_path):
    """With the reference at hand, the multihead test cells stand the reference in
    for stage 3, whatever causal_attention.py sits next to the notebook."""
    module = "multihead_attention"
    (tmp_path / f"{module}.ipynb").write_text(json.dumps(source_notebook(module)))
    (tmp_path / "causal_attention.py").write_text((ROOT / "assignments" / "causal_attention.py").read_text())
    key = "multihead_attention.MultiHeadAttentionWrapper"
    full, public = run_cells(tmp_path, f"[score({key!r}, hidden=True), score({key!r})]")
    assert full == items()[key].points
    # the public checker has no reference: it runs the stage-3 file it finds, here a stub
    assert public == 0.0


def test_course_folder_and_its_refusals(tmp_path, monkeypatch):
    from attnkit.authoring.course import create
    from attnkit.errors import GraderError

    monkeypatch.delenv("ATTNKIT_SOLUTIONS", raising=False)
    written = create(str(tmp_path / "course"), cell_timeout=30, item_seconds=5)
    config = (tmp_path / "course" / "nbgrader_config.py").read_text()
    assert "c.Execute.timeout = 30" in config
    assert "attnkit.frontends.nbgrader_helper.start(solutions=None, item_seconds=5.0)" in config
    assert "ATTNKIT_SECRET" not in config.replace("export ATTNKIT_SECRET", "")
    assert sorted(Path(p).relative_to(tmp_path / "course").as_posix() for p in written) == sorted(
        [f"source/{m}/{m}.ipynb" for m in MODULES] + ["source/multihead_attention/causal_attention.py",
                                                       "nbgrader_config.py"])
    with pytest.raises(GraderError, match="already holds a course"):
        create(str(tmp_path / "course"))
    with pytest.raises(GraderError, match="too short"):
        create(str(tmp_path / "other"), cell_timeout=15, item_seconds=10)
    # solutions chosen with ATTNKIT_SOLUTIONS are named in the config, for the helper alone
    monkeypatch.setenv("ATTNKIT_SOLUTIONS", str(ROOT / "solutions"))
    create(str(tmp_path / "chosen"))
    assert f"start(solutions={str((ROOT / 'solutions').resolve())!r}, item_seconds=10.0)" in (
        tmp_path / "chosen" / "nbgrader_config.py").read_text()


def test_trial_lines_that_assign_cost_nothing(zygote, tmp_path):
    """The notebook's own promise, with the habits students have: a trial call
    assigned to a name (reading the setup cell's inputs, building the class
    just written) left at the bottom of solution cells, a %-continuation and a
    split cell: every item keeps its points."""
    nb = source_notebook("causal_attention")
    for cell in nb["cells"]:
        meta = nbgrader_meta(cell)
        if not meta.get("solution"):
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if meta.get("grade_id") == "CausalAttention":
            source += "\nca = CausalAttention(3, 2, 6, 0.0)\ncontext_vecs = ca(batch)\nprint(context_vecs.shape)\n"
        if meta.get("grade_id") == "mask_scores":
            source += "\nmasked = mask_scores(scores, causal_mask(6))\nNOTE = ('%s'\n        % 'masked')\n"
        cell["source"] = source
    (tmp_path / "causal_attention.py").write_text(module_source(nb, "causal_attention"))
    report = grade(zygote, from_folder(str(tmp_path), ("causal_attention",), "nb"), Limits(seconds=10))
    assert module_scores(report) == {i.key: i.points for i in items_of("causal_attention")}


def test_a_module_made_from_a_notebook_is_named_by_its_notebook(zygote, tmp_path):
    """The student has no causal_attention.py: a failing import says which
    notebook's solution cells the module was made from."""
    from attnkit.intake import find

    nb = source_notebook("causal_attention")
    for cell in nb["cells"]:
        if nbgrader_meta(cell).get("grade_id") == "causal_mask" and nbgrader_meta(cell).get("solution"):
            cell["source"] = "def causal_mask(num_tokens, fill=undefined_name):\n    return None\n"
    (tmp_path / "causal_attention.ipynb").write_text(json.dumps(nb))
    report = grade(zygote, find(str(tmp_path)), Limits(seconds=10))
    reasons = [line for r in report.results if r.item.module == "causal_attention" for line in r.reasons]
    assert reasons and all("causal_attention.py (made from the solution cells of causal_attention.ipynb) could "
                           "not be imported: NameError" in line for line in reasons), reasons


def _code_cell(source: str) -> dict:
    """A code cell as Jupyter adds one: no nbgrader metadata."""
    return {"cell_type": "code", "metadata": {}, "source": source, "outputs": [], "execution_count": None}


def _with_own_cells(module: str, solutions: dict[str, str], own: list[tuple[int, str]]) -> dict:
    """The source notebook with some solution cells rewritten and cells of the
    student's own inserted (at each given index, counted in the final list)."""
    nb = source_notebook(module)
    for cell in nb["cells"]:
        meta = nbgrader_meta(cell)
        if meta.get("solution") and meta.get("grade_id") in solutions:
            cell["source"] = solutions[meta["grade_id"]]
    for at, source in own:
        nb["cells"].insert(at, _code_cell(source))
    return nb


# Helpers, an import and a constant in cells the student added; a "try it" cell
# that redefines a graded function wrongly, and another that rebinds one; a
# plotting helper nothing graded uses, whose import the grader does not have.
OWN_HELPERS = "import math\n\nEPS = 0.0\n\ndef row_sum(x, dim=-1):\n    return x.sum(dim=dim, keepdim=True) + EPS\n"
OWN_TRIALS = ("def softmax(scores, dim=-1):\n    return scores  # a first try, left below the solution\n\n"
              "context_vectors = torch.matmul\nprint(softmax(torch.ones(3)))\n\n"
              "try:\n    def attention_scores(inputs):\n        return inputs  # a try of one's own\n"
              "except Exception:\n    pass\n")
OWN_PLOTTING = ("import seaborn_not_on_the_grader as sns\nimport functools\n\n@functools.lru_cache\n"
                "def show(weights):\n    sns.heatmap(weights)\n")
OWN_SOLUTIONS = {"normalize_by_sum": "normalize_by_sum = lambda scores, dim=-1: scores / row_sum(scores, dim)\n",
                 "softmax": "def softmax(scores, dim=-1):\n    e = torch.exp(scores - scores.amax(dim=dim, keepdim=True))\n"
                            "    return e / row_sum(e, dim)\n"}


def test_cells_of_ones_own_give_what_the_solution_cells_use():
    nb = _with_own_cells("simplified_attention", OWN_SOLUTIONS,
                         [(1, OWN_HELPERS), (3, OWN_PLOTTING), (len(nb_cells("simplified_attention")), OWN_TRIALS)])
    text = module_source(nb, "simplified_attention")
    kept = {line for line in text.splitlines() if line.strip()}
    assert "def row_sum(x, dim=-1):" in kept and "EPS = 0.0" in kept  # what the solution cells use
    assert "import math" not in kept  # nothing uses it
    for line in ("    return scores  # a first try, left below the solution", "context_vectors = torch.matmul",
                 "        return inputs  # a try of one's own",
                 "import seaborn_not_on_the_grader as sns", "import functools", "@functools.lru_cache",
                 "def show(weights):"):  # redefining a graded name, or nothing graded uses it
        assert line not in kept, line
    compile(text, "simplified_attention.py", "exec")


def nb_cells(module: str) -> list:
    return source_notebook(module)["cells"]


def test_a_helper_in_a_cell_of_ones_own_earns_its_points(zygote, tmp_path):
    """nbgrader runs the cells a student adds, and so does the student's kernel:
    the helper a solution cell calls counts, a trial below the solution does not
    replace it, and an unused plotting cell costs nothing (before: 13/20,
    "NameError: name 'row_sum' is not defined")."""
    nb = _with_own_cells("simplified_attention", OWN_SOLUTIONS,
                         [(1, OWN_HELPERS), (3, OWN_PLOTTING), (len(nb_cells("simplified_attention")), OWN_TRIALS)])
    (tmp_path / "simplified_attention.ipynb").write_text(json.dumps(nb))
    from attnkit.intake import find

    report = grade(zygote, find(str(tmp_path)), Limits(seconds=10))
    assert {k: v for k, v in module_scores(report).items() if k.startswith("simplified_attention.")} == {
        i.key: i.points for i in items_of("simplified_attention")}


def test_an_item_written_in_a_new_cell_counts_when_its_solution_cell_is_gone(zygote, tmp_path):
    """A solution cell deleted and its code written in a cell of one's own: the
    kernel has the function, and so does the grader. A solution cell that
    exists always wins over a cell of one's own."""
    nb = source_notebook("causal_attention")
    mask_cell = next(c for c in nb["cells"] if nbgrader_meta(c).get("grade_id") == "causal_mask"
                     and nbgrader_meta(c).get("solution"))
    nb["cells"][nb["cells"].index(mask_cell)] = _code_cell("".join(mask_cell["source"]))
    nb["cells"].append(_code_cell("def mask_scores(scores, mask):\n    return scores  # not the graded one\n"))
    (tmp_path / "causal_attention.py").write_text(module_source(nb, "causal_attention"))
    report = grade(zygote, from_folder(str(tmp_path), ("causal_attention",), "nb"), Limits(seconds=10))
    assert module_scores(report) == {i.key: i.points for i in items_of("causal_attention")}


def test_a_try_of_ones_own_and_a_big_cell_of_data_leave_the_helpers_in(zygote, tmp_path):
    """Cells of one's own as students write them: a fallback helper defined in
    a try (its local variable named like a graded function, and a constant it
    reads from another cell), and 600 KiB of pasted data before the helper
    cell. The helpers come along; the data cell alone is left out (before:
    softmax 0/5, "NameError: stable_exp"; normalize_by_sum 0/2, "NameError: row_sum")."""
    helper = ("try:\n    from my_utils import stable_exp\nexcept ImportError:\n"
              "    def stable_exp(scores, dim=-1):\n        attention_scores = scores - scores.amax(dim=dim, keepdim=True)\n"
              "        return torch.exp(attention_scores) + EPS\n")
    solutions = {"softmax": "def softmax(scores, dim=-1):\n    e = stable_exp(scores, dim)\n"
                            "    return e / e.sum(dim=dim, keepdim=True)\n",
                 "normalize_by_sum": "def normalize_by_sum(scores, dim=-1):\n    return scores / row_sum(scores, dim)\n"}
    data = "DATA = [" + "0.5," * 200_000 + "]\n"
    nb = _with_own_cells("simplified_attention", solutions,
                         [(1, data), (2, "EPS = 0.0\n\n\ndef row_sum(x, dim=-1):\n    return x.sum(dim=dim, keepdim=True)\n"),
                          (3, helper)])
    (tmp_path / "simplified_attention.ipynb").write_text(json.dumps(nb))
    from attnkit.intake import find

    report = grade(zygote, find(str(tmp_path)), Limits(seconds=10))
    assert {k: v for k, v in module_scores(report).items() if k.startswith("simplified_attention.")} == {
        i.key: i.points for i in items_of("simplified_attention")}
