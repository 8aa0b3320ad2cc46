"""What makes grading fast keeps every guarantee (issue 11.6).

Children forked ahead of need (spares), stand-in answers kept by the grader
and by the child, a reference module kept per constructor call, the
compact wire format: each is tried here against what it must not change.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import torch
from conftest import SOLUTIONS, confined_only, full_marks, make_submission, scores

from attnkit.exercises import MODULES
from attnkit.intake import from_folder
from attnkit.judge import reference
from attnkit.judge.engine import grade, open_session
from attnkit.sandbox import Limits, Session, Zygote, answers, client, forking, protocol
from attnkit.sandbox.child import Child
from attnkit.sandbox.protocol import Kind
from attnkit.config import secret_paths

S = "simplified_attention"


# --------------------------------------------------------------------------- spare children

@pytest.fixture
def spare_zygote():
    """A worker of this test's own that forks each next child ahead of need."""
    z = Zygote(hide=secret_paths(), channels=2)
    z.keep_spare()
    yield z
    z.close()


def _solutions():
    return from_folder(str(SOLUTIONS), MODULES, "solutions")


@pytest.mark.slow
@confined_only
def test_a_session_starts_on_the_spare_and_grades_the_same(spare_zygote):
    first = grade(spare_zygote, _solutions())
    session = open_session(spare_zygote, _solutions())
    try:
        session.request(f"{S}.softmax", "call", [torch.ones(2, 3)])
        assert session.child.spare, "the second session should start on the child forked for it"
        assert session.child.uid != session.uid or session.uid is None  # a fresh user id of its own
    finally:
        session.close()
    again = grade(spare_zygote, _solutions())
    assert scores(first) == scores(again) == full_marks()


@pytest.mark.slow
@confined_only
def test_a_spare_that_died_while_waiting_costs_nothing(spare_zygote):
    grade(spare_zygote, _solutions())  # orders a spare
    spare = spare_zygote._ch.spare
    assert spare is not None
    spare.sock.shutdown(socket.SHUT_RDWR)  # the spare sees its channel end: it exits before any hello
    session = open_session(spare_zygote, _solutions())
    try:
        got = session.request(f"{S}.softmax", "call", [torch.zeros(1, 2)])
        assert torch.allclose(got["result"], torch.full((1, 2), 0.5))
        assert not session.child.spare, "a child forked then, not the dead spare"
        assert session.spawned == 1
    finally:
        session.close()


@pytest.mark.slow
@confined_only
def test_a_reply_nobody_collects_is_skipped_not_taken(spare_zygote):
    """A job process that died with a child on order leaves its reply on the
    channel: whoever uses the channel next skips it by its order's token."""
    ch = spare_zygote._ch
    request = {"limits": dict(Limits().for_child(), uid=spare_zygote.new_uid()), "workdir": None, "exclude": []}
    with ch.lock:
        abandoned = spare_zygote._order(ch, request)
    abandoned.sock.close()
    abandoned.output_file.close()
    spare_zygote.keep_spare(False)
    report = grade(spare_zygote, _solutions())
    assert scores(report) == full_marks()


def test_only_the_reply_to_this_order_is_taken():
    """The worker's replies carry the child's pid and a handle on it: one taken
    for another order's would kill the wrong child at a limit."""

    class Channel:
        def __init__(self, lines):
            self.lines = list(lines)

        def line(self):
            return self.lines.pop(0)

    ours, theirs = socket.socketpair()
    stale_handle, other = os.pipe()
    ordered = forking._Spare({"order": "7-1"}, ours, open(os.devnull, "rb"), os.getpid())
    ch = Channel([({"pid": 111, "order": "5-3"}, [stale_handle]), ({"pid": 222, "order": "7-1"}, [])])
    child = forking.ForkZygote._collect(ch, ordered)
    assert child.pid == 222 and child.sock is ours and not ch.lines
    with pytest.raises(OSError):
        os.fstat(stale_handle)  # the stale reply's handle is closed, not kept
    os.close(other)
    theirs.close()
    child.output_file.close()


# --------------------------------------------------------------------------- answers the grader keeps

class _Counting:
    """A stand-in service that counts what it computes."""

    def __init__(self, repeat: int = 1):
        self.computed = 0
        self.repeat = repeat

    def __call__(self, spec, tensors, grads, max_bytes):
        self.computed += 1
        return (tensors[0] * 2).repeat(self.repeat)


