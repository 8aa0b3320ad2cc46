"""The intake's one rule: what is graded in what a path holds, read from regular
files only, with one way of saying what was found, ambiguous or missing."""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ASSIGNMENTS, ROOT, SOLUTIONS, full_marks, make_submission, scores
from hostile import MALFORMED, fifo, huge_notebook, sparse
from notebook_samples import SOURCE, source_notebook

from attnkit import intake

from attnkit.authoring import notebooks
from attnkit.judge.engine import grade
from attnkit.intake import NBGRADER, NOTEBOOK_LIMIT, IntakeError, collect, find, from_folder
from attnkit.exercises import MODULES
from attnkit.intake import notebooks as notebooks_intake
from attnkit.intake.notebooks import module_source

S, SA, CA, MH = MODULES


def solution(module: str) -> bytes:
    return (SOLUTIONS / f"{module}.py").read_bytes()


def put_notebook(path: Path, nb: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))
    return path


def released(module: str) -> dict:
    return notebooks.release(module, source_notebook(module))


# --------------------------------------------------------------------------- finding the work

def test_files_in_a_subfolder_are_found_and_said_once(tmp_path, walk):
    make_submission(tmp_path / "eve" / "hw3")
    sub = collect(str(tmp_path / "eve"), "eve")
    assert sub.files == {f"{m}.py": solution(m) for m in MODULES}
    assert sub.sources == {f"{m}.py": f"hw3/{m}.py" for m in MODULES}
    assert sub.notes == (f"found in hw3/: {', '.join(m + '.py' for m in MODULES)}",)
    assert sub.missing() == []


def test_a_folder_of_notebooks_is_graded_by_their_solution_cells(tmp_path):
    for m in MODULES:
        shutil.copy(SOURCE / m / f"{m}.ipynb", tmp_path / f"{m}.ipynb")
    sub = collect(str(tmp_path), "nb")
    assert sub.files == {f"{m}.py": module_source(source_notebook(m), m).encode() for m in MODULES}
    assert sub.notes == tuple(f"{m}: graded {m}.ipynb (its solution cells)" for m in MODULES)


def test_classroom_clone_grades_the_notebooks_with_work_over_the_untouched_stubs(tmp_path):
    repo = tmp_path / "repo"
    make_submission(repo, base=ASSIGNMENTS)  # the stubs, untouched
    for m in MODULES:
        shutil.copy(SOURCE / m / f"{m}.ipynb", repo / f"{m}.ipynb")  # solved in the notebooks
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "classroom.yml").write_text("on: push\n")
    make_submission(repo / "checker" / "attnkit")  # the handout's copy of the kit is never the answer
    (repo / "README.md").write_text("# exercises\n")
    sub = collect(str(repo), "repo")
    assert sub.sources == {f"{m}.py": f"{m}.ipynb" for m in MODULES}
    note = next(n for n in sub.notes if n.startswith(f"{S}:"))
    assert note == f"{S}: graded {S}.ipynb (its solution cells); passed over: {S}.py (an untouched stub)"


def test_the_py_with_work_beats_the_released_notebook(tmp_path):
    make_submission(tmp_path)
    put_notebook(tmp_path / f"{S}.ipynb", released(S))
    sub = collect(str(tmp_path), "x")
    assert sub.files[f"{S}.py"] == solution(S)
    assert f"{S}: graded {S}.py; passed over: {S}.ipynb (an untouched stub)" in sub.notes
    (tmp_path / f"{S}.py").write_text("import torch\n")  # an emptied file is no work either
    put_notebook(tmp_path / f"{S}.ipynb", source_notebook(S))
    sub = collect(str(tmp_path), "x")
    assert f"{S}: graded {S}.ipynb (its solution cells); passed over: {S}.py (defines none of its items)" in sub.notes


