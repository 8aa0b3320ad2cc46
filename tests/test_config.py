"""Settings are declared once (``attnkit.config``): every environment variable
the grader reads, with a description; the defaults; the version pins."""

from __future__ import annotations

import ast

from conftest import ROOT

from attnkit import config
from attnkit.sandbox import contract

PACKAGE = ROOT / "autograder" / "attnkit"


def _environment_reads(tree: ast.Module) -> list[str]:
    """Names read from os.environ / os.getenv with a literal, anywhere in a module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            target = ast.unparse(node.func)
            if target in ("os.environ.get", "os.getenv", "os.environ.setdefault") and \
                    isinstance(node.args[0], ast.Constant):
                found.append(node.args[0].value)
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ" and \
                isinstance(node.slice, ast.Constant):
            found.append(node.slice.value)
    return found


def test_the_grader_reads_the_environment_only_through_config():
    """Outside config.py (and the sandbox, a package of its own), no module names a variable."""
    reads = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "config.py" or rel.startswith("sandbox/"):
            continue
        names = _environment_reads(ast.parse(path.read_text()))
        if names:
            reads[rel] = names
    assert reads == {}


def test_every_variable_is_described_and_the_sandbox_agrees():
    assert len({v.name for v in config.VARIABLES}) == len(config.VARIABLES)
    assert all(len(v.description) > 40 for v in config.VARIABLES)
    assert config.SANDBOX.name == contract.ISOLATION_VAR and config.SANDBOX.default == "auto"
    assert contract.Limits().seconds == config.ITEM_SECONDS_DEFAULT


def test_the_sandbox_reads_only_its_own_variable():
    reads = [n for path in (PACKAGE / "sandbox").rglob("*.py") for n in _environment_reads(ast.parse(path.read_text()))]
    assert set(reads) <= {contract.ISOLATION_VAR}, reads


def test_variables_fall_back_to_their_defaults(monkeypatch):
    monkeypatch.delenv("ATTNKIT_SECRET", raising=False)
    assert config.secret() == config.SECRET.default
    monkeypatch.setenv("ATTNKIT_SECRET", "")
    assert config.secret() == config.SECRET.default
    monkeypatch.setenv("ATTNKIT_SECRET", "s")
    assert config.secret() == "s"
    monkeypatch.setenv("ATTNKIT_ITEM_SECONDS", "not a number")
    assert config.item_seconds() == config.ITEM_SECONDS_DEFAULT
