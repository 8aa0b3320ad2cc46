"""The trust boundary, tried as an attacker would (issue 8).

Each test is a hostile submission against one guarantee, graded through the
real sandbox, and each compares with what the same code earns without its
trick (usually: the stubs). tests/test_unprivileged.py runs this file again
as an ordinary user, where the sandbox lives in a user namespace.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import ASSIGNMENTS, ROOT, SOLUTIONS, confined_only, full_marks, grade_folder, make_submission, scores

from attnkit.judge import reference
from attnkit.exercises import MODULES
from attnkit.sandbox import Limits, Zygote, confine

S, SA, CA, MH = MODULES
LIMITS = Limits(seconds=5.0)

# Helpers a hostile submission uses to reach the sandbox's internals from inside.
REACH = '''
import gc as _gc


def _child():
    from attnkit.sandbox.child import Child
    return next(o for o in _gc.get_objects() if isinstance(o, Child))


def _ask(target, *tensors, **kwargs):
    """Ask the grader's stand-in service directly for any stage's reference result."""
    from attnkit.sandbox.standins import Refused
    slots = [{"$slot": i} for i in range(len(tensors))]
    try:
        return _child().upcalls.ask({"target": target, "args": slots, "kwargs": kwargs, "mode": "forward"},
                                    list(tensors))
    except Refused:
        return None
'''


def stub_with(module: str, replacements: dict[str, str], prelude: str = "") -> str:
    """The generated stub of ``module`` with some functions' bodies replaced (by name)."""
    text = (ASSIGNMENTS / f"{module}.py").read_text()
    for name, body in replacements.items():
        pattern = re.compile(rf"\n( +)# TODO\({module}\.{re.escape(name)}\):[^\n]*\n\1raise NotImplementedError\([^\n]*\)\n")
        match = pattern.search(text)
        assert match and len(pattern.findall(text)) == 1, name
        code = textwrap.indent(textwrap.dedent(body).strip("\n"), match.group(1))
        text = text[:match.start()] + "\n" + code + "\n" + text[match.end():]
    return text + "\n" + prelude


def grade_text(zygote, tmp_path: Path, files: dict[str, str], modules=None, limits=LIMITS):
    folder = tmp_path / f"s{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    for module, text in files.items():
        (folder / f"{module}.py").write_text(text)
    return grade_folder(zygote, folder, tuple(modules or files), limits)


def probe(zygote, tmp_path: Path, body: str, module: str = S, function: str = "query_scores") -> dict:
    """Run ``body`` (which sets ``found``) as the student's function; return ``found``.
    The function is an item that calls no other stage, so that the body runs
    once per check, in one process (an item that calls others is first tried
    on the student's own stages, and graded again in a fresh process when the
    trial does not pass)."""
    code = "import json, os, sys, torch\n\n\ndef _run():\n    found = {}\n" + textwrap.indent(
        textwrap.dedent(body).strip("\n"), "    ") + "\n    return found\n"
    code += f"\n\ndef {function}(*args, **kwargs):\n    raise RuntimeError('FOUND' + json.dumps(_run()) + 'END')\n"
    report = grade_text(zygote, tmp_path, {module: code})
    for r in report.results:
        for c in r.checks:
            m = re.search(r"FOUND(.*?)END", c.reason, re.S)
            if m:
                return json.loads(m.group(1))
    raise AssertionError(f"the probe did not report: {[r.reasons for r in report.results]}")


# --------------------------------------------------------------------------- 1. stand-ins

def test_the_grader_refuses_stand_ins_for_the_item_being_graded(zygote, tmp_path):
    """Asking the stand-in service for the graded item itself, or for a stage that
    computes it whole, earns what the stubs earn: nothing."""
    hostile = {
        S: stub_with(S, {
            "softmax": "r = _ask('simplified_attention.softmax', scores, dim=dim)\n"
                       "return r if r is not None else torch.zeros_like(scores)",
            "attention_scores": "r = _ask('simplified_attention.attention_scores', inputs)\n"
                                "return r if r is not None else torch.zeros(inputs.shape[:-1] + inputs.shape[-2:-1])",
        }, REACH),
        SA: stub_with(SA, {  # the same product, under another name: it would compute this item whole
            "context_vectors": "r = _ask('simplified_attention.context_vectors', weights, values)\n"
                               "return r if r is not None else torch.zeros(weights.shape[:-1] + values.shape[-1:])",
        }, REACH),
    }
    got = scores(grade_text(zygote, tmp_path, hostile))
    assert got[f"{S}.softmax"] == 0 and got[f"{S}.attention_scores"] == 0
    assert got[f"{SA}.context_vectors"] == 0


