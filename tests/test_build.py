"""`attnkit build`: stubs generated from the solutions, and --check."""

import ast
import shutil

import pytest
from conftest import ROOT

from attnkit.build import BuildError, build, generated_files, stub_source
from attnkit.items import MODULES


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
