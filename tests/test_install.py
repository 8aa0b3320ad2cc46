"""One account of the install everywhere it is told: the Python floor, the
dependency list, and where the CPU build of torch comes from."""

from __future__ import annotations

import re
import zipfile

from attnkit.authoring import distribution, handout

from attnkit.frontends import gradescope
from attnkit.exercises import tomllib
from conftest import ROOT

CPU_TORCH = "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"


def text_files():
    for path in sorted(ROOT.rglob("*")):
        parts = path.relative_to(ROOT).parts
        if path.is_file() and path.suffix in (".py", ".md", ".toml", ".sh", ".txt", ".yml", ".cfg", ".ini") \
                and not {".git", "build", "attacks"} & set(parts) and not parts[0].endswith(".egg-info") \
                and ".egg-info" not in path.parent.name:
            yield path


def test_one_python_floor():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == ">=3.10"
    assert 'requires-python = ">=3.10"' in distribution.kit().pyproject("")
    assert "(3, 10)" in gradescope.setup_sh()
    floors = re.compile(r"requires-python\s*=\s*\"?>=\s*(3\.\d+)|python_requires\s*=\s*[\"']>=\s*(3\.\d+)"
                        r"|Python (3\.\d+) or newer|Python (3\.\d+)\+")
    found = {}
    for path in text_files():  # no other floor written anywhere
        for match in floors.finditer(path.read_text(errors="replace")):
            found.setdefault(next(g for g in match.groups() if g), []).append(path.relative_to(ROOT).as_posix())
    assert set(found) == {"3.10"}, found
    assert "Python 3.10 to 3.13" in (ROOT / "README.md").read_text()


def test_one_account_of_cpu_torch():
    """The README, the handout's README and Gradescope's setup.sh install torch the same way."""
    readme = (ROOT / "README.md").read_text()
    assert CPU_TORCH in readme
    assert CPU_TORCH in handout.readme()
    assert f"/autograder/venv/bin/{CPU_TORCH}" in gradescope.setup_sh()
    # and setup.sh installs it before the rest, which then keeps it
    setup = gradescope.setup_sh()
    assert setup.index(CPU_TORCH) < setup.index("requirements.txt")


def test_the_bundle_and_the_checker_take_the_kits_dependency_list(tmp_path):
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert list(distribution.kit().dependencies) == declared
    assert not [d for d in declared if d.startswith(("nbgrader", "jupyter", "notebook"))]  # students' install is light
    assert any(d.startswith("tomli") and "python_version < '3.11'" in d for d in declared)
    with zipfile.ZipFile(gradescope.build_bundle(str(tmp_path / "autograder.zip"))) as z:
        assert z.read("requirements.txt").decode().splitlines() == declared