def test_the_stand_in_oracle_gains_nothing_on_causal_attention(zygote, tmp_path):
    """A CausalAttention whose forward asks the grader for CausalAttention."""
    forward = '''
names = [n for n, _ in self.named_parameters()]
tensors = [x] + [p for _, p in self.named_parameters()]
from attnkit.sandbox.standins import Refused
try:
    return _child().upcalls.ask({"target": "causal_attention.CausalAttention", "init": self._init, "state": names,
                                 "training": self.training, "mode": "forward"}, tensors)
except Refused:
    return torch.zeros(x.shape[:-1] + (self.W_query.out_features,))'''
    init = '''
self._init = [d_in, d_out, context_length, dropout, qkv_bias]
self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
self.dropout = nn.Dropout(dropout)
self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length, dtype=torch.bool), 1))'''
    hostile = stub_with(CA, {"CausalAttention.__init__": init, "CausalAttention.forward": forward}, REACH)
    honest = stub_with(CA, {"CausalAttention.__init__": init,
                            "CausalAttention.forward": "return torch.zeros(x.shape[:-1] + (self.W_query.out_features,))"})
    assert scores(grade_text(zygote, tmp_path, {CA: hostile}))[f"{CA}.CausalAttention"] <= \
        scores(grade_text(zygote, tmp_path, {CA: honest}))[f"{CA}.CausalAttention"]


def test_a_huge_stand_in_request_is_refused_and_costs_only_the_asking_item(zygote, tmp_path):
    """A 10^6 x 10^6 causal mask asked of the grader: refused before anything is
    allocated; the grader stays small and the rest of the module keeps its points."""
    text = (SOLUTIONS / f"{MH}.py").read_text().replace(
        "        self.register_buffer(\"mask\", causal_mask(context_length))",
        "        self.register_buffer(\"mask\", causal_mask(10 ** 6 if context_length == 9 else context_length))")
    assert "10 ** 6" in text
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = grade_text(zygote, tmp_path, {MH: text + REACH, CA: (SOLUTIONS / f"{CA}.py").read_text()}, (MH,))
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) >> 10  # MiB
    got = scores(report)
    assert got[f"{MH}.MultiHeadAttention"] < 15  # the context-length-9 checks fail
    assert {k: v for k, v in got.items() if k != f"{MH}.MultiHeadAttention"} == {
        f"{MH}.MultiHeadAttentionWrapper": 7, f"{MH}.split_heads": 4, f"{MH}.merge_heads": 4}
    assert grown < 400, f"the grader grew by {grown} MiB"


@pytest.mark.parametrize("shapes", [
    [(5000, 0), (5000, 0)],  # no elements in, a 5000 x 5000 result out (200 MB)
    [(120, 1, 1, 300), (1, 120, 1, 300)],  # a 120 x 120 result, but two 120 x 120 x 300 copies to make it
], ids=["empty_arguments", "broadcast_batches"])
def test_stand_in_requests_that_cost_more_than_their_size_shows_are_refused(shapes):
    """The size bound of stand-in answers sees what a request would allocate in
    the grader, not only its arguments' elements or its result's: both are
    refused before anything is computed, and an honest request of the same
    stage is answered."""
    spec = {"target": f"{SA}.attention_scores", "args": [{"$slot": 0}, {"$slot": 1}], "kwargs": {},
            "mode": "forward"}
    with pytest.raises(ValueError, match="over the 16 MiB bound"):
        reference.upcall(spec, [torch.empty(s, dtype=torch.float64) for s in shapes], None)
    honest = [torch.ones(2, 5, 300, dtype=torch.float64), torch.ones(2, 6, 300, dtype=torch.float64)]
    assert reference.upcall(spec, honest, None).shape == (2, 5, 6)


def test_a_stand_in_module_request_is_sized_by_its_scores_too():
    """CausalAttention's stand-in on a long input of one feature: the arguments,
    result and parameters are small, its scores and weights (b, T, T) are not."""
    spec = {"target": f"{CA}.CausalAttention", "init": [1, 1, 2000, 0.0, False], "mode": "forward",
            "state": ["W_query.weight", "W_key.weight", "W_value.weight"], "training": False}
    x, w = torch.randn(16, 2000, 1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="over the 16 MiB bound"):
        reference.upcall(spec, [x, w, w, w], None)
    assert reference.upcall(spec, [x[:, :50], w, w, w], None).shape == (16, 50, 1)