def test_with_work_in_both_the_more_complete_wins_then_the_py(tmp_path):
    make_submission(tmp_path)
    nb = released(S)  # the notebook has only softmax written
    for cell in nb["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "softmax":
            cell["source"] = "def softmax(scores, dim=-1):\n    return scores.softmax(dim)\n"
    put_notebook(tmp_path / f"{S}.ipynb", nb)
    sub = collect(str(tmp_path), "x")
    assert sub.files[f"{S}.py"] == solution(S)
    assert f"passed over: {S}.ipynb (1 of 6 items written)" in " ".join(sub.notes)
    # equally complete: the .py, and the note names the notebook passed over
    put_notebook(tmp_path / f"{S}.ipynb", source_notebook(S))
    sub = collect(str(tmp_path), "x")
    assert sub.sources[f"{S}.py"] == f"{S}.py"
    assert f"passed over: {S}.ipynb (6 of 6 items written)" in " ".join(sub.notes)
    # unless the notebook is asked for (attnkit check --notebooks)
    assert collect(str(tmp_path), "x", prefer=".ipynb").sources[f"{S}.py"] == f"{S}.ipynb"


def test_shallowest_then_the_folder_with_most_exercise_files(tmp_path):
    make_submission(tmp_path / "final")
    make_submission(tmp_path / "old", drop=(SA, CA, MH))
    sub = collect(str(tmp_path), "x")
    assert sub.sources[f"{S}.py"] == f"final/{S}.py"
    assert f"{S}: graded final/{S}.py; passed over: old/{S}.py (6 of 6 items written)" in sub.notes
    make_submission(tmp_path, drop=(SA, CA, MH), base=ASSIGNMENTS)  # an untouched stub at the top
    assert collect(str(tmp_path), "x").sources[f"{S}.py"] == f"final/{S}.py"


def test_a_file_in_another_assignments_folder_is_that_assignments_support_copy(tmp_path):
    """nbgrader's multihead_attention assignment ships the kit's causal_attention.py: never the student's answer."""
    put_notebook(tmp_path / MH / f"{MH}.ipynb", source_notebook(MH))
    shutil.copy(SOLUTIONS / f"{CA}.py", tmp_path / MH / f"{CA}.py")
    for layout in ("plain", NBGRADER):
        sub = collect(str(tmp_path), "x", layout=layout)
        assert sorted(m for m in MODULES if f"{m}.py" in sub.files) == [MH]
        assert f"{CA}.py" not in sub.files


def test_hidden_folders_caches_and_depth_are_not_searched(tmp_path):
    put_notebook(tmp_path / ".ipynb_checkpoints" / f"{S}.ipynb", source_notebook(S))
    make_submission(tmp_path / ".git", drop=(S,))
    make_submission(tmp_path / "__pycache__", drop=(S, SA))
    make_submission(tmp_path / "a" / "b" / "c" / "d" / "e" / "f" / "g", drop=(S, SA, CA))  # 7 folders deep
    sub = collect(str(tmp_path), "x")
    assert not sub.found_any()
    assert sub.nothing_message().startswith("nothing to grade: no simplified_attention.py")


def test_nbgrader_layout_takes_only_assignment_notebooks(tmp_path):
    make_submission(tmp_path)  # .py files are not part of an nbgrader submission
    put_notebook(tmp_path / S / f"{S}.ipynb", source_notebook(S))
    sub = collect(str(tmp_path), "x", layout=NBGRADER)
    assert list(sub.files) == [f"{S}.py"] and sub.sources == {f"{S}.py": f"{S}/{S}.ipynb"}
    assert sub.notes == ()  # where nbgrader puts it: nothing to say


# --------------------------------------------------------------------------- one file, named

def test_a_renamed_notebook_is_recognised_by_its_nbgrader_cells(tmp_path):
    path = put_notebook(tmp_path / "my work (1).ipynb", source_notebook(CA))
    sub = find(str(path))
    assert sub.modules == (CA,) and sub.files == {f"{CA}.py": module_source(source_notebook(CA), CA).encode()}
    assert sub.notes == (f"my work (1).ipynb holds {CA} (by its nbgrader solution cells); graded as {CA}, "
                         f"from its solution cells",)


def test_a_notebook_without_nbgrader_metadata_is_recognised_and_graded_by_its_code(tmp_path, zygote):
    nb = copy.deepcopy(source_notebook(S))
    for cell in nb["cells"]:
        cell["metadata"] = {}
    sub = find(str(put_notebook(tmp_path / "colab.ipynb", nb)))
    assert sub.modules == (S,)
    assert "by the functions and classes it defines" in sub.notes[0]
    assert scores(grade(zygote, sub)) == full_marks((S,))


def test_a_renamed_py_is_recognised_by_what_it_defines(tmp_path):
    path = tmp_path / "attention_stage3.py"
    path.write_bytes(solution(CA))
    assert find(str(path)).modules == (CA,)
    # read as Python reads it: with a BOM (Windows Notepad writes one), or a coding line
    for name, data in (("bom.py", b"\xef\xbb\xbf" + solution(CA)),
                       ("latin.py", b"# -*- coding: latin-1 -*-\n# \xe9t\xe9 3\n" + solution(CA))):
        (tmp_path / name).write_bytes(data)
        assert find(str(tmp_path / name)).modules == (CA,), name


def test_one_file_graded_alone_brings_what_is_next_to_it(tmp_path, zygote):
    """`attnkit grade folder/causal_attention.py`: the student's own helper next
    to it comes along, as it does from the folder and in the kernel, and so do
    the other exercise files it imports (before: 0/25, "No module named
    'attn_common'"); what it does not import stays out, and a note names what
    came. Only the file named is graded."""
    (tmp_path / "attn_common.py").write_text("import torch\n\n\ndef scale(d):\n    return d ** 0.5\n")
    (tmp_path / f"{S}.py").write_bytes(solution(S))
    (tmp_path / f"{CA}.py").write_text(solution(CA).decode().replace(
        "import torch\n", "import torch\nfrom attn_common import scale\nimport simplified_attention\n", 1).replace(
        "torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)", "torch.softmax(scores / scale(keys.shape[-1]), dim=-1)"))
    assert "torch.softmax(scores / scale(" in (tmp_path / f"{CA}.py").read_text()
    (tmp_path / "bob_causal_attention.py").write_bytes(solution(CA))  # not imported: stays out
    (tmp_path / f"{MH}.py").write_bytes(solution(MH))
    sub = find(str(tmp_path / f"{CA}.py"))
    assert sub.modules == (CA,) and set(sub.files) == {"attn_common.py", f"{S}.py", f"{CA}.py"}
    assert sub.files[f"{CA}.py"] == (tmp_path / f"{CA}.py").read_bytes()
    assert f"{CA}.py imports attn_common.py, {S}.py, next to it: graded with it" in sub.notes
    assert scores(grade(zygote, sub)) == full_marks((CA,))


def test_a_notebook_of_more_code_than_an_exercise_file_is_refused_before_parsing(tmp_path):
    """600 KiB of code (a constant of 300,000 zeros, and a function that reads
    it): in a solution cell, refused like a .py over 512 KiB, in one line, before
    anything is parsed (before, the grader parsed 8 MiB for minutes, and the
    module it made was 15 times that limit). In a cell of one's own, pasted
    data nothing graded needs, the cell is left out and the rest graded."""
    from attnkit.intake.notebooks import NotebookError

    big = "BIG = [" + "0," * 300_000 + "]\n\n\ndef big():\n    return BIG\n"
    nb = copy.deepcopy(source_notebook(S))
    nb["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": big})
    text = module_source(nb, S)
    assert "was left out: with it, the code read from this notebook would pass 512 KiB" in text
    assert "def softmax(" in text and "BIG" not in text
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade_id") == "softmax" and meta.get("solution"):
            cell["source"] = "".join(cell["source"]) + "\n" + big
    with pytest.raises(NotebookError, match="more than 512 KiB of code"):
        module_source(nb, S)
    for cell in nb["cells"]:
        cell["metadata"] = {}
    with pytest.raises(NotebookError, match="more than 512 KiB of code"):
        notebooks_any_cells(nb)
    put_notebook(tmp_path / f"{S}.ipynb", nb)
    make_submission(tmp_path, drop=(S,))
    sub = collect(str(tmp_path), "x")
    assert f"{S}.py" not in sub.files and "more than 512 KiB of code" in sub.absent[S] and "\n" not in sub.absent[S]


def notebooks_any_cells(nb):
    from attnkit.intake.notebooks import any_cells_source

    return any_cells_source(nb, S)


