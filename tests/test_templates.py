"""The files the kit writes come from templates shipped as package data
(``<room>/templates/``), filled with the settings of ``attnkit.config``; the
Gradescope bundle carries them. (The handout's checker: tests/test_handout.py.)"""

from __future__ import annotations

import ast
import fnmatch
import functools
import json
import os
import re
import subprocess
import sys
import zipfile

import jinja2
import pytest
import yaml
from conftest import ROOT

from attnkit import config
from attnkit.authoring import course, distribution, handout
from attnkit.frontends import gradescope
from attnkit.outputs import feedback, templating
from attnkit.exercises import MODULES
from attnkit.judge.scoring import build_report

PACKAGE = ROOT / "autograder" / "attnkit"
TEMPLATE_FILES = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.glob("*/templates/*") if p.is_file())


def render_every_writer() -> dict[str, str]:
    """Every file the kit writes from a template, by the functions that write them."""
    return {
        "setup.sh": gradescope.setup_sh(),
        "run_autograder": gradescope.run_autograder(),
        "nbgrader_config.py": course.nbgrader_config(75, 12.5, "/courses/it's here"),
        "README.md": handout.readme(),
        "classroom.yml": handout.classroom_workflow("https://example.org/v1/attnkit.whl", "ab" * 32),
        "edition.py": handout._text("checker_edition.py.j2"),
        "variants.py": handout._text("checker_variants.py.j2"),
        ".gitignore": handout._text("handout_gitignore.j2", upload=handout.UPLOAD),
        "feedback.html": feedback.render(build_report([], MODULES, ["a note"])),
    }


def test_every_template_is_package_data_and_every_one_is_used(monkeypatch):
    """Declared in pyproject's package-data (which the checker's pyproject repeats), read
    through importlib.resources by the writers, and none left over."""
    assert TEMPLATE_FILES, "no templates found"
    patterns = distribution.kit().package_data
    assert [t for t in TEMPLATE_FILES if not any(fnmatch.fnmatch(t, p) for p in patterns)] == []
    read = []
    source = templating.source
    monkeypatch.setattr(templating, "source", lambda package, name: read.append((package, name)) or source(package, name))
    # templates are compiled once per process: fresh environments load them again here
    monkeypatch.setattr(templating, "environment", functools.cache(templating.environment.__wrapped__))
    render_every_writer()
    loaded = sorted(f"{package.split('.')[1]}/templates/{name}" for package, name in read)
    assert loaded == TEMPLATE_FILES


def test_no_writer_keeps_a_file_in_a_python_string():
    """The old constants are gone; the writers render templates."""
    for module, names in ((gradescope, ("SETUP_SH", "RUN_AUTOGRADER")), (course, ("CONFIG",)),
                          (handout, ("README", "WORKFLOW", "EDITION", "VARIANTS_STUB")), (feedback, ("STYLE",))):
        assert [n for n in names if hasattr(module, n)] == [], module.__name__


def test_templates_never_spell_a_setting():
    """The torch pin, its index, the Gradescope root, the variables' names and the default
    limits are filled from attnkit.config, never written in a template."""
    settings = [config.TORCH_PIN, config.TORCH_CPU_INDEX, config.TORCH_PIN.split("==")[1],
                config.AUTOGRADER_ROOT.default, *(v.name for v in config.VARIABLES)]
    for name in TEMPLATE_FILES:
        text = (PACKAGE / name).read_text()
        assert [s for s in settings if s in text] == [], name
        assert not any(f"{n:g} s" in text or f"{n:g} seconds" in text
                       for n in (config.ITEM_SECONDS_DEFAULT, config.CELL_SECONDS_DEFAULT)), name


def test_settings_come_from_config(monkeypatch):
    """Change the settings, and every file that names them follows."""
    monkeypatch.setattr(config, "TORCH_PIN", "torch==9.9.9")
    monkeypatch.setattr(config, "TORCH_CPU_INDEX", "https://example.invalid/cpu")
    monkeypatch.setattr(config, "CPU_TORCH_INSTALL", "pip install torch==9.9.9 --index-url https://example.invalid/cpu")
    monkeypatch.setattr(config, "ITEM_SECONDS_DEFAULT", 7.0)
    monkeypatch.setattr(config, "AUTOGRADER_ROOT", config.Variable("GS_ROOT", "/gs", "where Gradescope puts things"))
    files = render_every_writer()
    install = "pip install torch==9.9.9 --index-url https://example.invalid/cpu"
    assert f"/gs/venv/bin/{install}" in files["setup.sh"] and "/gs/source/requirements.txt" in files["setup.sh"]
    assert 'ROOT="${GS_ROOT:-/gs}"' in files["run_autograder"]
    assert f"    {install}\n" in files["README.md"] and "`pip install torch==9.9.9` there" in files["README.md"]
    assert "time limit of 7 seconds" in files["README.md"]
    assert f"python -m {install}" in files["classroom.yml"]
    # the old root, as a path of its own (not the bundle's attnkit/autograder folder)
    assert not [name for name, text in files.items() if "2.13.0" in text or re.search(r"(?<![\w/])/autograder", text)]