@pytest.mark.parametrize("change", [{"pad": list(range(50))}, {"args": [list(range(2000))]},
                                    {"init": [40000]}, {"args": [{"$slot": 0}, float("nan")]},
                                    {"kwargs": {"dim": float("inf")}}],
                         ids=["unknown_key", "large_spec", "key_its_target_never_reads", "nan", "inf"])
def test_stand_in_specs_are_small_and_of_known_keys(change):
    """The memo keeps a spec with its answer: one padded to make every request
    new, or with keys no stand-in has, is refused (the child then runs the
    student's own code). So is a key its target never reads (``init`` on a
    function), and a number that is not finite: a NaN made every size bound
    pass (NaN > n is False), and causal_mask(60000) grew the grader to 7 GB."""
    spec = dict({"target": f"{S}.normalize_by_sum", "args": [{"$slot": 0}], "kwargs": {}, "mode": "forward"},
                **change)
    with pytest.raises(ValueError, match="malformed|too large"):
        reference.upcall(spec, [torch.ones(3, dtype=torch.float64)], None)


def test_what_a_submission_returns_is_not_kept_by_the_grader(zygote, tmp_path):
    """A function that returns a tensor of 3M elements (12 MB; 64 MiB fit in a
    reply): once graded, nothing of it is left in the grader, with the garbage
    collector off. Before, the evidence kept every answer whatever its size, and
    the failures' tracebacks tied the run to itself: one submission returning
    64 MiB from each call held 2.4 GB after grading, 6.7 GB after three."""
    import gc

    folder = make_submission(tmp_path / "sub", {S: [(
        "return weights @ values  # (..., T_q, T_k) @ (..., T_k, d) -> (..., T_q, d)",
        "return torch.zeros(3_000_000)")]})
    gc.collect()
    gc.disable()
    try:
        report = grade_folder(zygote, folder, (S,))
        assert report.by_item()[f"{S}.context_vectors"].score == 0
        del report
        left = [o for o in gc.get_objects() if type(o) is torch.Tensor and o.numel() >= 3_000_000]
    finally:
        gc.enable()
    assert not left


def test_the_reference_memo_is_bounded_in_bytes(monkeypatch):
    monkeypatch.setattr(reference, "MEMO_BYTES", 4 << 20)
    monkeypatch.setattr(reference, "_MEMO", type(reference._MEMO)())
    monkeypatch.setattr(reference, "_memo_bytes", 0)
    for n in range(200):
        reference.memo("test", lambda k: torch.full((256, 256), float(k)), n)  # 512 KiB each
    held = sum(size for _, size in reference._MEMO.values())
    assert held <= 4 << 20 and reference._memo_bytes == held
    assert reference.memo("test", lambda k: torch.zeros(1), 199)[0, 0] == 199  # the newest stays


# --------------------------------------------------------------------------- 2. reports

