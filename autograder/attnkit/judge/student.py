"""What a check holds in its ``student`` fixture: the item under test, reached
through the sandbox. Calls go to the student process; what comes back is plain
data, checked here for the things every call must get right (no argument
modified in place, a well-formed reply)."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field

import torch

from attnkit.judge import compare, reference
from attnkit.exercises import Item
from attnkit.judge.diagnosis import errors
from attnkit.errors import CheckFailure, GraderError, LayoutFailure, LimitExceeded, StudentError
from attnkit.sandbox import ChildFault, LimitHit, SandboxError


@dataclass
class ModuleRun:
    """What the student's module did, as the child reported it. Nothing here is
    trusted as such: parameters come as values, so that the checks can
    recompute the forward from them (``checks.common.verify``)."""

    params: dict = field(default_factory=dict)  # name -> tensor, right after construction
    buffers: dict = field(default_factory=dict)  # name -> tensor (or its shape, when large)
    attrs: dict = field(default_factory=dict)
    outputs: list = field(default_factory=list)
    inputs_after: list = field(default_factory=list)
    grads: dict | None = None
    input_grad: object = None
    state_mismatch: bool = False
    witness: object = None  # the eval-mode output on the witness input, when one was sent
    backward_error: object = None  # StudentError: the backward of grad_output raised (keep_backward_error)
    # what the grader sent, for the checks' recomputation
    init_args: tuple = ()
    init: dict = field(default_factory=dict)
    state: dict | None = None
    witness_input: object = None

    def shapes(self) -> dict:
        return {n: tuple(getattr(p, "shape", ())) for n, p in dict(self.params).items()}


# What each field of a module run is, as the child's request server makes it.
REPLY_TYPES = {"params": dict, "buffers": dict, "attrs": dict, "outputs": list, "inputs_after": list,
               "grads": (dict, type(None)), "input_grad": (torch.Tensor, type(None)), "state_mismatch": bool}


class Student:
    def __init__(self, session, item: Item, made_from: dict[str, str] | None = None):
        self.session = session
        self.item = item
        self.made_from = made_from or {}  # module -> the notebook it was made from

    @property
    def verifies(self) -> bool:
        """The grader holds the reference here, so module reports can be checked
        (the public checker has none, and nothing to protect)."""
        return getattr(self.session, "answer", None) is not None

    @property
    def name(self) -> str:
        return self.item.key

    def arg_names(self, n: int) -> list[str]:
        """The names of the item's first ``n`` arguments, as its reference calls them."""
        return (list(_parameter_names(self.item.key)) + [f"argument {i + 1}" for i in range(n)])[:n]

    def _request(self, op: str, args=(), kwargs=None):
        """One request to the sandbox, its outcomes in the grader's terms."""
        try:
            return self.session.request(self.item.key, op, args, kwargs)
        except ChildFault as fault:
            raise self._student_error(fault) from None
        except LimitHit as hit:
            raise LimitExceeded(hit.kind, self._named(hit.message)) from None
        except SandboxError as exc:
            raise GraderError(str(exc)) from None

    def _student_error(self, fault: ChildFault) -> StudentError:
        return StudentError(fault.kind, self._named(fault.message), fault.traceback, family=fault.family)

    def _named(self, message: str) -> str:
        """``causal_attention.py`` in a message, said to be made from the notebook
        it came from, where it did: the student has no such .py file."""
        for module, notebook in self.made_from.items():
            message = message.replace(f"{module}.py", f"{module}.py (made from the solution cells of {notebook})", 1)
        return message

    def __call__(self, *args, **kwargs):
        """Call the student's function; returns what it returned."""
        try:
            reply = self._request("call", args, kwargs)
        except StudentError as exc:  # the grader knows what it sent: say it, and what the error shows
            raise errors.explain(self.name, exc, args, kwargs, self.arg_names(len(args))) from None
        if not isinstance(reply, dict) or "result" not in reply:
            raise CheckFailure("the process running your code sent back a malformed reply")
        self._unchanged(args, reply.get("args_after"))
        return reply["result"]

    def _unchanged(self, args: tuple, after) -> None:
        """The tensor arguments, as the child had them after the call, are what was sent."""
        after = after or []
        tensors = [(n, a) for n, a in zip(self.arg_names(len(args)), args) if isinstance(a, torch.Tensor)]
        if not isinstance(after, list) or len(after) != len(tensors):
            raise CheckFailure("the process running your code sent back a malformed reply")
        compare.unchanged([a for _, a in tensors], after, [n for n, _ in tensors])

    def gradient(self, args: tuple, grad_output: tuple) -> tuple[object, list, bool]:
        """Call the student's function on ``args`` (fresh leaves) and backpropagate
        ``grad_output`` (one tensor per result): what it returned, the gradient
        each argument got (None where none reached it), and whether a result is
        an inference tensor."""
        try:
            reply = self._request("gradient", (), {"args": list(args), "grad_output": list(grad_output)})
        except StudentError as exc:
            raise errors.explain(self.name, exc, args, {}, self.arg_names(len(args))) from None
        grads = reply.get("grads") if isinstance(reply, dict) else None
        if not isinstance(grads, list) or len(grads) != len(args) or "result" not in reply or not all(
                g is None or (isinstance(g, torch.Tensor) and g.is_floating_point()) for g in grads):
            raise CheckFailure("the process running your code sent back a malformed reply")
        self._unchanged(args, reply.get("args_after"))
        return reply["result"], grads, reply.get("inference") is True

    def build(self, *init_args, state: dict | None = None, inputs=(), train: bool = False,
              seed: int | None = None, dtype: str | None = None, repeat: int = 1,
              grad_output: torch.Tensor | None = None, describe=(), witness: torch.Tensor | None = None,
              keep_backward_error: bool = False, **init) -> ModuleRun:
        """Construct the student's module and run it. With ``state``, the
        parameters are set by name first; a different set of names or shapes
        fails with a reason that lists the differences. With ``witness``, the
        module also runs (eval mode) on that input, for ``checks.common.verify``.
        With ``grad_output``, an error of the backward is raised as any error of
        the module is, or, with ``keep_backward_error``, kept in the run beside
        the outputs of the forwards before it."""
        spec = {"init_args": list(init_args), "init": init, "state": state, "inputs": list(inputs),
                "train": train, "seed": seed, "dtype": dtype, "repeat": repeat,
                "grad_output": grad_output, "describe": list(describe), "witness": witness,
                "names": list(state) if state is not None else reference_names(self.item.key, init_args, init)}
        try:
            reply = self._request("module", (), spec)
        except StudentError as exc:
            raise errors.explain(self.name, exc, spec=spec) from None
        if not isinstance(reply, dict):
            raise CheckFailure("the process running your code sent back a malformed reply")
        backward_error = self._backward_error(reply.get("backward_fault"), spec)
        if backward_error is not None and not keep_backward_error:
            raise backward_error
        fields = {k: v for k, v in reply.items() if k in ("params", "buffers", "attrs", "outputs", "inputs_after",
                                                          "grads", "input_grad", "state_mismatch", "witness")}
        if any(k in fields and not isinstance(fields[k], tp) for k, tp in REPLY_TYPES.items()):
            # the child's own code sends these: another type is a patched child, told as such,
            # never a check that breaks on it ("the grader could not check this")
            raise CheckFailure("the process running your code sent back a malformed reply")
        run = ModuleRun(**fields, init_args=tuple(init_args), init=dict(init), state=state, witness_input=witness,
                        backward_error=backward_error)
        if not all(isinstance(p, torch.Tensor) for p in run.params.values()):  # a dict: REPLY_TYPES
            raise CheckFailure("the process running your code sent back a malformed reply")
        if state is not None:
            # the child's word that the names differ is checked against what it sent
            differs = run.shapes() != {n: tuple(t.shape) for n, t in state.items()}
            if run.state_mismatch or differs:
                if not differs:
                    raise CheckFailure("the process running your code sent back a malformed reply")
                raise LayoutFailure(parameter_difference(run.shapes(), state))
        if len(run.inputs_after) == len(inputs):
            compare.unchanged(list(inputs), run.inputs_after, ["x"] * len(inputs))
        return run

    def _backward_error(self, fault, spec: dict) -> StudentError | None:
        """The child's report of an error in the second forward or the backward,
        told as an error of a whole request is. A limit hit there ends the
        request instead, so an "error" here is the child's word alone: whatever
        kind it names, it only costs the check that asked."""
        if fault is None:
            return None
        if not isinstance(fault, dict):
            raise CheckFailure("the process running your code sent back a malformed reply")
        return errors.explain(self.name, self._student_error(ChildFault.from_fields(fault)), spec=spec)


