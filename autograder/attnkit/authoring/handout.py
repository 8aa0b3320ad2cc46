"""``attnkit handout --out OUT [--classroom --checker-url URL]``: the folder a self-study student gets.

It holds the four stub modules and the four notebooks (solution bodies
replaced by the stubs' NotImplementedError, hidden tests removed), a README,
and ``checker/``, the public checker: a copy of this package, which never
contained the reference solutions (they live in the kit's ``solutions/``,
outside it), with a ``pyproject.toml`` of its own, so that ``pip install
./checker`` gives ``attnkit check``, the ``pytest`` view and what the
notebooks' test cells call, with the public checks only.

``--classroom`` adds a GitHub Actions workflow that reports points per item to
GitHub Classroom. The workflow must not install the checker from the student's
own repository (one edited line there would report full marks), so it installs
the instructor's wheel from ``--checker-url``, pinned by its sha256; the wheel
is written to ``OUT/upload/`` for the instructor to host there.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from attnkit.authoring import distribution, wheel
from attnkit.exercises import MODULES, items
from attnkit.errors import GraderError

from attnkit.config import PACKAGE_DIR as PACKAGE
UPLOAD = "upload"  # OUT/upload/: the checker's wheel, for the instructor to host; never committed

CHECKER_COMMENT = """\
The public checker of the attention exercises: a copy of attnkit without the
reference solutions. Install torch first (see ../README.md), then: pip install ./checker"""

EDITION = '''"""Which attnkit this is: the public checker of a handout (written by attnkit handout)."""

EDITION = "checker"
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

With Python {python} or newer, in this folder:

    python -m venv .venv && . .venv/bin/activate
    pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    pip install ./checker jupyterlab

The second line installs the CPU build of torch (about 750 MB; pip's default
torch on Linux is the CUDA build, several GB). On macOS and Windows the
default build is the CPU one: `pip install torch==2.13.0` there. The third
installs the checker (`attnkit`, with numpy, pytest and matplotlib; the torch
already installed is kept) and Jupyter for the notebooks.

## Work

Either in the notebooks (`jupyter lab`, then open `simplified_attention.ipynb`):
each stage is explained there, every item has a cell for your code, a cell to
try it on the example sentence, and a test cell. Save (Ctrl-S) before you run
a test cell: it grades the saved notebook, in a separate process.

Or in the `.py` files, with your own editor: replace each
`raise NotImplementedError(...)` by your code, then run

    attnkit check .              # grades the .py files
    attnkit check . --notebooks  # grades the notebooks' code instead
    pytest                       # the same, one test per graded item

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
        # The instructor's checker, pinned by its sha256: not ./checker, which this
        # repository could change. (The scores are self-reported all the same: this
        # file is in the student's repository too; the grades that count come from
        # attnkit grade-class over the collected repositories.)
        run: |
          python -m pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
          python -m pip install "attnkit @ {checker_url}#sha256={sha256}"
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


def check_url(url: str | None, classroom: bool) -> None:
    """The checker URL a Classroom handout needs: a URL pip can fetch, ending in the wheel's file name."""
    name = wheel.filename(distribution.kit())
    if classroom and not url:
        raise GraderError(f"--classroom needs --checker-url URL: where you will host the checker's wheel "
                          f"(e.g. https://github.com/ORG/REPO/releases/download/v1/{name}, a release asset of a "
                          f"repository students cannot push to); the workflow installs it from there, pinned "
                          f"by its sha256, never from the student's own repository")
    if url and not classroom:
        raise GraderError("--checker-url is the wheel the Classroom workflow installs: give it with --classroom")
    if url:
        parsed = urlparse(url)
        if parsed.scheme not in ("https", "http", "file") or unquote(parsed.path).rsplit("/", 1)[-1] != name:
            raise GraderError(f"--checker-url {url}: give an https:// URL ending in /{name} "
                              f"(pip reads the name and version from the file name)")


def classroom_next_steps(out: str, url: str) -> str:
    path = Path(out) / UPLOAD / wheel.filename(distribution.kit())
    return (f"next, for GitHub Classroom:\n"
            f"  1. host {path} at {url} (a release asset, say): the workflow installs it from there and "
            f"pip refuses any other file (sha256 {wheel.sha256(path)})\n"
            f"  2. make {out} (without {UPLOAD}/, which its .gitignore leaves out) the assignment's template "
            f"repository\n"
            f"  3. collect the students' repositories and grade them with attnkit grade-class: Classroom's "
            f"scores are self-reported")


def create(out: str, classroom: bool = False, checker_url: str | None = None) -> list[str]:
    """Write the handout into ``out`` (which must not exist yet, or be empty)."""
    from attnkit.authoring import build, notebooks
    from attnkit.judge.reference import KIT_ROOT

    root = Path(out)
    if root.exists() and any(root.iterdir()):
        raise GraderError(f"{out} is not empty; choose a new folder for the handout")
    if not all((KIT_ROOT / "solutions" / f"{m}.py").exists() for m in MODULES):
        raise GraderError(f"{KIT_ROOT / 'solutions'}: the reference solutions are missing; "
                          f"`attnkit handout` runs from the kit's repository")
    check_url(checker_url, classroom)
    dist = distribution.kit()
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
    (checker / "attnkit" / "judge" / "diagnosis" / "variants.py").write_text(VARIANTS_STUB)
    # Its command line offers only what works without the kit's repository (cli.COMMANDS).
    (checker / "attnkit" / "edition.py").write_text(EDITION)
    (checker / "pyproject.toml").write_text(dist.pyproject(CHECKER_COMMENT))
    written.append(checker)
    rows = []
    for n, module in enumerate(MODULES, 1):
        pts = sum(i.points for i in items().values() if i.module == module)
        rows.append(f"| {n} | `{module}.py` | `{module}.ipynb` | {pts} |")
    floor = dist.requires_python.removeprefix(">=")
    (root / "README.md").write_text(README.format(rows="\n".join(rows), python=floor))
    written.append(root / "README.md")
    if classroom:
        built = wheel.build(checker / "attnkit", dist, root / UPLOAD)
        (root / ".gitignore").write_text(f"# the checker's wheel, hosted by the instructor: not part of the repository\n"
                                         f"/{UPLOAD}/\n")
        workflow = root / ".github" / "workflows" / "classroom.yml"
        workflow.parent.mkdir(parents=True, exist_ok=True)
        workflow.write_text(WORKFLOW.format(checker_url=checker_url, sha256=wheel.sha256(built)))
        written += [built, root / ".gitignore", workflow]
    return [str(p) for p in written]