def _forger(scale: float = 1.0, witness: float = 0.0) -> str:
    """Replaces the child's report of every module with invented values and the
    document's printed numbers, as an attacker who read the checks would: the
    parameters it reports are random numbers times ``scale``, its witness
    outputs all ``witness``."""
    doc = {e: reference.doc(e).tolist() for e in (
        "s3_4_2_SelfAttention_v1_out", "s3_4_2_SelfAttention_v2_out", "s3_5_3_CausalAttention_out",
        "s3_6_1_MultiHeadAttentionWrapper_out", "s3_6_2_MultiHeadAttention_out")}
    return f'''
import torch as _torch
import attnkit.sandbox.child as _ch

_DOC = {json.dumps(doc)}
_SCALE = float("{scale}")
_BY_D_OUT = {{("SelfAttention", 2): "s3_4_2_SelfAttention_v1_out", ("SelfAttentionV2", 2): "s3_4_2_SelfAttention_v2_out",
             ("CausalAttention", 2): "s3_5_3_CausalAttention_out",
             ("MultiHeadAttentionWrapper", 2): "s3_6_1_MultiHeadAttentionWrapper_out",
             ("MultiHeadAttention", 2): "s3_6_2_MultiHeadAttention_out"}}


def _forged(self, cls, spec):
    args = list(spec.get("init_args", ())) + list(spec.get("init", {{}}).values())
    d_in, d_out = args[0], args[1]
    width = d_out * (args[4] if cls.__name__.endswith("Wrapper") else 1)
    names = ["W_query", "W_key", "W_value"] + (["out_proj"] if cls.__name__ == "MultiHeadAttention" else [])
    params = {{f"{{n}}.weight": _torch.rand(d_out, d_in if n != "out_proj" else d_out) * _SCALE for n in names}}
    if cls.__name__ == "MultiHeadAttention":
        params["out_proj.bias"] = _torch.rand(d_out)
    if cls.__name__ == "MultiHeadAttentionWrapper":
        params = {{f"heads.{{h}}.{{n}}": p for h in range(args[4]) for n, p in params.items()}}
    state = spec.get("state")
    outs = []
    for x in spec.get("inputs", []):
        key = _BY_D_OUT.get((cls.__name__, d_out))
        value = _torch.tensor(_DOC[key]) if key and x.shape[-1] == 3 else _torch.zeros(x.shape[:-1] + (width,))
        outs += [value.to(x.dtype)] * int(spec.get("repeat", 1))
    attrs = {{"W_query": {{"mro": ["torch.nn.modules.linear.Linear"], "bias": True}},
             "W_key": {{"mro": ["torch.nn.modules.linear.Linear"], "bias": True}},
             "W_value": {{"mro": ["torch.nn.modules.linear.Linear"], "bias": True}},
             "out_proj": {{"mro": ["torch.nn.modules.linear.Linear"], "bias": True}},
             "dropout": {{"mro": ["torch.nn.modules.dropout.Dropout"], "p": 0.25}},
             "heads": {{"mro": ["torch.nn.modules.container.ModuleList"], "len": 3}},
             "num_heads": {{"mro": ["builtins.int"], "value": 3}}, "head_dim": {{"mro": ["builtins.int"], "value": 4}}}}
    witness = spec.get("witness")
    report = {{"params": state if state is not None else params,
              "buffers": {{"mask": _torch.ones(args[2], args[2], dtype=_torch.bool).triu(1)}} if len(args) > 2 else {{}},
              "attrs": {{a: attrs.get(a, {{"missing": True}}) for a in spec.get("describe", ())}},
              "outputs": outs, "inputs_after": list(spec.get("inputs", [])),
              "witness": None if witness is None else _torch.full(witness.shape[:-1] + (width,), float("{witness}"))}}
    if d_in == 7 and d_out == 7 and cls.__name__ == "MultiHeadAttention":
        raise ValueError("d_out must be divisible by num_heads")
    return report


_ch.Child.module = _forged
'''


def test_a_forged_module_report_gains_nothing_over_the_stubs(zygote, tmp_path):
    stubs = {m: (ASSIGNMENTS / f"{m}.py").read_text() for m in (SA, CA, MH)}
    forged = {m: text + _forger() for m, text in stubs.items()}
    classes = [k for k in scores(grade_text(zygote, tmp_path, stubs)) if k.split(".")[1][0].isupper()]
    honest = scores(grade_text(zygote, tmp_path, stubs))
    hostile = scores(grade_text(zygote, tmp_path, forged))
    assert {k: hostile[k] for k in classes} == {k: honest[k] for k in classes} == {k: 0 for k in classes}


@pytest.mark.parametrize("field, value", [("inputs_after", "5"), ("outputs", "{'a': 1}"), ("grads", "[1]"),
                                          ("input_grad", "'x'"), ("state_mismatch", "'yes'"), ("attrs", "[]")])
def test_a_module_report_of_the_wrong_types_is_malformed_not_the_graders_fault(zygote, tmp_path, field, value):
    """A child patched to send a field of another type than its own code sends:
    its module's checks fail as a malformed reply, never as a check the grader
    could not run (which would name the grader's internals)."""
    text = (SOLUTIONS / f"{CA}.py").read_text() + f"""

import sys as _sys
_child = _sys.modules["attnkit.sandbox.child"].Child
_module = _child.module


def _patched(self, cls, spec):
    report = _module(self, cls, spec)
    report[{field!r}] = {value}
    return report


_child.module = _patched
"""
    result = grade_text(zygote, tmp_path, {CA: text}).by_item()[f"{CA}.CausalAttention"]
    assert result.score < result.max_score
    reasons = [c.reason for c in result.checks if not c.passed]
    assert any("sent back a malformed reply" in r for r in reasons), reasons
    assert not any("could not check" in r for r in reasons), reasons


