"""The integrity report of ``grade-class``: what an instructor may want to look at.

Four flags, each with its evidence, in ``OUT/integrity.csv`` and in the
run's summary. A flag informs; it never changes a grade.

- **hard-coded public output?** An item passes the chapter's example but fails
  every check that feeds it other inputs (hidden cases, extreme scores,
  shorter sequences, masking) with a wrong answer, never by raising: the
  signature of a function that returns the printed numbers whatever it is
  given. A mistake that only shows on other shapes raises or fails some of
  those checks and passes others, so it is not flagged.
- **nbgrader score above the isolated grade.** nbgrader scores notebooks in
  the student's own kernel, where a score can be forged; where the class is an
  nbgrader ``submitted/`` tree with a ``gradebook.db`` next to it, every
  assignment nbgrader scored higher than the isolated grade is listed.
- **near-identical code.** Each function and method of the exercise files is
  normalised (the AST with every identifier renamed by order of appearance,
  docstrings, other string statements, comments and type annotations gone;
  attribute names and constants kept, since they are the code's substance) and
  hashed. What every student starts from or may legitimately share never
  counts: the stubs' untouched bodies, code identical to the reference
  solution, functions of fewer than ``MIN_NODES`` AST nodes (one-liners that
  independent students write alike), and code that more than ``common_limit``
  students share. Two students are flagged when they share at least
  ``MIN_SHARED`` such functions making up at least ``MIN_FRACTION`` of the
  smaller one's remaining code; flagged pairs are joined into groups.
- **the reference solution, byte for byte.** An exercise file that is the
  kit's ``solutions/`` file to the byte, its comments and blank lines
  included. Nobody writes that from the stubs and the document; a copy of the
  solutions does, or a hard link to them put in the student's folder (the
  intake refuses symbolic links, but a hard link is the file itself).
"""

from __future__ import annotations

import ast
import csv
import hashlib
import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from attnkit.exercises import MODULES, kit_copy_of
from attnkit.files import write_atomic
from attnkit.text import name_shown, spreadsheet_cell

HARD_CODED = "hard-coded public output?"
NBGRADER_HIGHER = "nbgrader score above the isolated grade"
NEAR_IDENTICAL = "near-identical code"
REFERENCE_COPY = "the reference solution, byte for byte"

OTHER_INPUTS = ("hidden", "stability", "short_sequence", "masking")  # check kinds that feed other inputs
MIN_NODES = 25
MIN_SHARED = 2
MIN_FRACTION = 0.5


@dataclass(frozen=True)
class Flag:
    flag: str
    students: tuple[str, ...]
    item: str  # the graded item, or the functions concerned
    evidence: str

    def as_dict(self) -> dict:
        return {"flag": self.flag, "students": list(self.students), "item": self.item, "evidence": self.evidence}

    @classmethod
    def from_dict(cls, d: dict) -> Flag:
        return cls(str(d["flag"]), tuple(map(str, d["students"])), str(d["item"]), str(d["evidence"]))


# --------------------------------------------------------------------------- hard-coded public output

def hard_coded(student: str, report) -> list[Flag]:
    """Items that pass the chapter's example and fail, with a wrong answer, every
    check on other inputs, where no catalogued mistake explains it. The
    document's multi-head example has head_dim 1, where unscaled scores, a
    scale by head_dim, or heads merged in the wrong order give its numbers
    exactly: the student was told that mistake by name, and is no suspect."""
    flags = []
    for r in report.results:
        by_kind = {c.kind: c for c in r.checks}
        example = by_kind.get("example")
        others = [by_kind[k] for k in OTHER_INPUTS if k in by_kind]
        if example is None or not example.passed or not others:
            continue
        if any(c.diagnosis for c in r.checks):
            continue
        if all(not c.passed and c.wrong_answer for c in others):
            evidence = "; ".join(["example: passes"] + [f"{c.kind}: {c.reason}" for c in others])
            flags.append(Flag(HARD_CODED, (student,), r.item.key, evidence))
    return flags


def reference_copies(student: str, files: dict[str, bytes]) -> list[Flag]:
    """The student's exercise files that are the reference solution's, byte for byte
    (or the kit's stage-3 copy released with stage 4: the reference with a header): one flag."""
    from attnkit.config import solutions_dir

    solutions, _ = _reference(str(solutions_dir()))
    same, released = [], []
    for m in MODULES:
        data, reference = files.get(f"{m}.py"), solutions.get(m)
        if data is not None and reference is not None:
            if data == reference:
                same.append(m)
            elif kit_copy_of(data) == reference:
                released.append(m)
    if not same and not released:
        return []
    said = ([" and ".join(f"{m}.py" for m in same) + " byte for byte as in the kit's solutions/"] if same else []) + [
        f"{m}.py: the kit's own, released with stage 4 (the solution with a header)" for m in released]
    return [Flag(REFERENCE_COPY, (student,), ", ".join(m for m in MODULES if m in same + released), "; ".join(said))]


