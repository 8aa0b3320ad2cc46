"""Stand-ins: what a student's item calls instead of their other stages.

While the child runs item X, each stage X may call (the grader says which) is
replaced by a stand-in that asks the grader for the reference result (an
upcall). Gradients flow through it: the grader answers vector-Jacobian
products too. The grader answers only for the stages X may call, and only for
arguments within its size bounds; when it refuses or cannot run the reference
on the arguments, the stand-in runs the student's own code for that call,
silently, so a stand-in narrower than the student's helper never costs points.

A class stand-in is described by data (the exercise table): its constructor's
parameters, its layers in the order they are created (so that a seeded run
draws the same random numbers as the real class) and its buffers, each the
reference result of a stage. Its forward is one upcall. The student's own
class still counts where it does more: a forward called with more than the
input (``head(x, return_weights=True)``) is the student's own, run on the
stand-in's layers; and what the student's forward keeps on the module
(``self.last_weights = weights``), when the caller reads it, comes from the
student's forward run then on those layers and the last input: the output is
the reference's.

Runs next to student code: no grader code here, only the protocol.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import json
import math
import textwrap

from attnkit.sandbox.protocol import Kind


_ABSENT = object()


class Refused(Exception):
    """The grader did not answer this stand-in call; the reason says why."""


def _slots(args, kwargs, torch):
    """Replace tensors in call arguments by slot numbers, for an upcall spec."""
    tensors: list = []

    def conv(v):
        if isinstance(v, torch.Tensor):
            tensors.append(v)
            return {"$slot": len(tensors) - 1}
        if isinstance(v, float) and not math.isfinite(v):
            raise Refused("the grader's stand-in takes finite numbers")  # JSON has no inf: the student's code runs
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        raise Refused(f"the grader's stand-in takes tensors and numbers, not {type(v).__name__}")

    return [conv(a) for a in args], {k: conv(v) for k, v in kwargs.items()}, tensors


class Upcalls:
    """The child's end of the stand-in service."""

    def __init__(self, channel, torch):
        self.channel = channel  # call(spec, tensors, grads) -> (Kind, value)
        self.torch = torch
        self._fn = None

    def ask(self, spec: dict, tensors: list, grads=None):
        kind, value = self.channel(spec, tensors, grads)
        if kind != Kind.UPCALL_RESULT:
            raise Refused(f"the grader's stand-in for {spec.get('target')} could not answer: {value}")
        return value

    def apply(self, spec: dict, tensors: list):
        """Forward through the grader, differentiable when any input needs a gradient."""
        torch = self.torch
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            return self._function().apply(json.dumps(spec), *tensors)
        return self.ask(dict(spec, mode="forward"), list(tensors))

    def _function(self):
        if self._fn is None:
            ask, torch = self.ask, self.torch

            class Upcall(torch.autograd.Function):
                @staticmethod
                def forward(ctx, spec_json, *ts):
                    ctx.spec = json.loads(spec_json)
                    ctx.save_for_backward(*ts)
                    out = ask(dict(ctx.spec, mode="forward"), list(ts))
                    outs = out if isinstance(out, tuple) else (out,)
                    ctx.mark_non_differentiable(*[o for o in outs if not o.is_floating_point()])
                    return out

                @staticmethod
                def backward(ctx, *grads):
                    g = ask(dict(ctx.spec, mode="vjp"), list(ctx.saved_tensors), list(grads))
                    return (None, *g)

            self._fn = Upcall
        return self._fn


def _source_tree(fn) -> ast.Module | None:
    """The parsed source of a student's function, or None (no source, or an
    object of theirs that raises when asked)."""
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except Exception:  # noqa: BLE001
        return None


def _built_by(node, assigned: dict) -> tuple[str, ...] | None:
    """The dotted name of the class an expression builds: ``QKV(...)``,
    ``QKV._make(...)``, ``module.QKV(...)``, or a local name assigned once from
    one of those; else None."""
    if isinstance(node, ast.Name) and node.id in assigned:
        return _built_by(assigned.pop(node.id), assigned)  # popped: a name assigned from itself ends here
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr == "_make":
        func = func.value
    path: list[str] = []
    while isinstance(func, ast.Attribute):
        path.insert(0, func.attr)
        func = func.value
    return (func.id, *path) if isinstance(func, ast.Name) else None


