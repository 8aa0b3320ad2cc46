"""A job of grade-class and its children take turns on one CPU (ForkZygote.share_cpu).

The grader and its child never run at once; keeping both on one CPU saves an
interrupt between CPUs at every exchange (the README's *Speed* says what it
saved, measured in pairs against the grader before it). These tests hold the rule that picks the CPU, that the
child really moves there, and that a class is graded the same way with it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import types
from pathlib import Path

import pytest
from conftest import confined_only, make_submission
from test_sandbox import probe

from attnkit import config
from attnkit.errors import GraderError
from attnkit.frontends import classgrade
from attnkit.sandbox import contract, forking, portable

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or contract.runner()[0] != "fork",
                                reason="CPU affinity is the fork runner's, on Linux")

AFFINITY = "found['cpus'] = sorted(os.sched_getaffinity(0))"


@pytest.fixture
def cpus(monkeypatch):
    """Pretend this process may run on CPUs 2, 5, 7 and 9."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {9, 2, 7, 5})
    return [2, 5, 7, 9]


def test_as_many_jobs_as_cpus_get_one_cpu_each(cpus):
    assert [forking._cpu_for(i, 4) for i in range(4)] == cpus
    assert forking._cpu_for(5, 4) == 5  # a job started again after one died: still spread


def test_more_jobs_or_fewer_than_cpus_are_never_pinned(cpus):
    """Fewer: nothing would keep two jobs, of this run or of another at the same
    time, from being held on one CPU. More: jobs must be free to move."""
    assert [forking._cpu_for(i, n) for n in (1, 3, 5) for i in range(n)] == [None] * 9


def test_the_default_jobs_are_the_cpus_this_process_may_use(cpus, tmp_path, monkeypatch):
    """Not os.cpu_count(): under taskset or a cpuset, as many jobs as CPUs one may use."""
    assert forking.usable_cpus() == cpus
    asked = []
    monkeypatch.setattr(classgrade, "run_jobs", lambda todo, out, version, jobs, *a, **k: asked.append(jobs) or [])
    make_submission(tmp_path / "class" / "s00")
    classgrade.grade_class(str(tmp_path / "class"), str(tmp_path / "out"), progress=False)
    assert asked == [len(cpus)]


def test_pinning_is_on_by_default_off_when_told_and_a_bad_value_is_named(monkeypatch):
    monkeypatch.delenv("ATTNKIT_PIN_JOBS", raising=False)
    assert config.pin_jobs() is True
    monkeypatch.setenv("ATTNKIT_PIN_JOBS", "Off")
    assert config.pin_jobs() is False
    monkeypatch.setenv("ATTNKIT_PIN_JOBS", "yes")
    with pytest.raises(GraderError, match="ATTNKIT_PIN_JOBS='yes': expected auto or off"):
        config.pin_jobs()


def _share(jobs: int, out) -> None:
    holder = types.SimpleNamespace(cpu=None, ready=lambda: {"seccomp": True})
    cpu = forking.ForkZygote.share_cpu(holder, 0, jobs)
    out.send((cpu, holder.cpu, sorted(os.sched_getaffinity(0))))


def _in_a_fork(jobs: int):
    """share_cpu pins the process that calls it: call it in a throwaway one."""
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_share, args=(jobs, theirs))
    proc.start()
    theirs.close()  # so that a child that dies ends the wait
    try:
        assert ours.poll(30), "the process that called share_cpu did not report"
        return ours.recv()
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()


def test_share_cpu_pins_the_job_and_records_the_cpu_for_its_children():
    allowed = sorted(os.sched_getaffinity(0))
    cpu, recorded, after = _in_a_fork(len(allowed))
    assert cpu == allowed[0] and recorded == cpu and after == [cpu]
    cpu, recorded, after = _in_a_fork(len(allowed) + 1)
    assert cpu is None and recorded is None and after == allowed  # free to move


def test_a_cpu_that_cannot_be_had_pins_nothing_and_names_nothing(cpus, monkeypatch):
    def refused(pid, mask):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "sched_setaffinity", refused)
    holder = types.SimpleNamespace(cpu=5, ready=lambda: {"seccomp": True})  # named for an earlier run
    assert forking.ForkZygote.share_cpu(holder, 0, 4) is None and holder.cpu is None