def test_what_is_no_exercise_is_a_one_line_error(tmp_path):
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": "x = 1\n"}]}
    cases = {
        "other.ipynb": (json.dumps(nb), "not one of the four exercise notebooks"),
        "notes.txt": ("hello", "not an exercise file"),
        "my_softmax.py": ("x = 1\n", "not one of the four exercise files"),
    }
    for name, (text, words) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(IntakeError, match=words) as info:
            find(str(tmp_path / name))
        assert "\n" not in str(info.value)
    with pytest.raises(IntakeError, match="no such file or folder"):
        find(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(IntakeError, match="nothing to grade"):
        find(str(tmp_path / "empty"))


# --------------------------------------------------------------------------- regular files only

@pytest.fixture(params=["at", "portable"])
def walk(request, monkeypatch):
    """Both ways of walking a folder: relative to open folders (Linux, macOS) and the
    portable one, lstat before every step (where the OS has no dir_fd, e.g. Windows)."""
    if request.param == "portable":
        monkeypatch.setattr(intake.files, "_AT", False)
    return request.param


def test_links_and_special_files_are_refused_by_name(tmp_path, walk):
    top = make_submission(tmp_path / "s", drop=(S, SA, CA))
    (top / f"{S}.py").symlink_to(SOLUTIONS / f"{S}.py")
    fifo(top / f"{SA}.py")
    (top / f"{CA}.py").symlink_to("/proc/self/mem")
    (top / "hw").symlink_to(SOLUTIONS, target_is_directory=True)
    (top / "zero.py").symlink_to("/dev/zero")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(top / "helper.py"))
    sparse(top / "notes.py")
    try:
        sub = collect(str(top), "s")
    finally:
        server.close()
    assert list(sub.files) == [f"{MH}.py"]  # the one regular exercise file
    assert sub.absent == {S: f"{S}.py is a symbolic link, not followed",
                          SA: f"{SA}.py is a FIFO, not a regular file; not read",
                          CA: f"{CA}.py is a symbolic link, not followed"}
    notes = "\n".join(sub.notes)
    for words in ("hw: a symbolic link; not followed", "zero.py: a symbolic link; not followed",
                  "helper.py: a socket; not read", "notes.py: 64.0 GiB, over the 512 KiB limit"):
        assert words in notes
    assert sub.missing_notes()[0] == f"{S}: nothing graded: {S}.py is a symbolic link, not followed; {S} scores 0"


def test_a_student_folder_that_is_a_link_is_not_followed(tmp_path, walk):
    (tmp_path / "mallory").symlink_to(SOLUTIONS, target_is_directory=True)
    with pytest.raises(IntakeError, match="a symbolic link, not a folder; not followed"):
        collect(str(tmp_path / "mallory"), "mallory", follow=False)


def test_sizes_are_capped_before_reading(tmp_path, walk):
    sparse(tmp_path / f"{S}.py")
    huge_notebook(tmp_path / f"{SA}.ipynb", NOTEBOOK_LIMIT + 1)
    sub = collect(str(tmp_path), "x")
    assert not sub.found_any()
    assert "64.0 GiB, over the 512 KiB limit" in sub.absent[S]
    assert "over the 8.0 MiB limit for a notebook" in sub.absent[SA]
    assert "clear its outputs" in sub.absent[SA] and "outputs" not in sub.absent[S]  # what makes a notebook big
    with pytest.raises(IntakeError, match="over the 512 KiB limit"):
        find(str(tmp_path / f"{S}.py"))


def test_an_unreadable_file_is_a_note_not_a_crash(tmp_path):
    make_submission(tmp_path)
    (tmp_path / f"{S}.py").chmod(0)
    sub = collect(str(tmp_path), "x")
    if os.geteuid() == 0:  # root reads it anyway
        assert sub.files[f"{S}.py"] == solution(S)
    else:
        assert "Permission denied" in sub.absent[S]


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_notebook_never_raises_out_of_intake(tmp_path, case):
    data, in_part = MALFORMED[case]
    (tmp_path / f"{S}.ipynb").write_bytes(data)
    make_submission(tmp_path, drop=(S,))
    sub = collect(str(tmp_path), "x")  # never raises
    assert all(f"{m}.py" in sub.files for m in (SA, CA, MH))
    if in_part:
        assert f"{S}.py" in sub.files  # one cell lost, the others graded
        assert b"def simplified_self_attention(" in sub.files[f"{S}.py"]
        if case == "metadata_is_a_list":  # no nbgrader metadata: a cell of one's own, which counts
            assert b"def softmax(" in sub.files[f"{S}.py"]  # for the item no solution cell defines
        else:
            assert b"def softmax(" not in sub.files[f"{S}.py"]
    else:
        assert S in sub.absent and sub.absent[S].startswith(f"{S}.ipynb: not a")
        assert "\n" not in sub.absent[S]
        with pytest.raises(IntakeError):  # named on the command line: one line, exit 2
            find(str(tmp_path / f"{S}.ipynb"))


# --------------------------------------------------------------------------- fingerprints and labels

def test_fingerprint_follows_what_was_read(tmp_path):
    make_submission(tmp_path)
    first = collect(str(tmp_path), "x").fingerprint("v1")
    assert collect(str(tmp_path), "y").fingerprint("v1") == first
    assert collect(str(tmp_path), "x").fingerprint("v2") != first
    with open(tmp_path / f"{S}.py", "a") as f:
        f.write("\n# changed\n")
    assert collect(str(tmp_path), "x").fingerprint("v1") != first


def test_messages_never_name_the_graders_paths(tmp_path):
    student = make_submission(tmp_path / "CLASS" / "eve" / "hw3", drop=(SA,))
    (student / f"{CA}.py").unlink()
    (student / f"{CA}.py").symlink_to(SOLUTIONS / f"{CA}.py")
    for sub in (collect(str(tmp_path / "CLASS" / "eve"), "eve"), find(str(tmp_path / "CLASS" / "eve"))):
        text = "\n".join(sub.notes + tuple(sub.missing_notes()))
        assert str(tmp_path) not in text and "hw3/causal_attention.py" in text
    flat = from_folder(str(student), MODULES, "eve")
    assert str(tmp_path) not in "\n".join(flat.notes + tuple(flat.missing_notes()))


# --------------------------------------------------------------------------- the command line

NO_WORKER = """
import sys
import textwrap
from attnkit.frontends.cli import main
code = main(sys.argv[1:])
started = [m for m in ("torch", "attnkit.sandbox", "attnkit.judge.engine") if m in sys.modules]
print(code, started)
"""


@pytest.mark.parametrize("command", ["grade", "check"])
def test_nothing_to_grade_is_one_line_and_exit_2_before_any_worker(tmp_path, command):
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "empty", tmp_path / "nowhere"):
        proc = subprocess.run([sys.executable, "-c", NO_WORKER, command, str(target)], capture_output=True,
                              text=True, timeout=120, cwd=ROOT)
        assert proc.stdout.strip() == "2 []", proc.stdout + proc.stderr  # no worker, not even torch imported
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith(f"attnkit {command}: ")


