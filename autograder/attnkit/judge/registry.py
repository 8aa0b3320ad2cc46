"""The registry of checks: what ``@check(item, kind)`` records.

A check is an ordinary pytest test function marked with ``@check(item, kind)``
in ``judge/checks/``. The decorator records it here, so the engine and the
pytest integration drive the very same function; its points come from the
exercise table (``exercises.toml``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from attnkit.exercises import PUBLIC_KINDS, Item, items

CHECKS_DIR = Path(__file__).resolve().parent / "checks"


def check_modules() -> list[str]:
    """Every check file: the kit's four and any an instructor adds next to them."""
    return [f"attnkit.judge.checks.{p.stem}" for p in sorted(CHECKS_DIR.glob("test_*.py"))]


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
        try:  # the mark lets pytest select and report checks; grading needs no pytest
            import pytest
        except ImportError:
            return func
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