def reference_names(item: str, init_args: tuple, init: dict) -> list[str] | None:
    """The reference module's parameter names for these arguments: the names
    a parameter registered under several is reported by. None without a reference."""
    try:
        return list(_names_for(item, tuple(init_args), tuple(sorted(init.items()))))
    except TypeError:  # an argument that cannot be a key
        return None


@functools.lru_cache(maxsize=256)
def _names_for(item: str, init_args: tuple, init: tuple) -> tuple[str, ...] | None:
    try:
        with torch.random.fork_rng(devices=[]):
            module = reference.solution(item)(*init_args, **dict(init))
        return tuple(n for n, _ in module.named_parameters())
    except Exception:  # noqa: BLE001 - no reference here (the public checker), or arguments it refuses
        return None


@functools.cache
def _parameter_names(item: str) -> tuple[str, ...]:
    """The reference's argument names, for messages; once per item, not per call."""
    try:
        return tuple(inspect.signature(reference.solution(item)).parameters)
    except (TypeError, ValueError, GraderError):
        return ()  # the public checker has no reference to take names from


def parameter_difference(params: dict, state: dict) -> str:
    """Explain how the module's parameters (name -> shape) differ from the expected ones."""
    want = {n: list(t.shape) for n, t in state.items()}
    have = {str(n): list(s) for n, s in dict(params).items()}
    parts = []
    missing = [n for n in want if n not in have]
    extra = [n for n in have if n not in want]
    if missing:
        parts.append("missing " + ", ".join(missing))
    if extra:
        parts.append("unexpected " + ", ".join(extra))
    for n in want:
        if n in have and list(have[n]) != want[n]:
            parts.append(f"{n} has shape {tuple(have[n])}, expected {tuple(want[n])}")
    def heads(names) -> set[str]:
        return {n.split(".")[1] for n in names if n.startswith("heads.")}

    if len(heads(want)) > 1 and heads(have) == {"0"} and not extra and all(n.startswith("heads.") for n in missing):
        parts.append("only heads.0 has parameters of its own: `heads` holds one module, or one module repeated "
                     "(`[head] * num_heads` puts the same object num_heads times, it makes no new heads); "
                     "create a new CausalAttention for each head")
    return "the module's parameters are not the expected ones: " + "; ".join(parts or ["(none)"])
