"""What to grade: a submission read once, as data, before any student code runs.

Every entry point (``attnkit grade``, ``check``, ``grade-class`` and its
fingerprints, nbgrader's ``submitted/`` tree, the Gradescope bundle, the
notebooks' test cells) turns what it was given into a ``Submission``: the
exercise files' bytes by name, the assignments graded, and notes on what was
found, what was ambiguous and what was missing. From then on nothing reads
the student's folder again: the sandbox receives the bytes, so a file that
changes, a link that points elsewhere, or a folder that disappears cannot
change the grade.

The rule (``collect``), the same for every path:

- The folder is searched, ``MAX_DEPTH`` folders deep, for ``<module>.py`` and
  ``<module>.ipynb`` of each of the four modules. Hidden folders (``.git``,
  ``.github``, ``.ipynb_checkpoints``) and ``SKIPPED_DIRS`` (the handout's
  ``checker/`` copy of the kit, caches, installs) are not searched. A file
  inside a folder named for *another* exercise (nbgrader's
  ``multihead_attention/causal_attention.py``, the course's copy) is that
  assignment's support file, never the student's answer.
- Only regular files are read: symbolic links (to files or folders), FIFOs,
  devices and sockets are refused with a note naming them, and nothing is
  followed out of the folder. A ``.py`` over ``PY_LIMIT`` or a notebook over
  ``NOTEBOOK_LIMIT`` is refused by its size, before a byte is read.
- A notebook is graded by its solution cells (``notebook_code``); a notebook
  that is malformed in any way is a note, and its module is missing. A ``.py``
  that is a notebook exported as a script (nbconvert's head and ``# In[ ]:``
  cell marks; ``notebooks.exported_cells``) is graded by its code cells, as a
  notebook without nbgrader metadata.
- Where one module has several candidates, the grader takes, in this order of
  preference: any file with work in it over an untouched stub (every item
  still raises NotImplementedError); the shallowest; the one in the folder
  holding the most exercise files; the one with the most items written; the
  ``.py`` over the notebook (the file the student can run and import); then
  the first by path. The note names the file graded and every one passed over.
"""

from __future__ import annotations

import ast
import os
import stat
from dataclasses import dataclass

from attnkit.exercises import MODULES, items_of, kit_copy_of
from attnkit.intake.files import NOTEBOOK_LIMIT, PY_LIMIT, IntakeError, _kind, _Root, read_regular  # noqa: F401
from attnkit.intake.submission import Submission
from attnkit.text import one_line

SUPPORT_FILES = 16  # other .py files a submission may import (its own helpers)
MAX_DEPTH = 6  # folders below the top that are searched
MAX_ENTRIES = 20_000  # directory entries looked at before the search stops
MAX_CANDIDATES = 8  # copies of one module that are read; the rest are only counted
SKIPPED_DIRS = frozenset({"__pycache__", "__MACOSX", "checker", "node_modules", "site-packages", "venv"})

PLAIN, NBGRADER = "plain", "nbgrader"  # layouts: any folder of work, or nbgrader's <assignment>/<assignment>.ipynb


# --------------------------------------------------------------------------- looking through a folder

@dataclass(frozen=True)
class _Entry:
    parts: tuple[str, ...]  # below the top: folders, then the name
    kind: str  # "file", or why it is not read ("a symbolic link", "a FIFO", ...)

    @property
    def rel(self) -> str:
        return "/".join(self.parts)

    @property
    def name(self) -> str:
        return self.parts[-1]

    @property
    def folder(self) -> tuple[str, ...]:
        return self.parts[:-1]


def _walk(root: _Root) -> tuple[list[_Entry], list[str]]:
    """Every file, link and special file below the top (depth-first, sorted), and notes
    on what could not be looked at. Never opens anything but folders."""
    entries: list[_Entry] = []
    notes: list[str] = []
    seen = 0

    def visit(prefix: tuple[str, ...]) -> bool:
        nonlocal seen
        try:
            listed = root.listing(prefix)
        except OSError as exc:
            notes.append(f"{'/'.join(prefix) or 'the top folder'}: cannot be listed ({exc.strerror}); not searched")
            return True
        for name, mode in listed:
            seen += 1
            if seen > MAX_ENTRIES:
                notes.append(f"stopped looking after {MAX_ENTRIES} files and folders")
                return False
            parts = prefix + (name,)
            if stat.S_ISDIR(mode):
                if name.startswith(".") or name in SKIPPED_DIRS or len(prefix) >= MAX_DEPTH:
                    continue
                if not visit(parts):
                    return False
            else:
                entries.append(_Entry(parts, "file" if stat.S_ISREG(mode) else _kind(mode)))
        return True

    visit(())
    return entries, notes


