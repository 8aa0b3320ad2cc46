"""The portable runner (issue 9.3): the student side where Linux or fork is missing.

Forced here, on Linux. First, the student side's own tests run again through
one portable runner for this module (its ``zygote`` fixture replaces the
session's): full marks and zero, bad answers and their reasons, and the
attacks whose guarantee it keeps (the time limit, the output limit, the
data-only channel). Then what is its own: how it is chosen, what it says,
what it refuses (grades for credit), its Windows channel, its kill and
respawn, its lifeline, its output, and each student entry point on it.
CI runs the student-side test files again with ``ATTNKIT_SANDBOX=portable``,
and natively on macOS and Windows.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest
import test_attacks
import test_notebooks
import torch
from conftest import ASSIGNMENTS, ROOT, SOLUTIONS, full_marks, grade_folder, make_submission, scores
from test_attacks import ATTACKS, LIMITS, make
from test_full_and_zero import run_cli
from test_student_view import run_pytest

from attnkit.sandbox import Limits, Session, SandboxError, Zygote, confine
from attnkit.sandbox.contract import runner
from attnkit.sandbox.portable import PortableZygote, SpawnedChild, default_transport
from attnkit.config import secret_paths

# The student side's own tests, collected here again, on the portable runner below
# (CI runs all of their files on it): the rest of this file is the runner's own.
from test_full_and_zero import (  # noqa: F401, E402, I001
    solved,  # its fixture, so that here it grades on this module's runner
    test_solutions_score_full_marks,
    test_stubs_score_zero_and_say_not_implemented,
)
from test_robustness import (  # noqa: F401, E402
    test_broken_causal_attention_does_not_cost_multihead,
    test_each_kind_of_bad_answer_has_its_reason_and_the_run_goes_on,
)

pytestmark = pytest.mark.slow  # a spawned process per session, each importing torch

S = "simplified_attention"
PORTABLE_ENV = {"ATTNKIT_SANDBOX": "portable"}


@pytest.fixture(scope="module")
def zygote():
    """This module's runner: the portable one, whatever the machine would choose."""
    z = PortableZygote(hide=secret_paths(), spares=2)
    yield z
    z.close()


@pytest.fixture
def token():
    return uuid.uuid4().hex[:12]


@pytest.fixture
def portable_env(monkeypatch):
    """For the entry points that start their own runner (and their subprocesses)."""
    monkeypatch.setenv("ATTNKIT_SANDBOX", "portable")


@pytest.mark.parametrize("name", ["output_flood", "os_exit_in_function", "eq_always_true"])
def test_attacks_on_the_guarantees_it_keeps_gain_nothing(zygote, tmp_path, name, token, monkeypatch):
    test_attacks.test_attack_gains_nothing(zygote, tmp_path, name, token, monkeypatch)


# --------------------------------------------------------------------------- what it is

