"""Building blocks shared by the checks: reference comparisons for function
items and for module items."""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch

from attnkit.judge import compare, reference
from attnkit.judge.diagnosis import Call, finding
from attnkit.judge.diagnosis.dropout import train_mode_failure
from attnkit.judge.diagnosis.pictures import PROBE_TITLE, PROBED, Picture
from attnkit.errors import CheckFailure, GradientFailure, LayoutFailure, LimitExceeded, StudentError
from attnkit.judge.student import parameter_difference, reference_names

# float32 results of a different but correct formula differ by ~1e-7.
F32 = dict(atol=1e-6, rtol=1e-5)


def shape_text(args) -> str:
    shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
    return ", ".join(str(s) for s in shapes)


@dataclass(frozen=True)
class Gradients:
    """What ``against_reference`` also checks of the item's gradient: drawn from
    ``gen``. ``free``: positions of the first argument whose gradient is anyone's
    (a score masked to -inf: ``masked_fill`` sends it 0, adding a -inf mask
    sends it the incoming gradient, and the softmax after it gives both weight
    0). ``rows_sum_to_one``: the first argument is softmax weights, so only
    directions along which its rows still sum to 1 count (``1 - masked sum``
    for the new sum is right on them, and any gradient composed with the
    softmax before it is the same): each row's mean is taken out of both."""

    gen: torch.Generator
    free: torch.Tensor | None = None
    rows_sum_to_one: bool = False


