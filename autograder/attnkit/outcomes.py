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
    """

    def __init__(self, reason: str, details: str = "", *, diagnosis: str = "", pictures=()):
        super().__init__(reason)
        self.reason = reason
        self.details = details
        self.diagnosis = diagnosis
        self.pictures = list(pictures)


class StudentError(CheckFailure):
    """The student's code raised, was missing, or could not be imported."""

    def __init__(self, kind: str, message: str, traceback: str = ""):
        self.kind = kind
        self.message = message
        reason = {
            "not_implemented": message if "not implemented" in message.lower()
            else f"not implemented yet ({message})",
            "missing_file": message,
            "missing": message,
            "import": message,
            "exit": f"your code {message}",
        }.get(kind, f"raised {message}")
        super().__init__(reason, traceback)


class LimitExceeded(CheckFailure):
    """A resource limit was hit; the whole item scores zero."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


class GraderError(Exception):
    """A fault of the grader or of its setup, never of the student."""
