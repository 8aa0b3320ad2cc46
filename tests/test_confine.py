"""What the grader says about isolation the OS refused, and what it applies."""

import os
import select
import signal
import time

import pytest
from conftest import confined_only

from attnkit.sandbox import confine

EVERYTHING = {k: True for k in confine.GUARANTEES}


def test_notice_names_each_missing_guarantee_once():
    assert confine.notice(EVERYTHING) == ""
    text = confine.notice(dict(EVERYTHING, filesystem=False, user=False))
    assert text.count("attnkit: note:") == 1
    assert "the kit's solutions" in text and "privilege" in text and "network" not in text
    assert "Time, memory and output limits still apply" in text


@confined_only
def test_the_worker_applies_every_guarantee_here(zygote):
    """CI and these machines run as root or with user namespaces: everything applies."""
    isolation = zygote.ready()
    assert {k: isolation.get(k) for k in confine.GUARANTEES} == EVERYTHING, isolation
    assert isolation["mode"] == ("root" if os.geteuid() == 0 else "userns")


def test_python_paths_cover_the_standard_library_and_not_the_kit_checkout():
    kit = os.path.dirname(os.path.dirname(os.path.dirname(confine.__file__)))  # .../autograder
    paths = confine.python_paths(exclude=[kit])
    assert any(os.path.dirname(os.__file__).startswith(p) for p in paths)
    assert kit not in paths


def test_close_fds_keeps_what_it_is_told_to():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        confine.close_fds([0, 1, 2, w])
        os.write(w, b"alive")
        os._exit(0 if not os.path.exists(f"/proc/self/fd/{r}") else 1)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    assert os.read(r, 10) == b"alive" and os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(not confine.linux() or os.geteuid() == 0,
                    reason="an ordinary user's path (test_unprivileged.py runs this file as one)")
def test_a_worker_whose_parent_dies_as_it_enters_its_namespaces_ends_at_once():
    """Without root the worker forks itself into a PID namespace of its own, where
    getppid() says 0 whether its parent lives or not. A grader killed in that
    window (kill -9 half a second into `attnkit grade`, under load) left a
    worker that imported torch and ran on for seconds: it must end instead."""
    said, tell = os.pipe()
    pid = os.fork()
    if pid == 0:  # the process the grader starts as its worker
        try:
            os.close(said)
            # a worker is a fresh program: dumpable, so it may write its own uid_map,
            # whatever this (forked) test process was made
            confine.set_dumpable(True)
            fork = os.fork

            def fork_then_die():  # the grader, and with it this process, killed right after the fork
                child = fork()
                if child:
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(0.5)  # the worker-to-be: its parent is surely gone by now
                return child

            os.fork = fork_then_die
            mode = confine.enter_worker_namespaces()
            os.write(tell, mode.encode())  # only a process that went on gets here
        finally:  # never back into pytest, from either process
            os._exit(0)
    os.close(tell)
    os.waitpid(pid, 0)
    ready, _, _ = select.select([said], [], [], 30)
    went_on = os.read(said, 100).decode() if ready else "still running after 30 s"
    if went_on == "none":
        pytest.skip("no user namespaces here")
    assert went_on == "", f"the worker went on ({went_on}) after its parent died"
