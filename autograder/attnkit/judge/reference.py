"""Everything the grader compares against, loaded in the grader process only.

- the reference solutions in ``solutions/`` (the one source of truth);
- the document's reference tensors, ``data/reference_tensors.json`` (an exact
  copy of the chapter's reference file; a test keeps it so);
- the generator of hidden cases, seeded from a secret the student process
  never receives.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import sys
from collections import OrderedDict
from functools import cache

import torch

from attnkit.errors import GraderError

from attnkit.config import KIT_ROOT, PACKAGE_DIR, secret, solution_file, solutions_dir  # noqa: F401 - re-exported
DATA = PACKAGE_DIR / "data" / "reference_tensors.json"
PUBLIC = PACKAGE_DIR / "data" / "public_examples.json"
from attnkit.exercises import MODULES  # noqa: E402

@cache
def solutions() -> dict[str, object]:
    """The reference modules, loaded under private names. ``multihead_attention``
    imports ``causal_attention``; that name points at the reference while it loads."""
    loaded: dict[str, object] = {}
    for name in MODULES:
        path = solution_file(name)
        spec = importlib.util.spec_from_file_location(f"attnkit_reference.{name}", path)
        module = importlib.util.module_from_spec(spec)
        saved = {k: sys.modules.get(k) for k in loaded}
        sys.modules.update(loaded)
        try:
            spec.loader.exec_module(module)
        finally:
            for k, v in saved.items():
                if v is None:
                    sys.modules.pop(k, None)
                else:
                    sys.modules[k] = v
        loaded[name] = module
    return loaded


def solution(item: str):
    module, name = item.split(".", 1)
    return getattr(solutions()[module], name)


# --------------------------------------------------------------------------- document tensors

@cache
def _entries() -> dict[str, dict]:
    with open(DATA) as f:
        return {e["id"]: e for e in json.load(f)["entries"]}


def entry(entry_id: str) -> dict:
    return _entries()[entry_id]


def _floats(v):
    if isinstance(v, list):
        return [_floats(x) for x in v]
    return v if isinstance(v, bool) else float(v)  # "-inf" strings included


def doc(entry_id: str) -> torch.Tensor:
    """A reference tensor of the document, float32, exactly as printed (4 decimals)."""
    return _doc(entry_id).clone()  # the caller's own copy: the one kept here never changes


@cache
def _doc(entry_id: str) -> torch.Tensor:
    values = entry(entry_id)["values"]
    if values is None:
        raise GraderError(f"reference entry {entry_id} has no printed values")
    return torch.tensor(_floats(values), dtype=torch.float32)


EXTREME = [[1000.0, 999.0, -1000.0, 0.0],
           [-1000.0, -1000.0, -999.0, -1000.0],
           [1000.0, 1000.0, 1000.0, 1000.0]]


def extreme(dtype=torch.float64) -> torch.Tensor:
    """Scores of +-1000, where exp overflows without the max-subtraction."""
    return torch.tensor(EXTREME, dtype=dtype)


def doc_inputs() -> torch.Tensor:
    """The six tokens "Your journey starts with one step", d_in = 3."""
    return doc("inputs")


def doc_batch() -> torch.Tensor:
    return torch.stack((doc_inputs(), doc_inputs()), dim=0)  # (2, 6, 3)


# The batched-matmul illustration of the multi-head section: a (1, 2, 3, 4)
# tensor in (b, num_heads, T, head_dim) form, literal values of that setup.
DOC_HEADS = [[[[0.2745, 0.6584, 0.2775, 0.8573], [0.8993, 0.0390, 0.9268, 0.7388],
               [0.7179, 0.7058, 0.9156, 0.4340]],
              [[0.0772, 0.3565, 0.1479, 0.5331], [0.4066, 0.2318, 0.4545, 0.9737],
               [0.4606, 0.5159, 0.4220, 0.5786]]]]


@cache
def _public() -> dict[str, dict]:
    if not PUBLIC.exists():
        raise GraderError(f"{PUBLIC} is missing; run `attnkit build`")
    with open(PUBLIC) as f:
        return json.load(f)["tensors"]


def public(name: str) -> torch.Tensor:
    """A tensor of the public example data (see attnkit.authoring.public_data)."""
    return _public_tensor(name).clone()  # the caller's own copy: the one kept here never changes


@cache
def _public_tensor(name: str) -> torch.Tensor:
    spec = _public()[name]
    return torch.tensor(_floats(spec["values"]), dtype=getattr(torch, spec["dtype"])).reshape(spec["shape"])


def public_state(prefix: str) -> dict[str, torch.Tensor]:
    """The seeded parameters stored under ``prefix.``, by parameter name."""
    return {k[len(prefix) + 1:]: public(k) for k in _public() if k.startswith(prefix + ".")}


def future_mask(n: int) -> torch.Tensor:
    """What a causal mask must be: True strictly above the diagonal (the document's tril, negated)."""
    return ~torch.ones(n, n, dtype=torch.bool).tril()


def seeded_state(item: str, seed: int, *args, **kwargs) -> dict[str, torch.Tensor]:
    """The parameters the reference class gets under ``torch.manual_seed(seed)``,
    by name: the document's weights, including the ones it never prints."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = solution(item)(*args, **kwargs)
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def reference_module(item: str, state: dict[str, torch.Tensor], *args, train: bool = False, **kwargs):
    """The reference class with the given parameters, in the state's dtype."""
    module = solution(item)(*args, **kwargs).to(next(iter(state.values())).dtype)
    module.load_state_dict(state, strict=False)  # buffers (the mask) keep their own values
    return module.train(train)


_MODULES: OrderedDict = OrderedDict()  # (item, args, kwargs, dtype) -> a reference module, never modified


def forward(item: str, state: dict[str, torch.Tensor], x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """The reference class's eval-mode output on ``x`` with the parameters of
    ``state`` (all of them, by name and shape), in the state's dtype. The same
    as ``reference_module(item, state, ...)(x)``, without building the module
    each time: one module per constructor call and dtype is kept, and the
    parameters are passed in (``torch.func.functional_call``), never copied
    into it, so what it holds never changes."""
    dtype = next(iter(state.values())).dtype
    key = (item, args, tuple(sorted(kwargs.items())), dtype)
    module = _MODULES.get(key)
    if module is None:
        module = solution(item)(*args, **kwargs).to(dtype).eval()
        _MODULES[key] = module
        if len(_MODULES) > 64:
            _MODULES.popitem(last=False)
    _MODULES.move_to_end(key)
    with torch.no_grad():
        return torch.func.functional_call(module, state, (x,))


# --------------------------------------------------------------------------- hidden cases

def generator(*tags: str) -> torch.Generator:
    digest = hashlib.sha256("\0".join((secret(),) + tags).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64) * scale


def rand(gen: torch.Generator, *shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    return low + (high - low) * torch.rand(*shape, generator=gen, dtype=torch.float64)


# --------------------------------------------------------------------------- memo

# Every student of a class gets the same hidden inputs, and correct code asks
# the stand-ins the same questions: reference results are computed once per
# grading process. Keys hash the tensors' bytes, so equal inputs hit, any
# difference misses; nothing random is memoised (train-mode dropout). The memo
# is bounded in bytes, least recently used first out, so no sequence of
# requests grows the grader without bound.
MEMO_BYTES = 256 << 20
_MEMO: OrderedDict = OrderedDict()  # key -> (value, bytes)
_memo_bytes = 0


def _key(obj):
    if isinstance(obj, torch.Tensor):
        t = obj.detach().contiguous()
        return ("T", str(t.dtype), tuple(t.shape), hashlib.blake2b(t.numpy().tobytes(), digest_size=16).digest())
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__,) + tuple(_key(x) for x in obj)
    if isinstance(obj, dict):
        return ("D",) + tuple(sorted((str(k), _key(v)) for k, v in obj.items()))
    return (type(obj).__name__, repr(obj))


def nbytes(obj) -> int:
    """The bytes of every tensor in a (nested) value."""
    if isinstance(obj, torch.Tensor):
        return obj.element_size() * obj.nelement()
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(x) for x in obj)
    if isinstance(obj, dict):
        return sum(nbytes(x) for x in obj.values())
    return 0


def memo(tag: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, computed once per distinct tag and arguments.
    Callers must not modify what it returns. The tag's text counts in an
    entry's size (a stand-in's tag holds its spec)."""
    global _memo_bytes
    key = (tag, _key(args), _key(kwargs))
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key][0]
    value = fn(*args, **kwargs)
    size = nbytes(value) + 256 + len(tag)
    if size <= MEMO_BYTES // 4:
        _MEMO[key] = (value, size)
        _memo_bytes += size
        while _memo_bytes > MEMO_BYTES:
            _, (_, dropped) = _MEMO.popitem(last=False)
            _memo_bytes -= dropped
    return value


# --------------------------------------------------------------------------- stand-in service

def upcall(spec, tensors, grads, max_bytes: int = 16 << 20):
    """Answer a stand-in in the student process: the reference result of one
    stage (``mode`` "forward") or its vector-Jacobian product ("vjp"). The
    sandbox has already checked that the item under grading may call this
    stage; here the request is checked for form and for size: a result (or a
    module's parameters) over ``max_bytes`` is refused before anything is
    computed, by running the reference on shapes alone (torch's meta device)."""
    if not isinstance(spec, dict) or not isinstance(tensors, list) or not set(spec) <= SPEC_KEYS:
        raise ValueError("malformed stand-in request")
    # The spec is a child's text, and the memo keeps it: a few hundred bytes for any
    # honest call, so a large one (padding to make every request new) is refused.
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=repr)
    if len(text) > SPEC_BYTES or len(tensors) + len(grads or []) > SPEC_TENSORS:
        raise ValueError("stand-in request too large")
    target = spec.get("target")
    if target not in stand_in_targets():
        raise ValueError(f"no stand-in for {target!r}")
    if not set(spec) <= SPEC_KEYS_OF[stand_in_targets()[target]]:
        raise ValueError("malformed stand-in request")  # a key its target never reads (init on a function)
    if not all(math.isfinite(n) for n in _numbers(spec)):
        raise ValueError("malformed stand-in request (a number that is not finite)")  # NaN would pass any bound
    tensors = [t if isinstance(t, torch.Tensor) else None for t in tensors]
    if any(t is None for t in tensors):
        raise ValueError("stand-in arguments must be tensors")
    if spec.get("mode") not in ("forward", "vjp"):
        raise ValueError("malformed stand-in request")
    hull = _hull(tensors)
    need = _bound_bytes(spec, tensors, hull)
    if not need <= max_bytes:  # too big to be sure: measure the result exactly, on shapes alone, and
        # count what broadcasting the arguments against each other would copy, which the result
        # does not show ((A, 1, 1, d) @ (1, A, d, 1): a small result, two A x A x d copies), and
        # a module's scores and weights, (b, T, T) each, which neither shows
        x = tensors[0] if tensors and tensors[0].dim() >= 2 else None
        scores = 8 * 4 * (x.numel() // max(1, x.shape[-1])) * x.shape[-2] if (
            x is not None and stand_in_targets()[target] == "module") else 0
        need = max(memo("size:" + text, lambda shapes: _meta_bytes(spec, shapes),
                        [(tuple(t.shape), t.dtype) for t in tensors]),
                   8 * len(tensors) * hull, scores)
    if not need <= max_bytes:  # written so that a NaN bound is refused too
        raise ValueError(f"the reference result would take {need >> 20} MiB, over the {max_bytes >> 20} MiB bound")
    if spec.get("training"):
        return _upcall(spec, tensors, grads)  # dropout draws: never memoised
    return memo("upcall:" + text, lambda t, g: _upcall(spec, t, g), tensors, grads)  # the tag holds the spec


SPEC_KEYS_OF = {"function": frozenset({"target", "args", "kwargs", "mode"}),  # what each kind of stand-in sends
                "module": frozenset({"target", "init", "state", "mode", "training"})}
SPEC_KEYS = frozenset().union(*SPEC_KEYS_OF.values())
SPEC_BYTES = 2048  # an honest stand-in spec is under 400 bytes of JSON
SPEC_TENSORS = 64  # an honest one carries at most a module's input and its parameters


def _numbers(value) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [abs(float(value))]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _numbers(v)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    return []


def _hull(tensors) -> int:
    """The elements of every argument broadcast against the others (shapes
    aligned from the right, each size at least 1): what torch may copy when it
    expands them, and, unlike their own sizes, never 0 for an empty tensor that
    still sets a result's length ((T, 0) @ (0, T) is T x T)."""
    sizes: list[int] = []
    for t in tensors:
        shape = [max(1, int(n)) for n in t.shape]
        sizes = [1] * (len(shape) - len(sizes)) + sizes
        for i, n in enumerate(shape, start=len(sizes) - len(shape)):
            sizes[i] = max(sizes[i], n)
    return math.prod(sizes)


def _bound_bytes(spec, tensors, hull: int) -> float:
    """An upper bound of what any stage's reference allocates for these arguments,
    from sizes alone: no stage builds more than (its arguments, broadcast against
    each other) x (largest size) (scores are T x T of a T x d input), or the
    square or product of its integer arguments (a causal mask, a module's weights)."""
    total = len(tensors) * hull
    largest = max([1] + [max(t.shape, default=1) for t in tensors])
    ints = sorted(_numbers([spec.get("args"), spec.get("kwargs"), spec.get("init")]), reverse=True) + [1.0, 1.0]
    return 8.0 * 4 * (total * largest + ints[0] * ints[0] + 4 * ints[0] * ints[1] + total)


def _meta_bytes(spec, shapes) -> int:
    """What the stand-in call would allocate (its result, and a module's
    parameters and buffers), computed on the meta device: no memory spent."""
    metas = [torch.empty(shape, dtype=dtype, device="meta") for shape, dtype in shapes]
    try:
        with torch.device("meta"), torch.no_grad():
            out = _STAND_INS_BY_KIND[stand_in_targets()[spec["target"]]](dict(spec, training=False), metas,
                                                                        sizes=True)
    except Exception as exc:  # noqa: BLE001 - the reference cannot run on these arguments
        raise ValueError(f"the reference cannot run on these arguments ({type(exc).__name__})") from None
    return nbytes(out)


def _upcall(spec, tensors, grads):
    run = _STAND_INS_BY_KIND[stand_in_targets()[spec["target"]]]
    if spec.get("mode") == "vjp":
        if not isinstance(grads, list):
            raise ValueError("malformed gradient request")
        leaves = [t.detach().requires_grad_(t.is_floating_point()) for t in tensors]
        with torch.enable_grad():
            out = run(spec, leaves)
        outs = out if isinstance(out, tuple) else (out,)
        pairs = [(o, g if isinstance(g, torch.Tensor) else torch.zeros_like(o))
                 for o, g in zip(outs, grads) if o.requires_grad]
        if any(g.shape != o.shape for o, g in pairs):
            raise ValueError("malformed gradient request")
        wrt = [t for t in leaves if t.requires_grad]
        # The product with one scalar, sum <o, g>, whose gradient is the same
        # vector-Jacobian product bit for bit; torch's check of explicit
        # grad_outputs imports sympy, 0.3-0.6 s in every grading process.
        got = torch.autograd.grad(sum((o * g.to(o.dtype)).sum() for o, g in pairs), wrt,
                                  allow_unused=True) if pairs and wrt else [None] * len(wrt)
        it = iter(got)
        return [(next(it) if t.requires_grad else None) for t in leaves]
    with torch.no_grad():
        return run(spec, tensors)


def _fill(template, tensors):
    if isinstance(template, dict) and set(template) == {"$slot"}:
        slot = template["$slot"]
        if not isinstance(slot, int) or isinstance(slot, bool) or not 0 <= slot < len(tensors):
            raise ValueError("malformed stand-in request")
        return tensors[slot]
    if isinstance(template, list):
        return [_fill(t, tensors) for t in template]
    if template is None or isinstance(template, (bool, int, float, str)):
        return template
    raise ValueError("malformed stand-in request")


def _call_function(spec, tensors, sizes: bool = False):
    fn = solution(spec["target"])
    args = _fill(list(spec.get("args", [])), tensors)
    kwargs = {str(k): _fill(v, tensors) for k, v in dict(spec.get("kwargs", {})).items()}
    return fn(*args, **kwargs)


def _call_module(spec, tensors, sizes: bool = False):
    init, names = list(spec.get("init", [])), list(spec.get("state", []))
    if not all(isinstance(v, (bool, int, float)) for v in init) or not tensors:
        raise ValueError("malformed stand-in request")
    x, params = tensors[0], tensors[1:]
    module = solution(spec["target"])(*init).to(x.dtype)
    module.train(bool(spec.get("training")))
    current = dict(module.named_parameters())
    if sorted(names) != sorted(current) or len(params) != len(names):
        raise ValueError("stand-in parameters do not match")
    # functional_call keeps the gradient path from the student's parameters.
    out = torch.func.functional_call(module, dict(zip(names, params)), (x,))
    if sizes:  # what building the module allocates counts too (a huge mask, say)
        return [out, *module.parameters(), *module.buffers()]
    return out


_STAND_INS_BY_KIND = {"function": _call_function, "module": _call_module}


@cache
def stand_in_targets() -> dict[str, str]:
    """Each stage that can stand in, and its kind; from the exercise table."""
    from attnkit.exercises import stand_ins

    return {key: decl["kind"] for key, decl in stand_ins().items()}


@cache
def warm_up() -> None:
    """Pay once, before any item's clock runs, what the first stand-in answer of
    each kind would pay (loading the solutions, torch's first autograd and
    functional_call): an item is charged wall time, and that is not its doing."""
    x = torch.rand(1, 2, 2, dtype=torch.float64, requires_grad=True)
    module_spec = {"target": "causal_attention.CausalAttention", "init": [2, 2, 2, 0.0, False],
                   "state": ["W_query.weight", "W_key.weight", "W_value.weight"], "mode": "vjp"}
    weights = [torch.rand(2, 2, dtype=torch.float64) for _ in range(3)]
    _upcall(module_spec, [x] + weights, [torch.ones(1, 2, 2, dtype=torch.float64)])
    _upcall({"target": "simplified_attention.softmax", "args": [{"$slot": 0}], "kwargs": {}, "mode": "vjp"},
            [x], [torch.ones(1, 2, 2, dtype=torch.float64)])
