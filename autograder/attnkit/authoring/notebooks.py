"""The nbgrader source notebooks, generated from ``solutions/`` by ``attnkit build``.

``source/<module>/<module>.ipynb`` holds, per graded item: our explanation, the
solution cell (the item's whole definition, body between the solution
markers), a "try it" cell on the document's example, and a locked test cell
worth the item's points. Generation is deterministic (fixed cell ids, sorted
keys, no timestamps) so that ``build --check`` can compare byte for byte.

``release`` turns a source notebook into what a student gets without nbgrader
(the self-study handout): the same bodies the stubs get, hidden tests removed.
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
from pathlib import Path

from attnkit.authoring import notebook_text as text
from attnkit.exercises import KIT_COPY, MODULES, PUBLIC_KINDS, items_of, kit_copy

HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
TITLES = {m: text.INTRO[m].splitlines()[0].lstrip("# ") for m in MODULES}


class NotebookBuildError(Exception):
    pass


# --------------------------------------------------------------------------- reading the solutions

def split_solution(module: str, source: str) -> tuple[str, dict[str, str]]:
    """(the module's imports, {top-level name: its definition's source})."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    imports, defs = [], {}
    # A definition runs up to the next top-level statement: its trailing
    # comments (the END SOLUTION marker) lie outside the node's own lines.
    ends = [n.lineno - 1 for n in tree.body[1:]] + [len(lines)]
    for node, end in zip(tree.body, ends):
        segment = "".join(lines[node.lineno - 1:node.end_lineno])
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(segment)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            defs[node.name] = "".join(lines[first - 1:end]).rstrip() + "\n"
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            raise NotebookBuildError(f"solutions/{module}.py:{node.lineno}: top-level code other than "
                                     f"imports and definitions has no place in a notebook cell")
    missing = [i.name for i in items_of(module) if i.name not in defs]
    if missing:
        raise NotebookBuildError(f"solutions/{module}.py defines no {', '.join(missing)}, "
                                 f"which exercises.toml grades")
    return "".join(imports), defs


# --------------------------------------------------------------------------- cells

def _lines(source: str) -> list[str]:
    return source.splitlines(keepends=True)


def _nbgrader(grade_id: str, *, solution=False, grade=False, locked=False, points=None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def markdown(cell_id: str, source: str, locked: bool = True) -> dict:
    meta = _nbgrader(cell_id, locked=True) if locked else {}
    return {"cell_type": "markdown", "id": cell_id, "metadata": meta, "source": _lines(source)}


def code(cell_id: str, source: str, metadata: dict | None = None) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": cell_id, "metadata": metadata or {},
            "outputs": [], "source": _lines(source)}


def test_source(item) -> str:
    """A test cell: where each check is graded, and one call that ends the cell in its points."""
    def listed(kinds):  # "hidden 2" is never split over two lines
        return " and ".join(", ".join(f"{kind}\u00a0{item.checks[kind]}" for kind in kinds).rsplit(", ", 1))

    public = [kind for kind in item.checks if kind in PUBLIC_KINDS]
    rest = [kind for kind in item.checks if kind not in PUBLIC_KINDS]
    where = text.TEST_COMMENT.format(points=item.points, public=listed(public), rest=listed(rest),
                                     need="it needs" if len(rest) == 1 else "they need")
    # nbgrader validate shows a failed cell's lines cut at 86 characters.
    comment = textwrap.fill(where, 80, initial_indent="# ", subsequent_indent="# ").replace("\u00a0", " ")
    return f'''\
{comment}
from attnkit.kernel.notebook import score
hidden = False
{HIDDEN_BEGIN}
hidden = True  # the instructor's grading: every check, hidden randomized cases included
{HIDDEN_END}
score("{item.key}", hidden=hidden)'''


def notebook(module: str, solution_source: str) -> dict:
    imports, defs = split_solution(module, solution_source)
    cells = [markdown("intro", text.INTRO[module] + "\n\n" + text.HOW_TO.format(module=module)),
             code("setup", imports + "\n" + text.SETUP[module].format(tokens=text.TOKENS),
                  _nbgrader("setup", locked=True))]
    for item in items_of(module):
        name = item.name
        head = f"## `{name}` ({item.points} points)\n\n"
        cells.append(markdown(f"about_{name}", head + text.ITEM[item.key]))
        cells.append(code(name, defs[name].rstrip("\n"), _nbgrader(name, solution=True)))
        cells.append(code(f"try_{name}", text.TRY[item.key]))
        cells.append(code(f"test_{name}", test_source(item),
                          _nbgrader(f"test_{name}", grade=True, locked=True, points=item.points)))
    for n, (words, plot) in enumerate(text.PICTURES[module]):
        cells.append(markdown(f"picture_{n}", words))
        cells.append(code(f"plot_{n}", plot))
    return {"cells": cells,
            "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                        "name": "python3"},
                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def dumps(nb: dict) -> str:
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- release (no nbgrader)

def _strip_hidden(source: str) -> str:
    return re.sub(rf"\n?{re.escape(HIDDEN_BEGIN)}.*?{re.escape(HIDDEN_END)}\n?", "\n", source, flags=re.S)


def release(module: str, nb: dict) -> dict:
    """The student's copy of a source notebook: solution bodies replaced by the
    stubs' NotImplementedError, hidden tests removed."""
    from attnkit.authoring.stubs import BEGIN, STUB_HEADER, stub_source

    header = STUB_HEADER.format(module=module)
    out = json.loads(json.dumps(nb))
    for cell in out["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        source = "".join(cell["source"])
        if meta.get("solution") and BEGIN in source:
            source = stub_source(module, source)[len(header):]
        if meta.get("grade") and HIDDEN_BEGIN in source:
            source = _strip_hidden(source)
        cell["source"] = _lines(source)
    return out


# --------------------------------------------------------------------------- the generator

def generate(root: Path) -> dict[Path, str]:
    files: dict[Path, str] = {}
    preambles = {}
    for module in MODULES:
        source = (root / "solutions" / f"{module}.py").read_text()
        preambles[module] = split_solution(module, source)[0]
        files[root / "source" / module / f"{module}.ipynb"] = dumps(notebook(module, source))
    # Stage 4 builds on a working CausalAttention: the course ships stage 3's
    # reference with it (release stage 4 after stage 3 closes).
    copied, released_with = KIT_COPY
    files[root / "source" / released_with / f"{copied}.py"] = kit_copy((root / "solutions" / f"{copied}.py").read_text())
    about = ("Generated by `attnkit build` from solutions/: the imports each exercise module starts "
             "with when it is rebuilt from a notebook's solution cells. Do not edit.")
    files[root / "autograder" / "attnkit" / "data" / "notebook_modules.json"] = json.dumps(
        {"about": about, "preambles": preambles}, indent=1, sort_keys=True) + "\n"
    return files