def _upcall_frame(target: str, x: torch.Tensor, training: bool = False):
    bufs: list = []
    spec = {"target": target, "args": [{"$slot": 0}], "kwargs": {}, "mode": "forward"}
    if training:
        spec["training"] = True
    header = {"kind": Kind.UPCALL, "spec": spec, "tensors": protocol.encode_value([x], bufs),
              "grads": protocol.encode_value(None, bufs)}
    return json.loads(json.dumps(header)), bufs  # as the grader receives it


class _NoWorker:
    def new_uid(self):
        return None


def _session(answer, upcall_bytes=16 << 20):
    ours, theirs = socket.socketpair()
    session = Session(_NoWorker(), {}, (S,), calls={f"{S}.simplified_self_attention": [f"{S}.softmax"]},
                      answer=answer, limits=Limits(upcall_bytes=upcall_bytes))
    session.sock = ours
    return session, theirs


def _answer(session, theirs, item, target, x, training=False):
    header, bufs = _upcall_frame(target, x, training)
    session._answer_upcall(header, bufs, item, deadline=time.monotonic() + 10)
    reply, rbufs = protocol.recv(theirs)
    value = protocol.decode_value(reply["value"], rbufs) if reply["kind"] == Kind.UPCALL_RESULT else None
    return reply["kind"], value


def test_an_answer_kept_by_the_grader_is_the_same_and_still_checked(monkeypatch):
    monkeypatch.setattr(client, "ANSWERS", answers.AnswerMemo())
    service = _Counting()
    session, theirs = _session(service)
    x = torch.arange(6.0)
    item, stage = f"{S}.simplified_self_attention", f"{S}.softmax"
    first = _answer(session, theirs, item, stage, x)
    second = _answer(session, theirs, item, stage, x)
    assert first[0] == second[0] == Kind.UPCALL_RESULT and torch.equal(first[1], second[1])
    assert torch.equal(second[1], x * 2) and service.computed == 1
    # kept or not, the stage must be one the item may call, and never the item itself
    assert _answer(session, theirs, f"{S}.softmax", stage, x)[0] == Kind.UPCALL_ERROR
    assert _answer(session, theirs, None, stage, x)[0] == Kind.UPCALL_ERROR
    # a different question is computed
    _answer(session, theirs, item, stage, x + 1)
    assert service.computed == 2
    # dropout draws are never kept
    _answer(session, theirs, item, stage, x, training=True)
    _answer(session, theirs, item, stage, x, training=True)
    assert service.computed == 4
    # an answer kept under one session's bound is refused under a smaller one
    big = _Counting(repeat=100)
    y = torch.ones(1)
    assert _answer(*_session(big), item, stage, y)[0] == Kind.UPCALL_RESULT
    assert _answer(*_session(big, upcall_bytes=64), item, stage, y)[0] == Kind.UPCALL_ERROR
    assert big.computed == 2  # asked again: its own bound refused it, not the kept frame


def test_the_grader_memo_of_answers_is_bounded():
    memo = answers.AnswerMemo(max_bytes=1 << 16)
    for n in range(100):
        memo.put(("s", n), b"x" * 4096, 4096)
    assert memo.held <= 1 << 16 and len(memo.frames) <= 16
    assert memo.get(("s", 99), 1 << 20) is not None and memo.get(("s", 0), 1 << 20) is None


# --------------------------------------------------------------------------- answers the child keeps

def _child():
    ours, theirs = socket.socketpair()
    return Child(theirs, os.getcwd(), torch, MODULES), ours


def _send_answer(grader_end, value):
    bufs: list = []
    protocol.send(grader_end, {"kind": Kind.UPCALL_RESULT, "value": protocol.encode_value(value, bufs)}, bufs)


def _asked(grader_end) -> bool:
    try:
        protocol.recv(grader_end, deadline=time.monotonic() + 0.2)
    except protocol.Timeout:
        return False
    return True


def test_the_child_answers_a_question_again_only_for_the_same_item():
    child, grader = _child()
    spec = {"target": f"{S}.softmax", "args": [{"$slot": 0}], "kwargs": {}, "mode": "forward"}
    x = torch.ones(2, 2)
    child.item = f"{S}.simplified_self_attention"
    _send_answer(grader, torch.full((2, 2), 0.5))
    first = child.upcalls.ask(dict(spec), [x])
    assert _asked(grader)
    again = child.upcalls.ask(dict(spec), [x])
    assert not _asked(grader), "asked again for the same item: answered from what the child was given"
    assert torch.equal(first, again) and again is not first  # a fresh tensor: the student may change it
    again.zero_()
    assert torch.equal(child.upcalls.ask(dict(spec), [x]), torch.full((2, 2), 0.5))
    # another item asks the grader, which decides again whether that item may have it
    child.item = f"{S}.context_vectors"
    _send_answer(grader, torch.full((2, 2), 0.5))
    child.upcalls.ask(dict(spec), [x])
    assert _asked(grader)
    # other arguments, and train-mode questions, are always asked
    child.item = f"{S}.simplified_self_attention"
    _send_answer(grader, torch.zeros(2, 2))
    child.upcalls.ask(dict(spec), [x * 3])
    assert _asked(grader)
    for _ in range(2):
        _send_answer(grader, torch.zeros(2, 2))
        child.upcalls.ask(dict(spec, training=True), [x])
        assert _asked(grader)