@dataclass
class _Candidate:
    module: str
    entry: _Entry
    source: bytes | None = None
    problem: str = ""  # why it cannot be graded
    how: str = ""  # for a notebook: which cells were taken
    left_out: tuple[str, ...] = ()  # for a notebook: its cells that were not (one cannot be parsed, say)
    _progress: int | None | bool = False  # False: not computed yet

    @property
    def notebook(self) -> bool:
        return self.entry.name.endswith(".ipynb")

    @property
    def kit_copy(self) -> bool:
        """The kit's own stage-3 reference, released with stage 4 (``exercises.kit_copy``)."""
        return not self.notebook and kit_copy_of(self.source or b"") is not None

    @property
    def progress(self) -> int | None:
        """Items written (not raising NotImplementedError); None when the code does not parse."""
        if self._progress is False:
            self._progress = progress(self.source or b"", self.module)
        return self._progress

    def describe(self) -> str:
        if self.problem:
            return self.problem
        if self.kit_copy:
            return f"{self.entry.rel} (the kit's own, released with stage 4: not your work)"
        p = self.progress
        total = len(items_of(self.module))
        if p is None:
            return f"{self.entry.rel} (does not parse)"
        if p == 0:
            return f"{self.entry.rel} ({'an untouched stub' if self.defines_items() else 'defines none of its items'})"
        return f"{self.entry.rel} ({p} of {total} items written)"

    def defines_items(self) -> bool:
        from attnkit.intake.notebooks import defined_names

        names = defined_names(self.source or b"")
        return any(i.name in names for i in items_of(self.module))


def _is_stub(func: ast.AST) -> bool:
    """A function whose body raises NotImplementedError at its top level never returns an answer."""
    for node in func.body:
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name) and target.id == "NotImplementedError":
                return True
    return False


