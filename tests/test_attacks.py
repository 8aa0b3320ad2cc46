"""Hostile submissions gain nothing, and grading goes on.

Each attack in tests/attacks/ is graded twice: as written, and with its trick
cut out (the same wrong code, honestly). The trick must never score more, the
correct `attention_scores` next to it must keep its points, and each attack has
its own expected outcome below.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import MEMORY_LIMITED, PORTABLE, ROOT, SOLUTIONS, confined_only, grade_folder, make_submission

from attnkit.sandbox import Limits

ATTACKS = Path(__file__).parent / "attacks"
S = "simplified_attention"
LIMITS = Limits(seconds=3.0)
TRICK = re.compile(r"^[ \t]*# --- trick ---\n.*?^[ \t]*# --- end trick ---\n", re.S | re.M)

# attack -> (substring expected in the softmax reason, or None when any failure will do)
EXPECTED = {
    "monkeypatch_comparisons": "values differ",
    "tensor_subclass": "values differ",
    "eq_always_true": "a torch.Tensor was due",
    "forge_results": "values differ",
    "exit_at_import": "importing simplified_attention.py ended the grading process",
    "sys_exit_in_function": "called sys.exit(0)",
    "sys_exit_at_import": "called sys.exit(0) while being imported",
    "os_exit_in_function": "ended unexpectedly",
    "infinite_loop": "time limit exceeded",
    "memory_bomb": "memory limit exceeded",
    "stack_frames": "values differ",
    "read_solutions": "values differ",
    "pickle_payload": None,
    "modify_inputs": "modifies its argument `scores` in place",
    "background_process": "values differ",
    "fork_bomb": None,
    "output_flood": "output limit exceeded",
    "secret_hunt": "raised RuntimeError",
    "network": "values differ",
}
# Gains nothing only where student code cannot read the kit's files: not on the portable runner.
CONFINED_ONLY = {"read_solutions"} | (set() if MEMORY_LIMITED else {"memory_bomb"})
if not hasattr(os, "fork"):  # Windows: its import fails on os.fork itself, costing the whole file
    CONFINED_ONLY.add("background_process")


def make(folder: Path, source: str, honest: bool, **subs) -> Path:
    folder.mkdir(parents=True)
    if honest:
        source = TRICK.sub("", source)
    for key, value in subs.items():
        source = source.replace(f"__{key}__", str(value))
    (folder / f"{S}.py").write_text(source)
    return folder


def both(zygote, tmp_path, name, **subs):
    source = (ATTACKS / f"{name}.py").read_text()
    assert TRICK.search(source), f"{name} has no marked trick"
    hostile = grade_folder(zygote, make(tmp_path / "hostile", source, False, **subs), (S,), LIMITS)
    honest = grade_folder(zygote, make(tmp_path / "honest", source, True, **subs), (S,), LIMITS)
    return hostile, honest


@pytest.fixture
def token():
    return uuid.uuid4().hex[:12]


@pytest.mark.parametrize("name", [pytest.param(n, marks=confined_only) if n in CONFINED_ONLY
                                  else pytest.param(n, marks=pytest.mark.slow) if n == "infinite_loop"  # its limit: 3 s
                                  else n for n in sorted(EXPECTED)])
def test_attack_gains_nothing(zygote, tmp_path, name, token, monkeypatch):
    port = _closed_port()
    start = time.monotonic()
    hostile, honest = both(zygote, tmp_path, name, TOKEN=token, PORT=port,
                           RESULTS=tmp_path / "forged-results.json")
    if name == "infinite_loop":  # one timeout, not one per check
        assert time.monotonic() - start < 3 * LIMITS.seconds + 10
    by_hostile, by_honest = hostile.by_item(), honest.by_item()
    for key in by_hostile:
        assert by_hostile[key].score <= by_honest[key].score, (name, key, by_hostile[key].reasons)
    softmax = by_hostile[f"{S}.softmax"]
    assert softmax.score == 0, softmax.reasons
    if EXPECTED[name]:
        assert any(EXPECTED[name] in line for line in softmax.reasons), softmax.reasons
    if not name.endswith("at_import"):  # its import never finishes: every item of the file is lost
        assert by_hostile[f"{S}.attention_scores"].score == 3, by_hostile[f"{S}.attention_scores"].reasons
    if not PORTABLE:  # the portable runner lets student code write where the user may (never read back)
        assert not (tmp_path / "forged-results.json").exists()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_network(zygote, tmp_path, token):
    """A listening server on the host's loopback is out of the student's reach."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    got = []
    graded = threading.Event()

    def accept():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not got:
            try:
                conn, _ = server.accept()
                got.append(conn.recv(100))
            except OSError:  # nothing waiting for 0.2 s: once grading is over, nothing more can come
                if graded.is_set():
                    return

    thread = threading.Thread(target=accept)
    thread.start()
    iso = zygote.ready()
    try:
        both(zygote, tmp_path, "network", PORT=server.getsockname()[1])
    finally:
        graded.set()
        thread.join()
        server.close()
    if not iso.get("network"):
        pytest.skip("this machine gives the grader no network namespace")
    assert got == []