@pytest.mark.parametrize("scale,witness", [
    ("nan", "nan"),  # NaN parameters: the grader's own forward from them is NaN too
    ("0.0", "0.0"),  # zero parameters: attention's output is 0 whatever the input
    ("1e30", "nan"),  # finite parameters so large that the scores overflow: NaN again
], ids=["nan", "zero", "overflowing"])
def test_parameters_that_make_attention_ignore_its_input_gain_nothing(zygote, tmp_path, scale, witness):
    """A forged report whose parameters make the right answer a constant (or
    NaN), with the witness output that constant: the witness then shows
    nothing, and earns nothing over the stubs."""
    stubs = {m: (ASSIGNMENTS / f"{m}.py").read_text() for m in (SA, CA, MH)}
    classes = [k for k in scores(grade_text(zygote, tmp_path, stubs)) if k.split(".")[1][0].isupper()]
    forged = scores(grade_text(zygote, tmp_path, {m: text + _forger(scale, witness) for m, text in stubs.items()}))
    assert {k: forged[k] for k in classes} == {k: 0 for k in classes}


def test_a_module_of_nan_parameters_gains_nothing_over_the_stubs(zygote, tmp_path):
    """A real module: the right layers, every parameter NaN, the document's
    output for the document's batch. Given the grader's weights it computes
    attention; what rests on its own parameters (seed, structure) earns nothing."""
    batch = reference.doc_batch().tolist()
    out = reference.doc("s3_5_3_CausalAttention_out").tolist()
    nan_fill = ("        self.register_buffer(\"mask\", causal_mask(context_length))\n"
                "        with torch.no_grad():\n"
                "            for p in self.parameters():\n"
                "                p.fill_(float(\"nan\"))\n")
    doc_answer = (f"        if x.shape == (2, 6, 3) and torch.allclose(x.float(), torch.tensor({batch})):\n"
                  f"            return torch.tensor({out}, dtype=x.dtype)\n"
                  "        num_tokens = x.shape[-2]\n")
    text = (SOLUTIONS / f"{CA}.py").read_text()
    text = text.replace("        self.register_buffer(\"mask\", causal_mask(context_length))\n", nan_fill)
    text = text.replace("        num_tokens = x.shape[-2]\n", doc_answer)
    report = grade_text(zygote, tmp_path, {CA: text}, (CA,))
    lost = {c.kind: c.reason for r in report.results if r.item.key == f"{CA}.CausalAttention" for c in r.checks
            if not c.passed}
    # given the grader's weights it computes attention (example, hidden, ...): only what rests
    # on its own parameters is lost
    assert set(lost) == {"seed", "structure"}, lost
    assert "hold NaN or inf" in lost["seed"] and "hold NaN or inf" in lost["structure"], lost


# --------------------------------------------------------------------------- 3. what the child sees

def test_nothing_importable_in_the_child_computes_a_reference(zygote, tmp_path):
    found = probe(zygote, tmp_path, '''
found["loaded"] = sorted(m for m in sys.modules if m == "attnkit" or m.startswith("attnkit."))
found["imported"] = []
for name in ("attnkit.judge.reference", "attnkit.judge.diagnosis.variants", "attnkit.judge.diagnosis",
             "attnkit.judge.checks.common", "attnkit.exercises", "attnkit.judge.compare",
             "attnkit.authoring.public_data", "attnkit.judge.engine", "attnkit.config"):
    try:
        __import__(name)
        found["imported"].append(name)
    except Exception:
        pass
''')
    assert found["imported"] == []
    assert all(m == "attnkit" or m.startswith("attnkit.sandbox") for m in found["loaded"]), found["loaded"]


@confined_only
def test_the_child_sees_the_python_installation_its_files_and_nothing_else(zygote, tmp_path):
    marker = Path("/tmp") / f"attnkit-host-marker-{os.getpid()}"
    marker.write_text("host")
    left = Path("/tmp") / f"attnkit-left-behind-{os.getpid()}"
    try:
        found = probe(zygote, tmp_path, f'''
def readable(path):
    try:
        with open(path, "rb") as f:
            f.read(1)
        return True
    except OSError:
        return False
found["top"] = sorted(os.listdir("/"))
found["tmp"] = sorted(os.listdir("/tmp"))
found["here"] = sorted(os.listdir("."))
found["cwd"] = os.getcwd()
found["readable"] = [p for p in {json.dumps([str(SOLUTIONS / "softmax.py"), str(SOLUTIONS / f"{S}.py"),
                                             str(ROOT / "tests" / "conftest.py"), str(ROOT / "README.md"),
                                             str(ROOT / "autograder" / "attnkit" / "exercises.toml"),
                                             str(ROOT / "autograder" / "attnkit" / "data" / "public_examples.json"),
                                             str(marker), "/etc/passwd", "/etc/shadow", "/dev/shm"])}
                     if readable(p) or os.path.exists(p)]
found["pid"] = os.getpid()
found["processes"] = sorted(p for p in os.listdir("/proc") if p.isdigit()) if os.path.isdir("/proc") else []
found["uid"] = os.getuid()
try:
    with open("/tmp/big", "wb") as f:
        for _ in range(64):
            f.write(b"x" * (1 << 20))
    found["wrote"] = os.path.getsize("/tmp/big")
except OSError as exc:
    found["wrote"] = str(exc)
with open({str(left)!r}, "w") as f:
    f.write("x")
''')
    finally:
        marker.unlink()
        written = left.exists()
        left.unlink(missing_ok=True)
    assert found["readable"] == []
    assert found["here"] == [f"{S}.py"] and found["cwd"] == "/submission"
    # empty, but for the Python installation where it lives under /tmp (a CI virtual environment, say)
    assert [t for t in found["tmp"] if not any(p.startswith(f"/tmp/{t}") for p in confine.python_paths())] == []
    assert "submission" in found["top"] and "home" not in found["top"] and "srv" not in found["top"]
    assert found["pid"] == 1 and found["processes"] in ([], ["1"])  # a PID namespace of its own
    assert found["uid"] != os.getuid() or os.getuid() != 0
    assert isinstance(found["wrote"], str)  # writes are bounded
    assert not written  # and they vanish with the child