def test_without_the_syscall_filter_nothing_is_pinned(cpus, monkeypatch):
    """A child could then move its threads onto another job's CPU, where that job is held."""
    def pinned(pid, mask):
        raise AssertionError("pinned without the filter")

    monkeypatch.setattr(os, "sched_setaffinity", pinned)
    holder = types.SimpleNamespace(cpu=None, ready=lambda: {"seccomp": False})
    assert forking.ForkZygote.share_cpu(holder, 0, 4) is None and holder.cpu is None
    # the portable runner says it has no filter: the same rule pins nothing there
    said = portable.PortableZygote.ready(types.SimpleNamespace(why="a test"))
    holder = types.SimpleNamespace(cpu=None, ready=lambda: said)
    assert forking.ForkZygote.share_cpu(holder, 0, 4) is None and holder.cpu is None


def test_a_child_moves_to_the_cpu_its_grader_names(zygote, tmp_path):
    allowed = sorted(os.sched_getaffinity(0))
    assert probe(zygote, tmp_path, AFFINITY)["cpus"] == allowed  # nothing named: anywhere
    zygote.cpu = allowed[-1]  # what share_cpu records, without pinning this test's process
    try:
        assert probe(zygote, tmp_path, AFFINITY)["cpus"] == [allowed[-1]]
        zygote.cpu = 1 << 20  # no such CPU: the child runs anywhere, and is graded as ever
        assert probe(zygote, tmp_path, AFFINITY)["cpus"] == allowed
    finally:
        zygote.cpu = None


@confined_only
def test_a_child_cannot_leave_the_cpu_it_was_given(zygote, tmp_path):
    """Its threads would crowd another job's CPU, where that job is held."""
    allowed = sorted(os.sched_getaffinity(0))
    found = probe(zygote, tmp_path, f"""
try:
    os.sched_setaffinity(0, {allowed!r})
    found['moved'] = True
except PermissionError:
    found['moved'] = False
""")
    assert found == {"moved": False}


@pytest.mark.slow
@pytest.mark.parametrize("pin", ["auto", "off"])
def test_each_job_of_a_class_shares_its_cpu_with_its_children(class_zygote, tmp_path, monkeypatch, pin):
    """grade-class with one job per CPU (two CPUs, as the job processes, forked
    from this one, are told): each student's code reports where it ran; every
    child ran on one CPU of the two, or, with ATTNKIT_PIN_JOBS=off, anywhere."""
    allowed = sorted(os.sched_getaffinity(0))[:2]
    if len(allowed) < 2:
        pytest.skip("one CPU: nothing to share")
    monkeypatch.setattr(forking, "usable_cpus", lambda: allowed)
    monkeypatch.setenv("ATTNKIT_PIN_JOBS", pin)
    klass, out = tmp_path / "class", tmp_path / "out"
    report = "    raise RuntimeError('CPUS' + repr(sorted(__import__('os').sched_getaffinity(0))) + 'END')\n"
    for i in range(4 if pin == "auto" else 2):
        make_submission(klass / f"s{i:02d}", {"simplified_attention": [(
            "    ### BEGIN SOLUTION\n    # query gains a token axis", report + "    # query gains a token axis")]})
    run = classgrade.grade_class(str(klass), str(out), jobs=2, seconds=10, progress=False, zygote=class_zygote)
    seen = []
    for folder in sorted(Path(out).iterdir()):
        if not folder.is_dir():
            continue
        text = json.dumps(json.loads((folder / "results.json").read_text()))
        found = re.findall(r"CPUS(\[[0-9, ]*\])END", text)
        assert found, f"{folder.name}: the student's code did not report"
        seen += [tuple(json.loads(f)) for f in found]
    assert len(run.outcomes) == (4 if pin == "auto" else 2) and seen
    if pin == "auto":
        assert all(len(s) == 1 and s[0] in allowed for s in seen), seen  # each child on one CPU of the two
    else:
        assert all(s == tuple(sorted(os.sched_getaffinity(0))) for s in seen), seen