def _returned_tuple_type(fn):
    """The NamedTuple class that every ``return`` of ``fn`` builds (``return
    QKV(q, k, v)``, ``QKV._make(...)``, or a local name assigned once from
    one), read from its source, never by running it; else None."""
    tree = _source_tree(fn)
    if tree is None:
        return None
    assigned: dict = {}
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.NamedExpr)) else [])
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name):  # assigned more than once, or by unpacking: not known
                    assigned[n.id] = node.value if n is t and n.id not in assigned else None
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Return):
            path = _built_by(node.value, dict(assigned)) if node.value is not None else None
            if path is None:
                return None
            found.add(path)
    if len(found) != 1:
        return None
    try:
        first, *rest = found.pop()
        cls = getattr(fn, "__globals__", {}).get(first)
        for name in rest:
            cls = getattr(cls, name)
        fields = getattr(cls, "_fields", None)
        return cls if isinstance(cls, type) and issubclass(cls, tuple) and isinstance(fields, tuple) else None
    except Exception:  # noqa: BLE001 - a metaclass of the student's that raises: no type of its own
        return None


def function(upcalls: Upcalls, key: str, original=None):
    """The stand-in for graded function ``key``; ``original`` is the student's own."""

    own: list = []  # the NamedTuple class the student's function returns, read once, when first needed

    def stand_in(*args, **kwargs):
        try:
            a, k, tensors = _slots(args, kwargs, upcalls.torch)
            out = upcalls.apply({"target": key, "args": a, "kwargs": k}, tensors)
            if type(out) is tuple and original is not None:
                if not own:
                    own.append(_returned_tuple_type(original))
                if own[0] is not None and len(out) == len(own[0]._fields):
                    return own[0](*out)  # the student's own NamedTuple, as their function returns it
            return out
        except Refused as refused:
            if original is None:
                raise RuntimeError(f"{key} is not available here: {refused}") from None
            return original(*args, **kwargs)

    name = key.split(".", 1)[1]
    stand_in.__name__ = stand_in.__qualname__ = name
    stand_in.__doc__ = f"The grader's stand-in for {key}: it returns the reference result."
    return stand_in


def _kept_names(forward) -> frozenset:
    """The attributes a forward assigns on its module (``self.last_weights = ...``)."""
    tree = _source_tree(forward)
    fn = tree.body[0] if tree is not None and tree.body and isinstance(
        tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)) else None
    if fn is None or not fn.args.args:
        return frozenset()
    me, names = fn.args.args[0].arg, set()
    for node in ast.walk(fn):
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == me:
                    names.add(n.attr)
    return frozenset(names)


@contextlib.contextmanager
def _named_as_itself(original, stand_in_class):
    """While the student's own class is built, its name in its module is the
    class itself, not the stand-in that isolation put there: its constructor
    may name it (``super(CausalAttention, self).__init__()``)."""
    spaces = {}
    try:
        members = list(vars(original).values())
    except TypeError:  # no __dict__: nothing of it names anything
        members = []
    for value in members:
        for fn in (value, getattr(value, "__func__", None), getattr(value, "fget", None)):
            space = getattr(fn, "__globals__", None)
            if isinstance(space, dict):
                spaces[id(space)] = space
    moved = [(space, name) for space in spaces.values() for name, v in list(space.items()) if v is stand_in_class]
    for space, name in moved:
        space[name] = original
    try:
        yield
    finally:
        for space, name in moved:
            space[name] = stand_in_class