def test_the_filled_files_hold_what_they_held_as_strings():
    files = render_every_writer()
    assert files["setup.sh"].startswith("#!/usr/bin/env bash\n") and "sys.version_info < (3, 10)" in files["setup.sh"]
    assert f"/autograder/venv/bin/{config.CPU_TORCH_INSTALL}\n" in files["setup.sh"]
    run = files["run_autograder"]
    assert 'ROOT="${AUTOGRADER_ROOT:-/autograder}"' in run and 'PYTHON="${ATTNKIT_PYTHON:-$ROOT/venv/bin/python}"' in run
    assert 'ATTNKIT_SECRET="$(cat "$SOURCE/attnkit_secret")"' in run and "export ATTNKIT_SECRET" in run
    assert 'PYTHONPATH="$SOURCE/attnkit/autograder" ATTNKIT_SOLUTIONS="$SOURCE/attnkit/solutions" \\\n' in run
    assert run.endswith('  exec "$PYTHON" -m attnkit.frontends.gradescope "$ROOT"\n')
    for name in ("setup.sh", "run_autograder"):
        done = subprocess.run(["bash", "-n"], input=files[name], text=True, capture_output=True)
        assert done.returncode == 0, (name, done.stderr)
    readme = files["README.md"]
    for module in MODULES:
        assert f"| `{module}.py` | `{module}.ipynb` |" in readme
    assert "With Python 3.10 or newer" in readme and "(`attnkit`, with numpy, pytest, matplotlib and jinja2;" in readme
    assert files["edition.py"].endswith('EDITION = "checker"\n')
    assert files[".gitignore"].endswith("\n/upload/\n")
    for name in ("edition.py", "variants.py"):
        ast.parse(files[name])


def test_nbgrader_config_is_python_with_its_values():
    text = course.nbgrader_config(75, 12.5, "/courses/it's here")
    tree = ast.parse(text)
    assert text.splitlines()[2] == "import attnkit.frontends.nbgrader_helper"
    assigns = {ast.unparse(n.targets[0]): ast.literal_eval(n.value) for n in tree.body
               if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)}
    assert assigns == {"c.CourseDirectory.course_id": "attnkit", "c.Execute.timeout": 75}
    call = tree.body[-1].value
    assert ast.unparse(call.func) == "attnkit.frontends.nbgrader_helper.start"
    assert {k.arg: ast.literal_eval(k.value) for k in call.keywords} == {"solutions": "/courses/it's here",
                                                                        "item_seconds": 12.5}
    assert "each stopped after 12.5 s" in text and "export ATTNKIT_SECRET" in text
    assert "solutions=None" in course.nbgrader_config(60, 10.0, None)


def test_the_classroom_workflow_keeps_githubs_expressions():
    workflow = yaml.safe_load(handout.classroom_workflow("https://example.org/v1/attnkit.whl", "ab" * 32))
    steps = workflow["jobs"]["run-autograding-tests"]["steps"]
    install = next(s for s in steps if s["name"] == "Install the checker")["run"]
    assert install.splitlines() == [f"python -m {config.CPU_TORCH_INSTALL}",
                                    f'python -m pip install "attnkit @ https://example.org/v1/attnkit.whl#sha256={"ab" * 32}"']
    reporter = next(s for s in steps if s["name"] == "Autograding Reporter")
    assert reporter["env"]["ATTNKIT_RESULTS"] == "${{ steps.attnkit.outputs.result }}"


def test_a_value_the_template_names_but_was_not_given_is_an_error():
    with pytest.raises(jinja2.UndefinedError, match="upload"):
        handout._text("handout_gitignore.j2")
    with pytest.raises(jinja2.UndefinedError):
        templating.render("attnkit.outputs", "feedback.html.j2", title="t")


def test_html_escapes_and_text_files_do_not():
    """Autoescape follows the file: HTML escapes by default, a shell script or YAML must not."""
    assert templating.environment(True).autoescape is True
    assert templating.template("attnkit.outputs", "feedback.html.j2").environment is templating.environment(True)
    assert templating.template("attnkit.frontends", "setup.sh.j2").environment is templating.environment(False)
    assert "echo \"attnkit needs Python" in gradescope.setup_sh()  # not &#34;


def test_the_gradescope_bundle_carries_the_templates_and_its_kit_renders_from_them(tmp_path):
    bundle = gradescope.build_bundle(str(tmp_path / "autograder.zip"))
    with zipfile.ZipFile(bundle) as z:
        names = set(z.namelist())
        assert {f"attnkit/autograder/attnkit/{t}" for t in TEMPLATE_FILES} <= names
        assert z.read("setup.sh").decode() == gradescope.setup_sh()
        assert z.read("run_autograder").decode() == gradescope.run_autograder()
        z.extractall(tmp_path / "source")
    kit = tmp_path / "source" / "attnkit" / "autograder"
    probe = ("import json, importlib.resources as r, attnkit\n"
             "from attnkit.outputs import feedback\nfrom attnkit.judge.scoring import build_report\n"
             "from attnkit.exercises import MODULES\n"
             "page = feedback.render(build_report([], MODULES, ['<b>from the bundle</b>']))\n"
             "print(json.dumps([attnkit.__file__, str(r.files('attnkit.outputs') / 'templates'), page]))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ATTNKIT_"))}
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=dict(env, PYTHONPATH=str(kit)),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    where, templates, page = json.loads(done.stdout)
    assert where.startswith(str(kit)) and templates.startswith(str(kit))
    assert "<h1>attnkit feedback</h1>" in page and "&lt;b&gt;from the bundle&lt;/b&gt;" in page


def test_attnkit_course_writes_the_rendered_config(tmp_path, monkeypatch):
    monkeypatch.delenv("ATTNKIT_SOLUTIONS", raising=False)
    written = course.create(str(tmp_path / "course"), cell_timeout=90, item_seconds=5.0)
    config_file = tmp_path / "course" / "nbgrader_config.py"
    assert str(config_file) in written
    assert config_file.read_text() == course.nbgrader_config(90, 5.0, None)
    assert (tmp_path / "course" / "source" / "simplified_attention" / "simplified_attention.ipynb").is_file()