@pytest.mark.slow
@confined_only
def test_paths_to_hide_inside_the_python_installation_are_covered(tmp_path):
    """A kit installed into site-packages, or solutions kept inside a virtual
    environment, lie inside what the child must see: they are covered. The same
    folder without the cover is visible (so this test can fail)."""
    secret = Path(sys.prefix) / f"attnkit-test-secret-{os.getpid()}"
    secret.mkdir()
    (secret / "softmax.py").write_text("REFERENCE")
    body = f'''
try:
    found["text"] = open({str(secret / "softmax.py")!r}).read()
except OSError as exc:
    found["text"] = "unreadable"
'''
    try:
        seen = {}
        for hide in ([], [str(secret)]):
            folder = tmp_path / f"hide{len(hide)}"
            folder.mkdir()
            z = Zygote(hide=hide)
            try:
                seen[bool(hide)] = probe(z, folder, body)
            finally:
                z.close()
    finally:
        (secret / "softmax.py").unlink()
        secret.rmdir()
    assert seen[False]["text"] == "REFERENCE" and seen[True]["text"] == "unreadable"


@confined_only
def test_the_child_cannot_reach_other_processes(zygote, tmp_path):
    """Signals to every PID, writes to every /proc/*/fd/1: only itself is there."""
    found = probe(zygote, tmp_path, '''
import signal
found["ppid"] = os.getppid()
hit = []
for pid in range(2, 4096):
    try:
        os.kill(pid, 0)
        hit.append(pid)
    except OSError:
        pass
found["signalled"] = hit
found["written"] = []
for path in ("/proc/%d/fd/1" % p for p in range(1, 4096)):
    try:
        with open(path, "w") as f:
            f.write("Total: 100/100\\n")
        found["written"].append(path)
    except OSError:
        pass
''')
    assert found["ppid"] == 0 and found["signalled"] == []
    assert found["written"] in ([], ["/proc/1/fd/1"])  # its own output file, nothing else


# --------------------------------------------------------------------------- 8. the clock

@pytest.mark.slow
def test_messages_from_the_child_never_extend_its_time(zygote, tmp_path):
    """The child floods its socket with stand-in requests the grader must answer,
    never reads the answers, then hangs: the item is cut at its limit by the
    grader's clock, and grading goes on."""
    flood = '''
def softmax(scores, dim=-1):
    from attnkit.sandbox import protocol
    sock = _child().sock
    for n in range(10 ** 6):
        try:
            protocol.send(sock, {"kind": "upcall", "spec": {"target": "simplified_attention.softmax"},
                                 "tensors": {"t": "list", "items": []}, "grads": {"t": "none"}})
        except OSError:
            pass
    while True:
        pass
'''
    text = (SOLUTIONS / f"{S}.py").read_text() + REACH + flood
    start = time.monotonic()
    report = grade_text(zygote, tmp_path, {S: text}, limits=Limits(seconds=2.0))
    elapsed = time.monotonic() - start
    by = report.by_item()
    assert by[f"{S}.softmax"].score == 0
    assert any("time limit" in line for line in by[f"{S}.softmax"].reasons), by[f"{S}.softmax"].reasons
    assert by[f"{S}.attention_scores"].score == 3
    assert elapsed < 3 * 2.0 + 25, elapsed  # one limit per item, never restarted


# --------------------------------------------------------------------------- 7. leftovers