def test_chosen_where_linux_or_fork_is_missing_and_by_the_setting(monkeypatch):
    monkeypatch.delenv("ATTNKIT_SANDBOX", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")  # as Linux looks to it, wherever this runs
    monkeypatch.setattr(confine, "_libc", object())
    monkeypatch.setattr(os, "fork", lambda: 0, raising=False)
    assert runner() == ("fork", "")
    monkeypatch.setenv("ATTNKIT_SANDBOX", "portable")
    assert runner() == ("portable", "ATTNKIT_SANDBOX=portable")
    monkeypatch.setenv("ATTNKIT_SANDBOX", "none")  # no namespaces asked for; fork still there
    assert runner() == ("fork", "")
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(confine, "_libc", None)
    assert runner() == ("portable", "macOS has no Linux namespaces")
    monkeypatch.setattr(sys, "platform", "win32")
    assert runner() == ("portable", "Windows has no fork")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delattr(os, "fork")
    assert runner() == ("portable", "this system has no fork")
    monkeypatch.setenv("ATTNKIT_SANDBOX", "vm")
    with pytest.raises(SandboxError, match="auto, none or portable"):
        runner()


def test_it_says_what_it_does_not_guarantee_in_one_line(monkeypatch):
    monkeypatch.setenv("ATTNKIT_SANDBOX", "portable")
    z = Zygote()
    try:
        assert isinstance(z, PortableZygote)
        iso = z.ready()
        assert not z.confined() and confine.missing(iso) == list(confine.GUARANTEES.values())
        note = z.notice()
        assert "\n" not in note and note.count("attnkit: note:") == 1
        assert "isolation is reduced (ATTNKIT_SANDBOX=portable)" in note
        limits = "time, memory and output limits" if confine.linux() else "time and output limits"
        assert limits in note and iso["memory"] == confine.linux()
        assert "read what you can read" in note and "for credit runs on Linux" in note
        assert "Linux only" in z.not_for_credit()
    finally:
        z.close()
    note = confine.notice(dict(iso, memory=False, why="Windows has no fork"))
    assert "(Windows has no fork)" in note and "time and output limits" in note


def test_the_fork_runner_may_grade_for_credit():
    assert confine.credit_refusal({"mode": "root"}) == ""


# --------------------------------------------------------------------------- grades for credit

@pytest.mark.slow
def test_grade_class_refuses_it_even_when_told_unconfined(tmp_path):
    make_submission(tmp_path / "class" / "ada")
    proc = subprocess.run([sys.executable, "-m", "attnkit.frontends.cli", "grade-class", str(tmp_path / "class"),
                           "--out", str(tmp_path / "out"), "--jobs", "1", "--quiet", "--unconfined"],
                          env=dict(os.environ, **PORTABLE_ENV), capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "grading for credit runs on Linux only" in proc.stderr and "portable runner" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "grades.csv").exists()


def test_gradescope_refuses_it_and_writes_no_grade(tmp_path, portable_env, capsys):
    from attnkit.frontends import gradescope
    make_submission(tmp_path / "submission")
    (tmp_path / "results").mkdir()
    assert gradescope.main(str(tmp_path)) == 2
    assert "grading for credit runs on Linux only" in capsys.readouterr().err
    assert not (tmp_path / "results" / "results.json").exists()


# --------------------------------------------------------------------------- how it runs

def test_the_windows_channel_works_here_and_wants_the_token(tmp_path):
    """Windows cannot pass a descriptor: the child connects to a loopback listener
    and proves a token. A connection without it is dropped."""
    child = SpawnedChild("tcp")
    try:
        intruder = socket.create_connection(child.listener.getsockname())
        from attnkit.sandbox import protocol

        protocol.send(intruder, {"token": "0" * 32})
        child.start({"limits": {"output_bytes": 1 << 10}, "workdir": str(tmp_path)}, time.monotonic() + 120)
        assert child.sock.getpeername() != intruder.getsockname()
        intruder.close()
    finally:
        child.close()
    z = PortableZygote(transport="tcp")
    try:
        report = grade_folder(z, SOLUTIONS, (S,))
        assert (report.score, report.max_score) == (20, 20), [r.reasons for r in report.results]
    finally:
        z.close()


def test_an_infinite_loop_costs_its_limit_and_one_respawn(zygote, tmp_path):
    honest = make(tmp_path / "honest", (ATTACKS / "infinite_loop.py").read_text(), True)
    hostile = make(tmp_path / "hostile", (ATTACKS / "infinite_loop.py").read_text(), False)
    before = zygote.spawned
    grade_folder(zygote, honest, (S,), LIMITS)
    per_session = zygote.spawned - before  # the next session's spare
    start = time.monotonic()
    report = grade_folder(zygote, hostile, (S,), LIMITS)
    elapsed = time.monotonic() - start
    assert zygote.spawned - before - per_session == per_session + 1  # one process more: the respawn
    assert any("time limit exceeded" in line for line in report.by_item()[f"{S}.softmax"].reasons)
    assert report.by_item()[f"{S}.attention_scores"].score == 3
    assert elapsed < 3 * LIMITS.seconds + 20, elapsed  # one limit, not one per check


def test_output_written_around_the_python_streams_is_capped_by_the_grader(zygote, tmp_path):
    """os.write to fd 1 bypasses the child's capped streams: the grader reads the
    pipe, and kills the process past the cap; only that item pays."""
    text = (SOLUTIONS / f"{S}.py").read_text().replace(
        "    shifted = scores - scores.amax(dim=dim, keepdim=True)",
        "    import os\n    os.write(1, b'x' * 300_000)\n    shifted = scores - scores.amax(dim=dim, keepdim=True)")
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / f"{S}.py").write_text(text)
    got = grade_folder(zygote, folder, (S,), LIMITS).by_item()
    assert got[f"{S}.softmax"].score == 0
    assert any("output limit exceeded" in line for line in got[f"{S}.softmax"].reasons), got[f"{S}.softmax"].reasons
    assert got[f"{S}.attention_scores"].score == 3


