"""Graded items, their points, and the registry of checks.

A check is an ordinary pytest test function marked with ``@check(item, kind)``.
The decorator records it here, so the pytest plugin and the batch runner drive
the very same function; the points come from ``points.toml``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI (a dependency there)
    import tomli as tomllib

POINTS_FILE = Path(__file__).with_name("points.toml")
MODULES = ("simplified_attention", "self_attention", "causal_attention", "multihead_attention")
CHECKS_DIR = Path(__file__).with_name("checks")


def check_modules() -> list[str]:
    """Every check file: the kit's four and any an instructor adds next to them."""
    return [f"attnkit.checks.{p.stem}" for p in sorted(CHECKS_DIR.glob("test_*.py"))]
# Kinds of check that need neither the reference solutions nor the hidden
# cases: the document's numbers and the stage's properties. A public checker
# (the self-study handout) runs only these.
PUBLIC_KINDS = frozenset({"example", "stability", "masking", "dropout", "structure", "seed"})


@dataclass(frozen=True)
class Item:
    key: str  # "module.name"
    checks: dict  # check kind -> points, in table order
    calls: tuple[str, ...] = ()  # the other stages it may call (stood in while it is graded)
    stand_in: dict | None = None  # how a class stands in for itself where others may call it

    @property
    def module(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split(".", 1)[1]

    @property
    def points(self) -> int:
        return sum(self.checks.values())

    @property
    def kind(self) -> str:
        return "class" if self.name[:1].isupper() else "function"


@cache
def items() -> dict[str, Item]:
    """Every graded item, in teaching order."""
    with open(POINTS_FILE, "rb") as f:
        table = tomllib.load(f)
    out = {}
    for key, entry in table.items():
        checks = {k: v for k, v in entry.items() if isinstance(v, int) and not isinstance(v, bool)}
        out[key] = Item(key, checks, tuple(entry.get("calls", ())), entry.get("stand_in"))
    return out


def stand_ins() -> dict[str, dict]:
    """What can stand in for each stage, as the sandbox takes it: every function,
    and each class that declares a ``stand_in``."""
    out: dict[str, dict] = {}
    for key, item in items().items():
        if item.kind == "function":
            out[key] = {"kind": "function"}
        elif item.stand_in:
            out[key] = {"kind": "module", **item.stand_in}
    return out


def allowed_calls() -> dict[str, list[str]]:
    """item -> the stages the grader answers stand-in requests for while it is graded."""
    return {key: list(item.calls) for key, item in items().items() if item.calls}


def items_of(module: str) -> list[Item]:
    return [i for i in items().values() if i.module == module]


def module_totals(scores: dict[str, float]) -> dict[str, float]:
    """{module: points} from {"module.name": points}."""
    out: dict[str, float] = {}
    for key, value in scores.items():
        module = key.split(".", 1)[0]
        out[module] = out.get(module, 0) + value
    return out


def module_points(module: str) -> int:
    return sum(i.points for i in items_of(module))


@dataclass(frozen=True)
class Check:
    item: str
    kind: str
    func: object

    @property
    def points(self) -> int:
        return items()[self.item].checks.get(self.kind, 0)

    @property
    def id(self) -> str:
        return f"{self.item}::{self.kind}"

    @property
    def public(self) -> bool:
        return self.kind in PUBLIC_KINDS


REGISTRY: list[Check] = []


def check(item: str, kind: str):
    """Mark a test function as the ``kind`` check of graded ``item``."""

    def register(func):
        REGISTRY.append(Check(item, kind, func))
        return pytest.mark.attnkit(item=item, kind=kind)(func)

    return register


@cache
def registry() -> tuple[Check, ...]:
    """All checks of the kit, imported once, in points-table order."""
    for name in check_modules():
        importlib.import_module(name)
    order = {key: n for n, key in enumerate(items())}
    return tuple(sorted(REGISTRY, key=lambda c: (order.get(c.item, len(order)),
                                                 list(items().get(c.item, Item(c.item, {})).checks).index(c.kind)
                                                 if c.kind in items().get(c.item, Item(c.item, {})).checks else 99)))
