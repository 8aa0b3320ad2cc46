"""``attnkit handout OUT [--classroom]``: the folder a self-study student gets.

It holds the four stub modules and the four notebooks (solution bodies
replaced by the stubs' NotImplementedError, hidden tests removed), a README,
and the public checker: a copy of this package, which never contained the
reference solutions (they live in the kit's ``solutions/``, outside it), so
``attnkit check`` there runs the public checks only. ``--classroom`` adds a
GitHub Actions workflow that reports points per item to GitHub Classroom.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from attnkit.items import MODULES, items
from attnkit.outcomes import GraderError

PACKAGE = Path(__file__).resolve().parent

CHECKER_PYPROJECT = '''\
# The public checker of the attention exercises (a copy of attnkit without solutions).
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "attnkit"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["torch>=2.2,<2.15", "numpy>=1.24", "pytest>=8"]

[project.scripts]
attnkit = "attnkit.cli:main"

[tool.setuptools]
packages = ["attnkit", "attnkit.checks"]

[tool.setuptools.package-data]
attnkit = ["points.toml", "grade.ini", "data/*.json"]
'''

README = '''\
# Attention mechanisms: exercises

You will write, step by step, the four attention mechanisms behind GPT-style
language models: simplified self-attention, scaled dot-product self-attention,
causal attention and multi-head attention.

| stage | file | notebook | points |
| --- | --- | --- | --- |
{rows}

## Set up (once)

    python -m venv .venv && . .venv/bin/activate
    pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    pip install ./checker jupyterlab matplotlib

## Work

Either in the notebooks (`jupyter lab`, then open `simplified_attention.ipynb`):
each stage is explained there, every item has a cell for your code, a cell to
try it on the example sentence, and a test cell. Save (Ctrl-S) before you run
a test cell: it grades the saved notebook, in a separate process.

Or in the `.py` files, with your own editor: replace each
`raise NotImplementedError(...)` by your code, then run

    attnkit check .              # grades the .py files
    attnkit check . --notebooks  # grades the notebooks' code instead

Stage 4 imports `CausalAttention` from `causal_attention.py`: if you solved
stage 3 in its notebook, copy your `causal_mask` and `CausalAttention` into
that file before you try stage 4 in its notebook.

## What the checker can tell you

It prints one line per graded item with your points and the reason for any
point lost. It runs the **public checks only**: the numbers of the document's
example and the properties of each stage (rows summing to one, no NaN for
large scores, the masked weights exactly zero, the right parameters, ...).
It holds no reference solution and no hidden test cases. Your course's grade
also runs hidden randomized cases against a reference, so full marks here are
necessary, not sufficient: test your code on other shapes and batch sizes too.
Each item has a time limit of a few seconds; an infinite loop costs that item
only.
'''

WORKFLOW = '''\
# GitHub Classroom autograding: the public checks of the attention exercises,
# reported per item through GitHub Classroom's autograding reporter.
name: Autograding Tests
"on":
  - push
  - repository_dispatch
permissions:
  checks: write
  actions: read
  contents: read
jobs:
  run-autograding-tests:
    runs-on: ubuntu-latest
    if: github.actor != 'github-classroom[bot]'
    steps:
      - name: Checkout code
        uses: actions/checkout@v4
      - name: Set up Python
        uses: actions/setup-python@v5
        with:
          python-version: "3.12"
      - name: Install the checker
        run: |
          python -m pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
          python -m pip install ./checker
      - name: Public checks
        id: attnkit
        # Writes result=<base64 JSON> to $GITHUB_OUTPUT: one test per item, its points.
        run: attnkit check . --github-output
      - name: Autograding Reporter
        if: always()
        uses: classroom-resources/autograding-grading-reporter@v1
        env:
          ATTNKIT_RESULTS: "${{{{ steps.attnkit.outputs.result }}}}"
        with:
          runners: attnkit
'''


VARIANTS_STUB = '''"""Not part of a handout: the known-wrong variants of the reference live with the grader.

Any variant asked for here raises, and the diagnosis treats that as no evidence.
"""


class VariantsUnavailable(NotImplementedError):
    pass


def __getattr__(name):
    def unavailable(*args, **kwargs):
        raise VariantsUnavailable(f"diagnosis variant {name!r} is not part of the public checker")

    return unavailable
'''


def _ignore(_dir, names):
    return [n for n in names if n == "__pycache__" or n.endswith((".pyc", ".egg-info"))]


def create(out: str, classroom: bool = False) -> list[str]:
    """Write the handout into ``out`` (which must not exist yet, or be empty)."""
    from attnkit import build, notebooks
    from attnkit.reference import KIT_ROOT

    root = Path(out)
    if root.exists() and any(root.iterdir()):
        raise GraderError(f"{out} is not empty; choose a new folder for the handout")
    if not all((KIT_ROOT / "solutions" / f"{m}.py").exists() for m in MODULES):
        raise GraderError(f"{KIT_ROOT / 'solutions'}: the reference solutions are missing; "
                          f"`attnkit handout` runs from the kit's repository")
    files = build.generated_files(KIT_ROOT)
    written: list[Path] = []
    root.mkdir(parents=True, exist_ok=True)
    for module in MODULES:
        stub = root / f"{module}.py"
        stub.write_text(files[KIT_ROOT / "assignments" / f"{module}.py"])
        source = files[KIT_ROOT / "source" / module / f"{module}.ipynb"]
        nb = notebooks.release(module, json.loads(source))
        (root / f"{module}.ipynb").write_text(notebooks.dumps(nb))
        written += [stub, root / f"{module}.ipynb"]
    checker = root / "checker"
    shutil.copytree(PACKAGE, checker / "attnkit", ignore=_ignore)
    # The wrong variants of the reference are computed by the grader only: with
    # their settings at default they would be a working reference. The public
    # checker names mistakes by their signatures alone.
    (checker / "attnkit" / "diagnosis" / "variants.py").write_text(VARIANTS_STUB)
    (checker / "pyproject.toml").write_text(CHECKER_PYPROJECT)
    written.append(checker)
    rows = []
    for n, module in enumerate(MODULES, 1):
        pts = sum(i.points for i in items().values() if i.module == module)
        rows.append(f"| {n} | `{module}.py` | `{module}.ipynb` | {pts} |")
    (root / "README.md").write_text(README.format(rows="\n".join(rows)))
    written.append(root / "README.md")
    if classroom:
        workflow = root / ".github" / "workflows" / "classroom.yml"
        workflow.parent.mkdir(parents=True, exist_ok=True)
        workflow.write_text(WORKFLOW.format())
        written.append(workflow)
    return [str(p) for p in written]