def progress(source: bytes, module: str) -> int | None:
    """How many of ``module``'s items ``source`` defines with a body of its own
    (a class counts when any of its methods is written); None if it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    defined = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    written = 0
    for item in items_of(module):
        node = defined.get(item.name)
        if isinstance(node, ast.ClassDef):
            methods = [m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
            written += any(not _is_stub(m) for m in methods)
        elif node is not None:
            written += not _is_stub(node)
    return written


def _notebook_source(data: bytes, name: str, module: str) -> tuple[bytes, str, tuple[str, ...]]:
    """``<module>.py`` from a notebook's bytes, which cells it came from, and
    the cells left out (each a line: which, and why)."""
    from attnkit.intake.notebooks import module_source, parse_notebook, solution_cells

    nb = parse_notebook(data, name)
    if solution_cells(nb):
        left_out: list[str] = []
        return module_source(nb, module, left_out).encode("utf-8", "surrogatepass"), "its solution cells", \
            tuple(left_out)
    return _any_cells(nb, module, "its code cells (no nbgrader metadata)")


def _any_cells(nb: dict, module: str, how: str) -> tuple[bytes, str, tuple[str, ...]]:
    from attnkit.intake.notebooks import any_cells_source

    left_out: list[str] = []
    return any_cells_source(nb, module, left_out).encode("utf-8", "surrogatepass"), how, tuple(left_out)


def _script_source(data: bytes, module: str) -> tuple[bytes, str, tuple[str, ...]] | None:
    """``<module>.py`` from a notebook exported as a script (as ``_notebook_source``
    makes it from a notebook without nbgrader metadata), or None when ``data``
    is no such export."""
    from attnkit.intake.notebooks import exported_cells

    try:
        found = exported_cells(data.decode("utf-8"))
    except UnicodeDecodeError:
        return None
    if found is None:
        return None
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": code} for code in found]}
    return _any_cells(nb, module, "its code cells: a notebook exported as a script")


def left_out_notes(name: str, left_out) -> list[str]:
    """What a student reads of the cells of notebook ``name`` that were left out:
    otherwise a cell with a typo reads as a function the notebook never defined."""
    notes = [f"{name}: {what}" for what in left_out[:3]]
    if len(left_out) > 3:
        notes.append(f"{name}: {len(left_out) - 3} more cells were left out")
    return notes


def _load(root: _Root, cand: _Candidate) -> None:
    """Read a candidate; any problem becomes its ``problem`` (never an exception)."""
    from attnkit.intake.notebooks import NotebookError

    entry = cand.entry
    if entry.kind != "file":
        cand.problem = f"{entry.rel} is {entry.kind}, not followed" if entry.kind == "a symbolic link" \
            else f"{entry.rel} is {entry.kind}, not a regular file; not read"
        return
    try:
        data = root.read(entry.parts, NOTEBOOK_LIMIT if cand.notebook else PY_LIMIT)
        if cand.notebook:
            cand.source, cand.how, cand.left_out = _notebook_source(data, entry.rel, cand.module)
        else:
            cand.source, cand.how, cand.left_out = _script_source(data, cand.module) or (data, "", ())
    except (IntakeError, NotebookError) as exc:
        cand.problem = str(exc)
    except Exception as exc:  # noqa: BLE001 - whatever a file holds, intake goes on
        cand.problem = f"{entry.rel}: could not be read ({type(exc).__name__})"


def _candidates(entries: list[_Entry], module: str, layout: str) -> list[_Entry]:
    names = (f"{module}.py", f"{module}.ipynb")
    if layout == NBGRADER:  # nbgrader's fixed layout: <assignment>/<assignment>.ipynb
        return [e for e in entries if e.parts == (module, f"{module}.ipynb")]
    others = set(MODULES) - {module}
    return [e for e in entries if e.name in names and not (e.folder and e.folder[-1] in others)]


def _rank(cands: list[_Candidate], siblings: dict, prefer: str | None):
    if len(cands) < 2:
        return cands  # nothing to choose: no file is parsed

    def key(c: _Candidate):
        kind = ".ipynb" if c.notebook else ".py"
        # the kit's stage-3 copy after any work of the student's, however much of it there is
        return (c.kit_copy, prefer is not None and kind != prefer, c.progress == 0, len(c.entry.folder),
                -siblings.get(c.entry.folder, 0), -(c.progress or 0), c.notebook, c.entry.rel)
    return sorted(cands, key=key)


def collect(path: str, label: str, *, layout: str = PLAIN, prefer: str | None = None,
            follow: bool = True) -> Submission:
    """The submission in the folder ``path`` by the rule above. Raises IntakeError only
    when ``path`` itself is no folder (``follow=False``: a link to one is refused too);
    a folder with nothing in it is a Submission with no files (see ``found_any``)."""
    root = _Root(path, label, follow)
    try:
        return _collect(root, label, layout, prefer)
    finally:
        root.close()


def _collect(root: _Root, label: str, layout: str, prefer: str | None) -> Submission:
    entries, notes = _walk(root)
    by_module = {m: _candidates(entries, m, layout) for m in MODULES}
    siblings: dict[tuple, int] = {}
    for found in by_module.values():
        for folder in {e.folder for e in found}:
            siblings[folder] = siblings.get(folder, 0) + 1
    files: dict[str, bytes] = {}
    sources: dict[str, str] = {}
    absent: dict[str, str] = {}
    chosen_folders: list[tuple] = []
    for module in MODULES:
        found = sorted(by_module[module], key=lambda e: (len(e.parts), e.rel))
        cands = [_Candidate(module, e) for e in found[:MAX_CANDIDATES]]
        for cand in cands:
            _load(root, cand)
        usable = _rank([c for c in cands if not c.problem], siblings, prefer)
        passed = [c.describe() for c in usable[1:]] + [c.problem for c in cands if c.problem]
        if len(found) > MAX_CANDIDATES:
            passed.append(f"{len(found) - MAX_CANDIDATES} more copies, not read")
        if not usable:
            if passed:
                absent[module] = "; ".join(passed)
            elif layout == NBGRADER:  # the one place it can be: named, as nbgrader lays it out
                absent[module] = (f"no {module}/{module}.ipynb in this student's folder "
                                  f"(not submitted, or not released yet)")
            continue
        best = usable[0]
        files[f"{module}.py"] = best.source
        sources[f"{module}.py"] = best.entry.rel
        chosen_folders.append(best.entry.folder)
        plain_place = best.entry.rel == f"{module}.py" or layout == NBGRADER  # where it belongs: nothing to say
        if best.kit_copy:  # graded, as stage 4 needs it; said, and flagged to the instructor (integrity)
            notes.append(f"{module}: graded {best.entry.rel}, the kit's own, released with stage 4 so that stage 4 "
                         f"can import it: no work of yours on {module} was found")
        elif passed or not plain_place or (best.how and not best.notebook):  # an export: say so
            what = best.entry.rel + (f" ({best.how})" if best.how else "")
            note = f"{module}: graded {what}"
            if passed:
                note += "; passed over: " + "; ".join(passed)
            notes.append(note)
        notes += left_out_notes(best.entry.rel, best.left_out)
    notes = _condensed(notes)
    # Links and special files that are no candidate: said, so that a folder whose work
    # sits behind a link is not a silent zero.
    refused = [e for e in entries if e.kind != "file" and not any(e in found for found in by_module.values())]
    notes += [f"{e.rel}: {e.kind}; not followed" if e.kind == "a symbolic link" else f"{e.rel}: {e.kind}; not read"
              for e in refused[:5]]
    folders: tuple[str, ...] = ()
    if layout == PLAIN:
        notes += _support(root, entries, chosen_folders, files, sources)
        held: dict[str, set] = {}  # top-level folder -> the modules it holds a file of
        for module, found in by_module.items():
            for e in found:
                if len(e.parts) > 1:
                    held.setdefault(e.parts[0], set()).add(module)
        folders = tuple(sorted(f for f, modules in held.items() if len(modules) >= 2))
        folders = folders if len(folders) >= 2 else ()
    return Submission(label, MODULES, files, tuple(one_line(n) for n in notes), sources,
                      {m: one_line(w) for m, w in absent.items()}, folders)


def _condensed(notes: list[str]) -> list[str]:
    """``x: graded hw3/x.py`` for several modules of one folder, said once."""
    plain: dict[str, list[str]] = {}
    rest = []
    for note in notes:
        module, _, what = note.partition(": graded ")
        folder, _, name = what.rpartition("/")
        if module in MODULES and name == f"{module}.py" and folder:
            plain.setdefault(folder, []).append(name)
        else:
            rest.append(note)
    return [f"found in {folder}/: {', '.join(names)}" for folder, names in plain.items()] + rest


def _support(root: _Root, entries: list[_Entry], folders: list[tuple], files: dict, sources: dict) -> list[str]:
    """The student's own .py helpers next to the exercise files (the exercise files may import them)."""
    notes = []
    exercise = {f"{m}.py" for m in MODULES}
    order = {f: i for i, f in reversed(list(enumerate(sorted(set(folders), key=lambda f: (len(f), f)))))}
    helpers = sorted((e for e in entries if e.folder in order and e.name.endswith(".py") and e.name not in exercise),
                     key=lambda e: (order[e.folder], e.name))
    taken = 0
    for entry in helpers:
        if entry.name in files or taken >= SUPPORT_FILES or entry.kind != "file":
            continue  # a link or special file is already said
        try:
            files[entry.name] = root.read(entry.parts, PY_LIMIT)
            sources[entry.name] = entry.rel
            taken += 1
        except IntakeError as exc:
            notes.append(f"{exc} (a module that imports it fails)")
    # a package of one's own next to the exercise files does not come along: say so
    # where an exercise file imports it, or the student reads only "No module named"
    packages = {e.parts[len(f)] for e in entries for f in order if len(e.parts) > len(f) + 1 and e.parts[:len(f)] == f
                and e.name.endswith(".py")}
    for name in sorted(files):
        if name in exercise:
            for package in sorted(_imports(files[name]) & packages - {n[:-3] for n in files}):
                notes.append(_package_note(sources.get(name, name), package))
    return notes


