"""What the grader says about isolation the OS refused, and what it applies."""

import os

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