@pytest.mark.parametrize("which", ["machine", "portable"])
def test_the_output_limit_is_each_items_own(which, request, tmp_path):
    """One child serves every item in turn: what one item printed is not charged
    to the next. Two items print 40 KB each, 80 KB in all, over the 64 KiB
    cap together and under it alone: both keep their points (before, the
    second to print lost them, "output limit exceeded"). One item printing
    past the cap alone still pays, and only it."""
    runner_ = request.getfixturevalue("zygote" if which == "portable" else "machine_zygote")
    said = ("_said = set()\n\n\ndef _say(name, size):\n    if name not in _said:\n"
            "        _said.add(name)\n        print('x' * size)\n\n\n")
    code = (SOLUTIONS / f"{S}.py").read_text().replace("\ndef query_scores(", said + "def query_scores(", 1)
    code = code.replace("    return inputs @ inputs.transpose(-2, -1)",
                        "    _say('attention_scores', 40_000)\n    return inputs @ inputs.transpose(-2, -1)", 1)
    code = code.replace("    shifted = scores - scores.amax(dim=dim, keepdim=True)",
                        "    _say('softmax', 40_000)\n    shifted = scores - scores.amax(dim=dim, keepdim=True)", 1)
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / f"{S}.py").write_text(code)
    got = grade_folder(runner_, folder, (S,), LIMITS)
    assert got.score == got.max_score, [(r.item.key, r.reasons) for r in got.results if r.score != r.max_score]
    (folder / f"{S}.py").write_text(code.replace("_say('softmax', 40_000)", "_say('softmax', 70_000)"))
    got = grade_folder(runner_, folder, (S,), LIMITS).by_item()
    assert got[f"{S}.softmax"].score == 0
    assert any("output limit exceeded" in line for line in got[f"{S}.softmax"].reasons), got[f"{S}.softmax"].reasons
    assert all(r.score == r.max_score for key, r in got.items() if key != f"{S}.softmax")


def test_the_childs_streams_refuse_writes_past_the_cap():
    """print() past the cap fails in the child (EFBIG, as under the fork runner's
    file-size limit), so the item that printed is the one that pays."""
    from attnkit.sandbox.spawned import _capped

    r, w = os.pipe()
    budget = [10]  # stdout and stderr share it
    out, err = _capped(w, budget), _capped(w, budget)
    try:
        out.write("12345\n")
        with pytest.raises(OSError) as refused:
            err.write("abcdefgh\n")
        assert refused.value.errno == errno.EFBIG
        assert os.read(r, 100) == b"12345\nabcd"
    finally:
        budget[0] = 1 << 10
        out.close()
        err.close()
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("which", ["machine", "portable"])
def test_the_output_is_the_students_alone_on_both_runners(which, request):
    """What the student's code printed, without what torch or the interpreter printed first."""
    runner_ = request.getfixturevalue("zygote" if which == "portable" else "machine_zygote")
    code = "import sys\nprint('at import')\nprint('to stderr', file=sys.stderr)\n"
    code += (SOLUTIONS / f"{S}.py").read_text()
    session = Session(runner_, {f"{S}.py": code.encode()}, (S,), limits=Limits(seconds=10))
    try:
        out = session.request(f"{S}.softmax", "call", (torch.zeros(2, 3),))
        assert torch.allclose(out["result"], torch.full((2, 3), 1 / 3))
        assert session.output() == "at import\nto stderr\n"
    finally:
        session.close()


