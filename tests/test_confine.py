"""What the grader says about isolation the OS refused, and what it applies."""

import os

from attnkit import confine


def test_notice_names_each_missing_protection_once():
    assert confine.missing({"user": True, "network": True, "hidden": True}) == ""
    text = confine.missing({"user": False, "network": True, "hidden": False})
    assert text.count("attnkit: note:") == 1
    assert "unprivileged user" in text and "hide the kit's solutions" in text and "network" not in text
    assert "Time, memory and output limits still apply" in text


def test_probe_reports_the_three_protections():
    result = confine.probe_here()
    assert set(result) == {"user", "network", "hidden"}
    if os.geteuid() == 0:  # CI and these machines run as root: everything applies
        assert result == {"user": True, "network": True, "hidden": True}


def test_python_paths_cover_the_standard_library():
    paths = confine.python_paths()
    assert any(os.path.dirname(os.__file__).startswith(p) for p in paths)
