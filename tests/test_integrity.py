"""The integrity report: each flag is raised by its evidence, and only by it;
a flag never changes a grade."""

from __future__ import annotations

import csv
import json
import os
import re

import pytest

from conftest import ASSIGNMENTS, ROOT, SOLUTIONS, full_marks, make_submission, scores

from attnkit.frontends import classgrade

from attnkit.judge import integrity
from attnkit.judge.engine import grade
from attnkit.intake import from_folder
from attnkit.exercises import MODULES

S = "simplified_attention"


def doc_values(entry: str) -> list:
    # the kit's copy of the chapter's reference file (tests/test_reference_data.py keeps it exact)
    entries = json.loads((ROOT / "autograder" / "attnkit" / "data" / "reference_tensors.json").read_text())["entries"]
    return next(e["values"] for e in entries if e["id"] == entry)


SCORES_BODY = "    return inputs @ inputs.transpose(-2, -1)  # (..., T, d) @ (..., d, T) -> (..., T, T)"
HARD_CODED = {S: [(SCORES_BODY, f"    return torch.tensor({doc_values('s3_3_2_attn_scores_matmul')!r})")]}
TRANSPOSE = {S: [(SCORES_BODY, "    return inputs @ inputs.T")]}  # right on the example, raises on batches
NO_SHIFT = {S: [("shifted = scores - scores.amax(dim=dim, keepdim=True)", "shifted = scores")]}


# --------------------------------------------------------------------------- hard-coded public output

def test_hard_coded_output_is_flagged_and_keeps_its_grade(zygote, tmp_path):
    report = grade(zygote, from_folder(str(make_submission(tmp_path / "hc", HARD_CODED, drop=MODULES[1:])), (S,)))
    flags = integrity.hard_coded("hc", report)
    assert [(f.flag, f.students, f.item) for f in flags] == [
        (integrity.HARD_CODED, ("hc",), f"{S}.attention_scores")]
    assert flags[0].evidence.startswith("example: passes; hidden: ")
    got = scores(report)  # the flag informs; the grade is what the checks gave
    assert got[f"{S}.attention_scores"] == 1  # the example's point
    assert {k: v for k, v in got.items() if k != f"{S}.attention_scores"} == {
        k: v for k, v in full_marks((S,)).items() if k != f"{S}.attention_scores"}


def test_mistakes_that_pass_the_example_are_not_flagged(zygote, tmp_path):
    for name, edits in (("transpose", TRANSPOSE), ("no_shift", NO_SHIFT)):
        report = grade(zygote, from_folder(str(make_submission(tmp_path / name, edits, drop=MODULES[1:])), (S,)))
        assert sum(scores(report).values()) < 20, name  # a real mistake, invisible on the example
        assert integrity.hard_coded(name, report) == [], name


def test_a_named_mistake_that_the_example_cannot_tell_apart_is_not_flagged(zygote, tmp_path):
    """Style review: the document's multi-head example has head_dim 1, where
    unscaled scores give its numbers exactly; the hidden checks name the mistake,
    so the integrity report must not call it a hard-coded output."""
    MH, CA = "multihead_attention", "causal_attention"
    edits = {MH: [("weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)",
                   "weights = torch.softmax(scores, dim=-1)")]}
    report = grade(zygote, from_folder(str(make_submission(tmp_path / "noscale", edits)), (CA, MH)))
    mha = report.by_item()[f"{MH}.MultiHeadAttention"]
    by_kind = {c.kind: c for c in mha.checks}
    assert by_kind["example"].passed and not by_kind["hidden"].passed and by_kind["hidden"].wrong_answer
    assert any(c.diagnosis for c in mha.checks), mha.reasons
    assert integrity.hard_coded("noscale", report) == []


# --------------------------------------------------------------------------- nbgrader

def test_nbgrader_scores_above_the_isolated_grade_are_flagged():
    nbgrader = {"ada": {S: 20.0, "self_attention": 10.0}, "bo": {S: 15.0}, "cy": {"other_assignment": 99.0}}
    isolated = {"ada": {S: 20, "self_attention": 7}, "bo": {S: 15}}
    flags = integrity.nbgrader_flags(nbgrader, isolated)
    assert [(f.flag, f.students, f.item) for f in flags] == [(integrity.NBGRADER_HIGHER, ("ada",), "self_attention")]
    assert flags[0].evidence.startswith("nbgrader 10, isolated grade 7")


# --------------------------------------------------------------------------- near-identical code

