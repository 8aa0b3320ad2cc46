"""The checks under pytest, for an instructor who wants pytest's own view of them:

    pytest -p attnkit.frontends.pytest_plugin --attnkit-submission PATH autograder/attnkit/judge/checks

A thin integration on the engine (``judge.engine.Grading``): pytest collects
the check files and selects among them (``-k``, ``-m attnkit``, node ids); for
each check it runs, this plugin asks the engine to run it, and turns what the
engine concluded into pytest's pass, fail or skip. The rules (which checks
count, a limit that ends an item, how an item's reasons are settled) are the
engine's, so this view and ``attnkit grade`` give the same points. An
instructor adds a check by writing a test marked ``@attnkit.judge.registry.check``
in ``judge/checks/`` and giving it points in ``exercises.toml``.
"""

from __future__ import annotations

import pytest

from attnkit.config import secret_paths
from attnkit.errors import GraderError
from attnkit.intake import find
from attnkit.judge.engine import Grading
from attnkit.judge.registry import registry
from attnkit.judge.scoring import Report
from attnkit.outputs import report as render
from attnkit.sandbox import Limits, Zygote

PLUGIN_NAME = "attnkit-grading"


class CheckFailed(AssertionError):
    """What the engine found wrong; its message is the check's reason."""


def pytest_addoption(parser):
    group = parser.getgroup("attnkit", "attnkit grading")
    group.addoption("--attnkit-submission", default=None, metavar="PATH",
                    help="grade this folder, or one of the four exercise files")
    group.addoption("--attnkit-json", default=None, metavar="FILE",
                    help="write Gradescope's results.json here")
    group.addoption("--attnkit-timeout", default=None, type=float, metavar="SECONDS",
                    help="wall-time limit per graded item (default 10)")


def pytest_configure(config):
    config.addinivalue_line("markers", "attnkit(item, kind): a graded check of one item of the kit")
    path = config.getoption("attnkit_submission", None)
    if path and not config.pluginmanager.has_plugin(PLUGIN_NAME):
        try:
            target = find(path)
        except GraderError as exc:
            raise pytest.UsageError(str(exc)) from None
        limits = Limits()
        if config.getoption("attnkit_timeout"):
            limits.seconds = config.getoption("attnkit_timeout")
        config.pluginmanager.register(GradingPlugin(target, limits, config.getoption("attnkit_json")), PLUGIN_NAME)


@pytest.fixture
def student(request):
    """The graded item of this check, run in the sandbox (what a check's function takes)."""
    plugin = request.config.pluginmanager.get_plugin(PLUGIN_NAME)
    if plugin is None:
        pytest.skip("no submission to grade: pass --attnkit-submission PATH")
    check = _check_of(request.node)
    if check is None:
        raise GraderError(f"{request.node.nodeid} uses `student` but is not marked as a graded check")
    return plugin.grading.student(check)


def _check_of(node):
    mark = node.get_closest_marker("attnkit")
    if mark is None:
        return None
    key = (mark.kwargs.get("item"), mark.kwargs.get("kind"))
    return next((c for c in registry() if (c.item, c.kind) == key), None)


class GradingPlugin:
    def __init__(self, target, limits: Limits | None = None, json_path: str | None = None):
        self.__name__ = PLUGIN_NAME
        self.target = target
        self.limits = limits
        self.json_path = json_path
        self.zygote = Zygote(hide=secret_paths())  # starts importing torch now, while pytest collects
        self._grading: Grading | None = None
        self.report: Report | None = None

    @property
    def grading(self) -> Grading:
        if self._grading is None:
            self._grading = Grading(self.zygote, self.target, self.limits)
        return self._grading

    @pytest.hookimpl(trylast=True)  # after any plugin that reorders: the engine's order is the one that grades
    def pytest_collection_modifyitems(self, config, items):
        # kept in the engine's order, not the files': an item's trial on the student's own
        # stages stands in those that failed before it (judge.engine.Run), as `attnkit grade` does
        order = {(c.item, c.kind): n for n, c in enumerate(self.grading.checks)}
        keep, drop = [], []
        for node in items:
            check = _check_of(node)
            position = order.get((check.item, check.kind)) if check else None
            (drop if position is None else keep).append((position, node))
        if drop:
            config.hook.pytest_deselected(items=[node for _, node in drop])
        items[:] = [node for _, node in sorted(keep, key=lambda kept: kept[0])]

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem):
        check = _check_of(pyfuncitem)
        if check is None:
            return None
        result = self.grading.run(check)  # the engine calls the check, with its rules
        if result is None:
            pytest.skip(f"{check.item} already scored 0: it hit a limit")
        if not result.passed:
            raise CheckFailed(result.reason)
        return True

    def pytest_sessionfinish(self, session):
        if self._grading is not None:
            self.report = self._grading.report()
            self._grading.close()
            if self.json_path:
                render.write_json(self.report, self.json_path)
            notice = self.zygote.notice()
            if notice:
                print(notice)
        self.zygote.close()

    def pytest_terminal_summary(self, terminalreporter):
        if self.report is not None:
            terminalreporter.write_line(render.table(self.report, f"attnkit: {self.target.label}"))
