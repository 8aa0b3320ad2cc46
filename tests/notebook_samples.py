"""Sample students for the notebook tests, made from the reference solutions.

Every sample is the solutions with a few text edits. The same edit is applied
to ``solutions/<module>.py`` (for ``attnkit grade``) and to the matching
solution cell of a notebook (for nbgrader and the fast path), so both sides
grade the same code and no expected value is copied by hand. Each edit must
match exactly once, so a change to the solutions that voids an edit fails.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

from attnkit.exercises import MODULES

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
SOURCE = ROOT / "source"

# student -> module -> [(item name, old, new)]
EDITS: dict[str, dict[str, list[tuple[str, str, str]]]] = {
    "full": {},
    "wrong": {"simplified_attention": [
        ("softmax", "return exps / exps.sum(dim=dim, keepdim=True)", "return exps / exps.sum()")]},
    "stderr": {"self_attention": [
        ("project_qkv", "def project_qkv(",
         "import sys\nimport warnings\nprint('loading my cell', file=sys.stderr)\n\n\ndef project_qkv("),
        ("project_qkv", "    queries = inputs @ W_query",
         "    print('in project_qkv', file=sys.stderr)\n"
         "    warnings.warn('a stray warning')\n"
         "    torch.tensor(inputs)  # torch warns: copy-constructing a tensor (kept apart: the copy is detached)\n"
         "    queries = inputs @ W_query"),
    ]},
    "loop": {"causal_attention": [
        ("renormalize_masked", "    kept = weights * (~mask)", "    while True:\n        pass\n    kept = weights * (~mask)"),
    ]},
}


def edited_solution(module: str, edits) -> str:
    text = (SOLUTIONS / f"{module}.py").read_text()
    for _name, old, new in edits:
        assert text.count(old) == 1, f"edit for {module} matches {text.count(old)} times: {old!r}"
        text = text.replace(old, new)
    return text


def write_modules(folder: Path, student: str, modules=MODULES) -> Path:
    """The student's code as the four exercise files (what `attnkit grade` grades)."""
    folder.mkdir(parents=True, exist_ok=True)
    for module in modules:
        (folder / f"{module}.py").write_text(edited_solution(module, EDITS[student].get(module, [])))
    return folder


def source_notebook(module: str) -> dict:
    return json.loads((SOURCE / module / f"{module}.ipynb").read_text())


def grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def student_notebook(released: dict, module: str, student: str) -> dict:
    """The released notebook with the student's solution cells filled in: the
    source notebook's cells with the student's edits."""
    answers = {grade_id(c): "".join(c["source"]) for c in source_notebook(module)["cells"]
               if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    for name, old, new in EDITS[student].get(module, []):
        assert answers[name].count(old) == 1, f"edit for {module}.{name} matches {answers[name].count(old)} times"
        answers[name] = answers[name].replace(old, new)
    nb = copy.deepcopy(released)
    for cell in nb["cells"]:
        if grade_id(cell) in answers and cell["metadata"]["nbgrader"].get("solution"):
            cell["source"] = answers[grade_id(cell)].splitlines(keepends=True)
    return nb


def submit(course: Path, student: str, module: str, nb: dict) -> Path:
    """Place a notebook as nbgrader's submitted/<student>/<module>/, with the release's other files."""
    folder = course / "submitted" / student / module
    shutil.copytree(course / "release" / module, folder, dirs_exist_ok=True)
    (folder / f"{module}.ipynb").write_text(json.dumps(nb, indent=1))
    return folder
