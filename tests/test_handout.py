"""The self-study handout: what it holds, what it must not hold, and its checker
installed with plain pip into a fresh virtual environment, used as a student
(and GitHub Classroom) would use it, with no copy of the kit on the path."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

import fresh_venv
from attnkit.authoring import wheel
from attnkit.authoring.distribution import kit
from attnkit.authoring.handout import UPLOAD, create
from attnkit.exercises import MODULES, PUBLIC_KINDS, items
from attnkit.errors import GraderError
from conftest import PORTABLE
from notebook_samples import ROOT, SOLUTIONS, SOURCE

pytestmark = pytest.mark.slow  # a pip-installed checker in a fresh venv, its commands as processes

PUBLIC_TOTAL = sum(p for i in items().values() for k, p in i.checks.items() if k in PUBLIC_KINDS)
WHEEL = wheel.filename(kit())
KIT_ONLY = ("build", "course", "grade-class", "gradescope-bundle", "grade", "handout")


@pytest.fixture(scope="module")
def handout(tmp_path_factory):
    out = tmp_path_factory.mktemp("handout") / "attention"
    # a file:// URL stands for the instructor's host: pip treats it like https
    create(str(out), classroom=True, checker_url=(out / UPLOAD / WHEEL).as_uri())
    return out


class Venv:
    """A fresh virtual environment, run as a student's shell would: its bin/ first on PATH,
    nothing of the kit's environment (PYTHONPATH, ATTNKIT_SOLUTIONS, pytest settings)."""

    def __init__(self, prefix: Path):
        self.python = fresh_venv.create(prefix)
        self.bin = self.python.parent
        self.site = fresh_venv.site_packages(prefix)
        ours = {str(Path(sys.prefix) / "bin"), str(Path(sys.executable).parent)}
        path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p not in ours]
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("PYTHON", "PYTEST_", "ATTNKIT_", "VIRTUAL_ENV"))}
        self.env.update(PATH=os.pathsep.join([str(self.bin)] + path), VIRTUAL_ENV=str(prefix))

    def run(self, *cmd, cwd, env=None, timeout=300):
        return subprocess.run([str(c) for c in cmd], cwd=cwd, env=dict(self.env, **(env or {})),
                              capture_output=True, text=True, timeout=timeout)

    def shell(self, script: str, cwd, env=None):
        return self.run("bash", "-euo", "pipefail", "-c", script, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def student(handout, tmp_path_factory):
    """The handout's README, step 3: `pip install ./checker` (torch and the rest already there)."""
    venv = Venv(tmp_path_factory.mktemp("venv") / "student")
    done = venv.run("python", "-m", "pip", "install", "-q", "./checker", cwd=handout)
    assert done.returncode == 0, done.stdout + done.stderr
    return venv


# --------------------------------------------------------------------------- what the handout holds

# The diagnosis catalogue's hint for a missing output projection names the fix.
ALLOWED = {("catalogue.py", "return self.out_proj(context)")}


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


def texts(handout: Path):
    """(name, text) of every text file of the handout, the members of the checker's wheel included."""
    for path in sorted(handout.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".ipynb", ".md", ".json", ".yml", ".toml"):
            yield path.relative_to(handout).as_posix(), path.read_text()
        elif path.suffix == ".whl":
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    yield f"{path.name}/{name}", z.read(name).decode()


def test_contents(handout):
    for module in MODULES:
        assert (handout / f"{module}.py").read_text() == (ROOT / "assignments" / f"{module}.py").read_text()
        nb = json.loads((handout / f"{module}.ipynb").read_text())
        assert any("NotImplementedError" in "".join(c["source"]) for c in nb["cells"])
    readme = (handout / "README.md").read_text()
    assert "attnkit check" in readme and "no reference solution" in readme
    assert "pip install ./checker" in readme and "download.pytorch.org/whl/cpu" in readme
    assert not (handout / "solutions").exists()


def test_no_reference_solution_and_no_hidden_tests(handout):
    wanted = solution_lines()
    assert len(wanted) > 20
    seen = 0
    for name, text in texts(handout):
        seen += name.startswith(WHEEL)
        leaked = [line for line in wanted if line in text and (Path(name).name, line) not in ALLOWED]
        assert not leaked, f"{name} holds solution code: {leaked[:2]}"
        if "checker" not in name.split("/") and not name.startswith(WHEEL):  # the kit's code names the markers
            assert "### BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text, name
    assert seen > 40  # the wheel's files were read too


def test_checker_holds_no_working_reference(handout):
    """The checker's diagnosis variants are a stub: asking one for the reference
    module's output (its default settings) raises instead of computing it."""
    import importlib.util

    import torch

    path = handout / "checker" / "attnkit" / "judge" / "diagnosis" / "variants.py"
    spec = importlib.util.spec_from_file_location("handout_variants", path)
    variants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(variants)
    with pytest.raises(NotImplementedError, match="not part of the public checker"):
        variants.module_forward("multihead_attention.MultiHeadAttention", {}, {}, torch.zeros(1, 2, 2))
    assert "torch.softmax" not in path.read_text() and "transpose" not in path.read_text()
    with zipfile.ZipFile(handout / UPLOAD / WHEEL) as z:
        assert z.read("attnkit/judge/diagnosis/variants.py") == path.read_bytes()
    assert not (handout / "checker" / "solutions").exists()
    for path in list(handout.rglob("*.py")) + list(handout.rglob("*.ipynb")):
        lines = path.read_text().replace("\\n", "\n").splitlines()
        assert not any(line.strip().strip('",') == "### BEGIN SOLUTION" for line in lines), path


def test_handout_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(GraderError, match="not empty"):
        create(str(tmp_path))


# --------------------------------------------------------------------------- the installed checker

def test_installed_checker_is_the_handouts_own(student, handout):
    """What runs is the pip-installed copy: no path of the kit, its pytest11 entry point, its own CLI."""
    probe = ("import json, sys, importlib.metadata as m, attnkit; d = m.distribution('attnkit'); "
             "print(json.dumps([attnkit.__file__, sys.path, sorted((e.group, e.name) for e in d.entry_points)]))")
    done = student.run("python", "-c", probe, cwd=handout)
    assert done.returncode == 0, done.stderr
    location, path, entry_points = json.loads(done.stdout)
    assert Path(location).is_relative_to(student.site)
    assert not [p for p in path if p and Path(p).resolve().is_relative_to(ROOT)], path
    assert ["pytest11", "attnkit-student"] in entry_points and ["console_scripts", "attnkit"] in entry_points

    version = student.run("attnkit", "--version", cwd=handout)
    assert version.stdout.startswith(f"attnkit {kit().version} (the public checker of a handout)")
    usage = student.run("attnkit", "--help", cwd=handout).stdout
    assert "check" in usage and not [c for c in KIT_ONLY if re.search(rf"^\s+{c}\s", usage, re.M)], usage
    for command in KIT_ONLY:
        done = student.run("attnkit", command, "x", cwd=handout)
        assert done.returncode == 2 and "not part of this public checker" in done.stderr, command
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_check_on_the_stubs_and_on_the_solutions(student, handout, tmp_path):
    done = student.run("attnkit", "check", ".", "--json", tmp_path / "stubs.json", "--fail-under", "1", cwd=handout)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"Total: 0/{PUBLIC_TOTAL}" in done.stdout
    assert "no reference solution and no hidden cases" in done.stdout
    assert len(re.findall(r"^\s+\w+\.\w+\s+0/\d+", done.stdout, re.M)) == len(items())
    assert done.stderr.strip() == f"attnkit check: 0/{PUBLIC_TOTAL} is under --fail-under 1: exit 1"
    assert json.loads((tmp_path / "stubs.json").read_text())["max_score"] == PUBLIC_TOTAL

    solved = tmp_path / "solved"
    solved.mkdir()
    for module in MODULES:
        (solved / f"{module}.py").write_text((SOLUTIONS / f"{module}.py").read_text())
    output = tmp_path / "github_output"
    done = student.run("attnkit", "check", solved, "--github-output", "--report", tmp_path / "report",
                       "--fail-under", str(PUBLIC_TOTAL), cwd=handout, env={"GITHUB_OUTPUT": str(output)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Total: {PUBLIC_TOTAL}/{PUBLIC_TOTAL}" in done.stdout
    assert (tmp_path / "report" / "feedback.html").is_file()
    key, value = output.read_text().strip().split("=", 1)
    result = json.loads(base64.b64decode(value))
    assert key == "result" and result["max_score"] == PUBLIC_TOTAL and result["status"] == "pass"
    assert [t["name"] for t in result["tests"]] == list(items())
    assert sum(t["score"] for t in result["tests"]) == PUBLIC_TOTAL


TEMPLATES = sorted(p.relative_to(ROOT / "autograder" / "attnkit").as_posix()
                   for p in (ROOT / "autograder" / "attnkit").glob("*/templates/*") if p.is_file())


def test_the_checker_carries_its_templates(handout):
    """The checker's copy, its pyproject's package-data and its wheel all hold the templates."""
    assert "outputs/templates/feedback.html.j2" in TEMPLATES
    for name in TEMPLATES:
        assert (handout / "checker" / "attnkit" / name).read_bytes() == (ROOT / "autograder" / "attnkit" / name).read_bytes()
    assert '"*/templates/*"' in (handout / "checker" / "pyproject.toml").read_text()
    with zipfile.ZipFile(handout / UPLOAD / WHEEL) as z:
        assert {f"attnkit/{t}" for t in TEMPLATES} <= set(z.namelist())


def test_installed_checker_writes_feedback_from_its_templates(student, handout, tmp_path):
    """pip installed the templates with the checker; its feedback.html is rendered from
    them: the reason escaped, the heatmaps drawn as SVG (no matplotlib figure)."""
    assert (student.site / "attnkit" / "outputs" / "templates" / "feedback.html.j2").is_file()
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for module in MODULES:
        (wrong / f"{module}.py").write_text((SOLUTIONS / f"{module}.py").read_text())
    text = (wrong / "causal_attention.py").read_text()
    old = 'return scores.masked_fill(mask, float("-inf"))'
    assert text.count(old) == 1
    (wrong / "causal_attention.py").write_text(text.replace(old, "return scores.masked_fill(mask, 0.0)"))
    done = student.run("attnkit", "check", wrong, "--report", tmp_path / "report", cwd=handout)
    assert done.returncode == 0, done.stdout + done.stderr
    page = (tmp_path / "report" / "feedback.html").read_text()
    section = page[page.index('<section class="item" id="causal_attention.mask_scores">'):]
    section = section[:section.index("</section>")]
    assert "You mask with 0 instead of -inf" in section
    assert section.count("<svg ") >= 1 and "-inf (masked)" in section and "<img" not in page


def test_check_grades_the_notebooks(student, handout, tmp_path):
    done = student.run("attnkit", "check", ".", "--notebooks", cwd=handout)
    assert done.returncode == 0, done.stderr
    assert f"Total: 0/{PUBLIC_TOTAL}" in done.stdout
    for module in MODULES:  # notebooks with every solution cell filled in
        (tmp_path / f"{module}.ipynb").write_text((SOURCE / module / f"{module}.ipynb").read_text())
    done = student.run("attnkit", "check", tmp_path, "--notebooks", cwd=handout)
    assert f"Total: {PUBLIC_TOTAL}/{PUBLIC_TOTAL}" in done.stdout, done.stdout + done.stderr


def test_check_grades_the_notebooks_when_the_py_files_are_untouched_stubs(student, handout, tmp_path):
    for module in MODULES:  # a Classroom clone: the stubs as handed out, the work in the notebooks
        shutil.copy(handout / f"{module}.py", tmp_path / f"{module}.py")
        (tmp_path / f"{module}.ipynb").write_text((SOURCE / module / f"{module}.ipynb").read_text())
    done = student.run("attnkit", "check", tmp_path, cwd=handout)
    assert f"Total: {PUBLIC_TOTAL}/{PUBLIC_TOTAL}" in done.stdout, done.stdout + done.stderr
    assert ("note: simplified_attention: graded simplified_attention.ipynb (its solution cells); "
            "passed over: simplified_attention.py (an untouched stub)") in done.stdout


def test_pytest_in_the_handout_shows_one_test_per_item(student, handout):
    """`pytest` in the handout: the installed checker's pytest11 plugin shows the student's
    twenty items, all "not implemented yet" at first; checker/'s check files are not collected."""
    done = student.run("pytest", "-q", "-p", "no:cacheprovider", cwd=handout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "20 skipped" in done.stdout and "error" not in done.stdout.lower()
    assert f"public mode: 0 of the {PUBLIC_TOTAL} points the public checks cover" in done.stdout


NOTEBOOK_RUN = """\
import json, sys
import nbclient, nbformat
nb = nbformat.read(sys.argv[1], as_version=4)
nb.cells.insert(0, nbformat.v4.new_code_cell("import attnkit; print(attnkit.__file__)"))
nbclient.NotebookClient(nb, timeout=240, allow_errors=True, resources={"metadata": {"path": "."}}).execute()
values = {c.metadata["nbgrader"]["grade_id"]: [o.get("data", {}).get("text/plain") or o.get("text", "")
                                               for o in c.outputs]
          for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
print(json.dumps({"where": nb.cells[0].outputs[0]["text"].strip(), "tests": values}))
"""


def test_notebook_test_cells_grade_with_the_installed_checker(student, handout, tmp_path):
    """A student's notebook run in a kernel of the student's venv: every item solved but
    normalize_by_sum (which no other item calls). Each test cell grades through the
    installed checker (public mode)."""
    module = "simplified_attention"
    released = json.loads((handout / f"{module}.ipynb").read_text())
    solved = {c["id"]: c["source"] for c in json.loads((SOURCE / module / f"{module}.ipynb").read_text())["cells"]}
    for cell in released["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution") and cell["id"] != "normalize_by_sum":
            cell["source"] = solved[cell["id"]]
    (tmp_path / f"{module}.ipynb").write_text(json.dumps(released))
    (tmp_path / "run.py").write_text(NOTEBOOK_RUN)
    done = student.run("python", "run.py", f"{module}.ipynb", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["where"]).is_relative_to(student.site)
    tests = result["tests"]
    assert sorted(tests) == sorted(f"test_{i.name}" for i in items().values() if i.module == module)
    for cell, outputs in tests.items():
        value = float(outputs[-1])
        assert "not graded" not in "".join(outputs), outputs
        points = items()[f"{module}.{cell.removeprefix('test_')}"].points
        if cell == "test_normalize_by_sum":
            assert value == 0.0 and "not implemented yet" in outputs[0], outputs
        else:
            assert 0 < value <= points, (cell, outputs)


# --------------------------------------------------------------------------- GitHub Classroom

def test_classroom_workflow_installs_the_pinned_wheel(handout, tmp_path_factory, tmp_path):
    """The workflow's own steps, run in a fresh venv: the checker comes from the instructor's
    URL, pinned by sha256 (a tampered wheel is refused), never from ./checker."""
    workflow = yaml.safe_load((handout / ".github" / "workflows" / "classroom.yml").read_text())
    assert set(workflow[True] if True in workflow else workflow["on"]) >= {"push"}
    assert workflow["permissions"]["checks"] == "write"
    steps = workflow["jobs"]["run-autograding-tests"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert uses[0].startswith("actions/checkout@")
    assert any(u.startswith("actions/setup-python@") for u in uses)
    install = next(s for s in steps if s.get("name") == "Install the checker")["run"]
    assert "./checker" not in install and "torch==2.13.0" in install
    url = (handout / UPLOAD / WHEEL).as_uri()
    assert f'"attnkit @ {url}#sha256={wheel.sha256(handout / UPLOAD / WHEEL)}"' in install
    check = next(s for s in steps if s.get("id") == "attnkit")
    assert check["run"] == "attnkit check . --github-output"
    reporter = steps[-1]
    assert reporter["uses"] == "classroom-resources/autograding-grading-reporter@v1"
    assert reporter["with"]["runners"] == "attnkit"
    # the reporter reads <RUNNER>_RESULTS, base64 JSON from the runner step's output "result"
    assert reporter["env"]["ATTNKIT_RESULTS"] == "${{ steps.attnkit.outputs.result }}"

    runner = Venv(tmp_path_factory.mktemp("venv") / "classroom")
    evil = tmp_path / "evil"
    evil.mkdir()
    shutil.copyfile(handout / UPLOAD / WHEEL, evil / WHEEL)
    with zipfile.ZipFile(evil / WHEEL, "a") as z:
        z.writestr("attnkit/sitecustomize.py", "print('full marks')\n")
    done = runner.shell(install.replace(url, (evil / WHEEL).as_uri()), cwd=handout)
    assert done.returncode != 0 and "do not match the hashes" in (done.stdout + done.stderr).lower(), done.stderr

    done = runner.shell(install, cwd=handout)
    assert done.returncode == 0, done.stdout + done.stderr
    output = tmp_path / "github_output"
    done = runner.shell(check["run"], cwd=handout, env={"GITHUB_OUTPUT": str(output)})
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(base64.b64decode(output.read_text().strip().split("=", 1)[1]))
    assert result["max_score"] == PUBLIC_TOTAL and [t["score"] for t in result["tests"]] == [0] * len(items())


def test_classroom_needs_a_checker_url(tmp_path):
    out = tmp_path / "h"
    with pytest.raises(GraderError, match="--classroom needs --checker-url URL"):
        create(str(out), classroom=True)
    with pytest.raises(GraderError, match=rf"ending in /{re.escape(WHEEL)}"):
        create(str(out), classroom=True, checker_url="https://example.org/releases/checker.whl")
    with pytest.raises(GraderError, match="with --classroom"):
        create(str(out), checker_url=f"https://example.org/{WHEEL}")
    assert not out.exists()


def test_the_wheel_is_the_checker_and_is_reproducible(handout, tmp_path):
    """Built again from the same files, the wheel has the same sha256 (the workflow's pin holds);
    it holds exactly checker/attnkit plus its metadata."""
    again = wheel.build(handout / "checker" / "attnkit", kit(), tmp_path)
    assert wheel.sha256(again) == wheel.sha256(handout / UPLOAD / WHEEL)
    with zipfile.ZipFile(again) as z:
        names = set(z.namelist())
        metadata = z.read(f"attnkit-{kit().version}.dist-info/METADATA").decode()
    files = {f"attnkit/{p.relative_to(handout / 'checker' / 'attnkit').as_posix()}"
             for p in (handout / "checker" / "attnkit").rglob("*") if p.is_file()}
    assert {n for n in names if not n.startswith("attnkit-")} == files
    assert f"Requires-Python: {kit().requires_python}" in metadata
    assert set(re.findall(r"^Requires-Dist: (.+)$", metadata, re.M)) == set(kit().dependencies)
    assert (handout / ".gitignore").read_text().splitlines()[-1] == f"/{UPLOAD}/"


@pytest.mark.skipif(PORTABLE, reason="grade-class grades for credit on the Linux sandbox only; "
                    "it refuses the portable runner (README: Student code is untrusted)")
def test_grade_class_over_collected_classroom_repositories(handout, attnkit_cli, tmp_path):
    """The grades that count: the collected repositories (the handout's layout, exercise
    files at the top) graded by grade-class with every check."""
    klass = tmp_path / "collected"
    for name in ("alice", "bob"):
        shutil.copytree(handout, klass / name, ignore=shutil.ignore_patterns(UPLOAD))
    for module in MODULES:
        shutil.copyfile(SOLUTIONS / f"{module}.py", klass / "alice" / f"{module}.py")
    done = attnkit_cli("grade-class", klass, "--out", tmp_path / "out", "--jobs", "2", "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {r.split(",")[0]: r.split(",")[1] for r in (tmp_path / "out" / "grades.csv").read_text().splitlines()[1:]}
    assert rows == {"alice": "100", "bob": "0"}
