"""The grader's side of the sandbox: the warm worker, and one session per submission.

The grading process never imports student code. It starts the worker
(``zygote.py``) once, which pays the torch import, asks it for a fresh child
per submission, sends the child the submission's files, and talks to it with
the data-only protocol. Everything that decides a grade happens here: the
time each item takes is measured on this process's clock and no message from
the child pauses, extends or restarts it; stand-in requests are answered only
for the stages the item under grading may call, within size bounds; a child
that overruns is killed with its whole PID namespace and the next request gets
a fresh one.

Where Linux or fork is missing (macOS, Windows), or with
``ATTNKIT_SANDBOX=portable``, ``Zygote`` is the portable runner instead
(``portable.py``): the same interface, the same protocol and request server,
one spawned process per submission, and reduced isolation, said in one line.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time

from attnkit.sandbox import protocol
from attnkit.sandbox.answers import ANSWERS
from attnkit.sandbox.contract import ChildFault, LimitHit, Limits
from attnkit.sandbox.forking import SESSION_PREFIX, ForkZygote, _top_level_imports, checkout_paths
from attnkit.sandbox.protocol import SWITCHED, Fault, Kind, Limit, Op


# What a note says of a global switch a file flipped when imported (the child
# starts every request from torch's defaults again, so it costs no item).
SWITCH_NOTES = {
    "autograd": "{file} turns autograd off when it is imported (torch.set_grad_enabled(False), or a no_grad() or "
                "inference_mode() entered, at its top level): a training script that imports it could train "
                "nothing; the grader turned it on again for every item",
    "dtype": "{file} changes torch's default dtype when it is imported (torch.set_default_dtype at its top level): "
             "every layer and tensor made after it, in any file, would take that dtype; the grader set it back for "
             "every item",
    "device": "{file} changes torch's default device when it is imported (torch.set_default_device at its top "
              "level): every tensor made after it, in any file, would go there, and the grader has no GPU; the "
              "grader set it back to the CPU for every item",
}


# --------------------------------------------------------------------------- one submission

class Session:
    """One submission, graded in a child process of its own.

    ``files``: the submission, name -> bytes. ``modules``: the exercise module
    names, in teaching order. ``standins``: each stage's stand-in declaration;
    ``calls``: item -> the stages it may call; ``answer(spec, tensors, grads)``
    computes a stand-in's reference result. Without ``answer`` (the public
    checker, which has no reference) every stand-in request is refused and the
    student's own code runs.
    """

    def __init__(self, zygote: ForkZygote, files: dict[str, bytes], modules=(), standins=None, calls=None,
                 answer=None, limits: Limits | None = None, absent: dict[str, str] | None = None):
        self.zygote = zygote
        self.limits = limits or Limits()
        self.files = {os.path.basename(k): bytes(v) for k, v in files.items()}
        self.modules = tuple(modules)
        self.standins = dict(standins or {})
        self.calls = {k: frozenset(v) for k, v in (calls or {}).items()}
        self.answer = answer
        self.uid = zygote.new_uid()
        self.workdir: str | None = None  # only where the child has no new root of its own
        self.sock: socket.socket | None = None
        self.child = None  # the runner's handle on the current (or last) child: kill, output
        self.used: dict[str, float] = {}  # seconds per item (and per module import), on our clock
        self.imported: set[str] = set()  # in the current child
        self.trial_start: tuple | None = None  # what start_over puts back: the import state as a trial began
        self.imported_before: set[str] = set()  # in any child of this submission
        self.owed: set[str] = set()  # imported in a child the grader chose to end: importing them again is free
        self.unavailable: dict[str, tuple[str, str, str]] = {}  # module -> (kind, message, traceback)
        self.absent = dict(absent or {})  # module -> the reason for a module the submission has no file of
        self.current: str | None = None  # the item whose request is under way
        # item -> the stages still stood in while it is tried on the student's own (the rest run as written)
        self.own: dict[str, frozenset[str]] = {}
        # item -> the stages whose stand-ins were asked for while it was graded (its trial that passed,
        # or its graded run), each a stage it may call: what it passed on, as far as the grader knows
        self.asked: dict[str, set[str]] = {}
        self.printing: str | None = None  # the item the current child's output is counted against
        self.fresh = False  # the next request tells the child its output is counted from zero
        self.spawned = 0
        self._deps: dict[str, list[str]] = {}
        self.notes: list[str] = []  # what the grader saw while grading, for the report's notes

    # -- lifecycle
    def _start(self) -> None:
        self.spawned += 1
        isolation = self.zygote.ready()
        if not isolation.get("filesystem") and self.workdir is not None and self.spawned > 1:
            # a child ran in it: the next starts in a clean one, as a child with a root of its own does
            # (a file made at import, or results kept there, must not outlive the child that made them)
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        if not isolation.get("filesystem") and self.workdir is None:
            # 0700, ours alone; named after this process, so a later run can tell it is stale
            self.workdir = tempfile.mkdtemp(prefix=f"{SESSION_PREFIX}{os.getpid()}-")
            if self.uid is not None:
                os.chown(self.workdir, self.uid, self.uid)
        if self.child is not None:
            self.child.close()
        request = {"limits": dict(self.limits.for_child(), uid=self.uid), "workdir": self.workdir,
                   "exclude": checkout_paths()}
        bufs = [self.files[n] for n in sorted(self.files)]
        hello = {"op": Op.HELLO, "files": sorted(self.files), "modules": list(self.modules),
                 "standins": self.standins if self.answer else {}, "calls": {k: sorted(v) for k, v in self.calls.items()},
                 "unavailable": sorted(self.unavailable), "cpu": self.zygote.cpu}
        self.imported = set()
        self.printing, self.fresh = None, False
        self.child = self.zygote.spawn(request)
        self.sock = self.child.sock
        if not getattr(self.child, "spare", False):
            self._exchange(hello, bufs, time.monotonic() + 60)
            return
        try:
            self._exchange(hello, bufs, time.monotonic() + 60)
        except LimitHit:
            # a spare that died while it waited (no student code had run in it):
            # not the submission's doing, so a child forked now takes its place
            self.child.close()
            self.child = self.zygote.spawn(request, spare_ok=False)
            self.sock = self.child.sock
            self._exchange(hello, bufs, time.monotonic() + 60)

    def _stop(self) -> None:
        """Kill the child (through its runner: a pidfd, or a process handle); its
        output stays readable until the next child starts."""
        if self.child is not None:
            self.child.kill()
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.imported = set()
        self.owed = set()  # ended for a limit: as without a trial, what it had is imported again at a cost

    def close(self) -> None:
        self._stop()
        if self.child is not None:
            self.child.close()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def begin_trial(self) -> None:
        """A trial on the student's own stages begins: the import state that
        ``start_over`` puts back."""
        self.trial_start = (set(self.imported), set(self.imported_before), set(self.owed), dict(self.unavailable))

    def start_over(self, item: str) -> None:
        """The item is graded again from the start, its time counted from zero,
        in a fresh process (which counts output from zero too, and, where the
        children run in a folder of the host, has a fresh one): a trial on the
        student's own stages, which the grader chose to make, costs the
        student nothing and leaves nothing behind for the graded run to find
        (files it wrote, results it kept). Imports are as if there had been
        no trial: what the trial's process had imported when the trial began
        is owed (imported again at no item's expense, whether the trial
        failed or a limit ended it), and what the trial imported, or failed
        to, is as it was before."""
        self._stop()
        had, before, owed, unavailable = self.trial_start  # begin_trial's
        self.trial_start = None
        self.owed = owed | had
        self.imported_before, self.unavailable = before, unavailable
        self.used.pop(item, None)
        self.asked.pop(item, None)

    def _fresh_output(self) -> None:
        """The current child's output is counted from zero (the runner's count
        now, the child's own with the next exchange)."""
        self.fresh = True
        self.child.fresh_output()

    def output(self) -> str:
        """What the student's code printed in the current child, capped. No
        grading path shows it to anyone: the hidden checks' inputs pass through
        the student's code, and one print would carry them into the feedback."""
        return self.child.output(self.limits.output_bytes) if self.child is not None else ""

    # -- imports, each on a budget of its own
    def _dependencies(self, module: str, seen=None) -> list[str]:
        """The other exercise modules ``module`` imports at its top level, theirs first."""
        if seen is None:
            if module not in self._deps:
                self._deps[module] = self._dependencies(module, set())
            return self._deps[module]
        seen.add(module)
        out: list[str] = []
        for name in _top_level_imports(self.files.get(f"{module}.py", b"")):
            if name in self.modules and name not in seen:
                out += [d for d in self._dependencies(name, seen) if d not in out] + [name]
        return out

    def _ensure_imported(self, module: str, item: str) -> None:
        """Import ``module`` and the exercise modules it imports in the current
        child. A file's first import has a budget of its own, charged to the
        file; importing it again in a child that replaced a killed one is the
        price of that item's request, charged to the item, so that restarts
        after a limit never buy a submission time beyond its items' limits.
        (The one restart the grader itself chooses, ``start_over``, costs no
        item: ``_import_owed``.)"""
        for m in self._dependencies(module) + [module]:
            if m in self.imported or m in self.unavailable:
                continue
            if f"{m}.py" not in self.files:
                self.unavailable[m] = (Fault.MISSING_FILE, self.absent.get(m)
                                       or f"missing file: expected {m}.py in the submission", "")
                continue
            if self.sock is None:
                self._start()
            again = m in self.imported_before
            used = self.used.get(item, 0.0) if again else 0.0
            if used >= self.limits.seconds:
                raise LimitHit(Limit.TIME, self._time_message(m))
            start = time.monotonic()
            try:
                reply = self._import(m, start + self.limits.seconds - used)
            except LimitHit as hit:
                if again and hit.kind == Limit.TIME:
                    raise LimitHit(Limit.TIME, self._time_message(m)) from None  # the item's time, not the file's
                what = {Limit.TIME: f"importing {m}.py did not finish within the time limit "
                                f"({self.limits.seconds:g} s; an infinite loop at top level?)",
                        Limit.CRASH: f"importing {m}.py ended the grading process "
                                 f"(os._exit, sys.exit or a crash at top level)"}.get(hit.kind, hit.message)
                self.unavailable[m] = (hit.kind, what, "")
                continue
            finally:
                if again:
                    self.used[item] = used + time.monotonic() - start
            if reply.get("kind") == Kind.ERROR:
                message = str(reply.get("message", ""))[:2000]
                # what it imports that failed first is said with it: with no reference to
                # stand in, the child's own error names only an empty placeholder
                for d in self._dependencies(m):
                    if d in self.unavailable:
                        message += (f" ({d}.py, which it imports, could not be imported either: "
                                    f"{self.unavailable[d][1][:300]})")
                self.unavailable[m] = (Fault.IMPORT, message, str(reply.get("traceback", ""))[:6000])

    def _import(self, module: str, deadline: float) -> dict:
        """Import one exercise module in the current child; the child's reply."""
        reply, _ = self._exchange({"op": Op.IMPORT, "module": module, "unavailable": sorted(self.unavailable)},
                                  [], deadline, item=None)
        if reply.get("kind") != Kind.ERROR:
            self.imported.add(module)
            self.imported_before.add(module)
            self._note_switches(module, reply.get("value"))
        return reply

    def _import_owed(self, module: str) -> None:
        """Import again what ``module`` needs of the modules the grader owes
        (``start_over``), each with a budget of its own, before the item's
        output is counted. They imported once: a failure now is this import
        again, not the file, and costs the item whose request needed it.
        What they need was imported with them, so they are owed too."""
        if not self.owed:  # the common case, on every request
            return
        for m in self._dependencies(module) + [module]:
            if m not in self.owed or m in self.imported or self.sock is None:
                continue
            self.owed.discard(m)
            self._fresh_output()  # each counted on its own, as when it was first imported
            again = (f"importing {m}.py again, in the fresh process the grader started after trying this item "
                     f"on your own stages, failed: ")
            try:
                reply = self._import(m, time.monotonic() + self.limits.seconds)
            except LimitHit as hit:
                raise LimitHit(hit.kind, again + hit.message) from None
            if reply.get("kind") == Kind.ERROR:
                raise ChildFault(Fault.IMPORT, again + str(reply.get("message", ""))[:2000],
                                 str(reply.get("traceback", ""))[:6000])

    def _note_switches(self, module: str, value) -> None:
        """A note for each global switch of torch the import of ``module`` flipped
        (once per file, though a replacement child imports it again)."""
        try:
            said = protocol.decode_value(value, [])
        except protocol.ProtocolError:
            return
        if not isinstance(said, str) or not said.startswith(SWITCHED):
            return
        for switch in said[len(SWITCHED):].split(","):
            note = SWITCH_NOTES.get(switch, "").format(file=f"{module}.py")
            if note and note not in self.notes:
                self.notes.append(note)

    # -- requests
    def request(self, item: str, op: str, args=(), kwargs=None):
        """Run one operation for ``item``; returns the decoded value or raises
        ChildFault / LimitHit."""
        module = item.split(".", 1)[0]
        if self.sock is None and module not in self.unavailable:
            self._start()
        self._import_owed(module)  # before the item's output is counted: they are no item's
        if self.sock is not None and item != self.printing:
            # the output limit is each item's own (one child serves them in turn):
            # what earlier items printed is not charged to this one, and what an
            # import prints is charged to the item that needed the module
            self.printing = item
            self._fresh_output()
        self._ensure_imported(module, item)
        if module in self.unavailable:
            kind, message, tb = self.unavailable[module]
            if kind in set(Limit):
                raise LimitHit(kind, message)
            raise ChildFault(kind, message, tb)
        used = self.used.get(item, 0.0)
        if used >= self.limits.seconds:
            raise LimitHit(Limit.TIME, self._time_message())
        bufs: list = []
        header = {"op": Op(op), "item": item, "args": protocol.encode_value(list(args), bufs),
                  "kwargs": protocol.encode_value(dict(kwargs or {}), bufs)}
        if item in self.own:
            header["own"] = sorted(self.own[item])
        start = time.monotonic()
        try:
            reply, rbufs = self._exchange(header, bufs, start + self.limits.seconds - used, item=item)
        finally:
            self.used[item] = used + time.monotonic() - start
        if reply.get("kind") == Kind.ERROR:
            fault = ChildFault.from_fields(reply)
            if fault.kind == Fault.MEMORY:
                self._stop()
                raise LimitHit(Limit.MEMORY, f"memory limit exceeded ({self.limits.memory_bytes >> 20} MiB "
                                         f"above the worker's baseline): {fault.message}")
            if fault.kind == Fault.OUTPUT:
                self._stop()
                raise LimitHit(Limit.OUTPUT, self._output_message())
            raise fault
        if reply.get("kind") != Kind.RESULT:
            self._stop()
            raise ChildFault(Fault.PROTOCOL, "the process running your code sent back an unexpected reply")
        try:
            return protocol.decode_value(reply.get("value"), rbufs)
        except protocol.ProtocolError as exc:
            self._stop()
            raise ChildFault(Fault.PROTOCOL, f"the process running your code sent back malformed data ({exc})") from None

    def _exchange(self, header: dict, bufs: list, deadline: float, item: str | None = None):
        """Send one request and wait for its answer, serving stand-in requests
        meanwhile. The deadline is ours: nothing the child sends moves it."""
        if self.sock is None:
            self._start()
        self.current = item
        if self.fresh:  # the runner's count starts again: the child's own, if it keeps one, too
            header, self.fresh = dict(header, fresh_output=True), False
        self.child.resume()  # stopped since its last answer (ForkedChild.pause)
        try:
            protocol.send(self.sock, header, bufs, deadline)
            while True:
                reply, rbufs = protocol.recv(self.sock, deadline, self.limits.reply_bytes)
                if reply.get("kind") == Kind.UPCALL:
                    self._answer_upcall(reply, rbufs, item, deadline)
                else:
                    return reply, rbufs
        except protocol.Timeout:
            self._stop()
            raise LimitHit(Limit.TIME, self._time_message()) from None
        except (protocol.PeerClosed, BrokenPipeError, ConnectionResetError):
            ended_by = self.child.ended_by() if self.child is not None else None
            self._stop()
            if ended_by == "output":  # the portable runner's cap on output it could not refuse
                raise LimitHit(Limit.OUTPUT, self._output_message()) from None
            raise LimitHit(Limit.CRASH, "the process running your code ended unexpectedly "
                                    "(os._exit, a crash or a signal); nothing was returned") from None
        except protocol.ProtocolError as exc:
            self._stop()
            raise LimitHit(Limit.PROTOCOL, f"the process running your code sent malformed data ({exc})") from None
        finally:
            self.current = None
            if self.sock is not None:
                self.child.pause()

    def _answer_upcall(self, header: dict, bufs: list, item: str | None, deadline: float) -> None:
        """A stand-in's request: answered for the stages ``item`` may call only,
        within the size bound; refused otherwise (the child then runs the
        student's own code). A refusal costs the requesting item only."""
        try:
            spec = header.get("spec")
            target = spec.get("target") if isinstance(spec, dict) else None
            if self.answer is None:
                raise PermissionError("no reference here")
            if item is None or target == item or target not in self.calls.get(item, ()):
                raise PermissionError(f"{target!r} is not a stage that {item or 'an import'} may call")
            if sum(len(b) for b in bufs) > self.limits.upcall_bytes:
                raise PermissionError(f"arguments over {self.limits.upcall_bytes >> 20} MiB")
            self.asked.setdefault(item, set()).add(target)
            key = ANSWERS.key(self.answer, header, bufs)
            known = ANSWERS.get(key, self.limits.upcall_bytes)
            if known is not None:
                protocol.send_packed(self.sock, known, deadline)
                return
            used: set = set()  # the tensors and their gradients share the frame's buffers, each read once
            tensors = protocol.decode_value(header.get("tensors"), bufs, used=used)
            grads = protocol.decode_value(header.get("grads"), bufs, used=used)
            value = self.answer(spec, tensors, grads, self.limits.upcall_bytes)
            out: list = []
            encoded = protocol.encode_value(value, out)
            size = sum(len(b) for b in out)
            if size > self.limits.upcall_bytes:
                raise PermissionError(f"an answer over {self.limits.upcall_bytes >> 20} MiB")
        except Exception as exc:  # noqa: BLE001 - any failure must still answer, or the channel desyncs
            protocol.send(self.sock, {"kind": Kind.UPCALL_ERROR, "message": str(exc)[:500]}, deadline=deadline)
            return
        data = protocol.pack({"kind": Kind.UPCALL_RESULT, "value": encoded}, out)
        ANSWERS.put(key, data, size)
        protocol.send_packed(self.sock, data, deadline)

    def _output_message(self) -> str:
        return f"output limit exceeded: your code printed more than {self.limits.output_bytes >> 10} KiB"

    def _time_message(self, importing: str | None = None) -> str:
        why = (f"importing {importing}.py again, in the process that replaced the one an earlier check ended"
               if importing else "an infinite loop?")
        return f"time limit exceeded: this item took more than {self.limits.seconds:g} s ({why}); it scores 0"