# --------------------------------------------------------------------------- nbgrader

def higher_scores(nbgrader: dict[str, dict[str, float]], isolated: dict[str, dict[str, float]],
                  tolerance: float = 1e-6) -> list[tuple[str, str, float, float]]:
    """(student, assignment, nbgrader's score, isolated grade) wherever nbgrader gave more."""
    found = []
    for student in sorted(nbgrader):
        for assignment, nb_score in sorted(nbgrader[student].items()):
            if assignment not in MODULES:
                continue
            ours = isolated.get(student, {}).get(assignment, 0)
            if nb_score > ours + tolerance:
                found.append((student, assignment, nb_score, ours))
    return found


def nbgrader_flags(nbgrader: dict[str, dict[str, float]], per_module: dict[str, dict[str, float]]) -> list[Flag]:
    return [Flag(NBGRADER_HIGHER, (student,), assignment,
                 f"nbgrader {theirs:g}, isolated grade {ours:g}: nbgrader ran this notebook's test cells "
                 f"in the student's own kernel, where a score can be forged; check the notebook "
                 f"(the isolated grade counts)")
            for student, assignment, theirs, ours in higher_scores(nbgrader, per_module)]


# --------------------------------------------------------------------------- near-identical code

class _Normaliser(ast.NodeTransformer):
    """Identifiers renamed by order of appearance; docstrings, string statements and annotations dropped."""

    def __init__(self):
        self.names: dict[str, str] = {}

    def _name(self, name: str) -> str:
        return self.names.setdefault(name, f"_{len(self.names)}")

    def visit_Name(self, node):
        node.id = self._name(node.id)
        return node

    def visit_arg(self, node):
        node.arg = self._name(node.arg)
        node.annotation = None
        return node

    def _body(self, node):
        node.body = [s for s in node.body
                     if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str))]
        if not node.body:
            node.body = [ast.Pass()]

    def visit_FunctionDef(self, node):
        node.name = self._name(node.name)
        node.returns = None
        self._body(node)
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        node.name = self._name(node.name)
        self._body(node)
        self.generic_visit(node)
        return node

    def visit_AnnAssign(self, node):
        self.generic_visit(node)
        if node.value is None:
            return None
        return ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node)

    def generic_visit(self, node):
        for attr in ("body", "orelse", "finalbody"):
            if isinstance(getattr(node, attr, None), list) and not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                kept = [s for s in getattr(node, attr) if not (isinstance(s, ast.Expr) and isinstance(
                    s.value, ast.Constant) and isinstance(s.value.value, str))]
                setattr(node, attr, kept or ([ast.Pass()] if attr == "body" else []))
        return super().generic_visit(node)


def units(source: bytes, module: str) -> dict[str, tuple[str, int]]:
    """``module.function`` and ``module.Class.method`` -> (hash of the normalised code, size in AST nodes).
    Stub bodies (raising NotImplementedError) are left out: everyone starts from them."""
    from attnkit.intake.collect import _is_stub

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {}
    found: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[f"{module}.{node.name}"] = node
        elif isinstance(node, ast.ClassDef):
            for m in node.body:
                if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found[f"{module}.{node.name}.{m.name}"] = m
    out = {}
    for name, node in found.items():
        if _is_stub(node):
            continue
        try:
            norm = _Normaliser().visit(node)
            text = ast.dump(norm, annotate_fields=False)
        except (RecursionError, MemoryError, ValueError):
            continue  # nested too deeply to compare: left out
        size = sum(1 for _ in ast.walk(norm))
        out[name] = (hashlib.sha256(text.encode()).hexdigest()[:16], size)
    return out


def own_units(files: dict[str, bytes]) -> dict[str, tuple[str, int]]:
    """A submission's functions that can be evidence: ``MIN_NODES`` or more, and not
    shared with the reference solution (a file identical to it is skipped unparsed).
    Computed once per student, where it is graded, and kept in its results.json."""
    from attnkit.config import solutions_dir

    solutions, base = _reference(str(solutions_dir()))
    out = {}
    for module in MODULES:
        data = files.get(f"{module}.py")
        if data is None or data == solutions.get(module):
            continue
        out.update({n: u for n, u in units(data, module).items() if u[1] >= MIN_NODES and u[0] not in base})
    return out