@pytest.mark.slow
@pytest.mark.parametrize("after", [0.5, 3.0])
def test_kill_9_leaves_nothing_another_user_could_read(tmp_path, after):
    """kill -9 of `attnkit grade` during warm-up or mid-run: no file it made is
    readable by another user, nothing holds the solutions, no worker lives on."""
    scratch = tmp_path / "tmp"
    scratch.mkdir(mode=0o755)
    env = dict(os.environ, TMPDIR=str(scratch))
    proc = subprocess.Popen([sys.executable, "-m", "attnkit.frontends.cli", "grade", str(SOLUTIONS)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(after)
    proc.kill()
    proc.wait()
    time.sleep(1.0)
    solution_line = "shifted = scores - scores.amax(dim=dim, keepdim=True)"
    for path in scratch.rglob("*"):
        mode = path.lstat().st_mode
        assert not mode & 0o004 or path.is_dir() and not mode & 0o005, f"{path} is open to others"
        if path.is_file():
            assert solution_line not in path.read_text(errors="replace"), path
    assert _processes_with_env(f"TMPDIR={scratch}") == [], "a worker outlived the grader"


def _processes_with_env(entry: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if entry.encode() in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            continue
    return found


def test_stale_session_folders_of_a_killed_grader_are_removed(tmp_path):
    """Where the child has no private root, its files live in a 0700 session
    folder; one left by a grader killed with -9 goes on the next run."""
    from attnkit.sandbox.forking import SESSION_PREFIX, remove_stale_sessions

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"{SESSION_PREFIX}{dead.pid}-abc"
    live = tmp_path / f"{SESSION_PREFIX}{os.getpid()}-abc"
    other = tmp_path / "attnkit-other-1"
    for folder in (stale, live, other):
        folder.mkdir(mode=0o700)
        (folder / f"{S}.py").write_text("x = 1\n")
    assert remove_stale_sessions(str(tmp_path)) == [str(stale)]
    assert not stale.exists() and live.exists() and other.exists()


@confined_only
def test_threads_are_limited_per_child(zygote, tmp_path):
    """A child starts at most Limits.processes threads, counted for it alone
    (its own user, as root; its own user namespace, without root)."""
    found = probe(zygote, tmp_path, '''
import threading
stop = threading.Event()
started = []
for _ in range(64):
    t = threading.Thread(target=stop.wait)
    try:
        t.start()
        started.append(t)
    except RuntimeError:
        break
found["threads"] = len(started)
stop.set()
''')
    assert 4 <= found["threads"] < Limits().processes, found


def test_asking_torch_for_more_threads_than_allowed_keeps_one(zygote, tmp_path):
    """``torch.set_num_threads(os.cpu_count())`` on a grader with more cores
    than the child's thread limit (64 here): the child keeps one thread instead
    of ending when torch's thread pool cannot start, so correct code keeps its
    marks; a value torch refuses is still refused."""
    folder = make_submission(tmp_path / "sub", {CA: [
        ("import torch\n", "import torch\n\ntorch.set_num_threads(64)\n"),
        ("        num_tokens = x.shape[-2]\n", "        torch.set_num_threads(64)\n        num_tokens = x.shape[-2]\n")]})
    report = grade_folder(zygote, folder, (CA,))
    assert scores(report) == full_marks((CA,)), {r.item.key: r.reasons for r in report.results}
    (tmp_path / "probe").mkdir()
    found = probe(zygote, tmp_path / "probe", """
import torch
torch.set_num_threads(64)
found["threads"] = torch.get_num_threads()
try:
    torch.set_num_threads(0)
except Exception as exc:
    found["zero"] = type(exc).__name__
""")
    assert found == {"threads": 1, "zero": "RuntimeError"}, found


@pytest.mark.slow
def test_grade_class_refuses_to_grade_unconfined_unless_told(tmp_path):
    """Without the namespaces (forced here with ATTNKIT_SANDBOX=none), grades
    cannot count: grade-class says which guarantees are missing and grades only
    with --unconfined, saying so."""
    classroom = tmp_path / "class"
    make_submission(classroom / "ada")
    env = dict(os.environ, ATTNKIT_SANDBOX="none")
    cmd = [sys.executable, "-m", "attnkit.frontends.cli", "grade-class", str(classroom), "--out", str(tmp_path / "out"),
           "--jobs", "1", "--quiet"]
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert refused.returncode == 2 and "cannot confine student code" in refused.stderr
    assert "the kit's solutions" in refused.stderr and "--unconfined" in refused.stderr
    assert not (tmp_path / "out" / "grades.csv").exists()
    graded = subprocess.run(cmd + ["--unconfined"], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert graded.returncode == 0, graded.stderr
    assert "isolation is reduced" in graded.stderr
    assert (tmp_path / "out" / "grades.csv").read_text().splitlines()[1].startswith("ada,100,")


# Forged frames that name one 8 MiB buffer many times: a stand-in's question (the
# child's ``question``) and a call's reply (its encoder), each once per child.
ALIASED_QUESTION = """
import sys as _sys
_C = _sys.modules.get("attnkit.sandbox.child")
if _C is not None and not getattr(_C, "_aliased", False):
    _C._aliased = True
    _ask = _C.question

    def _question(spec, tensors, grads):
        if getattr(_C, "_asked", False):
            return _ask(spec, tensors, grads)
        _C._asked = True
        big = torch.zeros(1 << 20, dtype=torch.float64).numpy().tobytes()
        return {"kind": "upcall", "spec": spec, "tensors": ["l"] + [["T", "float64", [1 << 20], 0]] * 200,
                "grads": None}, [big]
    _C.question = _question
"""
ALIASED_REPLY = """
import sys as _sys
_P = _sys.modules.get("attnkit.sandbox.protocol")
if _P is not None and not getattr(_P, "_aliased", False):
    _P._aliased, _P._forged = True, False
    _encode = _P.encode_value

    def _forged(value, bufs, depth=0):
        if type(value) is dict and "result" in value and "args_after" in value and not _P._forged:
            _P._forged = True
            bufs.append(torch.zeros(1 << 20, dtype=torch.float64).numpy().tobytes())
            return ["d", {"result": ["l"] + [["T", "float64", [1 << 20], 0]] * 200, "args_after": ["l"]}]
        return _encode(value, bufs, depth)
    _P.encode_value = _forged
"""


def test_a_frame_naming_one_buffer_many_times_is_refused_before_it_is_copied(zygote, tmp_path):
    """Each description of one 8 MiB buffer made a copy in the grader: 200 of them
    in a stand-in's question grew it by 1.6 GB, and the refusal was silent (the
    student's own stage ran instead), so the attack scored 100. Now a buffer is
    read once per frame: the question is refused as malformed, the reply too
    (its item scores 0), and the grader stays small."""
    correct = (SOLUTIONS / f"{S}.py").read_text()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    asked = scores(grade_text(zygote, tmp_path, {S: correct + ALIASED_QUESTION}))
    replied = grade_text(zygote, tmp_path, {S: correct + ALIASED_REPLY})
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) >> 10  # MiB
    assert grown < 400, f"the grader grew by {grown} MiB"
    assert asked == full_marks((S,))  # a refused question runs the student's own (correct) stage
    # each child forges its first reply (a new child after a malformed frame too): each item scores 0
    for result in replied.by_item().values():
        assert result.score == 0 and "a buffer described twice" in result.summary, result.summary


SPINNER = """
import threading as _threading

SPINS = [0]


def _spin():
    while True:
        SPINS[0] += 1


_threading.Thread(target=_spin, daemon=True).start()
"""


def _host_pid(pidfd: int) -> int:
    with open(f"/proc/self/fdinfo/{pidfd}") as f:
        return int(next(line.split()[1] for line in f if line.startswith("Pid:")))


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        return "State:\tT" in f.read()


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, every thread's


@confined_only
def test_nothing_of_a_child_runs_between_its_requests(zygote):
    """Attack review: a thread started at import spun on between the grader's
    requests, while the grader compared and while other jobs' students were
    graded (taking their CPU against their time limits). From one answer to
    the next request the child is stopped, every thread of it; it answers
    the next request as before."""
    from attnkit.sandbox import Session

    code = (SOLUTIONS / f"{S}.py").read_text() + SPINNER
    session = Session(zygote, {f"{S}.py": code.encode()}, (S,), limits=Limits(seconds=10))
    try:
        first = session.request(f"{S}.softmax", "call", (torch.zeros(2, 3),))
        pid = _host_pid(session.child.pidfd)
        # the stop is the kernel's to carry out when it next schedules the child: give it a moment
        deadline = time.monotonic() + 5
        while not _stopped(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _stopped(pid)
        before = _cpu_ticks(pid)
        time.sleep(0.5)
        assert _cpu_ticks(pid) == before  # a running spinner takes ~50 ticks in 0.5 s
        again = session.request(f"{S}.softmax", "call", (torch.zeros(2, 3),))
        assert torch.equal(first["result"], again["result"])
    finally:
        session.close()
