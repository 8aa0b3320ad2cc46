"""Grading one submission: resolve what to grade, run its checks, score them.

The pytest plugin and the batch runner both end up here: the plugin lets
pytest call each check, the batch runner calls them directly (no pytest
start-up per student). Either way a check is the same function, and its
outcome is classified by ``scoring.outcome``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from attnkit import reference
from attnkit.items import MODULES, Check, items, registry
from attnkit.outcomes import GraderError
from attnkit.sandbox import Limits, Session, Zygote
from attnkit.scoring import CheckResult, Report, build_report, outcome
from attnkit.student import Student


@dataclass(frozen=True)
class Target:
    """What to grade: a folder, and the assignments (modules) in it."""

    folder: str
    modules: tuple[str, ...]
    label: str


def resolve(path: str) -> Target:
    """A folder grades all four assignments; one of the four files grades that one."""
    if not os.path.exists(path):
        raise GraderError(f"{path}: no such file or folder")
    if os.path.isdir(path):
        return Target(os.path.abspath(path), MODULES, path)
    name = os.path.basename(path)
    module = name[:-3] if name.endswith(".py") else name
    if module not in MODULES:
        raise GraderError(f"{path}: not one of the four exercise files "
                          f"({', '.join(m + '.py' for m in MODULES)}); rename it, or pass the folder")
    return Target(os.path.dirname(os.path.abspath(path)), (module,), path)


def missing_notes(target: Target) -> list[str]:
    return [f"missing file: expected {m}.py in {target.label}; {m} scores 0"
            for m in target.modules if not os.path.exists(os.path.join(target.folder, m + ".py"))]


def item_kinds() -> dict[str, str]:
    return {key: item.kind for key, item in items().items()}


def solutions_available() -> bool:
    try:
        reference.solutions()
    except GraderError:
        return False
    return True


def open_session(zygote: Zygote, target: Target, limits: Limits | None = None,
                 public: bool = False) -> Session:
    """A session for one submission. ``public`` sessions (no reference solution
    at hand) stand no reference results in for other stages."""
    # The grader's tensors are tiny: a second intra-op thread only fights the
    # student process for the CPU (measured: 6x slower per submission).
    torch.set_num_threads(1)
    return Session(zygote, target.folder, item_kinds(), None if public else reference.upcall, limits)


def selected_checks(target: Target, public: bool = False) -> list[Check]:
    """The checks of the target's assignments; only public kinds in public mode."""
    return [c for c in registry()
            if c.item.split(".", 1)[0] in target.modules and (c.public or not public)]


class Run:
    """Checks of one submission, in order; a limit hit by one check skips the
    rest of that item (it scores 0 whatever they would say)."""

    def __init__(self, session: Session):
        self.session = session
        self.results: list[CheckResult] = []
        self.limited: set[str] = set()

    def student(self, check: Check) -> Student:
        return Student(self.session, items()[check.item])

    def record(self, check: Check, exc: BaseException | None) -> CheckResult:
        result = outcome(check, exc)
        if result.limit:
            self.limited.add(check.item)
        self.results.append(result)
        return result

    def run(self, check: Check) -> CheckResult | None:
        if check.item in self.limited:
            return None
        try:
            check.func(self.student(check))
        except Exception as exc:  # noqa: BLE001 - classified by outcome()
            return self.record(check, exc)
        return self.record(check, None)


def grade(zygote: Zygote, target: Target, limits: Limits | None = None, public: bool = False) -> Report:
    """Grade one submission without pytest (the batch path). In ``public``
    mode only the public checks run, and items are out of their public points."""
    session = open_session(zygote, target, limits, public)
    try:
        run = Run(session)
        for check in selected_checks(target, public):
            run.run(check)
        return build_report(run.results, target.modules, missing_notes(target), public=public)
    finally:
        session.close()