def test_a_refusal_is_not_kept():
    child, grader = _child()
    spec = {"target": f"{S}.softmax", "args": [{"$slot": 0}], "kwargs": {}, "mode": "forward"}
    child.item = f"{S}.simplified_self_attention"
    for _ in range(2):
        protocol.send(grader, {"kind": Kind.UPCALL_ERROR, "message": "refused: no"})
        with pytest.raises(Exception, match="refused"):
            child.upcalls.ask(dict(spec), [torch.ones(1)])
        assert _asked(grader)


# --------------------------------------------------------------------------- the reference, kept

@pytest.mark.parametrize("item,args,kwargs", [
    ("self_attention.SelfAttentionV2", (7, 4), {"qkv_bias": True}),
    ("causal_attention.CausalAttention", (7, 4, 5, 0.3), {}),
    ("multihead_attention.MultiHeadAttention", (7, 4, 5, 0.0, 2), {}),
    ("multihead_attention.MultiHeadAttentionWrapper", (7, 4, 5, 0.1, 3), {"qkv_bias": True}),
])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_kept_reference_module_computes_what_a_new_one_does(item, args, kwargs, dtype):
    from attnkit.judge.checks.common import random_state

    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 5, 7, generator=gen, dtype=torch.float64).to(dtype)
    for _ in range(3):  # new parameters each time, the same module kept
        state = {n: t.to(dtype) for n, t in random_state(item, gen, *args, **kwargs).items()}
        module = reference.reference_module(item, state, *args, **kwargs)
        with torch.no_grad():
            want = module(x)
        got = reference.forward(item, state, x, *args, **kwargs)
        assert got.dtype == dtype and torch.equal(got, want)


def test_reference_tensors_are_the_callers_own():
    x = reference.doc_inputs()
    x.fill_(7.0)
    assert not torch.equal(reference.doc_inputs(), x)
    key = next(k for k in reference._public() if k.startswith("self.v1."))
    w = reference.public(key)
    w.zero_()
    assert reference.public(key).abs().sum() > 0


# --------------------------------------------------------------------------- the wire format

@pytest.mark.parametrize("node", [
    ["s"], ["s", 1], ["s", "a", "b"], ["l"] + [None] * 300, ["d"], ["d", []], ["T", "float64", [1]],
    ["T", "float64", [1], "0"], ["f", "1.5"], ["o", 3], ["x", 1], [], "bare text", {"t": "none"},
])
def test_malformed_compact_nodes_raise_protocol_error(node):
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_value(node, [b"\0" * 8])


def test_values_keep_their_kind_on_the_wire():
    value = {"s": "l", "list": ["l", "t"], "tuple": ("d",), "n": [1, 2.0, True, None], "nan": float("nan")}
    bufs: list = []
    out = protocol.decode_value(json.loads(json.dumps(protocol.encode_value(value, bufs))), bufs)
    assert out["s"] == "l" and out["list"] == ["l", "t"] and out["tuple"] == ("d",)
    assert out["n"] == [1, 2.0, True, None] and type(out["n"][1]) is float and out["nan"] != out["nan"]


# --------------------------------------------------------------------------- the whole

@pytest.mark.slow  # three submissions, each graded twice (2 s)
def test_grades_stay_the_same_for_every_student_of_a_small_class(zygote, tmp_path):
    """A correct, a wrong and a stub submission, each graded twice in a row (the
    second time every kept answer is there): the same scores and reasons."""
    folders = {
        "correct": make_submission(tmp_path / "correct"),
        "wrong": make_submission(tmp_path / "wrong", {
            "self_attention": [("return torch.softmax(scores / d_k ** 0.5, dim=-1)",
                                "return torch.softmax(scores / d_k, dim=-1)")]}),
    }
    for name, folder in folders.items():
        sub = from_folder(str(folder), MODULES, name)
        first, second = grade(zygote, sub), grade(zygote, sub)
        assert scores(first) == scores(second)
        assert [r.reasons for r in first.results] == [r.reasons for r in second.results]
    assert scores(grade(zygote, from_folder(str(folders["correct"]), MODULES, "c"))) == full_marks()