def _package_note(name: str, package: str) -> str:
    return (f"{name} imports {package}, a folder next to it: only the .py files next to the exercise files "
            f"come along; make it {package}.py")


# --------------------------------------------------------------------------- the entry points

def from_folder(folder: str, modules=MODULES, label: str | None = None) -> Submission:
    """The exercise files at the top of ``folder``, a folder the caller laid out
    itself (a notebook's test cell, the student's pytest view, the kit's tests).
    The same reading as ``collect`` (regular files only, sizes capped), no search."""
    label = label or os.path.basename(os.path.normpath(folder)) or "the submission"
    files: dict[str, bytes] = {}
    notes: list[str] = []
    absent: dict[str, str] = {}
    root = _Root(folder, label, follow=True)
    try:
        for module in modules:
            try:
                files[f"{module}.py"] = root.read((f"{module}.py",), PY_LIMIT)
            except IntakeError as exc:
                if "no such file" not in str(exc):
                    absent[module] = one_line(exc)
        # The student's own helper modules come along (exercise files may import them);
        # the other exercise files too, when only some assignments are graded.
        try:
            others = [n for n, _ in root.listing(()) if n.endswith(".py") and n not in files]
        except OSError:
            others = []
        for name in others[:SUPPORT_FILES]:
            try:
                files[name] = root.read((name,), PY_LIMIT)
            except IntakeError as exc:
                if name[:-3] not in MODULES:
                    notes.append(one_line(f"{exc} (a module that imports it fails)"))
    finally:
        root.close()
    return Submission(label, tuple(modules), files, tuple(notes), {n: n for n in files}, absent)


