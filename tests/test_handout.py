"""The self-study handout: what it holds, what it must not hold, and its checker."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from attnkit.handout import create
from attnkit.items import MODULES, PUBLIC_KINDS, items
from notebook_samples import ROOT, SOLUTIONS

PUBLIC_TOTAL = sum(p for i in items().values() for k, p in i.checks.items() if k in PUBLIC_KINDS)


@pytest.fixture(scope="module")
def handout(tmp_path_factory):
    out = tmp_path_factory.mktemp("handout") / "attention"
    create(str(out), classroom=True)
    return out


def checker(handout: Path, *args, env=None, cwd=None):
    """The handout's own checker, isolated from the kit (-I: no site of ours, no cwd)."""
    boot = (f"import sys; sys.path.insert(0, {str(handout / 'checker')!r}); "
            f"from attnkit.cli import main; sys.exit(main({list(args)!r}))")
    return subprocess.run([sys.executable, "-I", "-c", boot], capture_output=True, text=True,
                          env=env, cwd=cwd or handout, timeout=300)


# The grader's stand-in for CausalAttention (worker.py) must create the same
# parameters as the student's module; that layout is specified in the stub's
# docstring ("W_query, W_key, W_value, nn.Linear, created in that order, bias
# only if qkv_bias; dropout"), so these lines give nothing away.
STAND_IN_LAYOUT = {f"self.W_{n} = nn.Linear(d_in, d_out, bias=qkv_bias)" for n in ("query", "key", "value")} | {
    "self.dropout = nn.Dropout(dropout)"}
# The diagnosis catalogue's hint for a missing output projection names the fix.
ALLOWED = {("worker.py", line) for line in STAND_IN_LAYOUT} | {("catalogue.py", "return self.out_proj(context)")}


def solution_lines() -> set[str]:
    """Every substantial line a student writes, taken from the reference solutions."""
    lines = set()
    for module in MODULES:
        inside = False
        for line in (SOLUTIONS / f"{module}.py").read_text().splitlines():
            if line.strip() == "### BEGIN SOLUTION":
                inside = True
            elif line.strip() == "### END SOLUTION":
                inside = False
            elif inside and len(line.strip()) > 25 and not line.strip().startswith("#"):
                lines.add(line.strip())
    return lines


def test_contents(handout):
    for module in MODULES:
        assert (handout / f"{module}.py").read_text() == (ROOT / "assignments" / f"{module}.py").read_text()
        nb = json.loads((handout / f"{module}.ipynb").read_text())
        assert any("NotImplementedError" in "".join(c["source"]) for c in nb["cells"])
    readme = (handout / "README.md").read_text()
    assert "attnkit check" in readme and "no reference solution" in readme
    assert not (handout / "solutions").exists()


def test_no_reference_solution_and_no_hidden_tests(handout):
    wanted = solution_lines()
    assert len(wanted) > 20
    for path in handout.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".ipynb", ".md", ".json", ".yml", ".toml"):
            text = path.read_text()
            leaked = [line for line in wanted if line in text
                      and (path.name, line) not in ALLOWED]
            assert not leaked, f"{path.relative_to(handout)} holds solution code: {leaked[:2]}"
            if "checker" not in path.relative_to(handout).parts:  # the kit's code names the markers
                assert "### BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text, path


def test_checker_on_the_stubs_and_on_the_solutions(handout, tmp_path):
    done = checker(handout, "check", ".")
    assert done.returncode == 0, done.stderr
    assert f"Total: 0/{PUBLIC_TOTAL}" in done.stdout
    assert "no reference solution and no hidden cases" in done.stdout
    assert len(re.findall(r"^\s+\w+\.\w+\s+0/\d+", done.stdout, re.M)) == len(items())
    for module in MODULES:
        (tmp_path / f"{module}.py").write_text((SOLUTIONS / f"{module}.py").read_text())
    output = tmp_path / "github_output"
    env = dict(os.environ, GITHUB_OUTPUT=str(output))
    done = checker(handout, "check", str(tmp_path), "--github-output", env=env)
    assert f"Total: {PUBLIC_TOTAL}/{PUBLIC_TOTAL}" in done.stdout, done.stdout + done.stderr
    key, value = output.read_text().strip().split("=", 1)
    result = json.loads(base64.b64decode(value))
    assert key == "result" and result["max_score"] == PUBLIC_TOTAL and result["status"] == "pass"
    assert [t["name"] for t in result["tests"]] == list(items())
    assert sum(t["score"] for t in result["tests"]) == PUBLIC_TOTAL