# --------------------------------------------------------------------------- frames read in three reads

def test_a_frame_is_read_in_three_reads_whatever_its_buffers(monkeypatch):
    a, b = socket.socketpair()
    bufs = [bytes([i]) * (i + 1) for i in range(40)]
    protocol.send(a, {"kind": Kind.RESULT}, bufs)
    reads = []

    class Counting:
        def settimeout(self, value):
            b.settimeout(value)

        def recv_into(self, *args):
            reads.append(1)
            return b.recv_into(*args)

    header, got = protocol.recv(Counting(), deadline=time.monotonic() + 5)
    assert got == bufs and header["bufs"] == [len(x) for x in bufs]
    assert len(reads) == 3  # the head, the JSON, every buffer at once
    assert all(type(x) is bytes for x in got)


# --------------------------------------------------------------------------- stand-in gradients without sympy

def _explicit_vjp(spec, tensors, grads):
    """torch's own vector-Jacobian product, with explicit grad_outputs."""
    leaves = [t.detach().requires_grad_(t.is_floating_point()) for t in tensors]
    kind = reference.stand_in_targets()[spec["target"]]
    out = (reference._call_module if kind == "module" else reference._call_function)(spec, leaves)
    return torch.autograd.grad([out], [t for t in leaves if t.requires_grad], grads, allow_unused=True)


VJP_CASES = [
    ({"target": f"{S}.softmax", "args": [{"$slot": 0}], "kwargs": {"dim": -1}}, [(2, 3, 4)], torch.float64),
    ({"target": "self_attention.attention_weights", "args": [{"$slot": 0}, 4], "kwargs": {}}, [(2, 3, 3)],
     torch.float32),
    ({"target": "multihead_attention.split_heads", "args": [{"$slot": 0}, 2], "kwargs": {}}, [(2, 3, 4)],
     torch.float32),
    ({"target": "causal_attention.CausalAttention", "init": [3, 2, 4, 0.0, False],
      "state": ["W_query.weight", "W_key.weight", "W_value.weight"]}, [(2, 4, 3), (2, 3), (2, 3), (2, 3)],
     torch.float64),
]


@pytest.mark.parametrize("spec, shapes, dtype", VJP_CASES, ids=[c[0]["target"] for c in VJP_CASES])
def test_stand_in_gradients_are_torchs_own_bit_for_bit(spec, shapes, dtype):
    gen = torch.Generator().manual_seed(11)
    tensors = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    out = reference._upcall(dict(spec, mode="forward"), tensors, None)
    grads = [torch.randn(out.shape, generator=gen, dtype=dtype)]
    got = reference._upcall(dict(spec, mode="vjp"), tensors, grads)
    want = _explicit_vjp(spec, tensors, grads)
    assert len(got) == len(want) == len(tensors)
    assert all(torch.equal(g, w) for g, w in zip(got, want))


def test_a_gradient_of_another_shape_is_refused_not_broadcast():
    spec, shapes, dtype = VJP_CASES[0]
    x = torch.randn(shapes[0], dtype=dtype)
    with pytest.raises(ValueError, match="malformed gradient request"):
        reference._upcall(dict(spec, mode="vjp"), [x], [torch.ones(4, dtype=dtype)])  # would broadcast


@pytest.mark.slow
def test_grading_never_imports_sympy(tmp_path):
    """torch imports sympy for explicit grad_outputs (0.3-0.6 s a process): no grading path needs it."""
    code = ("import sys\nfrom attnkit.sandbox import Zygote\nfrom attnkit.judge.engine import grade\n"
            "from attnkit.intake import from_folder\nfrom attnkit.exercises import MODULES\n"
            f"z = Zygote()\nr = grade(z, from_folder({str(SOLUTIONS)!r}, MODULES))\nz.close()\n"
            "print(r.score, r.max_score, 'sympy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    score, total, imported = out.stdout.split()
    assert score == total and imported == "False", out.stdout + out.stderr


@confined_only
def test_the_child_inherits_the_workers_objects_frozen(zygote):
    """The worker freezes its objects for the garbage collector before it forks,
    so the child's collections never write to them (fewer pages copied)."""
    code = "import gc\nprint(gc.get_freeze_count())\n" + (SOLUTIONS / "simplified_attention.py").read_text()
    session = Session(zygote, {"simplified_attention.py": code.encode()}, ("simplified_attention",),
                      limits=Limits(seconds=10))
    try:
        session.request("simplified_attention.softmax", "call", (torch.zeros(2, 3),))
        assert int(session.output().split()[0]) > 10_000  # torch alone is far more; none without the freeze
    finally:
        session.close()