def _which_py(data: bytes) -> str | None:
    from attnkit.intake.notebooks import _best, defined_names

    return _best(defined_names(data))  # bytes: Python's own reading (a BOM, a coding line)


def find(path: str, prefer: str | None = None, label: str | None = None) -> Submission:
    """What ``attnkit grade PATH`` and ``attnkit check PATH`` grade: a folder (all
    four assignments, by ``collect``), one exercise file or one notebook (its own
    assignment; a renamed one is recognised by its contents). Raises IntakeError,
    in one line, when there is nothing to grade."""
    from attnkit.intake.notebooks import NotebookError, parse_notebook, which_module

    if not os.path.lexists(path):
        raise IntakeError(f"{path}: no such file or folder")
    if os.path.isdir(path):
        sub = collect(path, label or "your submission", prefer=prefer)
        if not sub.found_any():
            raise IntakeError(f"{path}: {sub.nothing_message()}")
        return sub
    name = os.path.basename(path)
    stem, ext = os.path.splitext(name)
    if ext not in (".py", ".ipynb"):
        raise IntakeError(f"{path}: not an exercise file; pass a folder, one of the four .py files or a notebook")
    notebook = ext == ".ipynb"
    data = read_regular(path, NOTEBOOK_LIMIT if notebook else PY_LIMIT, name=path)
    notes = []
    try:
        if notebook:
            nb = parse_notebook(data, path)
            module, evidence = (stem, "") if stem in MODULES else which_module(nb)
        else:
            module, evidence = (stem, "") if stem in MODULES else (_which_py(data), "the functions and classes it defines")
    except NotebookError as exc:
        raise IntakeError(str(exc)) from None
    if not notebook and kit_copy_of(data) is not None:
        raise IntakeError(f"{path}: the kit's own, released with stage 4, not your work: grade your own "
                          f"{module or 'causal_attention'}.py or .ipynb")
    if module is None:
        kind = "notebooks" if notebook else "files"
        raise IntakeError(f"{path}: not one of the four exercise {kind} "
                          f"({', '.join(m + ext for m in MODULES)}), and {evidence} match none of them; "
                          f"rename it, or pass the folder")
    try:
        cells = _notebook_source(data, name, module) if notebook else _script_source(data, module)
    except NotebookError as exc:
        raise IntakeError(str(exc)) from None
    if cells:
        data, how, left_out = cells
        notes.append(f"{module}: graded {name} ({how})")
    if evidence:
        notes[:] = [f"{name} holds {module} (by {evidence}); graded as {module}"
                    + (f", from {how}" if cells else "")]
    if cells:
        notes += left_out_notes(name, left_out)
    files, sources = {f"{module}.py": data}, {f"{module}.py": name}
    brought = bring_imports(files, sources, os.path.dirname(os.path.abspath(path)), name, label)
    if brought:
        notes.append(f"{name} imports {', '.join(brought)}, next to it: graded with it")
    here = os.path.dirname(os.path.abspath(path))
    notes += [_package_note(name, package) for package in sorted(_imports(data) - {f[:-3] for f in files})
              if os.path.isdir(os.path.join(here, package)) and not os.path.islink(os.path.join(here, package))]
    return Submission(label or name, (module,), files, tuple(one_line(n) for n in notes), sources)


def bring_imports(files: dict, sources: dict, folder: str, name: str, label: str | None,
                  skip: frozenset = frozenset()) -> list[str]:
    """The .py files in ``folder`` that the files graded import (their own helpers,
    another exercise file, but those in ``skip``), and what those import, added to
    ``files``, as from a folder; nothing else comes. Returns their names."""
    around = from_folder(folder, (), label or name)
    queue, brought = sorted(set().union(*(_imports(data) for data in list(files.values())))), []
    while queue:
        other = f"{queue.pop(0)}.py"
        if other in files or other == name or other in skip or other not in around.files:
            continue
        files[other], sources[other] = around.files[other], other
        brought.append(other)
        queue += sorted(_imports(around.files[other]))
    return brought


def _imports(source: bytes) -> set[str]:
    """The top-level package names a module's import statements name, wherever they are."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names
