"""The process that runs one submission's code, and answers the grader.

It is forked by the warm worker (``zygote.py``), confines itself
(``confine.py``), writes the files the grader sent into its own private
``/submission``, and then serves requests on its socket: import an exercise
module, call a graded function, build a graded class and run it. It sends
back plain data (``protocol.py``) and never compares, scores or writes
results; it holds no reference solution and never sees the hidden-case
secret. Every answer it gives is checked by the grader, which trusts nothing
the child says about itself.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
import traceback
import types

from attnkit.sandbox import protocol, standins
from attnkit.sandbox.protocol import SWITCHED, Fault, Kind, Op

_MISSING = object()
BUFFER_VALUES = 1 << 16  # buffers up to this many elements are sent as values, larger ones by shape
ANSWERED_BYTES = 32 << 20  # stand-in answers kept for questions asked again (see Child._upcall)


def receive_hello(sock, workdir: str):
    """The grader's hello, which comes before any student code: the submission's
    files (written into ``workdir``, by their base names, ``.py`` only) and the
    declarations. Returns the hello's header, or None if the first message is
    not a hello. Both runners' children start with it."""
    header, bufs = protocol.recv(sock)
    if header.get("op") != Op.HELLO:
        return None
    for name, data in zip(header.get("files", []), bufs):
        name = os.path.basename(str(name))
        if name.endswith(".py"):
            with open(os.path.join(workdir, name), "wb") as f:
                f.write(data)
    cpu = header.get("cpu")
    if type(cpu) is int and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {cpu})  # the grader's own (ForkZygote.share_cpu)
        except (OSError, ValueError, OverflowError):
            pass  # not a CPU this process may use: anywhere will do
    os.chdir(workdir)
    sys.dont_write_bytecode = True  # nothing of ours in the student's folder (-I ignores the variable)
    return header


def question(spec: dict, tensors: list, grads) -> tuple[dict, list]:
    """A stand-in's question as a frame's header and buffers, as the child asks it."""
    bufs: list = []
    header = {"kind": Kind.UPCALL, "spec": spec,
              "tensors": protocol.encode_value(list(tensors), bufs),
              "grads": protocol.encode_value(list(grads) if grads is not None else None, bufs)}
    return header, bufs


class StudentFault(Exception):
    """An error to report against the student's code."""

    def __init__(self, kind: Fault, message: str, tb: str = "", family: tuple[str, ...] = ()):
        super().__init__(message)
        self.kind, self.message, self.tb, self.family = kind, message, tb, family

    def fields(self) -> dict:
        """What the grader reads of it (``contract.ChildFault.from_fields``), cut to size."""
        return {"error": self.kind, "message": self.message[:2000], "family": list(self.family),
                "traceback": self.tb[-6000:]}


def said(value, conversion=str) -> str:
    """``str()`` (or ``repr()``) of what student code raised: an exception whose
    own ``__str__`` fails is told as such, never a second error raised in the
    handler that reports the first (it ended the child: "ended unexpectedly")."""
    try:
        return conversion(value)
    except BaseException:  # noqa: BLE001 - the student's __str__ runs here
        return f"<{type(value).__name__} whose {conversion.__name__}() raised>"


def builtin_family(exc: BaseException) -> tuple[str, ...]:
    """The built-in exception classes ``exc`` is an instance of: a student's own
    ``class ConfigError(ValueError)`` is a ValueError to a check that asks for one."""
    return tuple(c.__name__ for c in type(exc).__mro__ if c.__module__ == "builtins")[:16]


def keep_one_thread(torch) -> None:
    """``torch.set_num_threads(n)`` keeps one thread in a grading child. A child
    has one CPU's share of the machine, and at most ``Limits.processes``
    threads: ``torch.set_num_threads(os.cpu_count())``, common in notebooks,
    would otherwise end the process on a grader with more cores than that,
    when the thread pool cannot start. A value torch refuses is still refused."""
    original = torch.set_num_threads

    def set_num_threads(n):
        return original(1 if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else n)

    set_num_threads.__doc__ = original.__doc__
    torch.set_num_threads = set_num_threads