def test_pickle_is_never_unpickled(zygote, tmp_path, token):
    both(zygote, tmp_path, "pickle_payload", TOKEN=token)
    time.sleep(0.2)
    assert not Path(f"/tmp/attnkit-pickle-{token}").exists()


@pytest.mark.slow
@confined_only
def test_background_processes_do_not_outlive_grading(zygote, tmp_path, token):
    both(zygote, tmp_path, "background_process", TOKEN=token)
    both(zygote, tmp_path / "bomb", "fork_bomb", TOKEN=token)
    time.sleep(2.5)  # past the moment the leftovers would write
    assert not Path(f"/tmp/attnkit-bg-{token}").exists()
    assert not Path(f"/tmp/attnkit-fork-{token}").exists()


@pytest.mark.slow
@confined_only
def test_secret_never_reaches_the_student_process(tmp_path, token):
    """Run with a secret of our own; the hunter reports what it finds in its reason."""
    env = dict(os.environ, ATTNKIT_SECRET=f"secret-{token}")
    folder = make(tmp_path / "hunt", (ATTACKS / "secret_hunt.py").read_text(), False, TOKEN=token)
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "attnkit.frontends.cli", "grade", str(folder / f"{S}.py"), "--json", str(out)],
                          env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text() + proc.stdout
    assert "found [" in text  # the hunt ran and reported
    assert f"secret-{token}" not in text and "ATTNKIT_SECRET" not in text


def test_forged_results_and_fake_scores_do_not_reach_the_output(attnkit_cli, tmp_path, token):
    out = tmp_path / "results.json"
    folder = make(tmp_path / "forge", (ATTACKS / "forge_results.py").read_text(), False, RESULTS=out, TOKEN=token)
    proc = attnkit_cli("grade", folder, "--json", out, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["score"] == 3 and data["max_score"] == 100
    assert [line for line in proc.stdout.splitlines() if line.startswith("Total:")] == ["Total: 3/100"]
    assert not (folder / "results.json").exists()  # graded from a copy: the original folder is untouched


def test_conftest_and_pytest_ini_in_the_submission_are_ignored(attnkit_cli, tmp_path):
    marker = Path("/tmp/attnkit-conftest-loaded")
    marker.unlink(missing_ok=True)
    out = tmp_path / "r.json"
    proc = attnkit_cli("grade", ATTACKS / "conftest_injection", "--json", out, cwd=ATTACKS / "conftest_injection")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    softmax = next(t for t in data["tests"] if t["name"] == f"{S}.softmax")
    assert softmax["score"] == 0 and data["score"] == 3
    assert not marker.exists()


def test_exit_at_import_costs_only_that_file(zygote, tmp_path):
    folder = make(tmp_path / "sub", (ATTACKS / "exit_at_import.py").read_text(), False)
    (folder / "self_attention.py").write_text((SOLUTIONS / "self_attention.py").read_text())
    report = grade_folder(zygote, folder, (S, "self_attention"), LIMITS)
    for key, r in report.by_item().items():
        assert r.score == (r.max_score if key.startswith("self_attention.") else 0), (key, r.reasons)


RESTARTER = """
import gc
import time

time.sleep(0.8)  # paid at every import


def _bogus(*args, **kwargs):
    # a reply of an unknown kind: the grader replaces this process for the next check,
    # which imports the file again
    from attnkit.sandbox import protocol
    child = next(o for o in gc.get_objects() if type(o).__name__ == "Child"
                 and type(o).__module__ == "attnkit.sandbox.child")
    protocol.send(child.sock, {"kind": "bogus"})
    time.sleep(60)


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _bogus
"""


@pytest.mark.slow
def test_restarts_buy_no_time_beyond_the_items_limits(zygote, tmp_path):
    """Every check ends its process with a malformed reply, and the file sleeps
    at import: each re-import is charged to the item whose check needed it, so
    an item ends at its own limit instead of costing a fresh import budget for
    every one of its checks."""
    limits = Limits(seconds=1.0)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "simplified_attention.py").write_text(RESTARTER)
    start = time.monotonic()
    report = grade_folder(zygote, tmp_path / "sub", ("simplified_attention",), limits)
    took = time.monotonic() - start
    assert took < len(report.results) * limits.seconds + 3, took
    assert all(r.score == 0 for r in report.results)
    assert any("importing simplified_attention.py again" in line for r in report.results for line in r.reasons)


@pytest.mark.slow
def test_a_hang_at_import_costs_only_that_file_not_the_files_importing_it(zygote, tmp_path):
    """causal_attention.py loops forever when imported; multihead_attention imports it,
    gets stand-ins for it, and keeps every point (and pays for no timeout)."""
    folder = make_submission(tmp_path / "sub", {"causal_attention": [("import torch\n",
                                                                      "import torch\nwhile True:\n    pass\n")]})
    start = time.monotonic()
    report = grade_folder(zygote, folder, ("causal_attention", "multihead_attention"), LIMITS)
    for key, r in report.by_item().items():
        if key.startswith("causal_attention."):
            assert r.score == 0
            assert any("time limit" in line or "did not finish" in line for line in r.reasons), r.reasons
        else:
            assert r.score == r.max_score, (key, r.reasons)
    assert time.monotonic() - start < 2 * LIMITS.seconds + 15  # one timeout, not one per item

