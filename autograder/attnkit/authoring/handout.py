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
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from attnkit import config
from attnkit.authoring import distribution, wheel
from attnkit.config import PACKAGE_DIR as PACKAGE
from attnkit.errors import GraderError
from attnkit.exercises import MODULES, items
from attnkit.outputs import templating

UPLOAD = "upload"  # OUT/upload/: the checker's wheel, for the instructor to host; never committed

CHECKER_COMMENT = """\
The public checker of the attention exercises: a copy of attnkit without the
reference solutions. Install torch first (see ../README.md), then: pip install ./checker"""


def _text(name: str, **values) -> str:
    return templating.render(__package__, name, **values)


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(@]", requirement, maxsplit=1)[0]


def _listed(names: list[str]) -> str:
    return " and ".join(filter(None, [", ".join(names[:-1]), names[-1]]))


def readme() -> str:
    """The handout's README (``templates/handout_README.md.j2``): its points table from
    exercises.toml, the install from the kit's pyproject and ``config``."""
    dist = distribution.kit()
    stages = [{"module": m, "points": sum(i.points for i in items().values() if i.module == m)} for m in MODULES]
    # What `pip install ./checker` brings besides torch (installed first): the unconditional dependencies.
    brings = [_requirement_name(d) for d in dist.dependencies if ";" not in d and _requirement_name(d) != "torch"]
    return _text("handout_README.md.j2", stages=stages, python=dist.requires_python.removeprefix(">="),
                 cpu_torch_install=config.CPU_TORCH_INSTALL, torch_pin=config.TORCH_PIN,
                 checker_brings=_listed(brings),
                 item_seconds=f"{config.ITEM_SECONDS_DEFAULT:g}")


def classroom_workflow(checker_url: str, sha256: str) -> str:
    """The GitHub Classroom workflow (``templates/classroom.yml.j2``)."""
    return _text("classroom.yml.j2", cpu_torch_install=config.CPU_TORCH_INSTALL, checker_url=checker_url,
                 sha256=sha256, github_output=config.GITHUB_OUTPUT.name)


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
    (checker / "attnkit" / "judge" / "diagnosis" / "variants.py").write_text(_text("checker_variants.py.j2"))
    # Its command line offers only what works without the kit's repository (cli.COMMANDS).
    (checker / "attnkit" / "edition.py").write_text(_text("checker_edition.py.j2"))
    (checker / "pyproject.toml").write_text(dist.pyproject(CHECKER_COMMENT))
    written.append(checker)
    (root / "README.md").write_text(readme())
    written.append(root / "README.md")
    if classroom:
        built = wheel.build(checker / "attnkit", dist, root / UPLOAD)
        (root / ".gitignore").write_text(_text("handout_gitignore.j2", upload=UPLOAD))
        workflow = root / ".github" / "workflows" / "classroom.yml"
        workflow.parent.mkdir(parents=True, exist_ok=True)
        workflow.write_text(classroom_workflow(checker_url, wheel.sha256(built)))
        written += [built, root / ".gitignore", workflow]
    return [str(p) for p in written]
