"""The exercises: modules, graded items, their points, the stages each item
may call and how a class stands in for itself, read from one table,
``exercises.toml``. No torch, no pytest: everything else reads these.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI (a dependency there)
    import tomli as tomllib

POINTS_FILE = Path(__file__).with_name("exercises.toml")
MODULES = ("simplified_attention", "self_attention", "causal_attention", "multihead_attention")

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