def compile_eagerly(torch) -> None:
    """``torch.compile`` returns what it was given in a grading child, so
    ``@torch.compile``, ``torch.compile(module)`` and ``module.compile()`` run
    the student's code as written. Compiling needs what a child is not given
    (a C++ compiler run in a subprocess, a cache on disk, worker processes) and
    takes longer than an item's limit; and what compiled code computes is what
    the eager code computes, which is what the checks grade."""

    def compile(model=None, **options):
        return (lambda fn: fn) if model is None else model

    compile.__doc__ = torch.compile.__doc__
    torch.compile = compile


class TorchDefaults:
    """The global switches of torch every request starts from, as a training
    script starts: autograd on, inference mode off, torch's default dtype and
    no default device. A switch a file flipped at its top level (a global
    set_grad_enabled(False), a no_grad() or inference_mode() entered and never
    left, set_default_dtype, set_default_device) ends with the request that
    imported it, and costs no other item. torch's own functions are kept here:
    a submission may replace the names in torch."""

    def __init__(self, torch):
        self.inference_mode, self.enable_grad = torch.inference_mode, torch.enable_grad
        self.is_grad_enabled, self.is_inference_mode_enabled = torch.is_grad_enabled, torch.is_inference_mode_enabled
        self.set_default_dtype, self.get_default_dtype = torch.set_default_dtype, torch.get_default_dtype
        self.set_default_device, self.get_default_device = torch.set_default_device, torch.get_default_device
        self.dtype, self.device = torch.get_default_dtype(), torch.get_default_device()

    @contextlib.contextmanager
    def restored(self):
        self.set_default_dtype(self.dtype)
        self.set_default_device(None)  # none at all, as torch starts: a "cpu" one would route every call through Python
        with self.inference_mode(False), self.enable_grad():
            yield

    def flipped(self) -> list[str]:
        """The switches that are not as a request starts (after an import)."""
        try:
            moved = self.get_default_device() != self.device
        except Exception:  # noqa: BLE001 - "cuda" on a machine without it raises when asked
            moved = True
        return [name for name, off in (("autograd", not self.is_grad_enabled() or self.is_inference_mode_enabled()),
                                       ("dtype", self.get_default_dtype() != self.dtype),
                                       ("device", moved)) if off]


class _StandInModule(types.ModuleType):
    """A module of stand-ins, for an exercise file that is missing or broken."""


