"""The package's rooms say where code runs, and what it may import.

- core (``exercises``, ``config``, ``errors``, ``text``, ``files``, ``edition``):
  the exercise table and the settings; imports no room;
- ``sandbox/``: next to student code; imports nothing else of the grader;
- ``intake/``: what to grade, read as data; the core only;
- ``judge/``: what decides a grade, in the grader; core, intake, sandbox;
- ``outputs/``: what people read; core and the judge's report types;
- ``kernel/``: what runs in a student's notebook kernel; core, intake, judge,
  sandbox, outputs;
- ``authoring/``: what is generated from the solutions; core, intake, judge, outputs;
- ``frontends/``: the ways in; anything. Nothing imports them (but the
  ``python -m attnkit`` entry point).

Every import counts, those inside functions too, and no module may take part
in an import cycle.
"""

from __future__ import annotations

import ast
import functools

from conftest import ROOT

PACKAGE = ROOT / "autograder" / "attnkit"
ROOMS = ("sandbox", "intake", "judge", "outputs", "kernel", "authoring", "frontends")
ALLOWED = {
    "core": {"core"},
    "sandbox": {"sandbox"},
    "intake": {"core", "intake"},
    "judge": {"core", "intake", "sandbox", "judge"},
    "outputs": {"core", "judge", "outputs"},
    "kernel": {"core", "intake", "judge", "sandbox", "outputs", "kernel"},
    "authoring": {"core", "intake", "judge", "outputs", "authoring"},
    "frontends": {"core", *ROOMS},
}
ENTRY_POINTS = {"attnkit.__main__"}  # `python -m attnkit`: the command line


@functools.cache  # parsed once: three tests read it, and nothing changes the files meanwhile
def modules() -> dict[str, ast.Module]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text())
    return out


def imports(tree: ast.Module, known: set[str]) -> set[str]:
    """The kit's modules one module imports, anywhere in it. ``from pkg import sub``
    counts as importing the submodule, not the package."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            found |= subs or {node.module}
            if len(subs) < len(node.names):
                found.add(node.module)
    return {m for m in found if m in known}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else "core"


def graph() -> dict[str, set[str]]:
    trees = modules()
    return {name: imports(tree, set(trees)) - {name} for name, tree in trees.items()}


def test_every_module_is_in_a_room_and_the_core_is_small():
    names = set(modules())
    core = {m for m in names if room(m) == "core"}
    assert core == {"attnkit", "attnkit.__main__", "attnkit.config", "attnkit.edition", "attnkit.errors",
                    "attnkit.exercises", "attnkit.files", "attnkit.text"}
    assert {room(m) for m in names} == {"core", *ROOMS}


def test_each_room_imports_only_what_it_may():
    wrong = [(m, t) for m, targets in graph().items() for t in targets
             if room(t) not in ALLOWED[room(m)] and m not in ENTRY_POINTS]
    assert wrong == [], wrong


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert cycles == [], cycles