def module(upcalls: Upcalls, key: str, spec: dict, original=None):
    """The stand-in class for graded class ``key``, built from its declaration."""
    torch = upcalls.torch
    nn = torch.nn
    params = list(spec["init"])
    defaults = dict(spec.get("defaults", {}))
    layers = [tuple(layer) for layer in spec["layers"]]
    buffers = [tuple(b) for b in spec.get("buffers", [])]
    masks: dict = {}  # the same few buffers, asked for again and again
    factories = {"Linear": nn.Linear, "Dropout": nn.Dropout}
    own_forward = getattr(original, "forward", None) if isinstance(original, type) else None
    own_forward = own_forward if callable(own_forward) else None
    keeps: list = []  # what the student's forward keeps on the module, read once, when first asked

    def kept_names() -> frozenset:
        if not keeps:
            keeps.append(_kept_names(own_forward) if own_forward is not None else frozenset())
        return keeps[0]

    class OwnClassAttributes(type(nn.Module)):
        def __getattr__(cls, name):
            # A name the stand-in class lacks, read on the class (a constant
            # through ``type(self).NEG_INF``, a static method through
            # ``CausalAttention._weights``): the student's own class's
            if name.startswith("__") or original is None:
                raise AttributeError(name)
            found = inspect.getattr_static(original, name, _ABSENT)
            if isinstance(found, classmethod):  # a constructor of theirs (make(...)): what it builds stands in too
                return found.__get__(None, cls)
            return getattr(original, name)

    class StandIn(nn.Module, metaclass=OwnClassAttributes):
        def __new__(cls, *args, **kwargs):
            if original is not None and (len(args) > len(params) or any(k not in params for k in kwargs)):
                # arguments the declaration does not take (the student's class has parameters
                # of its own, or other names for them): what they mean is the student's alone,
                # so the stand-in cannot stand in, and the student's class runs
                with _named_as_itself(original, StandIn):
                    return original(*args, **kwargs)
            return super().__new__(cls)

        def __init__(self, *args, **kwargs):
            super().__init__()
            bound = dict(defaults)
            bound.update(zip(params, args))
            bound.update({k: v for k, v in kwargs.items() if k in params})
            missing = [p for p in params if p not in bound]
            if missing or len(args) > len(params):
                raise TypeError(f"{key.split('.', 1)[1]}() takes ({', '.join(params)})")
            self._init = [bound[p] for p in params]
            for name, factory, positional, keywords in layers:
                layer = factories[factory](*[bound[p] for p in positional],
                                           **{k: bound[v] for k, v in keywords.items()})
                setattr(self, name, layer)
            for name, stage, positional in buffers:
                call = json.dumps([stage, [bound[p] for p in positional]])
                if call not in masks:
                    masks[call] = upcalls.ask({"target": stage, "args": [bound[p] for p in positional],
                                               "kwargs": {}, "mode": "forward"}, [])
                self.register_buffer(name, masks[call].clone())
            self.__dict__["_built"] = True  # from here on, what the declaration lacks is the student's

        def forward(self, *args, **kwargs):
            given = list(args) + list(kwargs.values())
            if len(given) != 1 or not isinstance(given[0], torch.Tensor):
                # the student's forward takes more than x (return_weights=True): the
                # reference answers x alone, so the student's own forward runs, on
                # the stand-in's layers and buffers
                if own_forward is None:
                    raise TypeError(f"{key.split('.', 1)[1]}.forward() takes the input alone here "
                                    f"(the grader's stand-in)")
                self.__dict__["_last_input"] = None  # what it keeps is this call's
                return own_forward(self, *args, **kwargs)
            x = given[0]  # by position, or by the student's own name for it (head(inputs=x))
            # what an earlier forward of the student's kept is stale now: the names it
            # assigns, and whatever its last run here set (through a helper, setattr)
            for name in kept_names() | self.__dict__.pop("_run_kept", set()):
                self.__dict__.pop(name, None)
            self.__dict__["_last_input"] = x
            names = [n for n, _ in self.named_parameters()]
            # train mode asks for a dropout draw, never kept; with every dropout at p = 0
            # there is none, and the answer is eval mode's (kept, asked once a class)
            training = self.training and any(isinstance(m, nn.Dropout) and m.p > 0 for m in self.modules())
            request = {"target": key, "init": self._init, "state": names, "training": training}
            return upcalls.apply(request, [x] + [p for _, p in self.named_parameters()])

        def __getattr__(self, name):
            # What the declaration does not make (the student's own `self.d_out`,
            # a helper method, a property) comes from the student's own class, as
            # the item would have found it there: only the declared layers and
            # buffers, and the forward, are the reference's.
            try:
                return super().__getattr__(name)
            except AttributeError:
                pass
            if name.startswith("__") or not self.__dict__.get("_built"):
                raise AttributeError(name)  # copy, pickle, and nn.Module's own checks while it is built
            return _own_attribute(self, name)

    def _kept_by_own_forward(stand_in, name: str, assigned: bool = True):
        """What the student's forward keeps on the module (``self.last_weights =
        ...``), read after a forward: their forward runs then, once per forward,
        on the stand-in's layers and the last input, and only for a name it
        assigns (so a mistake in it costs nothing unless what it keeps is read).
        Its random draws must not move a seeded run's. With ``assigned=False``,
        the last resort for a name found nowhere else, it runs whatever the
        name (the forward may keep it through a helper method, or setattr), and
        a forward that raises then is no evidence: the name is missing."""
        x = stand_in.__dict__.get("_last_input")
        if x is None or own_forward is None or (assigned and name not in kept_names()):
            return _ABSENT
        stand_in.__dict__["_last_input"] = None  # once; and what the forward itself reads is found as usual
        before = dict(stand_in.__dict__)
        try:
            with torch.random.fork_rng(devices=[]):
                own_forward(stand_in, x)
        except (OSError, MemoryError):
            raise  # the output and memory limits are the item's, as anywhere
        except Exception as exc:  # noqa: BLE001 - the student's forward may raise anything
            if not assigned:
                return _ABSENT
            cls = key.split(".", 1)[1]
            raise AttributeError(
                f"'{cls}' object has no attribute '{name}': while this item is graded, {cls} is the grader's "
                f"stand-in, and your own forward, run on its layers to make `{name}`, raised "
                f"{type(exc).__name__}: {exc}"[:1500]) from None
        finally:  # what this run set is this input's: the next forward drops it (StandIn.forward)
            ran = {k for k, v in stand_in.__dict__.items() if before.get(k, _ABSENT) is not v}
            stand_in.__dict__.setdefault("_run_kept", set()).update(ran - {"_last_input", "_run_kept", "_own"})
        return stand_in.__dict__.get(name, _ABSENT)

    def _own_attribute(stand_in, name: str):
        kept = _kept_by_own_forward(stand_in, name)
        if kept is not _ABSENT:
            return kept
        cls = key.split(".", 1)[1]
        if original is None:
            raise AttributeError(f"'{cls}' object has no attribute '{name}' (while this item is graded, {cls} is "
                                 f"the grader's stand-in, and your own {cls} could not be loaded)")
        found = inspect.getattr_static(original, name, _ABSENT)
        if found is not _ABSENT and hasattr(found, "__get__"):  # a method or property: on the stand-in's layers
            return found.__get__(stand_in, original)
        # what the last forward set, however it set it (a helper method, setattr): first, since the
        # class's value or the constructor's (``last_weights = None``) is what it replaces
        kept = _kept_by_own_forward(stand_in, name, assigned=False)
        if kept is not _ABSENT:
            return kept
        if found is not _ABSENT:  # a constant of the class
            return found
        own = stand_in.__dict__.get("_own", _ABSENT)
        if own is _ABSENT:
            try:
                # the student's constructor, with the stand-in's arguments; its random
                # draws must not move a seeded run's, so the generator is put back
                with torch.random.fork_rng(devices=[]), _named_as_itself(original, StandIn):
                    own = original(*stand_in._init)
            except Exception:  # noqa: BLE001 - the student's constructor may raise anything
                own = None
            stand_in.__dict__["_own"] = own  # not through nn.Module: its layers are not the stand-in's
        if own is not None:
            try:
                return getattr(own, name)
            except AttributeError:
                pass
        if own is None:
            raise AttributeError(f"'{cls}' object has no attribute '{name}' (while this item is graded, {cls} is "
                                 f"the grader's stand-in, and your own {cls}({', '.join(map(repr, stand_in._init))}) "
                                 f"raised when built to look it up)")
        raise AttributeError(
                f"'{cls}' object has no attribute '{name}' (while this item is graded, {cls} is the grader's "
                f"stand-in: its forward returns the reference output and sets nothing on the module, and your "
                f"own {cls}, built with the same arguments, has no `{name}` before a forward; have the forward "
                f"return what its caller needs)")

    StandIn.__name__ = StandIn.__qualname__ = key.split(".", 1)[1]
    StandIn.__doc__ = f"The grader's stand-in for {key}."
    return StandIn
