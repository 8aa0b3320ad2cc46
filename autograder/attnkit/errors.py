"""What a check can conclude about the student's code, as exceptions.

A check passes by returning. It fails by raising ``CheckFailure`` with a
one-line reason (and optional details for the feedback file). The sandbox
raises the subclasses below when the student's code itself misbehaves.
"""

from __future__ import annotations


class CheckFailure(AssertionError):
    """The student's answer is wrong; ``reason`` says how, in one line.

    ``diagnosis`` is the id of the catalogued misconception the reason names,
    if any; ``pictures`` are expected/actual matrices for the feedback file.
    A reason that names a misconception is only a proposal until every check
    of the item has run (``attnkit.judge.diagnosis.conclude``): ``facts`` is what
    the reason says when the name is not confirmed, the difference itself.
    """

    def __init__(self, reason: str, details: str = "", *, diagnosis: str = "", pictures=(),
                 facts: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.details = details
        self.diagnosis = diagnosis
        self.pictures = list(pictures)
        self.facts = reason if facts is None else facts


class GradientFailure(CheckFailure):
    """The item's values are right, and what flows back through it is not (cut
    from the autograd graph, or another gradient): never a wrong answer."""


class LayoutFailure(CheckFailure):
    """The module's parameters are not the ones the exercise names (a name or a
    shape differs): its forward may be right, and this says nothing of it."""


class StudentError(CheckFailure):
    """The student's code raised, was missing, or could not be imported.

    ``inputs`` (the shapes the grader sent) and ``hint`` (from the catalogue,
    for a known pattern of error) are added by the grader, which knows what it
    asked for; the student process only reports what was raised.
    """

    def __init__(self, kind: str, message: str, traceback: str = "", *, inputs: str = "",
                 hint: str = "", diagnosis: str = "", family: tuple[str, ...] = ()):
        if kind == "not_implemented" and not raised_by_own_line(traceback):
            kind = "exception"  # torch's own NotImplementedError (an op with no CPU kernel or backward)
            message = f"NotImplementedError: {message}"
        self.kind = kind
        self.message = message
        self.family = family  # the built-in exception classes of what was raised, as the child said
        self.inputs = inputs
        self.hint = hint
        reason = {
            "not_implemented": message if "not implemented" in message.lower()
            else f"not implemented yet ({message})",
            "missing_file": message,
            "missing": message,
            "import": message,
            "exit": f"your code {message}",
            "protocol": message,
        }.get(kind, f"raised {message}")
        if inputs:
            reason += f" (with {inputs})"
        if hint:
            reason += f"; {hint}"
        # The hint belongs to this very error (its message, its line, the inputs
        # sent), so it stays in the facts whether or not the item gets a name.
        super().__init__(reason, traceback, diagnosis=diagnosis, facts=reason)


def innermost_line(traceback: str) -> str:
    """The innermost line of the student's code in ``traceback``, stripped ('' if
    none). The traceback holds only frames of the student's files: a line
    '  File ...' and, indented by four, its source."""
    lines = [line.strip() for line in traceback.splitlines() if line.startswith("    ")]
    return lines[-1] if lines else ""


def raised_by_own_line(traceback: str) -> bool:
    """Whether the student's code raised NotImplementedError itself (the stub, or
    their own placeholder), rather than torch."""
    return innermost_line(traceback).startswith("raise NotImplementedError")


class LimitExceeded(CheckFailure):
    """A resource limit was hit; the whole item scores zero."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


class GraderError(Exception):
    """A fault of the grader or of its setup, never of the student."""