def test_checker_grades_the_notebooks(handout, tmp_path):
    done = checker(handout, "check", ".", "--notebooks")
    assert done.returncode == 0, done.stderr
    assert f"Total: 0/{PUBLIC_TOTAL}" in done.stdout
    for module in MODULES:  # notebooks with every solution cell filled in
        (tmp_path / f"{module}.ipynb").write_text((ROOT / "source" / module / f"{module}.ipynb").read_text())
    done = checker(handout, "check", str(tmp_path), "--notebooks")
    assert f"Total: {PUBLIC_TOTAL}/{PUBLIC_TOTAL}" in done.stdout, done.stdout + done.stderr
    assert "attnkit-check-" not in done.stdout  # no temporary folder in its words


def test_checker_grades_the_notebooks_when_the_py_files_are_untouched_stubs(handout, tmp_path):
    for module in MODULES:  # a Classroom clone: the stubs as handed out, the work in the notebooks
        shutil.copy(handout / f"{module}.py", tmp_path / f"{module}.py")
        (tmp_path / f"{module}.ipynb").write_text((ROOT / "source" / module / f"{module}.ipynb").read_text())
    done = checker(handout, "check", str(tmp_path))
    assert f"Total: {PUBLIC_TOTAL}/{PUBLIC_TOTAL}" in done.stdout, done.stdout + done.stderr
    assert ("note: simplified_attention: graded simplified_attention.ipynb (its solution cells); "
            "passed over: simplified_attention.py (an untouched stub)") in done.stdout


def test_classroom_workflow(handout):
    workflow = yaml.safe_load((handout / ".github" / "workflows" / "classroom.yml").read_text())
    assert set(workflow[True] if True in workflow else workflow["on"]) >= {"push"}
    steps = workflow["jobs"]["run-autograding-tests"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert uses[0].startswith("actions/checkout@")
    assert any(u.startswith("actions/setup-python@") for u in uses)
    install = next(s for s in steps if "pip install ./checker" in s.get("run", ""))
    assert "torch==2.13.0" in install["run"]
    check = next(s for s in steps if s.get("id") == "attnkit")
    assert check["run"] == "attnkit check . --github-output"
    reporter = steps[-1]
    assert reporter["uses"] == "classroom-resources/autograding-grading-reporter@v1"
    assert reporter["with"]["runners"] == "attnkit"
    # the reporter reads <RUNNER>_RESULTS, base64 JSON from the runner step's output "result"
    assert reporter["env"]["ATTNKIT_RESULTS"] == "${{ steps.attnkit.outputs.result }}"
    assert workflow["permissions"]["checks"] == "write"


def test_handout_refuses_a_non_empty_folder(tmp_path):
    from attnkit.outcomes import GraderError

    (tmp_path / "x").write_text("")
    with pytest.raises(GraderError, match="not empty"):
        create(str(tmp_path))


def test_checker_holds_no_working_reference(handout):
    """The checker's diagnosis variants are a stub: asking one for the reference
    module's output (its default settings) raises instead of computing it."""
    import importlib.util

    import torch

    path = handout / "checker" / "attnkit" / "diagnosis" / "variants.py"
    spec = importlib.util.spec_from_file_location("handout_variants", path)
    variants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(variants)
    with pytest.raises(NotImplementedError, match="not part of the public checker"):
        variants.module_forward("multihead_attention.MultiHeadAttention", {}, {}, torch.zeros(1, 2, 2))
    assert "torch.softmax" not in path.read_text() and "transpose" not in path.read_text()
    assert not (handout / "checker" / "solutions").exists()
    for path in list(handout.rglob("*.py")) + list(handout.rglob("*.ipynb")):
        lines = path.read_text().replace("\\n", "\n").splitlines()
        assert not any(line.strip().strip('",') == "### BEGIN SOLUTION" for line in lines), path


def test_pytest_in_the_handout_shows_one_test_per_item(handout):
    """The checker/ copy of the kit holds check files; pytest in the handout shows
    only the student's twenty items, all "not implemented yet" at first."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=handout,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, ATTNKIT_SOLUTIONS=str(handout / "no-solutions")))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "20 skipped" in done.stdout and "error" not in done.stdout.lower()
    assert "public mode: 0 of the 47 points the public checks cover" in done.stdout
