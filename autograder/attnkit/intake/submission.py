"""A submission, read once: the exercise files' bytes by name and what was said about them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from attnkit.text import one_line


@dataclass(frozen=True)
class Submission:
    label: str  # how messages name it: a student's name, "your submission"; never a grader's path
    modules: tuple[str, ...]  # the assignments graded
    files: dict[str, bytes] = field(default_factory=dict)  # "<module>.py" -> source
    notes: tuple[str, ...] = ()  # what was found, ambiguous or refused: one line each
    sources: dict[str, str] = field(default_factory=dict)  # "<module>.py" -> the file it came from, relative
    absent: dict[str, str] = field(default_factory=dict)  # module -> why nothing of it could be graded
    # the top-level folders that each hold files of two modules or more, when there are
    # several: a class given where one submission was due (``attnkit grade CLASS_DIR``)
    folders: tuple[str, ...] = ()

    def missing(self) -> list[str]:
        return [m for m in self.modules if f"{m}.py" not in self.files]

    def absent_reasons(self) -> dict[str, str]:
        """module -> the words for a module the submission has a file of that could not
        be graded (a broken notebook, a link): its notes' and its items' reason."""
        return {m: f"{m}: nothing graded: {why}" for m, why in self.absent.items()}

    def missing_notes(self) -> list[str]:
        said = self.absent_reasons()
        return [f"{said[m]}; {m} scores 0" if m in said else
                f"missing file: expected {m}.py (or {m}.ipynb) in {one_line(self.label)}; {m} scores 0"
                for m in self.missing()]

    def found_any(self) -> bool:
        return any(f"{m}.py" in self.files for m in self.modules)

    def nothing_message(self) -> str:
        """One line for a submission with no exercise file at all."""
        looked = ", ".join(f"{m}.py" for m in self.modules)
        why = "; ".join([self.absent[m] for m in self.modules if m in self.absent] + list(self.notes[:3]))
        return (f"nothing to grade: no {looked} (or .ipynb) found"
                + (f" ({why})" if why else "") + "; submit the exercise files themselves")

    def fingerprint(self, salt: str) -> str:
        """Changes whenever anything graded or said about this submission changes."""
        h = hashlib.sha256(salt.encode() + b"\0" + "\0".join(self.modules).encode() + b"\0")
        for name in sorted(self.files):
            h.update(name.encode() + b"\0" + self.files[name] + b"\0")
        for line in (*self.notes, *self.missing_notes()):
            h.update(line.encode("utf-8", "replace") + b"\0")
        return h.hexdigest()[:24]