def against_reference(student, *args, what: str | None = None, tol=None, gradients: Gradients | None = None,
                      **kwargs):
    """Call the item with these arguments and compare with the reference solution.

    With ``gradients``, the same request also backpropagates a random gradient
    through the student's function, and what each float argument gets must be
    the reference's: the modules of later stages call this one (stood in for
    while they are graded), and a stage that cuts the autograd graph
    (``.detach()``, ``torch.no_grad()``, a detour through numpy) is right in
    value and would leave their parameters untrained. The function gets copies
    of fresh leaves, so an argument changed in place still shows (but autograd
    may refuse some in-place changes first: take that case last, after plain
    ones, so that the message is the plain one)."""
    expected = reference.memo(student.name, reference.solution(student.name), *args, **kwargs)
    if gradients is None:
        got = student(*args, **kwargs)
    else:
        outs = expected if isinstance(expected, tuple) else (expected,)
        grad_output = tuple(reference.randn(gradients.gen, *o.shape) for o in outs)
        got, grads, inference = student.gradient(args, grad_output)
    call = Call(student.name, args, kwargs)
    what = what or f"the result for arguments of shape {shape_text(args)}" + (
        f" and {', '.join(f'{k}={v}' for k, v in kwargs.items())}" if kwargs else "")
    tol = tol or {}
    if isinstance(expected, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            raise CheckFailure(f"{what} should be a tuple of {len(expected)} tensors; "
                               f"got {compare.kind(got)}")
        names = ("queries", "keys", "values") if len(expected) == 3 else range(len(expected))
        for name, g, e in zip(names, got, expected):
            compare.close(g, e, what=f"{what}: {name}", **tol)
    else:
        got = compare.close(got, expected, what=what, call=call, **tol)
    if gradients is not None:
        _gradients_match(student, args, grads, inference, grad_output, gradients)
    return got


def _gradients_match(student, args: tuple, got: list, inference: bool, grad_output: tuple,
                     gradients: Gradients) -> None:
    """The gradient each float argument got, as the reference's (the values are right by now)."""
    if inference:
        raise GradientFailure("the result is right, but an inference tensor (made under torch.inference_mode()): "
                              "autograd may never save it, so a module that uses it cannot be trained")
    expected = reference.memo("gradients", _reference_gradients, student.name, args, grad_output)
    for at, (name, g, e) in enumerate(zip(student.arg_names(len(args)), got, expected)):
        if e is None:
            continue
        if g is None:
            raise GradientFailure(f"no gradient flows back from the result to `{name}`: the result is right, but "
                                  f"cut from the autograd graph (a .detach(), torch.no_grad() or a detour through "
                                  f"numpy?), so a module that calls this stage could not train what comes before it")
        first = at == 0 and g.shape == e.shape
        if gradients.free is not None and first:
            g, e = g.masked_fill(gradients.free, 0), e.masked_fill(gradients.free, 0)
        if gradients.rows_sum_to_one and first:
            g, e = g - g.mean(dim=-1, keepdim=True), e - e.mean(dim=-1, keepdim=True)
        try:
            compare.close(g, e, what=f"the gradient with respect to `{name}` (of the result times a random tensor, "
                                     f"summed)")
        except CheckFailure as exc:
            raise GradientFailure(exc.reason, exc.details) from None


def _reference_gradients(item: str, args: tuple, grad_output: tuple) -> list:
    leaves = [a.detach().clone().requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point()
              else a for a in args]
    with torch.enable_grad():
        out = reference.solution(item)(*leaves)
        outs = out if isinstance(out, tuple) else (out,)
        terms = [(o * g).sum() for o, g in zip(outs, grad_output) if o.requires_grad]
        if terms:  # a mask has none
            torch.stack(terms).sum().backward()
    return [a.grad if isinstance(a, torch.Tensor) and a.requires_grad else None for a in leaves]


def random_state(item: str, gen: torch.Generator, *args, **kwargs) -> dict[str, torch.Tensor]:
    """Random float64 parameters with the reference module's names and shapes."""
    shapes = reference.memo("shapes", _parameter_shapes, item, *args, **kwargs)
    return {n: reference.randn(gen, *s, scale=0.5) for n, s in shapes.items()}


def _parameter_shapes(item: str, *args, **kwargs) -> dict[str, tuple]:
    return {n: tuple(p.shape) for n, p in reference.solution(item)(*args, **kwargs).named_parameters()}


def reference_outputs(item: str, state, inputs, *args, train=False, **kwargs):
    return reference.memo("outputs", _reference_outputs, item, state, inputs, *args, train=train, **kwargs)


def _reference_outputs(item: str, state, inputs, *args, train=False, **kwargs):
    module = reference.reference_module(item, state, *args, train=train, **kwargs)
    with torch.no_grad():
        return [module(x) for x in inputs]


def module_against_reference(student, *args, state, inputs, what: str, tol=None, **kwargs):
    run = student.build(*args, state=state, inputs=inputs, dtype=_dtype(state), **kwargs)
    expected = reference_outputs(student.name, state, inputs, *args, **kwargs)
    if len(run.outputs) != len(expected):
        raise CheckFailure("the process running your code sent back a malformed reply")
    with weights_pictures(student):
        for x, got, exp in zip(inputs, run.outputs, expected):
            compare.close(got, exp, what=f"{what} for input of shape {tuple(x.shape)}", **(tol or {}),
                          call=Call(student.name, args, kwargs, state=state, x=x))
    return run


PROBE_TOKENS = 6


def probe(item: str, tokens: int = PROBE_TOKENS):
    """Constructor arguments, parameters and input that make a causal module's
    output show its attention weights: one-hot tokens and values [I | 1], so
    output column j < T is the weight on token j (an identity out_proj for
    the fused module, with one head). Queries and keys are fixed random
    numbers, so that the scaling shows too."""
    gen = torch.Generator().manual_seed(20240)  # fixed: the probe only draws a picture
    state = {"W_query.weight": torch.randn(tokens + 1, tokens, generator=gen, dtype=torch.float64) * 0.7,
             "W_key.weight": torch.randn(tokens + 1, tokens, generator=gen, dtype=torch.float64) * 0.7,
             "W_value.weight": torch.cat([torch.eye(tokens, dtype=torch.float64),
                                          torch.ones(1, tokens, dtype=torch.float64)])}
    args = (tokens, tokens + 1, tokens, 0.0)
    if item.endswith("MultiHeadAttention"):
        args += (1,)
        state["out_proj.weight"] = torch.eye(tokens + 1, dtype=torch.float64)
        state["out_proj.bias"] = torch.zeros(tokens + 1, dtype=torch.float64)
    return args, state, torch.eye(tokens, dtype=torch.float64).unsqueeze(0)


@contextmanager
def weights_pictures(student):
    """A wrong output of a causal module gets a picture of the weights behind it."""
    try:
        yield
    except CheckFailure as exc:
        if student.name in PROBED and not isinstance(exc, (StudentError, LimitExceeded)) and not exc.pictures:
            exc.pictures = _probe_pictures(student)
        raise


def _probe_pictures(student) -> list:
    args, state, x = probe(student.name)
    try:
        run = student.build(*args, state=state, inputs=[x], dtype="float64")
    except CheckFailure:
        return []  # the probe is an extra: if it cannot run, the reason stands alone
    got = run.outputs[0] if run.outputs else None
    n = x.shape[-1]
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != (1, n, n + 1):
        return []
    # what the right module shows on the probe: data built from the solutions, so
    # the public checker draws it too without holding any reference code
    expected = reference.public(f"probe.{student.name.split('.', 1)[1]}")
    return [Picture(PROBE_TITLE, expected, got[0, :, :n].detach())]


def module_matches_doc(student, *args, state: str, x: torch.Tensor, entry: str, what: str, verified: str,
                       pictures: bool = False) -> None:
    """The module, constructed with ``args`` and the public weights ``state``,
    on the document's input ``x`` gives the document's printed ``entry``; then
    the child's report of that run is verified (``verify``). ``pictures``: the
    attention weights are drawn for the feedback where the output differs."""
    weights = reference.public_state(state)
    run = build_witnessed(student, *args, like=x, state=weights, inputs=[x])
    with weights_pictures(student) if pictures else nullcontext():
        compare.matches_doc(run.outputs[0] if run.outputs else None, entry, what,
                            call=Call(student.name, args, {}, state=weights, x=x))
    verify(student, run, verified)


def short_sequence_matches(student, *args, state, x: torch.Tensor, **kwargs) -> None:
    """The module (constructed with ``args``, context_length ``args[2]``) on
    ``x``, fewer tokens than its context_length, and then, the same module, on
    the first two tokens fewer (any T <= context_length, call after call: a
    mask kept from the first call would not fit the second), against the
    reference. If its forward raises, the failure says with how many tokens,
    and names a cause only where the error shows one (an unsliced mask is
    recognised in ``attnkit.judge.diagnosis.errors``)."""
    tokens, context = x.shape[1], args[2]
    shorter = x[:, :max(1, tokens - 2)].clone()
    try:
        module_against_reference(student, *args, state=state, inputs=[x, shorter],
                                 what=f"the context vectors with context_length {context}", **kwargs)
    except StudentError as exc:
        if exc.kind != "exception" or exc.diagnosis == "mask_not_sliced":
            raise exc from None
        facts = (f"called with {tokens} tokens and then, the same module, with {shorter.shape[1]} "
                 f"(context_length {context}), forward {exc.reason}")
        raise CheckFailure(facts, exc.details, diagnosis=exc.diagnosis, facts=facts) from None


def same_outputs(first: torch.Tensor, second: torch.Tensor) -> bool:
    """Two outputs agree, NaN where the other has NaN included: NaN is a wrong
    answer for the value checks, not a sign of randomness."""
    return first.shape == second.shape and torch.equal(first.nan_to_num(), second.nan_to_num()) \
        and torch.equal(first.isnan(), second.isnan())


def _dtype(state) -> str | None:
    dtype = next(iter(state.values())).dtype
    return None if dtype == torch.float32 else str(dtype).replace("torch.", "")


# -- what a module run proves
#
# A module run is the child's report: outputs, parameters, attributes. A child
# can report anything, so whatever a check reads from the report beyond the
# outputs of hidden inputs is believed only once the report is shown to come
# from working code: the module also runs on a *witness*, a fresh input drawn
# from the operating system's randomness at the time of the request (so no
# submission can foresee it, whatever it knows of the secret), and the grader
# recomputes that output itself from the parameters the module reported (or
# was given). A forged report cannot pass this without computing attention.

def witness_like(x: torch.Tensor) -> torch.Tensor:
    gen = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little"))
    return torch.randn(tuple(x.shape), generator=gen, dtype=x.dtype)


def build_witnessed(student, *args, like: torch.Tensor, **kwargs):
    """``student.build`` with a witness shaped like ``like``: the module must
    run on it, and, where the grader holds the reference, its output is checked
    (``verify``; the public checker has none, so the forward only has to run)."""
    return student.build(*args, witness=witness_like(like), **kwargs)


def _one_dtype(state: dict) -> dict:
    """The parameters in one dtype (float64 where a module mixes them), as the reference takes them."""
    if len({t.dtype for t in state.values()}) > 1:
        return {n: t.double() for n, t in state.items()}
    return state


def _reference_forward(item: str, run, state: dict, x: torch.Tensor):
    state = _one_dtype(state)
    try:
        return reference.forward(item, state, x.to(next(iter(state.values())).dtype), *run.init_args, **run.init)
    except Exception:  # noqa: BLE001 - parameters the reference cannot take (a dtype it refuses): no match
        return None


def _known_forwards(item: str, run, state: dict, x: torch.Tensor, lenient: bool, expected=None):
    """The outputs a module with these parameters gives on ``x``: the reference's
    (``expected``, when the caller has it, and the parameters are the
    reference's), and with ``lenient`` every catalogued mistake's (an honest
    module with a known bug still computes)."""
    if _same_layout(item, run, state):
        yield expected if expected is not None else _reference_forward(item, run, state, x)
    if lenient:
        from attnkit.judge.diagnosis import ENTRIES

        call = Call(item, run.init_args, run.init, state=state, x=x)
        for entry in ENTRIES:
            fn = entry.variants.get(item)
            try:
                got = fn(call) if fn is not None else []
            except Exception:  # noqa: BLE001 - a variant that cannot run here shows nothing
                continue
            for _, value in (got if isinstance(got, list) else [({}, got)]):
                yield value


def _fits_a_signature(item: str, run, state: dict, x: torch.Tensor, got: torch.Tensor, expected) -> bool:
    """A catalogued mistake known by how the answer relates to the right one
    (the heads' blocks in another order, say), on the witness."""
    if not _same_layout(item, run, state):
        return False
    from attnkit.judge.diagnosis import ENTRIES

    if expected is None:
        return False
    call = Call(item, run.init_args, run.init, state=state, x=x)
    for entry in ENTRIES:
        signature = entry.signatures.get(item)
        try:
            if signature is not None and signature(call, got, expected, rtol=F32["rtol"], atol=F32["atol"]):
                return True
        except Exception:  # noqa: BLE001 - a signature that cannot read this answer shows nothing
            continue
    return False


def _same_layout(item: str, run, state: dict) -> bool:
    return {n: tuple(t.shape) for n, t in state.items()} == reference.memo(
        "shapes", _parameter_shapes, item, *run.init_args, **run.init)


def _telling(expected, finite: bool = True) -> bool:
    """An output that shows its input: its rows (one per token, over every
    leading axis) are not all alike, rows with NaN aside (none, if ``finite``).
    Parameters that make attention ignore its input (zero values, a zero
    out_proj and only its bias left) make every row the same."""
    if not isinstance(expected, torch.Tensor) or expected.dim() < 2 or not expected.numel():
        return False
    rows = expected.detach().double().reshape(-1, expected.shape[-1])
    whole = torch.isfinite(rows).all(dim=-1)
    if finite and not bool(whole.all()):
        return False
    rows = rows[whole]
    if len(rows) < 2:
        return False
    return float((rows - rows[0]).abs().max()) > 1e-6 * (1.0 + float(rows.abs().max()))


def verify(student, run, what: str, lenient: bool = False) -> None:
    """Believe ``run`` only if its witness output follows from its parameters.

    Strict: the reference forward. Lenient: the reference or a catalogued
    mistake (for checks of the module's structure, which a wrong forward does not
    change). No witness, or no reference (the public checker: that the forward
    ran on the witness is all it can tell), checks nothing more."""
    if run.witness_input is None or not student.verifies:
        return
    got = run.witness
    state = run.state if run.state is not None else run.params
    x = run.witness_input
    not_finite = [n for n, t in (state or {}).items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if not_finite:
        # parameters of NaN make every forward NaN, the reference's included:
        # nothing can be told from them, so nothing is credited
        raise CheckFailure(f"{what} cannot be credited: your module's parameters "
                           f"{', '.join(f'`{n}`' for n in not_finite[:4])} hold NaN or inf")
    same = bool(state) and _same_layout(student.name, run, state)
    right = _reference_forward(student.name, run, state, x) if same else None  # once: the loop below reuses it
    if same and not _telling(right):
        # parameters under which attention ignores its input (all zero, or so large that it
        # overflows) make a constant, or NaN, the right answer: the witness would show nothing
        raise CheckFailure(f"{what} cannot be credited: with the parameters your module reports, attention "
                           f"would give the same output for every input, or NaN (all zero? too large?)")
    if isinstance(got, torch.Tensor) and got.is_floating_point() and state:
        for expected in _known_forwards(student.name, run, state, x, lenient, right):
            # NaN matches NaN only for a catalogued mistake (a fully masked row, say), and
            # only an answer that shows the input proves anything
            if isinstance(expected, torch.Tensor) and expected.shape == got.shape and _telling(
                    expected, finite=False) and torch.allclose(got.double(), expected.double(), atol=F32["atol"],
                                                               rtol=F32["rtol"], equal_nan=lenient):
                return
        if lenient and _fits_a_signature(student.name, run, state, x, got, right):
            return
    if state and not same:
        want = reference.memo("shapes", _parameter_shapes, student.name, *run.init_args, **run.init)
        raise LayoutFailure(parameter_difference({n: tuple(t.shape) for n, t in state.items()},
                                                {n: torch.empty(s) for n, s in want.items()}))
    raise CheckFailure(
        f"{what} cannot be credited: on a fresh input of the same shape, {tuple(x.shape)}, your module's "
        f"output is not " + ("attention computed from its parameters (nor any known mistake)"
                             if lenient else "what its parameters give")
        + ("; the forward must work on any input, not only the document's" if not lenient else
           "; fix the forward first (see the other checks of this item)"))


def gradients_match(student, *args, state, x, gen, **kwargs) -> None:
    """Every parameter receives the reference gradient, in train mode (dropout 0),
    as a training step would take it (a module that turns autograd off in eval
    mode is not wrong)."""
    out_shape = reference_outputs(student.name, state, [x], *args, **kwargs)[0].shape
    g = reference.randn(gen, *out_shape)
    want = reference.memo("grads", _reference_grads, student.name, state, x, g, *args, **kwargs)
    run = student.build(*args, state=state, inputs=[x], dtype="float64", grad_output=g, train=True, **kwargs)
    if not isinstance(run.grads, dict):
        raise CheckFailure("forward did not return a tensor of the expected shape, "
                           "so no gradient could be taken")
    for name, expected in want.items():
        got = run.grads.get(name)
        if got is None:
            raise CheckFailure(f"no gradient reaches `{name}`: is it used through .data, "
                               f".detach(), .item() or under torch.no_grad()?")
        compare.close(got, expected, what=f"the gradient of `{name}`")


def _reference_grads(item: str, state, x, g, *args, **kwargs) -> dict[str, torch.Tensor]:
    module = reference.reference_module(item, state, *args, **kwargs)
    (module(x) * g).sum().backward()
    return {n: p.grad for n, p in module.named_parameters()}


def seeded_matches_doc(student, seed: int, inputs, entry_id: str, *args, **kwargs) -> None:
    """The documented seed gives the document's output. A failure says the facts;
    the advice on the order of the layers is added once the item's example is
    known to pass (``attnkit.judge.diagnosis.conclude``), since only then is it the cause."""
    what = f"the output after torch.manual_seed({seed})"
    run = build_witnessed(student, *args, like=inputs, seed=seed, inputs=[inputs], **kwargs)
    got = run.outputs[0] if run.outputs else None
    try:
        compare.matches_doc(got, entry_id, what=what)
    except CheckFailure as exc:
        if _heads_alike(run.params):
            exc = CheckFailure(f"{exc.reason}; and every head starts with the same weights as heads.0: they were "
                               f"copied from one head (copy.deepcopy), or drawn after the seed was set again; create "
                               f"the heads one after another, each with its own CausalAttention(...) call, so that "
                               f"each draws its own numbers", exc.details)
        # for the advice conclude() adds: the order the student's module made its
        # parameters in, and the reference's (None where there is no reference)
        exc.layer_order = (_layers(run.params), _layers(reference_names(student.name, args, kwargs) or []))
        raise exc from None
    verify(student, run, what)
    if run.witness_input is not None and student.verifies:
        # the point is for the parameters the seed gave: the document's numbers
        # must follow from the parameters reported, not only the witness
        expected = next(_known_forwards(student.name, run, run.params, inputs, lenient=False), None)
        if expected is None or expected.shape != got.shape or not torch.allclose(
                got.double(), expected.double(), atol=F32["atol"], rtol=F32["rtol"]):
            raise CheckFailure(f"{what} cannot be credited: it is not what your module's parameters give "
                               f"on the document's input")


def _heads_alike(params: dict) -> bool:
    """Two heads or more, and every one's parameters equal to heads.0's: no draw gives that."""
    heads: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in dict(params).items():
        parts = name.split(".", 2)
        if len(parts) == 3 and parts[0] == "heads" and isinstance(value, torch.Tensor):
            heads.setdefault(parts[1], {})[parts[2]] = value
    first = heads.get("0")
    return bool(first) and len(heads) > 1 and all(
        set(h) == set(first) and all(h[k].shape == first[k].shape and torch.equal(h[k], first[k]) for k in h)
        for h in heads.values())


def _layers(parameter_names) -> list[str]:
    """Layers and parameters by name, in order: ``W_query.weight`` is ``W_query``."""
    return list(dict.fromkeys(n.rsplit(".", 1)[0] if n.endswith((".weight", ".bias")) else n
                              for n in parameter_names))


def verify_structure(student, run, *args_without_dropout, like: torch.Tensor) -> None:
    """Believe a module's description (its attributes and buffers) once its class
    is shown to compute attention (the reference, or a known mistake). A class
    whose dropout stays on in eval mode shows it with dropout 0: a second build."""
    try:
        verify(student, run, "the module's structure", lenient=True)
    except CheckFailure:
        again = build_witnessed(student, *args_without_dropout, like=like)
        verify(student, again, "the module's structure", lenient=True)


def buffer_shape(run, name: str) -> tuple | None:
    """The shape of a buffer the module reported (sent by value, or by shape when large)."""
    value = dict(run.buffers or {}).get(name)
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (list, tuple)) and all(isinstance(n, int) for n in value):
        return tuple(value)
    return None


def raises_value_error(student, *args, **kwargs) -> str:
    try:
        student.build(*args, **kwargs)
    except StudentError as exc:
        if "ValueError" in exc.family:
            return exc.message
        raise CheckFailure(f"with {args} the constructor should raise ValueError; it {exc.reason}") from None
    raise CheckFailure(f"the constructor accepted arguments {args} it should reject with ValueError")


def has_types(run, expected: dict[str, str]) -> None:
    """Attributes exist and are instances of the named classes."""
    for attr, cls in expected.items():
        info = run.attrs.get(attr) if isinstance(run.attrs, dict) else None
        if not isinstance(info, dict) or info.get("missing"):
            facts = f"the module has no attribute `{attr}`"
            if attr == "out_proj":
                other = _other_layers(run, expected)
                if not other:
                    raise finding("out_proj_missing", facts)
                facts += (f"; it has {', '.join(other)}: if that is the output projection, name it "
                          f"`out_proj`, since the grader sets and reads parameters by name")
            raise CheckFailure(facts)
        if cls not in (info.get("mro") or []):
            got = (info.get("mro") or ["?"])[0]
            raise CheckFailure(f"`{attr}` is a {got}; expected {cls}")


def _other_layers(run, expected: dict[str, str]) -> list[str]:
    """Parameters of the module outside the expected attributes, as `name` (shape)."""
    return [f"`{n}` {s}" for n, s in run.shapes().items() if str(n).split(".")[0] not in expected]


PROBE_EXTRA = 3  # value features drawn afresh for every probe: see dropout_probe


def dropout_probe(T: int, with_out_proj: bool = False):
    """Parameters that make the output show the attention weights themselves.

    Tokens are one-hot (d_in = T) and queries and keys are zero, so causal
    row i gives weight 1/(i+1) to each token up to i. The values are
    [I | 1 | R]: output column j < T is weight (i, j), column T is the row's
    sum, and the last columns are the weights times R, a few random features
    drawn from the operating system for this probe alone: a submission that
    does not compute attention cannot produce them. Dropout on the weights
    zeroes entries of the first T columns and scales the rest by 1/(1-p);
    column T stays their sum and the last columns stay the dropped weights
    times R. A multi-head module takes one head and an identity out_proj, so
    the same holds for it.
    """
    d_out = T + 1 + PROBE_EXTRA
    extra = witness_like(torch.zeros(PROBE_EXTRA, T, dtype=torch.float64))
    zeros = torch.zeros(d_out, T, dtype=torch.float64)
    values = torch.cat([torch.eye(T, dtype=torch.float64), torch.ones(1, T, dtype=torch.float64), extra])
    state = {"W_query.weight": zeros, "W_key.weight": zeros.clone(), "W_value.weight": values}
    if with_out_proj:
        state["out_proj.weight"] = torch.eye(d_out, dtype=torch.float64)
        state["out_proj.bias"] = torch.zeros(d_out, dtype=torch.float64)
    allowed = ~reference.future_mask(T)
    weights = allowed / allowed.sum(dim=-1, keepdim=True).double()
    return state, weights, allowed, extra


def dropout_behaves(student, item: str, T: int = 32, b: int = 4, p: float = 0.5) -> None:
    """Off in eval mode; in train mode on the attention weights, zeroing about p
    of them and scaling the others by 1/(1-p)."""
    multihead = item.startswith("multihead_attention.")
    state, weights, allowed, extra = dropout_probe(T, with_out_proj=multihead)
    d_out = T + 1 + PROBE_EXTRA
    args = (T, d_out, T, p) + ((1,) if multihead else ())
    x = torch.eye(T, dtype=torch.float64).expand(b, T, T).clone()
    expected = torch.cat([weights, weights.sum(-1, keepdim=True), weights @ extra.T], dim=-1).expand(b, T, d_out)

    run = student.build(*args, state=state, inputs=[x], dtype="float64", repeat=2)
    first, second = (compare.tensor(o, "the eval-mode output") for o in run.outputs[:2])
    if not same_outputs(first, second):
        raise finding("dropout_in_eval_mode", "after module.eval() two calls on the same input give "
                      "different outputs")
    compare.close(first, expected, what="the output in eval mode, where dropout (p=0.5) must change nothing",
                  call=Call(item, args, {}, state=state, x=x))

    # Training is what dropout is for: a gradient must get back through it (an
    # in-place dropout overwrites the softmax output its backward needs). One
    # request runs the train-mode forward, then another forward and a backward;
    # an error of those two comes back beside the first forward's output.
    run = student.build(*args, state=state, inputs=[x], dtype="float64", train=True,
                        grad_output=torch.ones(b, T, d_out, dtype=torch.float64), keep_backward_error=True)
    out = compare.tensor(run.outputs[0] if run.outputs else None, "the train-mode output")
    if out.shape != (b, T, d_out) or out.dtype != torch.float64:
        raise CheckFailure(f"the train-mode output has shape {tuple(out.shape)}, dtype {out.dtype}; "
                           f"expected {(b, T, d_out)}, torch.float64")
    failure = train_mode_failure(out[..., :T + 1], weights, allowed, p)
    if failure is not None:
        raise failure
    dropped, mixed = out[..., :T], out[..., T + 1:]
    if not torch.allclose(mixed, dropped @ extra.T, rtol=1e-9, atol=1e-12):
        raise CheckFailure("in train mode the output is not the dropped weights times the values: its last "
                           "columns, where the values hold features drawn for this check, do not follow from "
                           "the weights shown in the first ones")
    if run.backward_error is not None:
        exc = run.backward_error
        facts = f"in train mode, backpropagating through the module fails: {exc.reason}"
        raise CheckFailure(facts, exc.details, diagnosis=exc.diagnosis, facts=facts)
    # the queries' and keys' gradients pass through the dropped weights (out_proj's
    # does not: an out_proj left unused is its own mistake, named by other checks)
    unreached = [n for n, grad in dict(run.grads or {}).items() if grad is None and ("W_query" in n or "W_key" in n)]
    if run.grads is None or unreached:
        raise GradientFailure(f"in train mode no gradient reaches {', '.join(unreached) or 'the parameters'}: "
                              f"the output is cut from them in the autograd graph (is the dropout, or what comes "
                              f"after it, run under torch.no_grad() or detached?)")
