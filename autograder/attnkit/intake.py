"""What to grade: a submission read once, as data, before any student code runs.

Every entry point (``attnkit grade``, ``check``, ``grade-class``, the
Gradescope bundle, the notebooks' test cells) turns what it was given into a
``Submission``: the exercise files' bytes by name, the assignments graded, and
notes on what was found or missing. From then on nothing reads the student's
folder again: the sandbox receives the bytes, so a file that changes, a link
that points elsewhere, or a folder that disappears cannot change the grade.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from attnkit.items import MODULES
from attnkit.outcomes import GraderError

PY_LIMIT = 512 << 10  # a .py file larger than this is not a hand-written exercise
SUPPORT_FILES = 16  # other top-level .py files a submission may import (its own helpers)


class IntakeError(GraderError):
    """The path given holds nothing that can be graded; the message says why and what to do."""


@dataclass(frozen=True)
class Submission:
    label: str  # how messages name it (never a grader's path in student feedback)
    modules: tuple[str, ...]  # the assignments graded
    files: dict[str, bytes] = field(default_factory=dict)  # "<module>.py" -> source
    notes: tuple[str, ...] = ()  # what was found, ambiguous or missing: one line each

    def missing(self) -> list[str]:
        return [m for m in self.modules if f"{m}.py" not in self.files]

    def missing_notes(self) -> list[str]:
        return [f"missing file: expected {m}.py in {self.label}; {m} scores 0" for m in self.missing()]


def read_regular(path: str, limit: int = PY_LIMIT) -> bytes:
    """The bytes of a regular file, never through a link, a device or a FIFO."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise IntakeError(f"{path}: cannot be read ({exc.strerror or exc}); submit a plain file") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise IntakeError(f"{path}: not a regular file; submit a plain file")
        if info.st_size > limit:
            raise IntakeError(f"{path}: {info.st_size} bytes, over the {limit >> 10} KiB limit for an exercise file")
        data = os.read(fd, limit + 1)
        if len(data) > limit:
            raise IntakeError(f"{path}: over the {limit >> 10} KiB limit for an exercise file")
        return data
    finally:
        os.close(fd)


def from_folder(folder: str, modules=MODULES, label: str | None = None) -> Submission:
    """The exercise files at the top of ``folder``."""
    files: dict[str, bytes] = {}
    notes: list[str] = []
    for module in modules:
        path = os.path.join(folder, f"{module}.py")
        if not os.path.lexists(path):
            continue
        try:
            files[f"{module}.py"] = read_regular(path)
        except IntakeError as exc:
            notes.append(f"{module}.py not graded: {exc}")
    # The student's own helper modules come along (exercise files may import them);
    # the other exercise files too, when only some assignments are graded.
    try:
        others = sorted(n for n in os.listdir(folder) if n.endswith(".py") and n not in files)
    except OSError:
        others = []
    for name in others[:SUPPORT_FILES]:
        try:
            files[name] = read_regular(os.path.join(folder, name))
        except IntakeError:
            continue  # not graded itself: an unreadable helper fails the import that needs it
    return Submission(label or folder, tuple(modules), files, tuple(notes))


def find(path: str) -> Submission:
    """A folder grades all four assignments; one of the four files grades that one."""
    if not os.path.lexists(path):
        raise IntakeError(f"{path}: no such file or folder")
    if os.path.isdir(path) and not os.path.islink(path):
        return from_folder(os.path.abspath(path), MODULES, path)
    name = os.path.basename(path)
    module = name[:-3] if name.endswith(".py") else name
    if module not in MODULES:
        raise IntakeError(f"{path}: not one of the four exercise files "
                          f"({', '.join(m + '.py' for m in MODULES)}); rename it, or pass the folder")
    data = read_regular(path)
    return Submission(path, (module,), {f"{module}.py": data})
