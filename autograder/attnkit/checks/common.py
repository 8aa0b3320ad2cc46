"""Building blocks shared by the checks: reference comparisons for function
items and for module items."""

from __future__ import annotations

import torch

from contextlib import contextmanager

from attnkit import compare, reference
from attnkit.diagnosis import Call, finding
from attnkit.diagnosis.dropout import train_mode_failure
from attnkit.diagnosis.pictures import PROBE_TITLE, PROBED, Picture
from attnkit.outcomes import CheckFailure, LimitExceeded, StudentError

# float32 results of a different but correct formula differ by ~1e-7.
F32 = dict(atol=1e-6, rtol=1e-5)


def shape_text(args) -> str:
    shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
    return ", ".join(str(s) for s in shapes)


def against_reference(student, *args, what: str | None = None, tol=None, **kwargs):
    """Call the item with these arguments and compare with the reference solution."""
    expected = reference.memo(student.name, reference.solution(student.name), *args, **kwargs)
    got = student(*args, **kwargs)
    call = Call(student.name, args, kwargs)
    what = what or f"the result for arguments of shape {shape_text(args)}" + (
        f" and {', '.join(f'{k}={v}' for k, v in kwargs.items())}" if kwargs else "")
    tol = tol or {}
    if isinstance(expected, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            raise CheckFailure(f"{what} should be a tuple of {len(expected)} tensors; "
                               f"got {type(got).__name__}")
        names = ("queries", "keys", "values") if len(expected) == 3 else range(len(expected))
        for name, g, e in zip(names, got, expected):
            compare.close(g, e, what=f"{what}: {name}", **tol)
        return got
    return compare.close(got, expected, what=what, call=call, **tol)


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


def short_sequence_failure(exc: StudentError, tokens: int = 5, context: int = 9) -> CheckFailure:
    """Why forward raised on fewer tokens than context_length: the error with
    the shapes sent, and a hint only where the error shows its cause (an
    unsliced mask is recognised in ``attnkit.diagnosis.errors``)."""
    if exc.diagnosis == "mask_not_sliced":
        return exc
    facts = f"with {tokens} tokens and context_length {context}, forward {exc.reason}"
    return CheckFailure(facts, exc.details, diagnosis=exc.diagnosis, facts=facts)


def same_outputs(first: torch.Tensor, second: torch.Tensor) -> bool:
    """Two outputs agree, NaN where the other has NaN included: NaN is a wrong
    answer for the value checks, not a sign of randomness."""
    return first.shape == second.shape and torch.equal(first.nan_to_num(), second.nan_to_num()) \
        and torch.equal(first.isnan(), second.isnan())


def _dtype(state) -> str | None:
    dtype = next(iter(state.values())).dtype
    return None if dtype == torch.float32 else str(dtype).replace("torch.", "")


def gradients_match(student, *args, state, x, gen, **kwargs) -> None:
    """Every parameter receives the reference gradient."""
    out_shape = reference_outputs(student.name, state, [x], *args, **kwargs)[0].shape
    g = reference.randn(gen, *out_shape)
    want = reference.memo("grads", _reference_grads, student.name, state, x, g, *args, **kwargs)
    run = student.build(*args, state=state, inputs=[x], dtype="float64", grad_output=g, **kwargs)
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
    known to pass (``attnkit.diagnosis.conclude``), since only then is it the cause."""
    run = student.build(*args, seed=seed, inputs=[inputs], **kwargs)
    compare.matches_doc(run.outputs[0] if run.outputs else None, entry_id,
                        what=f"the output after torch.manual_seed({seed})")


def raises_value_error(student, *args, **kwargs) -> str:
    try:
        student.build(*args, **kwargs)
    except StudentError as exc:
        if exc.message.startswith("ValueError"):
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
    params = dict(run.params or {}) if isinstance(run.params, dict) else {}
    return [f"`{n}` {tuple(s)}" for n, s in params.items() if str(n).split(".")[0] not in expected]


def dropout_probe(T: int, with_out_proj: bool = False):
    """Parameters that make the output show the attention weights themselves.

    Tokens are one-hot (d_in = T) and queries and keys are zero, so causal
    row i gives weight 1/(i+1) to each token up to i. The values are [I | 1]:
    output column j < T is weight (i, j) and column T is the row's sum. Dropout
    on the weights zeroes entries of the first T columns and scales the rest by
    1/(1-p), and column T stays their sum. A multi-head module takes one head
    and an identity out_proj, so the same holds for it.
    """
    zeros = torch.zeros(T + 1, T, dtype=torch.float64)
    values = torch.cat([torch.eye(T, dtype=torch.float64), torch.ones(1, T, dtype=torch.float64)])
    state = {"W_query.weight": zeros, "W_key.weight": zeros.clone(), "W_value.weight": values}
    if with_out_proj:
        state["out_proj.weight"] = torch.eye(T + 1, dtype=torch.float64)
        state["out_proj.bias"] = torch.zeros(T + 1, dtype=torch.float64)
    allowed = ~reference.future_mask(T)
    weights = allowed / allowed.sum(dim=-1, keepdim=True).double()
    return state, weights, allowed


def dropout_behaves(student, item: str, T: int = 32, b: int = 4, p: float = 0.5) -> None:
    """Off in eval mode; in train mode on the attention weights, zeroing about p
    of them and scaling the others by 1/(1-p)."""
    multihead = item.startswith("multihead_attention.")
    state, weights, allowed = dropout_probe(T, with_out_proj=multihead)
    args = (T, T + 1, T, p) + ((1,) if multihead else ())
    x = torch.eye(T, dtype=torch.float64).expand(b, T, T).clone()
    expected = torch.cat([weights, weights.sum(-1, keepdim=True)], dim=-1).expand(b, T, T + 1)

    run = student.build(*args, state=state, inputs=[x], dtype="float64", repeat=2)
    first, second = (compare.tensor(o, "the eval-mode output") for o in run.outputs[:2])
    if not same_outputs(first, second):
        raise finding("dropout_in_eval_mode", "after module.eval() two calls on the same input give "
                      "different outputs")
    compare.close(first, expected, what="the eval-mode output with dropout=0.5",
                  call=Call(item, args, {}, state=state, x=x))

    run = student.build(*args, state=state, inputs=[x], dtype="float64", train=True)
    out = compare.tensor(run.outputs[0] if run.outputs else None, "the train-mode output")
    if out.shape != (b, T, T + 1) or out.dtype != torch.float64:
        raise CheckFailure(f"the train-mode output has shape {tuple(out.shape)}, dtype {out.dtype}; "
                           f"expected {(b, T, T + 1)}, torch.float64")
    failure = train_mode_failure(out, weights, allowed, p)
    if failure is not None:
        raise failure