def hold_the_reader(monkeypatch):
    """Hold every spawned process's output reader thread until the returned event is set."""
    release = threading.Event()
    original = SpawnedChild._read_output

    def late(self):
        release.wait(30)
        original(self)

    monkeypatch.setattr(SpawnedChild, "_read_output", late)
    return release


@pytest.mark.skipif(os.name != "posix", reason="the pipe is drained where select() can wait on it")
def test_the_output_does_not_wait_for_the_reader_thread(monkeypatch):
    """What the student printed before a reply is there when the reply is,
    even while the thread that reads the pipe has not had its turn yet."""
    release = hold_the_reader(monkeypatch)
    z = PortableZygote(hide=secret_paths())
    code = "import sys\nprint('at import')\nprint('to stderr', file=sys.stderr)\n" + (SOLUTIONS / f"{S}.py").read_text()
    session = Session(z, {f"{S}.py": code.encode()}, (S,), limits=Limits(seconds=30))
    try:
        session.request(f"{S}.softmax", "call", (torch.zeros(2, 3),))
        assert session.output() == "at import\nto stderr\n"
    finally:
        release.set()
        session.close()
        z.close()


@pytest.mark.skipif(os.name != "posix", reason="the pipe is drained where select() can wait on it")
def test_a_process_that_cannot_start_says_what_it_printed(tmp_path, monkeypatch):
    """The error names what the process printed before it died, even while the
    thread that reads its pipe has not had its turn."""
    from attnkit.sandbox import portable

    fake = tmp_path / "attnkit" / "sandbox"  # found before the kit's own: the process fails as torch would
    fake.mkdir(parents=True)
    (tmp_path / "attnkit" / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "spawned.py").write_text("import sys\n\ndef main(config):\n"
                                     "    print('ImportError: no torch on this machine', flush=True)\n"
                                     "    sys.exit(1)\n")
    monkeypatch.setattr(portable, "PACKAGE_PARENT", str(tmp_path))
    release = hold_the_reader(monkeypatch)
    child = SpawnedChild(default_transport())
    try:
        with pytest.raises(SandboxError, match="ended while starting") as failed:
            child.start({}, time.monotonic() + 60)
        assert "it printed:\nImportError: no torch on this machine" in str(failed.value)
    finally:
        release.set()
        child.close()


def test_a_spawned_process_ends_when_the_grader_does(tmp_path):
    """Its stdin is the lifeline: the grader holds it open for as long as it lives."""
    child = SpawnedChild(default_transport())
    try:
        child.start({"limits": {"output_bytes": 1 << 10}, "workdir": str(tmp_path)}, time.monotonic() + 120)
        child.proc.stdin.close()
        assert child.proc.wait(30) == 70
    finally:
        child.close()