def test_grade_takes_a_nested_folder_and_reports_without_the_graders_paths(attnkit_cli, tmp_path):
    eve = tmp_path / "CLASS" / "eve"
    make_submission(eve / "hw3", drop=(SA,))
    put_notebook(eve / "hw3" / f"{SA}.ipynb", source_notebook(SA))
    (eve / "hw3" / f"{CA}.py").unlink()
    (eve / "hw3" / f"{CA}.py").symlink_to(SOLUTIONS / f"{CA}.py")
    proc = attnkit_cli("grade", eve, "--report", tmp_path / "fb", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "Total: 75/100" in proc.stdout  # causal_attention refused: its 25 points
    assert f"note: {SA}: graded hw3/{SA}.ipynb (its solution cells)" in proc.stdout
    assert f"{CA}: nothing graded: hw3/{CA}.py is a symbolic link, not followed" in proc.stdout
    page = (tmp_path / "fb" / "feedback.html").read_text()
    assert str(tmp_path) not in page and "hw3/causal_attention.py is a symbolic link" in page


# -- a notebook's solution cells as a module: what a student writes there in a notebook's habits

def _with_cells(module: str, edits: dict[str, list[str]]) -> dict:
    """The kit's source notebook of ``module`` with each named solution cell's
    source replaced by the given sources (one cell each; two: a split cell)."""
    nb = copy.deepcopy(source_notebook(module))
    out = []
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        sources = edits.get(meta.get("grade_id")) if meta.get("solution") else None
        if sources is None:
            out.append(cell)
            continue
        for source in sources:
            out.append(dict(copy.deepcopy(cell), source=source))
    nb["cells"] = out
    return nb


def _solution_body(module: str, name: str) -> str:
    """The reference solution cell of ``name``, as the source notebook holds it."""
    for cell in source_notebook(module)["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and meta.get("grade_id") == name:
            source = cell["source"]
            return "".join(source) if isinstance(source, list) else source
    raise AssertionError(name)


def _namespace(text: str) -> dict:
    """The module's names, as an import would leave them (torch and the solutions at hand)."""
    space: dict = {}
    sys.path.insert(0, str(SOLUTIONS))
    try:
        exec(compile(text, "<module>", "exec", dont_inherit=True), space)  # not this file's __future__
    finally:
        sys.path.remove(str(SOLUTIONS))
    return space


def test_trial_assignments_in_a_solution_cell_are_left_out_and_definitions_kept():
    """Trial lines that assign (the setup cell's names, the student's own
    functions and classes run at the top level) would fail or run student code
    at import and cost every item of the notebook: they are left out, with what
    reads them; constants stay."""
    sa = _solution_body("simplified_attention", "simplified_self_attention")
    ca = _solution_body("causal_attention", "CausalAttention")
    text = module_source(_with_cells("simplified_attention", {"simplified_self_attention": [
        "import math\nEPS = 1e-9\nSCALE = math.sqrt(2.0)\nNEG = float('-inf')\n" + sa
        + "\ncontext = simplified_self_attention(inputs)\nfirst = context[0]\n"
        "q, k = (inputs, inputs)\nCOPY = SCALE * 2\ndef scaled(x):\n    return x * SCALE + EPS\n"
        "with torch.no_grad():\n    ONES = torch.ones(3)\nDIAG = 0\nDIAG += 1\n"
        "for _n in (1, 2):\n    CACHE = {_n: causal for causal in [None]}\n"
        "def table():\n    return ONES, DIAG, CACHE\n"
        "while True:\n    pass\n"]}), "simplified_attention")
    space = _namespace(text)
    # constants, and what runs to make what a function reads (a call, a block) stay
    assert {"EPS", "SCALE", "COPY", "ONES", "DIAG", "CACHE", "simplified_self_attention"} <= set(space)
    assert space["DIAG"] == 1 and space["scaled"](1.0) > 1.4
    # trials go: what reads the setup cell's names, and what runs for a result nothing reads
    assert not {"context", "first", "q", "k", "NEG"} & set(space)
    text = module_source(_with_cells("causal_attention", {"CausalAttention": [
        ca + "\nca = CausalAttention(3, 2, 6, 0.0)\ncontext_vecs = ca(batch)\n"]}), "causal_attention")
    space = _namespace(text)
    assert "CausalAttention" in space and not {"ca", "context_vecs"} & set(space)
    # a constant made by the student's own function and read by another stays; the
    # notebook front end's imports (not in every grader's environment) go
    text = module_source(_with_cells("causal_attention", {"causal_mask": [
        "from IPython.display import display\nimport IPython\nshow = display\n"
        + _solution_body("causal_attention", "causal_mask") + "\nMASK_6 = causal_mask(6)\n"
        "def six():\n    return MASK_6\n"]}), "causal_attention")
    space = _namespace(text)
    assert space["six"]().shape == (6, 6) and not {"display", "IPython", "show"} & set(space)


def test_ipython_habits_in_a_solution_cell_compile_as_ipython_reads_them():
    """A continuation line that starts with % or ! is Python, not a magic; a
    magic where a statement starts is dropped; a ``from __future__`` import in
    a cell goes first; a ``try`` of imports that a def reads is kept; the two halves of a split
    cell (both with the cell's grade_id) both count."""
    body = _solution_body("simplified_attention", "softmax")
    text = module_source(_with_cells("simplified_attention", {
        "normalize_by_sum": ["from __future__ import annotations\n%matplotlib inline\n!pip list\npip install einops\n"
                             "try:\n    from math import fsum as _fsum\nexcept ImportError:\n    _fsum = sum\n"
                             "def _total(xs):\n    return _fsum(xs)\n"
                             + _solution_body("simplified_attention", "normalize_by_sum")
                             + "\nLABEL = ('%d of %d'\n         % (1, 2))\n"],
        "softmax": ["def _helper():\n    return 1\n", body + "\nassert _helper() == 1\n"],
    }), "simplified_attention")
    assert text.startswith("from __future__ import annotations  # simplified_attention.py")
    space = _namespace(text)
    assert space["LABEL"] == "1 of 2" and space["_fsum"] is not None and space["_helper"]() == 1
    assert {"normalize_by_sum", "softmax"} <= set(space)
    # an annotation may name what a cell the grader leaves out imported: annotations are lazy
    text = module_source(_with_cells("simplified_attention", {"softmax": [
        body + "\ndef _typed(x: Tensor) -> Tensor:\n    return x\n"]}), "simplified_attention")
    assert "def _typed(x: Tensor)" in text and "softmax" in _namespace(text)


def test_a_definition_made_in_a_block_or_guarded_by_a_try_that_says_why_is_kept():
    """Style review: a helper defined in a top-level ``if``/``else`` (a fallback
    for an older torch) was blanked as a block nothing reads (NameError, 0/13);
    a ``try`` of an import whose ``except`` prints why and raises was left out
    whole (0/13). Both run top to bottom in the kernel. A block that defines
    nothing anything reads, and a ``try`` that runs a trial, still go."""
    ca = _solution_body("causal_attention", "CausalAttention")
    guarded = ca.replace("weights = torch.softmax(", "weights = _softmax(").replace(
        "keys.shape[-1] ** 0.5", "_sqrt(keys.shape[-1])")
    assert guarded != ca
    text = module_source(_with_cells("causal_attention", {"CausalAttention": [
        "import torch.nn.functional as F\n"
        "if hasattr(F, 'softmax'):\n    def _softmax(x, dim):\n        return F.softmax(x, dim=dim)\n"
        "else:\n    def _softmax(x, dim):\n        return torch.exp(x) / torch.exp(x).sum(dim, keepdim=True)\n"
        "try:\n    from math import sqrt as _sqrt\nexcept ImportError:\n"
        "    print('this cell needs math.sqrt')\n    raise\n"
        "if True:\n    def _unused():\n        return CausalAttention(3, 2, 6, 0.0)(batch)\n"
        "try:\n    print(CausalAttention(3, 2, 6, 0.0)(batch))\nexcept NameError:\n    pass\n"
        + guarded]}), "causal_attention")
    space = _namespace(text)
    assert {"_softmax", "_sqrt", "CausalAttention"} <= set(space), sorted(space)
    assert "_unused" not in space and "print(CausalAttention" not in text
    # second review: a try nothing reads goes (its import may be of a package the grader lacks);
    # a block whose helper prints the setup cell's names still makes what it makes; a graded item
    # defined in an if/else, or bound by a call, is kept
    text = module_source(_with_cells("causal_attention", {
        "causal_mask": ["try:\n    import seaborn_not_here as sns\nexcept ImportError:\n"
                        "    print('pip install seaborn')\n    raise\n"
                        + _solution_body("causal_attention", "causal_mask")],
        "mask_scores": ["if hasattr(torch, 'finfo'):\n    FILL = float('-inf')\n"
                        "    def show_masked():\n        print(mask_scores(scores, causal_mask(6)))\n"
                        "else:\n    FILL = -1e9\n"
                        "def mask_scores(scores, mask):\n    return scores.masked_fill(mask, FILL)\n"],
        "renormalize_masked": ["def _make():\n    def renorm(weights, mask):\n"
                               "        kept = weights * (~mask)\n"
                               "        return kept / kept.sum(dim=-1, keepdim=True)\n    return renorm\n"
                               "if hasattr(torch, 'where'):\n    renormalize_masked = _make()\n"
                               "else:\n    renormalize_masked = _make()\n"]}), "causal_attention")
    space = _namespace(text)
    assert "sns" not in space and space["FILL"] == float("-inf") and "show_masked" in space
    # third review: a block reads what it calls methods of (torch in torch.no_grad(), math in
    # math.sqrt); a fallback try is kept whole (its handler's "as err" is its own name; what it
    # calls may be defined nowhere, get_ipython); what a lambda reads when called is needed
    text = module_source(_with_cells("causal_attention", {
        "causal_mask": ["import math\nINV_SQRT = {}\nfor _d in range(1, 9):\n    INV_SQRT[_d] = 1 / math.sqrt(_d)\n"
                        "with torch.no_grad():\n    TINY = torch.finfo(torch.float32).tiny\n"
                        "try:\n    import einops_not_here as einops\n    EINOPS_ERROR = None\n"
                        "except ImportError as err:\n    einops = None\n    EINOPS_ERROR = err\n"
                        "try:\n    _shell = get_ipython()\n    VERBOSE = False\nexcept NameError:\n    VERBOSE = False\n"
                        "try:\n    EPS = torch.finfo(torch.float32).eps\nexcept AttributeError:\n    EPS = 1e-7\n"
                        "_safe = lambda a: a + EPS\n"
                        "def causal_mask(num_tokens):\n"
                        "    assert INV_SQRT[4] == 0.5 and TINY > 0 and einops is None and not VERBOSE\n"
                        "    assert _safe(0.0) > 0 and isinstance(EINOPS_ERROR, ImportError)\n"
                        "    return torch.triu(torch.ones(num_tokens, num_tokens, dtype=torch.bool), diagonal=1)\n"]}),
        "causal_attention")
    assert _namespace(text)["causal_mask"](3).sum() == 3
    # an item a solution cell defines in an if/else is the graded one: a cell of one's own after it
    # (a trial version to compare) does not replace it
    nb = _with_cells("causal_attention", {"causal_mask": [
        "if hasattr(torch, 'triu'):\n" + textwrap.indent(_solution_body("causal_attention", "causal_mask"), "    ")
        + "\nelse:\n    def causal_mask(num_tokens):\n        raise RuntimeError('no triu')\n"]})
    nb["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                        "source": "def causal_mask(num_tokens):\n    return 'a trial'\n"})
    space = _namespace(module_source(nb, "causal_attention"))
    assert space["causal_mask"](3).dtype == space["torch"].bool
    torch = space["torch"]
    mask = space["causal_mask"](3)
    assert torch.isinf(space["mask_scores"](torch.zeros(3, 3), mask)).sum() == 3
    assert torch.allclose(space["renormalize_masked"](torch.ones(3, 3), mask).sum(-1), torch.ones(3))
    module = space["CausalAttention"](3, 2, 6, 0.0)
    assert module(torch.rand(2, 4, 3)).shape == (2, 4, 2)


def test_more_notebook_habits_keep_their_marks_and_trials_still_go():
    """From a review with a kernel beside the grader: each of these ran top to
    bottom in IPython and defined the items; each must be in the module."""
    body = _solution_body("causal_attention", "causal_mask")
    cell = ("import tiktoken\ntokenizer = tiktoken.get_encoding('gpt2')\n"  # chapter 2's, unread here
            "raw = open('the-verdict.txt').read()\n"  # a file the grader does not have, unread here
            "# a comment with a form feed \f and a line separator \u2028 in it\n"
            "torch.triu?\nt = %timeit -o -n1 causal_mask(3)\n"
            + body + "\nFULL = {}\nfor _n in (4, 6):\n    FULL[_n] = causal_mask(_n)\n"
            "CausalAttention_note = 'set below'\n"
            "renorm = lambda w, m: _rownorm(w * ~m)\n"
            "def _rownorm(w):\n    return w / w.sum(-1, keepdim=True)\n"
            "def full(n):\n    weights = FULL[n]\n    return weights\n"
            "x = torch.rand(2, 6, 3)\nweights = causal_mask(6)[x.argmax()]\n")  # a trial named like a local
    indented = "\n".join("    " + line if line else line for line in cell.split("\n"))
    for source in (cell, indented):
        text = module_source(_with_cells("causal_attention", {"causal_mask": [source]}), "causal_attention")
        space = _namespace(text)
        assert space["full"](6).shape == (6, 6) and space["renorm"] is not None
        assert not {"tiktoken", "tokenizer", "raw", "t", "x", "weights"} & set(space)


def test_a_statement_that_changes_what_a_left_out_one_made_goes_with_it():
    """From a newcomer's review: ``plt.rcParams[...] = ...`` after a plotting
    import nothing graded needs. The import was left out and the statement,
    which reads and changes plt, kept (it made plt itself, by the count), so
    the module failed with a NameError: 0 for every item. A statement that
    reads what it makes needs another to make it; a dict filled in for a def
    still comes with the statement that made it."""
    cell = ("import matplotlib.pyplot as plt\nplt.rcParams['figure.figsize'] = (6, 4)\nplt.rc('font', size=8)\n"
            "counter += 1\nWIDTHS = {}\nWIDTHS['mask'] = 6\n"
            "def causal_mask(num_tokens=None):\n    num_tokens = num_tokens or WIDTHS['mask']\n"
            "    return torch.triu(torch.ones(num_tokens, num_tokens, dtype=torch.bool), diagonal=1)\n")
    text = module_source(_with_cells("causal_attention", {"causal_mask": [cell]}), "causal_attention")
    space = _namespace(text)
    assert "plt" not in space and "counter" not in space and space["causal_mask"]().shape == (6, 6)


def test_what_a_fallback_import_binds_is_there_for_what_changes_it():
    """A second review of the change above: after ``try: import X / except
    ImportError: X = None`` (kept whole, no statement of its own), a block that
    changes X and a constant made from it stay, as a def reads the constant."""
    cell = ("try:\n    import matplotlib.pyplot as plt\nexcept ImportError:\n    plt = None\n"
            "if plt is not None:\n    plt.rcParams['figure.figsize'] = (5, 3)\nHAVE_PLOT = plt is not None\n"
            "def causal_mask(num_tokens):\n    assert HAVE_PLOT in (True, False)\n"
            "    return torch.triu(torch.ones(num_tokens, num_tokens, dtype=torch.bool), diagonal=1)\n")
    space = _namespace(module_source(_with_cells("causal_attention", {"causal_mask": [cell]}), "causal_attention"))
    assert space["causal_mask"](3).sum() == 3 and "HAVE_PLOT" in space


def test_a_line_of_blanks_and_deeply_nested_lambdas_are_read_once(monkeypatch):
    """From an attack review: a line of blanks (the magic scan's pattern was
    quadratic in its length: 20 s for 40,000 spaces, in the grader's process
    before any job of a class started) and deeply nested lambdas (each read
    with everything below it: quadratic too, minutes at 2,000 deep). Each
    lambda is now read alone only while there are few; what the lambdas read
    when called is still kept (EPS), a trial still left out."""
    reads = []
    one_by_one = notebooks_intake._lambda_reads
    monkeypatch.setattr(notebooks_intake, "_lambda_reads", lambda node: reads.append(node) or one_by_one(node))
    nested = "lambda: " * 300 + "EPS"
    cell = ("EPS = 1e-9\n" + " " * 10_000 + "\n"
            + "".join(f"f{i} = {nested}\n" for i in range(4)) + "_few = lambda w: w + EPS\ntrial = causal_mask(4)\n")
    text = module_source(_with_cells("causal_attention", {"causal_mask": [cell]}), "causal_attention")
    assert "EPS = 1e-9" in text and "f3 = lambda" in text and "_few = lambda" in text and "trial =" not in text
    assert len(reads) == 1  # _few's alone: the nested ones, 300 a statement, are walked once each
    assert notebooks_intake.ASSIGNED_MAGIC.match(" " * 10_000) is None
    assert notebooks_intake.ASSIGNED_MAGIC.match("  files = !ls") and notebooks_intake.ASSIGNED_MAGIC.match("a, b=%who")


def test_the_trial_pass_and_the_magic_scan_are_one_pass_each():
    """A notebook controls its cells' sizes: a chain of 3000 assignments left
    out one by one, and 4000 magics between statements, each in one pass (a
    pass per statement took minutes, in the grader's process, before any limit)."""
    chain = "\n".join(f"A{i + 1} = A{i}" for i in range(3000)) + "\nA0 = B\n"
    magics = "x = 1\n%time\n" * 4000
    text = module_source(_with_cells("causal_attention", {"causal_mask": [chain], "mask_scores": [magics]}),
                         "causal_attention")
    assert "A3000 = A2999" not in text and text.count("\nx = 1\n") == 4000


def test_a_cell_left_out_is_said_in_the_notes_on_every_path(tmp_path):
    """A solution cell with a typo is left out of the module; the item then reads
    "defines no `softmax`", so the notes say which cell and why: in a folder, for
    one notebook graded alone, and in the notebook's own test cells. A cell of
    one's own over the 512 KiB, or without nbgrader metadata one that does not
    parse, likewise."""
    from attnkit.kernel.notebook import notebook_submission

    broken = _with_cells(S, {"softmax": ["def softmax(scores, dim=-1):\n    return scores.softmax(dim=dim\n"]})
    big = "BIG = [" + "0," * 300_000 + "]\n"
    broken["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                            "source": big})
    put_notebook(tmp_path / "folder" / f"{S}.ipynb", broken)
    said = f"{S}.ipynb: cell 'softmax' was left out: SyntaxError: "
    for sub in (collect(str(tmp_path / "folder"), "x"), find(str(tmp_path / "folder" / f"{S}.ipynb")),
                notebook_submission(tmp_path / "folder" / f"{S}.ipynb", S, public=False)):
        notes = [n for n in sub.notes if "left out" in n]
        assert len(notes) == 2 and notes[0].startswith(said) and "(line 2 of the cell)" in notes[0], sub.notes
        assert "would pass 512 KiB" in notes[1] and notes[1].startswith(f"{S}.ipynb: code cell ")
    plain = copy.deepcopy(broken)
    for cell in plain["cells"]:
        cell["metadata"] = {}
    plain["cells"] = [c for c in plain["cells"] if "BIG" not in "".join(c["source"])]
    put_notebook(tmp_path / "plain" / f"{S}.ipynb", plain)
    notes = [n for n in collect(str(tmp_path / "plain"), "x").notes if "left out" in n]
    assert len(notes) == 1 and "was left out: SyntaxError" in notes[0], notes
    # a notebook with nothing left out says nothing of the kind
    put_notebook(tmp_path / "whole" / f"{S}.ipynb", source_notebook(S))
    assert not [n for n in collect(str(tmp_path / "whole"), "x").notes if "left out" in n]


@pytest.mark.slow  # nbconvert's import and four gradings: about 7 s
def test_a_notebook_exported_as_a_script_is_graded_by_its_code_cells(zygote, tmp_path):
    """Style review: Jupyter's "Download as Python" of a correct notebook, next to
    the notebook or alone, scored 0/25: the export holds the test cells too, and
    their ``from attnkit.kernel.notebook import score`` is not in the sandbox.
    The export is read as the notebook's code cells (nbconvert marks each with
    ``# In[ ]:``): definitions count, the kit's cells and trial calls do not."""
    import nbformat
    from nbconvert import PythonExporter

    nb = nbformat.reads(json.dumps(source_notebook(CA)), as_version=4)
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    script, _ = PythonExporter().from_notebook_node(nb)
    assert script.count("# In[") > 5 and "attnkit" in script
    both = tmp_path / "both"
    put_notebook(both / f"{CA}.ipynb", source_notebook(CA))
    (both / f"{CA}.py").write_text(script)
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / f"{CA}.py").write_text(script)
    for sub in (collect(str(both), "x"), find(str(alone / f"{CA}.py"))):
        assert any("a notebook exported as a script" in n for n in sub.notes), sub.notes
        assert scores(grade(zygote, from_folder_files(sub, (CA,)))) == full_marks((CA,))
    # exported without the cells' marks (--no-prompt), it is read one statement a cell (review:
    # 0/25); a file with the same head that does not import the kit is the module it is
    bare, _ = PythonExporter(exclude_input_prompt=True).from_notebook_node(nb)
    assert "# In[" not in bare and bare.startswith("#!/usr/bin/env python\n# coding: utf-8")
    (alone / f"{CA}.py").write_text(bare)
    assert scores(grade(zygote, from_folder_files(find(str(alone / f"{CA}.py")), (CA,)))) == full_marks((CA,))
    headed = "#!/usr/bin/env python\n# coding: utf-8\n" + (ROOT / "solutions" / f"{CA}.py").read_text()
    (alone / f"{CA}.py").write_text(headed)
    assert find(str(alone / f"{CA}.py")).files[f"{CA}.py"] == headed.encode()
    # saved with Windows line ends, it is the same export
    crlf = tmp_path / "crlf"
    crlf.mkdir()
    (crlf / f"{CA}.py").write_bytes(script.replace("\n", "\r\n").encode())
    assert scores(grade(zygote, from_folder_files(find(str(crlf / f"{CA}.py")), (CA,)))) == full_marks((CA,))
    # a plain exercise file is still run as it is, top-level code too, even with an "In" mark
    # pasted into it (second review: everything above the mark was lost)
    plain = tmp_path / "plain"
    make_submission(plain)
    text = (plain / f"{CA}.py").read_text().replace("class CausalAttention(", "# In[12]:\nclass CausalAttention(")
    (plain / f"{CA}.py").write_text(text)
    sub = collect(str(plain), "x")
    assert sub.files[f"{CA}.py"] == text.encode() and not any("exported" in n for n in sub.notes)
    # an item an export binds by a call is the answer, not a trial
    bound = tmp_path / "bound"
    bound.mkdir()
    (bound / f"{S}.py").write_text("#!/usr/bin/env python\n# coding: utf-8\n\n# In[1]:\n\n\nimport torch\n\n\n"
                                   "# In[2]:\n\n\ndef _make():\n    def scores(inputs, query):\n"
                                   "        return inputs @ query\n    return scores\n\n\nquery_scores = _make()\n")
    assert "query_scores = _make()" in find(str(bound / f"{S}.py")).files[f"{S}.py"].decode()


def from_folder_files(sub, modules):
    """``sub`` graded on ``modules`` only (its other exercise files are absent here)."""
    from attnkit.intake import Submission

    return Submission(sub.label, modules, {f"{m}.py": sub.files[f"{m}.py"] for m in modules}, sub.notes, sub.sources)


def test_a_package_of_ones_own_that_an_exercise_file_imports_is_named_in_a_note(tmp_path):
    """Only .py helpers next to the exercise files come along (README); a package
    folder the student imports does not, and a note says so and what to do,
    instead of the bare "No module named 'attn_utils'" of the import (style review)."""
    make_submission(tmp_path, {CA: [("import torch.nn as nn", "import torch.nn as nn\nfrom attn_utils import helper")]})
    (tmp_path / "attn_utils").mkdir()
    (tmp_path / "attn_utils" / "__init__.py").write_text("def helper():\n    return 1\n")
    (tmp_path / "unused_pkg").mkdir()
    (tmp_path / "unused_pkg" / "__init__.py").write_text("")
    said = [f"{CA}.py imports attn_utils, a folder next to it: only the .py files next to the exercise files come "
            "along; make it attn_utils.py"]
    assert [n for n in collect(str(tmp_path), "x").notes if "a folder next to it" in n] == said
    assert [n for n in find(str(tmp_path / f"{CA}.py")).notes if "a folder next to it" in n] == said


def test_a_test_cell_grades_the_notebook_it_runs_in(tmp_path, monkeypatch):
    """JupyterLab's Duplicate leaves <module>-Copy1.ipynb beside the untouched
    <module>.ipynb: a test cell of the copy grades the copy, the notebook Jupyter
    says it runs (by its full path, or relative to the server's root), where that
    notebook's name holds the module's; else the folder's <module>.ipynb."""
    from attnkit.intake.notebooks import NotebookError
    from attnkit.kernel.notebook import find_notebook

    module = "simplified_attention"
    original, copy = tmp_path / f"{module}.ipynb", tmp_path / f"{module}-Copy1.ipynb"
    other = tmp_path / "multihead_attention.ipynb"
    for path in (original, copy, other):
        path.write_text("{}")
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert find_notebook(module, tmp_path) == original.resolve()
    for session in (str(copy), f"course/week3/{copy.name}"):
        monkeypatch.setenv("JPY_SESSION_NAME", session)
        assert find_notebook(module, tmp_path) == copy.resolve()
    monkeypatch.setenv("JPY_SESSION_NAME", str(other))  # another module's: its own test cells ask for its items
    assert find_notebook(module, tmp_path) == original.resolve()
    original.unlink()
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / f"{module} (1).ipynb"))  # named, not there
    with pytest.raises(NotebookError, match="is not in"):
        find_notebook(module, tmp_path)


def test_a_cell_whose_body_is_not_python_for_the_kernel_is_neither_code_nor_a_note():
    """From a review of notebook habits: %%bash, %%html and %%writefile cells were
    read as Python ("left out: SyntaxError" notes on a right notebook), and a
    disabled ``%%script false`` cell's old helper replaced the one the kernel
    uses. A cell magic whose body the kernel runs as Python (%%time) still counts."""
    import torch

    own = ["%%bash\necho 'if [ -f x ]; then'\n",
           "%%html\n<b>attention</b>\n",
           "%%writefile notes.txt\nmask first, then softmax (and don't forget\n",
           "def _rows(w):\n    return w / w.sum(-1, keepdim=True)\n",
           "%%script false --no-raise-error\ndef _rows(w):\n    return w\n",  # an old version, turned off
           "%%time\nSCALE = 1.0\n"]
    nb = _with_cells("causal_attention", {"renormalize_masked": [
        "def renormalize_masked(weights, mask):\n    return _rows(weights * ~mask) * SCALE\n"]})
    for source in own:
        nb["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                            "source": source})
    left_out: list[str] = []
    space = _namespace(module_source(nb, "causal_attention", left_out))
    assert not left_out, left_out
    w = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    mask = torch.tensor([[False, True], [False, False]])
    assert torch.equal(space["renormalize_masked"](w, mask), torch.tensor([[1.0, 0.0], [0.25, 0.75]]))


def test_the_kits_own_stage_three_is_never_taken_for_the_students_work(tmp_path):
    """Stage 4 is released with the kit's CausalAttention (source/multihead_attention/
    causal_attention.py, the reference with a header). In a folder that also holds
    the student's own causal_attention.ipynb it was graded instead of their work (the
    .py won the tie). Alone, it is graded (stage 4 imports it), said to be the kit's,
    and flagged to the instructor as the reference solution; given by name, refused."""
    from attnkit.judge import integrity

    kits = (SOURCE / "multihead_attention" / "causal_attention.py").read_bytes()
    mine = _with_cells("causal_attention", {"mask_scores": [
        "def mask_scores(scores, mask):\n    return scores.masked_fill(mask, 0.0)\n"]})
    put_notebook(tmp_path / "together" / "causal_attention.ipynb", mine)
    (tmp_path / "together" / "causal_attention.py").write_bytes(kits)
    sub = collect(str(tmp_path / "together"), "x")
    assert sub.sources["causal_attention.py"] == "causal_attention.ipynb"
    assert b"masked_fill(mask, 0.0)" in sub.files["causal_attention.py"]
    assert any("passed over: causal_attention.py (the kit's own, released with stage 4: not your work)" in n
               for n in sub.notes), sub.notes
    assert not integrity.reference_copies("x", sub.files)
    alone = tmp_path / "stage4"
    put_notebook(alone / "multihead_attention.ipynb", source_notebook("multihead_attention"))
    (alone / "causal_attention.py").write_bytes(kits)
    sub = collect(str(alone), "x")
    assert sub.files["causal_attention.py"] == kits
    assert any("the kit's own, released with stage 4 so that stage 4 can import it: no work of yours" in n
               for n in sub.notes), sub.notes
    (flag,) = integrity.reference_copies("x", sub.files)
    assert flag.item == "causal_attention", flag
    with pytest.raises(IntakeError, match="the kit's own, released with stage 4, not your work"):
        find(str(alone / "causal_attention.py"))


def test_a_notebooks_test_cells_grade_it_with_the_helpers_it_imports(tmp_path, zygote):
    """From a review of the student-facing checks: a right notebook whose cell imports
    the student's own attn_utils.py scored 0 in its own test cells ("No module named
    'attn_utils'"), full marks in `attnkit check`. The test cells now bring what its
    code imports from next to it, as `attnkit grade` does, and say so; never another
    exercise file but the one stage 4 needs in public mode."""
    from attnkit.kernel.notebook import notebook_submission

    folder = tmp_path / "work"
    (folder).mkdir()
    (folder / "attn_utils.py").write_text("import torch\n\n\ndef scaled(s, d_k):\n    return s / d_k ** 0.5\n")
    (folder / "unused.py").write_text("raise SystemExit('never imported')\n")
    (folder / f"{S}.py").write_text("raise SystemExit('another exercise file: not brought')\n")
    nb = _with_cells(SA, {"attention_weights": [
        "from attn_utils import scaled\n\n\ndef attention_weights(scores, d_k):\n"
        "    return torch.softmax(scaled(scores, d_k), dim=-1)\n"]})
    put_notebook(folder / f"{SA}.ipynb", nb)
    sub = notebook_submission(folder / f"{SA}.ipynb", SA, public=False)
    assert set(sub.files) == {f"{SA}.py", "attn_utils.py"}, set(sub.files)
    assert any("imports attn_utils.py, next to it: graded with it" in n for n in sub.notes), sub.notes
    report = grade(zygote, sub)
    assert report.by_item()[f"{SA}.attention_weights"].score == 4


def test_the_forgot_to_save_note_is_said_only_when_the_code_run_differs(monkeypatch):
    """From a review of notebook habits: a solution cell ending in `%timeit`, or split
    in two (JupyterLab's split keeps the grade_id on both), drew "save the notebook"
    on a saved notebook: IPython keeps what it ran with its magics made Python, and
    each part of a split cell alone. A version run and not saved is still said."""
    IPython = pytest.importorskip("IPython")  # the kernel's, where a test cell runs
    from IPython.core.inputtransformer2 import TransformerManager

    from attnkit.kernel import notebook as kernel

    class Shell:
        def __init__(self, ran):
            self.user_ns = {"In": ["", *ran]}

        def transform_cell(self, source):
            return TransformerManager().transform_cell(source)

    timed = "def softmax(x, dim=-1):\n    return x.softmax(dim)\n\n%timeit softmax(torch.ones(3))\n"
    split = ["import math\n", "def softmax(x, dim=-1):\n    return x.softmax(dim)\n"]
    cases = [([TransformerManager().transform_cell(timed)], [timed], False),
             ([split[0], split[1]], split, False),
             (["def softmax(x, dim=-1):\n    return x.softmax(dim) * 2\n"], split, True),  # edited, not saved
             (["print(1)"], split, False)]  # never ran it: nothing to say
    for ran, saved, said in cases:
        monkeypatch.setattr(IPython, "get_ipython", lambda ran=ran: Shell(ran))
        assert kernel._ran_other_code("softmax", saved) is said, (ran, saved)


def test_a_cell_of_ones_own_that_imports_the_kit_is_said_to_be_left_out():
    """From a review of notebook habits: a student's cell that imports the kit's
    heatmap (as the kit's picture cells do) beside a helper was dropped with no word,
    and the item read "NameError: scaled_softmax". It is still left out (the kit's
    cells never count), and now said; the kit's own cells still go unsaid."""
    nb = _with_cells(CA, {})
    nb["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                        "source": "from attnkit.kernel.plots import heatmap\n\n\ndef scaled_softmax(s, d):\n"
                                  "    return (s / d ** 0.5).softmax(-1)\n"})
    left_out: list[str] = []
    module_source(nb, CA, left_out)
    assert len(left_out) == 1 and "imports attnkit" in left_out[0] and "keep what you define" in left_out[0]
    left_out.clear()
    module_source(_with_cells(CA, {}), CA, left_out)
    assert not left_out