ANN = '''
import torch


def query_scores(inputs, query):
    return torch.einsum("...td,...d->...t", inputs, query)


def normalize_by_sum(scores, dim=-1):
    total = scores.sum(dim=dim, keepdim=True)
    out = scores.clone()
    out = out / total
    return out


def softmax(scores, dim=-1):
    """Softmax, stable."""
    biggest = torch.max(scores, dim=dim, keepdim=True).values
    e = torch.exp(scores - biggest)
    return e / torch.sum(e, dim=dim, keepdim=True)


def simplified_self_attention(inputs):
    s = torch.einsum("...id,...jd->...ij", inputs, inputs)
    w = softmax(s, dim=-1)
    return torch.einsum("...ij,...jd->...id", w, inputs)
'''

# ANN's code with every name changed, comments and docstrings of its own, and type hints
BEN = '''
import torch


def query_scores(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Dot products of each token with the query."""
    return torch.einsum("...td,...d->...t", x, q)  # one score per token


def normalize_by_sum(a: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Rows that sum to one."""
    denominator = a.sum(dim=dim, keepdim=True)
    result = a.clone()
    result = result / denominator  # divide
    return result


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    # subtract the max so exp never overflows
    m = torch.max(x, dim=dim, keepdim=True).values
    ex = torch.exp(x - m)
    "a stray string"
    return ex / torch.sum(ex, dim=dim, keepdim=True)


def simplified_self_attention(tokens: torch.Tensor) -> torch.Tensor:
    """Scores, weights, context."""
    sc = torch.einsum("...id,...jd->...ij", tokens, tokens)
    wt = softmax(sc, dim=-1)
    return torch.einsum("...ij,...jd->...id", wt, tokens)
'''

# The same tasks written independently
CAT = '''
import torch


def query_scores(inputs, query):
    return (inputs * query.unsqueeze(-2)).sum(-1)


def normalize_by_sum(scores, dim=-1):
    return scores.div(scores.sum(dim, keepdim=True))


def softmax(scores, dim=-1):
    exps = (scores - scores.max(dim, keepdim=True)[0]).exp()
    sums = exps.sum(dim, keepdim=True)
    return exps.div(sums)


def simplified_self_attention(inputs):
    weights = softmax(inputs.matmul(inputs.transpose(-1, -2)), dim=-1)
    return weights.matmul(inputs)
'''


def files(**modules) -> dict[str, bytes]:
    """The reference solution for every module not given (shared by all, so never evidence)."""
    out = {f"{m}.py": (SOLUTIONS / f"{m}.py").read_bytes() for m in MODULES}
    out.update({f"{m}.py": text.encode() for m, text in modules.items()})
    return out


def stub(module: str) -> bytes:
    return (ASSIGNMENTS / f"{module}.py").read_bytes()


def near_identical(klass: dict[str, dict[str, bytes]]):
    return integrity.near_identical({s: integrity.own_units(f) for s, f in klass.items()})


def test_near_identical_code_is_grouped_with_its_evidence():
    klass = {"ann": files(simplified_attention=ANN), "ben": files(simplified_attention=BEN),
             "cat": files(simplified_attention=CAT), "dan": files()}
    flags = near_identical(klass)
    assert [(f.flag, f.students) for f in flags] == [(integrity.NEAR_IDENTICAL, ("ann", "ben"))]
    evidence = flags[0].evidence
    assert evidence.startswith("ann and ben: ")
    named = re.search(r": ([\w., ]+)$", evidence).group(1).split(", ")
    assert f"{S}.softmax" in named and f"{S}.simplified_self_attention" in named
    assert f"{S}.query_scores" not in named  # a one-liner: too small to tell copying from convergence


def test_a_class_that_starts_from_the_same_stubs_is_not_flagged():
    """Untouched stubs, the reference solution and the stubs' given code are shared by everyone."""
    stubs = {f"{m}.py": stub(m) for m in MODULES}
    klass = {
        "stubs1": dict(stubs), "stubs2": dict(stubs), "stubs3": dict(stubs),
        "ref1": files(), "ref2": files(),
        "ann": dict(stubs, **{f"{S}.py": ANN.encode()}),  # stage 1 of her own, the rest untouched
        "cat": dict(stubs, **{f"{S}.py": CAT.encode()}),
    }
    assert near_identical(klass) == []


def test_code_many_students_share_is_common_not_copied():
    """Past the common limit, shared code is the class's common knowledge (a tutorial, a hint)."""
    klass = {f"s{i:02d}": files(simplified_attention=ANN) for i in range(integrity.common_limit(12) + 1)}
    klass.update({f"t{i:02d}": files() for i in range(12 - len(klass))})
    assert near_identical(klass) == []
    few = dict(list(klass.items())[:2])  # the same code held by two students only
    assert near_identical(few) != []


