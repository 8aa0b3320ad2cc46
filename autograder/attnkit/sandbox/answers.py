"""The grader's memo of stand-in answers already given (see ``AnswerMemo``)."""

from __future__ import annotations

import collections

from attnkit.sandbox import protocol


class AnswerMemo:
    """Stand-in answers already given, kept as the frames that carried them.

    Correct submissions ask the stand-ins the same questions, student after
    student: a question asked again (the same answering service, the same
    stage and arguments, byte for byte) is answered with the frame sent
    before, without decoding, recomputing or encoding anything. Only the
    grader reads this: the child asks and is answered exactly as before, and
    every check on the request (the stages its item may call, the size
    bounds) runs first. Train-mode questions (dropout draws) are never kept;
    the memo is bounded in bytes, least recently used first out.
    """

    def __init__(self, max_bytes: int = 64 << 20):
        self.max_bytes = max_bytes
        self.frames: collections.OrderedDict = collections.OrderedDict()  # key -> (frame, answer bytes)
        self.held = 0

    @staticmethod
    def key(service, header: dict, bufs: list) -> tuple | None:
        spec = header.get("spec")
        if not isinstance(spec, dict) or spec.get("training"):
            return None
        try:
            return service, protocol.question_key(spec, header.get("tensors"), header.get("grads"), bufs)
        except (TypeError, ValueError):
            return None

    def get(self, key, bound: int) -> bytes | None:
        if key is None or key not in self.frames:
            return None
        frame, size = self.frames[key]
        if size > bound:
            return None  # within another session's bound, not this one's: asked again, refused again
        self.frames.move_to_end(key)
        return frame

    def put(self, key, frame: bytes, size: int) -> None:
        if key is None or len(frame) > self.max_bytes // 8 or key in self.frames:
            return
        self.frames[key] = (frame, size)
        self.held += len(frame)
        while self.held > self.max_bytes:
            _, (old, _) = self.frames.popitem(last=False)
            self.held -= len(old)


ANSWERS = AnswerMemo()

