"""The grading plugin: pytest runs the checks, this plugin turns them into points.

``attnkit grade`` uses it, and so can anyone:

    pytest -p attnkit.frontends.pytest_plugin --attnkit-submission PATH autograder/attnkit/checks

Each check is a test marked ``attnkit(item=..., kind=...)`` that takes the
``student`` fixture. An instructor adds a check by writing such a test (with
``@attnkit.judge.registry.check``) and giving it points in ``exercises.toml``.
"""

from __future__ import annotations

import pytest

from attnkit.outputs import report as render
from attnkit.intake import Submission, find
from attnkit.judge.engine import Run, open_session
from attnkit.judge.registry import registry
from attnkit.errors import GraderError
from attnkit.sandbox import Limits, Zygote
from attnkit.config import secret_paths
from attnkit.judge.scoring import Report, build_report

PLUGIN_NAME = "attnkit-grading"


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
        plugin = GradingPlugin(target, limits, config.getoption("attnkit_json"), echo=True)
        config.pluginmanager.register(plugin, PLUGIN_NAME)


@pytest.fixture
def student(request):
    """The graded item of this check, run in the sandbox."""
    plugin = request.config.pluginmanager.get_plugin(PLUGIN_NAME)
    if plugin is None:
        pytest.skip("no submission to grade: pass --attnkit-submission PATH")
    return plugin.student_for(request.node)


def _check_of(node):
    mark = node.get_closest_marker("attnkit")
    if mark is None:
        return None
    key = (mark.kwargs.get("item"), mark.kwargs.get("kind"))
    return next((c for c in registry() if (c.item, c.kind) == key), None)


class GradingPlugin:
    def __init__(self, target: Submission, limits: Limits | None = None, json_path: str | None = None,
                 echo: bool = False, zygote: Zygote | None = None):
        self.__name__ = PLUGIN_NAME
        self.target = target
        self.limits = limits
        self.json_path = json_path
        self.echo = echo
        self.zygote = zygote or Zygote(hide=secret_paths())  # starts importing torch now, while pytest collects
        self._run: Run | None = None
        self.report: Report | None = None
        self.isolation_notice = ""

    @property
    def run(self) -> Run:
        if self._run is None:
            self._run = Run(open_session(self.zygote, self.target, self.limits))
        return self._run

    def student_for(self, node):
        check = _check_of(node)
        if check is None:
            raise GraderError(f"{node.nodeid} uses `student` but is not marked as a graded check")
        return self.run.student(check)

    def pytest_collection_modifyitems(self, config, items):
        keep, drop = [], []
        for node in items:
            check = _check_of(node)
            (keep if check and check.item.split(".", 1)[0] in self.target.modules else drop).append(node)
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        check = _check_of(item)
        if check and check.item in self.run.limited:
            pytest.skip(f"{check.item} already scored 0: it hit a limit")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        check = _check_of(item)
        if check is None:
            yield
            return
        with self.run.collecting(check):  # the comparisons the diagnosis weighs once the item is done
            yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        yield
        check = _check_of(item)
        if check is None or call.when != "call":
            return
        exc = call.excinfo.value if call.excinfo else None
        if isinstance(exc, pytest.skip.Exception):
            return
        self.run.record(check, exc)

    def pytest_sessionfinish(self, session):
        results = self._run.results if self._run else []
        self.report = build_report(results, self.target.modules,
                                   list(self.target.notes) + self.target.missing_notes())
        if self.json_path:
            render.write_json(self.report, self.json_path)
        if self._run is not None:
            self._run.session.close()
            self.isolation_notice = self.zygote.notice()
        self.zygote.close()

    def pytest_terminal_summary(self, terminalreporter):
        if self.echo and self.report is not None:
            terminalreporter.write_line(render.table(self.report, f"attnkit: {self.target.label}"))