def test_normalisation_ignores_names_comments_docstrings_and_hints_but_not_the_code():
    a = integrity.units(ANN.encode(), S)
    b = integrity.units(BEN.encode(), S)
    c = integrity.units(CAT.encode(), S)
    for name in a:
        assert a[name][0] == b[name][0], name
        assert a[name][0] != c[name][0], name
    changed = integrity.units(ANN.replace("keepdim=True).values", "keepdim=False).values").encode(), S)
    assert changed[f"{S}.softmax"][0] != a[f"{S}.softmax"][0]
    deep = "def f(x):\n    return x" + " + x" * 5000 + "\n"
    assert integrity.units(deep.encode(), S) == {}  # too deep to compare: left out, never an error


# --------------------------------------------------------------------------- grade-class end to end

@pytest.mark.slow  # a class of four, graded twice (2 s)
def test_grade_class_writes_the_report_and_keeps_it_on_a_rerun(zygote, tmp_path):
    klass, out = tmp_path / "class", tmp_path / "out"
    make_submission(klass / "hc", HARD_CODED)
    for name, code in (("ann", ANN), ("ben", BEN)):
        folder = make_submission(klass / name)
        (folder / f"{S}.py").write_text(code)
    make_submission(klass / "dee", NO_SHIFT)
    run = classgrade.grade_class(str(klass), str(out), jobs=1, seconds=5, progress=False, zygote=zygote)
    with open(out / "integrity.csv", newline="") as f:
        rows = [(r["flag"], r["students"], r["item"]) for r in csv.DictReader(f)
                if r["flag"] != integrity.REFERENCE_COPY]  # their other three files: test_reference_copies_...
    assert rows == [(integrity.HARD_CODED, "hc", f"{S}.attention_scores"),
                    (integrity.NEAR_IDENTICAL, "ann; ben", f"{S}.normalize_by_sum, {S}.simplified_self_attention, "
                                                           f"{S}.softmax")]
    lines = classgrade.summary(run, str(out))
    assert "integrity (flags inform, they never change a grade): 1 hard-coded public output?, " \
           "0 nbgrader score above the isolated grade, 1 near-identical code, " \
           "4 the reference solution, byte for byte" in lines
    with open(out / "grades.csv", newline="") as f:
        totals = {r["student"]: r["total"] for r in csv.DictReader(f)}
    assert totals["hc"] == "98" and totals["dee"] == "98"  # flagged or not, the grade is the checks'
    before = (out / "integrity.csv").read_bytes()
    again = classgrade.grade_class(str(klass), str(out), jobs=1, seconds=5, progress=False, zygote=zygote)
    assert all(o.skipped for o in again.outcomes)
    assert (out / "integrity.csv").read_bytes() == before


def test_reference_copies_are_flagged_whatever_brought_them_and_only_they(zygote, tmp_path):
    """A hard link to solutions/ in a student's folder is read as the student's
    file (the intake refuses symbolic links; a hard link is the file itself):
    graded 100, and flagged. A copy with one comment changed is not flagged."""
    from attnkit.config import solutions_dir

    klass, out = tmp_path / "class", tmp_path / "out"
    linked = klass / "lin"
    linked.mkdir(parents=True)
    for module in MODULES:
        os.link(solutions_dir() / f"{module}.py", linked / f"{module}.py")
    edited = make_submission(klass / "ed")
    text = (edited / f"{S}.py").read_text()
    (edited / f"{S}.py").write_text(text.replace("\n", "\n# mine\n", 1))
    make_submission(klass / "stubs", base=ASSIGNMENTS)
    run = classgrade.grade_class(str(klass), str(out), jobs=1, seconds=5, progress=False, zygote=zygote)
    copies = [f for f in run.flags if f.flag == integrity.REFERENCE_COPY]
    assert [(f.students, f.item) for f in copies] == [
        (("ed",), ", ".join(m for m in MODULES if m != S)), (("lin",), ", ".join(MODULES))]
    assert {o.student: o.total for o in run.outcomes} == {"ed": 100, "lin": 100, "stubs": 0}
    again = classgrade.grade_class(str(klass), str(out), jobs=1, seconds=5, progress=False, zygote=zygote)
    assert all(o.skipped for o in again.outcomes)
    assert [f for f in again.flags if f.flag == integrity.REFERENCE_COPY] == copies  # kept in results.json