def test_the_grader_side_needs_neither_fork_nor_resource(tmp_path):
    """A grader without os.fork and without the resource module (as on Windows)
    chooses the portable runner and grades."""
    script = textwrap.dedent(f"""
        import os, sys
        sys.modules["resource"] = None
        if hasattr(os, "fork"):
            del os.fork
        from attnkit.sandbox.contract import runner
        from attnkit.sandbox import Zygote
        from attnkit.judge.engine import grade
        from attnkit.intake import from_folder
        z = Zygote()
        report = grade(z, from_folder({str(SOLUTIONS)!r}, ({S!r},), "x"), public=True)
        z.close()
        print(runner(), type(z).__name__, z.ready()["memory"], report.score, report.max_score)
    """)
    env = {k: v for k, v in os.environ.items() if k != "ATTNKIT_SANDBOX"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    chosen, kind, memory, score, max_score = proc.stdout.strip().rsplit(" ", 4)
    why = "Windows has no fork" if sys.platform == "win32" else "this system has no fork"
    assert (chosen, kind, memory) == (str(("portable", why)), "PortableZygote", "False")
    assert score == max_score and int(max_score) > 0


# --------------------------------------------------------------------------- the student's entry points

@pytest.mark.slow
def test_attnkit_check_runs_on_it_and_says_so(portable_env):
    checked = run_cli("check", str(ASSIGNMENTS))
    assert checked.returncode == 0, checked.stderr
    assert "Total: 0/47" in checked.stdout
    assert "note: isolation is reduced (ATTNKIT_SANDBOX=portable)" in checked.stdout


@pytest.mark.slow
def test_the_pytest_view_runs_on_it_and_says_so(portable_env, tmp_path):
    folder = make_submission(tmp_path / "sub")
    done = run_pytest(folder, env=PORTABLE_ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "attnkit: 100/100 points" in done.stdout
    assert "isolation is reduced (ATTNKIT_SANDBOX=portable)" in done.stdout


@pytest.mark.slow
def test_the_notebook_test_cells_run_on_it(portable_env, tmp_path):
    test_notebooks.test_stage_four_never_pays_for_stage_three(tmp_path)


def test_scores_and_words_match_the_machine_runner(zygote, machine_zygote, tmp_path):
    """One wrong stage: the same scores and reasons on both runners."""
    folder = make_submission(tmp_path / "s", {"causal_attention": [
        ('return scores.masked_fill(mask, float("-inf"))', "return scores.masked_fill(mask, 0.0)")]})
    here = grade_folder(zygote, folder, ("causal_attention",))
    there = grade_folder(machine_zygote, folder, ("causal_attention",))
    assert scores(here)["causal_attention.mask_scores"] == 0
    assert {r.item.key: (r.score, r.reasons) for r in here.results} == \
        {r.item.key: (r.score, r.reasons) for r in there.results}


def test_a_notebook_test_cell_says_once_that_isolation_is_reduced(portable_env, tmp_path):
    """On the portable runner a notebook's first graded cell carries the sandbox's
    one-line note (on stdout: stderr would cost the cell its points); later ones do not."""
    from attnkit.kernel.notebook import NotebookGrader

    module = "simplified_attention"
    (tmp_path / f"{module}.ipynb").write_text((ROOT / "source" / module / f"{module}.ipynb").read_text())
    grader = NotebookGrader(5.0)
    try:
        first = grader.grade(tmp_path / f"{module}.ipynb", f"{module}.softmax", hidden=False)
        second = grader.grade(tmp_path / f"{module}.ipynb", f"{module}.query_scores", hidden=False)
    finally:
        grader.close()
    assert [n for n in first.notes if "isolation is reduced" in n] and first.score == first.max_score
    assert not [n for n in second.notes if "isolation is reduced" in n]


def test_a_failed_trial_leaves_no_file_behind_for_the_graded_run(zygote, tmp_path):
    """The file makes a folder at import, and softmax is the naive one (no
    shift: it fails its stability check). softmax's trial on the student's own
    normalize_by_sum fails; its graded run imports the file again, in a folder
    of its own, where the folder is not there yet (before: FileExistsError, and
    every item of the file 0 as "could not be imported")."""
    edits = {S: [("import torch\n", "import torch\nimport os\nos.mkdir('results')\n"),
                 ("    shifted = scores - scores.amax(dim=dim, keepdim=True)", "    shifted = scores")]}
    report = grade_folder(zygote, make_submission(tmp_path / "sub", edits), (S,))
    got = scores(report)
    assert got.pop(f"{S}.softmax") == full_marks((S,))[f"{S}.softmax"] - 2  # stability: 2
    assert got == {k: v for k, v in full_marks((S,)).items() if k != f"{S}.softmax"}


def test_a_child_after_a_limit_starts_in_a_clean_folder(zygote, tmp_path):
    """The file makes a folder at import, and query_scores never returns: its
    time limit ends the process, and the next one, importing the file again,
    starts in a folder of its own, as a child with a root of its own does
    (before: FileExistsError, every later item 0 as "could not be imported")."""
    edits = {S: [("import torch\n", "import torch\nimport os\nos.mkdir('results')\n"),
                 ("    return (inputs * query.unsqueeze(-2)).sum(dim=-1)  # (..., T)",
                  "    while True:\n        pass")]}
    report = grade_folder(zygote, make_submission(tmp_path / "sub", edits), (S,), Limits(seconds=2))
    got = scores(report)
    assert got.pop(f"{S}.query_scores") == 0
    assert got == {k: v for k, v in full_marks((S,)).items() if k != f"{S}.query_scores"}
