"""The sandbox package is the only code that runs next to student code: it
imports nothing of the grader, and loading it loads nothing of the grader."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

SANDBOX = ROOT / "autograder" / "attnkit" / "sandbox"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside the package by construction
                continue
            found.add(node.module or "")
            found |= {f"{node.module}.{a.name}" for a in node.names if node.module == "attnkit"}
    return found


def test_no_sandbox_module_imports_the_grader():
    files = sorted(SANDBOX.glob("*.py"))
    assert {p.name for p in files} >= {"__init__.py", "protocol.py", "confine.py", "seccomp.py", "zygote.py",
                                        "child.py", "standins.py", "client.py"}
    for path in files:
        grader = {m for m in _imports(path) if m == "attnkit" or m.startswith("attnkit.")}
        outside = {m for m in grader if not (m == "attnkit.sandbox" or m.startswith("attnkit.sandbox."))}
        assert outside == set(), f"{path.name} imports {sorted(outside)}"


def test_loading_the_worker_loads_nothing_of_the_grader():
    """What a forked child inherits in sys.modules is what the worker loaded."""
    code = ("import sys; sys.path.insert(0, %r); import attnkit.sandbox.zygote, attnkit.sandbox.child, "
            "attnkit.sandbox.client; print(sorted(m for m in sys.modules if m.startswith('attnkit')))"
            % str(ROOT / "autograder"))
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = eval(out)  # a list of names printed by our own code above
    assert loaded and all(m == "attnkit" or m.startswith("attnkit.sandbox") for m in loaded), loaded