@cache
def _reference(folder: str) -> tuple[dict[str, bytes], frozenset[str]]:
    """The reference solution's files, and the hashes of its functions: what every
    student may share. (The stubs add nothing: their given code is the solution's,
    and their exercise bodies are stubs.)"""
    paths = {m: Path(folder) / f"{m}.py" for m in MODULES}
    solutions = {m: p.read_bytes() for m, p in paths.items() if p.is_file()}
    return solutions, frozenset(h for m, text in solutions.items() for h, _ in units(text, m).values())


def common_limit(class_size: int) -> int:
    """Code shared by more students than this is common knowledge in this class, not copying."""
    return max(3, class_size // 10)


def near_identical(per_student: dict[str, dict[str, tuple[str, int]]]) -> list[Flag]:
    """Groups of students whose own code is the same but for names, comments and
    docstrings. ``per_student``: each student's ``own_units``."""
    holders: dict[str, set[str]] = {}
    for student, found in per_student.items():
        for h, _ in found.values():
            holders.setdefault(h, set()).add(student)
    limit = common_limit(len(per_student))
    own = {s: {n: u for n, u in found.items() if len(holders[u[0]]) <= limit} for s, found in per_student.items()}
    pairs: dict[tuple[str, str], set[str]] = {}
    for h, students in holders.items():
        if 2 <= len(students) <= limit:
            ordered = sorted(students)
            for i, a in enumerate(ordered):
                for b in ordered[i + 1:]:
                    pairs.setdefault((a, b), set()).add(h)
    flagged: dict[tuple[str, str], str] = {}
    functions: dict[tuple[str, str], list[str]] = {}
    for (a, b), shared in sorted(pairs.items()):
        names = sorted(n for n, u in own[a].items() if u[0] in shared)
        size = sum(own[a][n][1] for n in names)
        smaller = min(sum(u[1] for u in own[a].values()), sum(u[1] for u in own[b].values()))
        if len(names) >= MIN_SHARED and smaller and size >= MIN_FRACTION * smaller:
            functions[(a, b)] = names
            flagged[(a, b)] = (f"{a} and {b}: {len(names)} functions the same but for names, comments and "
                               f"docstrings ({size} of {smaller} AST nodes of the smaller one's own code): "
                               f"{', '.join(names)}")
    return [Flag(NEAR_IDENTICAL, group,
                 ", ".join(sorted({n for p in flagged if p[0] in group for n in functions[p]})),
                 " | ".join(flagged[p] for p in sorted(flagged) if p[0] in group))
            for group in _groups(flagged)]


def _groups(pairs) -> list[tuple[str, ...]]:
    parent: dict[str, str] = {}

    def root(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[str, list[str]] = {}
    for x in parent:
        groups.setdefault(root(x), []).append(x)
    return sorted(tuple(sorted(g)) for g in groups.values())


# --------------------------------------------------------------------------- output

def listed(students, joiner: str) -> str:
    """Students' folder names in a list: ``ann; ben`` is one folder, shown escaped, not two."""
    return joiner.join(name_shown(s, ";,") for s in students)


def write(out_dir: Path, flags: list[Flag]) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["flag", "students", "item", "evidence"])
    for f in sorted(flags, key=lambda f: (f.flag, f.students, f.item)):
        writer.writerow([spreadsheet_cell(f.flag), spreadsheet_cell(listed(f.students, "; ")),
                         spreadsheet_cell(f.item), spreadsheet_cell(f.evidence)])
    path = Path(out_dir) / "integrity.csv"
    write_atomic(str(path), buf.getvalue())
    return path


def summary(flags: list[Flag]) -> list[str]:
    """The integrity section of grade-class's summary: counts, then one line per flag."""
    from attnkit.text import one_line

    counts = {name: sum(f.flag == name for f in flags)
              for name in (HARD_CODED, NBGRADER_HIGHER, NEAR_IDENTICAL, REFERENCE_COPY)}
    lines = ["integrity (flags inform, they never change a grade): "
             + ", ".join(f"{n} {name}" for name, n in counts.items())]
    for f in sorted(flags, key=lambda f: (f.flag, f.students, f.item)):
        what = f" {f.item}" if f.item else ""
        lines.append(one_line(f"  {f.flag}: {listed(f.students, ', ')}{what}: {f.evidence}"))
    return lines