class Child:
    def __init__(self, sock, workdir: str, torch, modules: tuple[str, ...]):
        self.sock = sock
        self.workdir = os.path.realpath(workdir)
        self.torch = torch
        keep_one_thread(torch)
        compile_eagerly(torch)
        self.defaults = TorchDefaults(torch)
        self.exercises = modules  # every exercise module name
        self.standins: dict[str, dict] = {}  # "module.name" -> declaration (from the grader)
        self.swaps: dict[str, list[str]] = {}  # item -> the other stages it may call that have a stand-in
        self.modules: dict[str, object] = {}
        self.upcalls = standins.Upcalls(self._upcall, torch)
        self.proxies: dict = {}
        self.item: str | None = None  # the item whose request is under way
        self.answered: dict = {}  # (item, question) -> the grader's answer, as it came
        self.answered_bytes = 0
        self.fresh_output = None  # the runner's reset of an output budget it counts itself

    # -- channel
    def serve(self) -> None:
        while True:
            try:
                header, bufs = protocol.recv(self.sock)
            except (protocol.PeerClosed, protocol.ProtocolError):
                return
            try:
                value = self.handle(header, bufs)
                reply_bufs: list = []
                reply = {"kind": Kind.RESULT, "value": protocol.encode_value(value, reply_bufs)}
            except StudentFault as fault:
                reply_bufs = []
                reply = {"kind": Kind.ERROR, **fault.fields()}
            protocol.send(self.sock, reply, reply_bufs)

    def _upcall(self, spec: dict, tensors: list, grads):
        header, bufs = question(spec, tensors, grads)
        # A question this child already had answered for this item is answered
        # from that answer: it holds nothing the child was not given, and the
        # grader's answer to (item, question) never changes (train-mode
        # questions, dropout draws, aside: those are always asked).
        key = None
        if self.item is not None and isinstance(spec, dict) and not spec.get("training"):
            try:
                key = (self.item, protocol.question_key(spec, header["tensors"], header["grads"], bufs))
            except (TypeError, ValueError):
                key = None
        known = self.answered.get(key) if key is not None else None
        if known is not None:
            return Kind.UPCALL_RESULT, protocol.decode_value(*known)  # fresh tensors each time
        protocol.send(self.sock, header, bufs)
        reply, rbufs = protocol.recv(self.sock)
        if reply.get("kind") == Kind.UPCALL_RESULT:
            value = protocol.decode_value(reply["value"], rbufs)
            size = sum(len(b) for b in rbufs)
            if key is not None and self.answered_bytes + size <= ANSWERED_BYTES:
                self.answered[key] = (reply["value"], rbufs)
                self.answered_bytes += size
            return Kind.UPCALL_RESULT, value
        return Kind.UPCALL_ERROR, str(reply.get("message", "refused"))

    # -- requests
    def hello(self, header: dict) -> None:
        """The grader's declarations, and the modules to stand in from the start
        (their files are missing, or hung or crashed an earlier child)."""
        self.standins = {str(k): dict(v) for k, v in dict(header.get("standins", {})).items()}
        calls = {str(k): [str(s) for s in v] for k, v in dict(header.get("calls", {})).items()}
        self.swaps = {item: [k for k in stages if k != item and k in self.standins] for item, stages in calls.items()}
        for module in header.get("unavailable", []):
            sys.modules[module] = self._stand_in_module(module)

    def handle(self, header: dict, bufs: list):
        with self.defaults.restored():
            return self._handle(header, bufs)

    def _handle(self, header: dict, bufs: list):
        op = header.get("op")
        if header.get("fresh_output") and self.fresh_output is not None:
            self.fresh_output()
        if op == Op.IMPORT:
            module = str(header.get("module"))
            for other in header.get("unavailable", []):  # broken since: stand in for them
                if not isinstance(sys.modules.get(other), _StandInModule):
                    sys.modules[other] = self._stand_in_module(other)
            self.run(lambda: self.load(module))
            switched = self.defaults.flipped()
            return SWITCHED + ",".join(switched) if switched else "ok"  # said in a note
        used: set = set()
        args = protocol.decode_value(header.get("args", ["l"]), bufs, used=used)
        kwargs = protocol.decode_value(header.get("kwargs", ["d", {}]), bufs, used=used)
        item = str(header.get("item"))
        self.item = item
        try:
            # "own": the grader asks for the student's own stages, with stand-ins for those listed only
            own = header.get("own")
            only = {str(s) for s in own} if isinstance(own, list) else None
            with self.isolated(item, only):
                target = self.resolve(item)
                if op == Op.CALL:
                    return self.run(lambda: self.call(target, args, kwargs))
                if op == Op.MODULE:
                    return self.run(lambda: self.module(target, kwargs))
                if op == Op.GRADIENT:
                    return self.run(lambda: self.gradient(target, kwargs))
        finally:
            self.item = None
        raise StudentFault(Fault.PROTOCOL, f"unknown request {op!r}")

    def run(self, fn):
        try:
            return fn()
        except StudentFault:
            raise
        except NotImplementedError as exc:
            # the stub's own NotImplementedError (raised in the student's file) means
            # "not done yet"; one raised inside torch is an ordinary error
            kind = Fault.NOT_IMPLEMENTED if self._raised_in_submission(exc) else Fault.EXCEPTION
            text = said(exc) or "NotImplementedError"
            raise StudentFault(kind, text if kind == Fault.NOT_IMPLEMENTED else f"NotImplementedError: {text}",
                               self.student_traceback(exc)) from None
        except MemoryError as exc:
            raise StudentFault(Fault.MEMORY, "ran out of memory (MemoryError)", self.student_traceback(exc))
        except RecursionError as exc:
            raise StudentFault(Fault.EXCEPTION, "RecursionError: maximum recursion depth exceeded",
                               self.student_traceback(exc)) from None
        except SystemExit as exc:
            raise StudentFault(Fault.EXIT, f"called sys.exit({said(exc.code, repr)})", self.student_traceback(exc))
        except KeyboardInterrupt as exc:
            raise StudentFault(Fault.EXCEPTION, "raised KeyboardInterrupt", self.student_traceback(exc))
        except OSError as exc:
            kind = Fault.OUTPUT if getattr(exc, "errno", None) == 27 else Fault.EXCEPTION  # EFBIG
            raise StudentFault(kind, f"{type(exc).__name__}: {said(exc)}", self.student_traceback(exc)) from None
        except Exception as exc:  # noqa: BLE001 - student code may raise anything
            text = f"{type(exc).__name__}: {said(exc)}"
            kind = Fault.MEMORY if "can't allocate memory" in text else Fault.EXCEPTION
            raise StudentFault(kind, text, self.student_traceback(exc), builtin_family(exc)) from None

    def _in_submission(self, filename) -> bool:
        # "<frozen importlib._bootstrap>" is no path: resolved, it would land in the working directory
        return (isinstance(filename, str) and os.path.isabs(filename)
                and os.path.realpath(filename).startswith(self.workdir + os.sep))

    def _raised_in_submission(self, exc: BaseException) -> bool:
        frames = traceback.extract_tb(exc.__traceback__)
        return bool(frames) and self._in_submission(frames[-1].filename)

    def student_traceback(self, exc: BaseException) -> str:
        """The traceback, cut down to the frames in the student's own files."""
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if self._in_submission(f.filename)]
        lines = [f'  File "{os.path.basename(f.filename)}", line {f.lineno}, in {f.name}\n'
                 + (f"    {f.line}\n" if f.line else "") for f in frames]
        if isinstance(exc, SyntaxError) and self._in_submission(exc.filename):  # where it is: no frame says
            text = str(exc.text or "").rstrip("\n")
            pad = len(text) - len(text.lstrip())
            caret = (" " * max(0, (exc.offset or 1) - 1 - pad) + "^\n") if exc.offset and text.strip() else ""
            lines.append(f'  File "{os.path.basename(exc.filename)}", line {exc.lineno}\n'
                         + (f"    {text.strip()}\n    {caret}" if text.strip() else ""))
        return "".join(lines[-8:])

    def load(self, module: str):
        if module in self.modules:
            return self.modules[module]
        if isinstance(sys.modules.get(module), _StandInModule):
            raise StudentFault(Fault.IMPORT, f"{module}.py could not be imported")
        if not os.path.exists(os.path.join(self.workdir, module + ".py")):
            raise StudentFault(Fault.MISSING_FILE, f"{module}.py is not in the submission")
        try:
            mod = importlib.import_module(module)
        except BaseException as exc:  # noqa: BLE001 - import runs student code
            if isinstance(exc, KeyboardInterrupt):
                raise
            text = f"{type(exc).__name__}: {said(exc)}"
            if isinstance(exc, SystemExit):
                text = f"called sys.exit({said(exc.code, repr)}) while being imported"
            sys.modules[module] = self._stand_in_module(module)  # for the files that import it
            raise StudentFault(Fault.IMPORT, f"{module}.py could not be imported: {text}",
                               self.student_traceback(exc)) from None
        self.modules[module] = mod
        return mod

    def _stand_in_module(self, module: str):
        stand_in = _StandInModule(module, f"The grader's stand-ins for {module}.")
        for key in self.standins:
            m, name = key.split(".", 1)
            if m == module:
                setattr(stand_in, name, self.proxy(key, None))
        return stand_in

    def resolve(self, item: str):
        module, name = item.split(".", 1)
        mod = self.load(module)
        target = getattr(mod, name, None)
        if target is None:
            raise StudentFault(Fault.MISSING, f"{module}.py defines no `{name}`")
        return target

    # -- stage isolation
    @contextlib.contextmanager
    def isolated(self, item: str, only: set[str] | None = None):
        """While ``item`` runs, each stage it may call (of ``only``, where given)
        is replaced by its stand-in wherever the student's modules refer to it,
        so a wrong stage elsewhere never costs this one its points."""
        keys = [k for k in self.swaps.get(item, []) if only is None or k in only]
        if not keys:  # an item that calls no other stage: nothing to swap
            yield
            return
        saved = []  # (namespace, name, original value or _MISSING)
        swap = {}  # id of the student's stage -> its stand-in
        for key in keys:
            module, name = key.split(".", 1)
            mod = self.modules.get(module)
            original = getattr(mod, name, None) if mod is not None else None
            if original is not None:
                swap[id(original)] = self.proxy(key, original)
            elif mod is not None:  # a missing stage must not break the ones that call it
                saved.append((mod.__dict__, name, _MISSING))
                mod.__dict__[name] = self.proxy(key, None)
        for mod in list(self.modules.values()):
            for name, value in list(mod.__dict__.items()):
                proxy = swap.get(id(value))
                if proxy is None and type(value) is functools.partial and id(value.func) in swap:
                    # row_softmax = partial(softmax, dim=-1): the same stage, with arguments
                    proxy = functools.partial(swap[id(value.func)], *value.args, **value.keywords)
                if proxy is not None:
                    saved.append((mod.__dict__, name, value))
                    mod.__dict__[name] = proxy
        try:
            yield
        finally:
            for space, name, value in reversed(saved):
                if value is _MISSING:
                    space.pop(name, None)
                else:
                    space[name] = value

    def proxy(self, key: str, original):
        """The stand-in for one stage; made once per child and student original."""
        cache_key = (key, id(original))
        if cache_key not in self.proxies:
            spec = self.standins[key]
            if spec.get("kind") == "module":
                made = standins.module(self.upcalls, key, spec, original)
            else:
                made = standins.function(self.upcalls, key, original)
            self.proxies[cache_key] = (made, original)  # keep the original alive: its id is the key
        return self.proxies[cache_key][0]

    # -- operations
    def call(self, target, args, kwargs):
        if not callable(target):
            raise StudentFault(Fault.MISSING, f"`{getattr(target, '__name__', target)}` is not a function")
        result = target(*args, **kwargs)
        after = [a for a in args if isinstance(a, self.torch.Tensor)]
        return {"result": result, "args_after": after}

    def gradient(self, target, spec: dict):
        """Call the function as ``call`` does, each float tensor argument a copy of
        a fresh leaf that requires grad, and backpropagate ``grad_output`` (one
        tensor per result). Returns what it returned (as it was before the
        backward ran), the arguments after the call (so an argument changed in
        place shows, as for ``call``), and the gradient each leaf got: None
        where the result is cut from it. The grader compares them all."""
        torch = self.torch
        leaves = [a.clone().requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                  for a in spec.get("args", [])]
        # copies, not the leaves: changing a copy in place is allowed, and shows
        reply = self.call(target, [a.clone() if isinstance(a, torch.Tensor) else a for a in leaves], {})
        result = reply["result"]
        results = list(result) if isinstance(result, (tuple, list)) else [result]
        terms = [(r * g).sum() for r, g in zip(results, spec.get("grad_output", []))
                 if isinstance(r, torch.Tensor) and isinstance(g, torch.Tensor) and r.requires_grad
                 and tuple(r.shape) == tuple(g.shape)]
        # made under inference_mode(): no autograd graph may ever save it
        reply["inference"] = any(isinstance(r, torch.Tensor) and r.is_inference() for r in results)
        reply["result"] = _snapshot(result, torch)  # as returned: a backward may reuse what the forward saved
        reply["args_after"] = [a.detach() for a in reply["args_after"]]
        if terms:
            torch.stack(terms).sum().backward()
        reply["grads"] = [a.grad if isinstance(a, torch.Tensor) and a.requires_grad else None for a in leaves]
        return reply

    def module(self, cls, spec: dict):
        """Build the class and run it. Parameters and buffers come back as values,
        so the grader can recompute the forward from them: nothing here is taken
        on the child's word."""
        torch = self.torch
        if not isinstance(cls, type):
            raise StudentFault(Fault.MISSING, f"`{getattr(cls, '__name__', cls)}` is not a class")
        if spec.get("seed") is not None:
            # the CPU generator is all a child has: torch.manual_seed would also queue
            # a seeding for each accelerator, with a formatted stack each (milliseconds)
            torch.random.default_generator.manual_seed(int(spec["seed"]))
        module = cls(*spec.get("init_args", ()), **spec.get("init", {}))
        if not isinstance(module, torch.nn.Module):
            raise StudentFault(Fault.EXCEPTION, f"{cls.__name__} is not an nn.Module")
        if spec.get("dtype"):
            module = module.to(getattr(torch, spec["dtype"]))
        named = _named_parameters(module, spec.get("names"))
        report = {"params": {n: p.detach() for n, p in named},
                  "buffers": {n: (b.detach() if b.numel() <= BUFFER_VALUES else list(b.shape))
                              for n, b in module.named_buffers()},
                  "attrs": {a: _describe(getattr(module, a, _MISSING)) for a in spec.get("describe", ())}}
        state = spec.get("state")
        if state is not None:
            params = dict(named)
            if set(params) != set(state) or any(list(params[n].shape) != list(state[n].shape) for n in state):
                report["state_mismatch"] = True
                return report
            with torch.no_grad():
                for name, value in state.items():
                    params[name].copy_(value)
        module.train(bool(spec.get("train", False)))
        inputs = spec.get("inputs", [])
        report["outputs"] = [module(x) for x in inputs for _ in range(int(spec.get("repeat", 1)))]
        report["inputs_after"] = list(inputs)
        grad_output = spec.get("grad_output")
        if grad_output is not None and inputs:
            try:
                self.run(lambda: self._backward(module, named, inputs[0], grad_output, report))
            except StudentFault as fault:
                if fault.kind in (Fault.MEMORY, Fault.OUTPUT):
                    raise  # a limit is the item's, wherever it was hit
                # Kept beside the outputs of the forwards above (an error of theirs ends
                # the request), so that the check tells the two apart in one request.
                report["backward_fault"] = fault.fields()
                return report
        witness = spec.get("witness")
        if witness is not None:  # a fresh input the child could not foresee, in eval mode
            module.eval()
            with torch.no_grad():
                report["witness"] = module(witness)
        return report

    def _backward(self, module, named: list, x, grad_output, report: dict) -> None:
        """One more forward, on a leaf copy of ``x``, and a backward of ``grad_output``:
        the gradient each parameter got (None where none reached it)."""
        for p in module.parameters():
            p.grad = None
        x = x.clone().requires_grad_(True)
        out = module(x)
        if not isinstance(out, self.torch.Tensor) or out.shape != grad_output.shape:
            report["grads"] = None
            return
        (out * grad_output).sum().backward()
        report["grads"] = {n: p.grad for n, p in named}
        report["input_grad"] = x.grad


