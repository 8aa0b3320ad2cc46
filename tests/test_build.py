"""`attnkit build`: stubs generated from the solutions, and --check."""

import ast
import json
import shutil

import numpy as np

import pytest
from conftest import ROOT

from attnkit.authoring.build import BuildError, build, generated_files, stub_source
from attnkit.exercises import MODULES


def test_generated_files_are_up_to_date():
    assert build(check=True) == []


def _signatures(source: str) -> dict[str, str]:
    tree = ast.parse(source)
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            out[node.name + str(node.lineno > 0)] = ast.unparse(node.args) + "->" + ast.unparse(node.returns or ast.Constant(None))
        if isinstance(node, ast.ClassDef):
            out[node.name] = ast.get_docstring(node)
    return out


@pytest.mark.parametrize("module", MODULES)
def test_stub_keeps_signatures_and_docstrings_and_drops_solutions(module):
    solution = (ROOT / "solutions" / f"{module}.py").read_text()
    stub = (ROOT / "assignments" / f"{module}.py").read_text()
    assert _signatures(stub) == _signatures(solution)
    assert "BEGIN SOLUTION" not in stub and "END SOLUTION" not in stub
    n_regions = solution.count("### BEGIN SOLUTION")
    assert stub.count("raise NotImplementedError(") == n_regions
    for line in stub.splitlines():
        if "raise NotImplementedError(" in line:
            assert f"'{module}." in line and "not implemented yet" in line, line


def test_build_check_reports_a_stale_stub(tmp_path):
    root = tmp_path / "kit"
    shutil.copytree(ROOT / "solutions", root / "solutions")
    shutil.copytree(ROOT / "assignments", root / "assignments")
    for path, content in generated_files(root).items():  # a complete, fresh tree first
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    assert build(root, check=True) == []
    target = root / "assignments" / "simplified_attention.py"
    target.write_text(target.read_text().replace("Softmax along", "softmax along"))
    problems = build(root, check=True)
    assert len(problems) == 1 and problems[0].startswith("assignments/simplified_attention.py: stale")


def test_unbalanced_markers_are_an_error():
    with pytest.raises(BuildError, match="without"):
        stub_source("m", "def f():\n    ### BEGIN SOLUTION\n    return 1\n")


def _perturbed(text: str, name: str, change) -> str:
    data = json.loads(text)
    values = data["tensors"][name]["values"]
    while isinstance(values[0], list):
        values = values[0]
    values[0] = change(values[0])
    return json.dumps(data, indent=1) + "\n"


def test_a_last_bit_change_in_stored_data_is_not_stale_but_a_real_change_is():
    """Other CPUs compute float32 results a few units in the last place apart;
    the committed data must not be stale there, yet any real change must be."""
    from attnkit.authoring import public_data
    text = public_data.render()
    name = "simplified.weights"  # float32, computed by the solutions
    last_bit = _perturbed(text, name, lambda v: float(np.nextafter(np.float32(v), np.float32(2))))
    assert last_bit != text
    assert public_data.equivalent(last_bit, text)
    assert not public_data.equivalent(_perturbed(text, name, lambda v: v + 1e-4), text)
    assert not public_data.equivalent(_perturbed(text, "simplified.softmax_extreme.torch.float64",
                                                 lambda v: v * (1 + 1e-6)), text)
    data = json.loads(text)
    data["tensors"]["simplified.weights"]["shape"] = [36]
    assert not public_data.equivalent(json.dumps(data), text)


def test_build_check_accepts_data_from_another_cpu(tmp_path):
    """`build --check` on a kit whose stored data differs in the last bits."""
    from attnkit.authoring import public_data
    kit = tmp_path / "kit"
    for part in ("solutions", "assignments", "source", "autograder"):
        shutil.copytree(ROOT / part, kit / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(ROOT / "README.md", kit / "README.md")
    stored = kit / public_data.PATH
    text = public_data.render()
    stored.write_text(_perturbed(text, "simplified.weights",
                                 lambda v: float(np.nextafter(np.float32(v), np.float32(-2)))))
    assert build(kit, check=True) == []
    stored.write_text(_perturbed(text, "simplified.weights", lambda v: v + 1e-3))
    assert [line.split(":")[0] for line in build(kit, check=True)] == [str(public_data.PATH)]