def _snapshot(value, torch):
    """``value`` with each tensor (at the top, or in a tuple or list) detached and copied."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):  # a NamedTuple travels as a tuple anyway
        copied = [v.detach().clone() if isinstance(v, torch.Tensor) else v for v in value]
        return tuple(copied) if isinstance(value, tuple) else copied
    return value


def _named_parameters(module, names) -> list:
    """Each parameter once, by the name the grader expects where it has several
    (``self.W_query = self.qkv[0]`` registers it as ``qkv.0.weight`` first, and
    as ``W_query.weight`` too); else by the first, as torch names it."""
    expected = set(names) if isinstance(names, list) and all(isinstance(n, str) for n in names) else set()
    chosen: dict[int, tuple] = {}  # in the order torch first meets each parameter, as named_parameters() gives them
    for name, p in module.named_parameters(remove_duplicate=False):
        if id(p) not in chosen or (name in expected and chosen[id(p)][0] not in expected):
            chosen[id(p)] = (name, p)
    return list(chosen.values())


def _describe(value) -> dict:
    if value is _MISSING:
        return {"missing": True}
    tp = type(value)
    info = {"mro": [f"{c.__module__}.{c.__qualname__}" for c in tp.__mro__][:12]}
    if isinstance(value, (bool, int, float)):
        info["value"] = value
    if hasattr(value, "__len__") and not isinstance(value, (str, bytes)):
        try:
            info["len"] = len(value)
            info["items"] = [_describe(v)["mro"][0] for v in list(value)[:64]]
        except Exception:  # noqa: BLE001
            pass
    if "torch.nn.modules.dropout._DropoutNd" in info["mro"] and isinstance(getattr(value, "p", None), float):
        # nn.Dropout or a subclass of it, the student's own included
        info["p"] = value.p
    if hasattr(value, "bias") and "torch.nn.modules.linear.Linear" in info["mro"]:
        # nn.Linear or a subclass of it (torch's own MultiheadAttention keeps out_proj as one)
        info["bias"] = value.bias is not None
    return info
