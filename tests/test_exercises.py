"""The exercise table (exercises.py reading exercises.toml) and the registry of
checks, in-process: a hand-written table is read as written, the kit's own
table says what the teaching order and the stand-ins are, and the registry
orders and prices checks from it."""

from __future__ import annotations

import pytest

from attnkit import exercises
from attnkit.exercises import Item, allowed_calls, items, items_of, module_points, module_totals, stand_ins
from attnkit.judge import registry as registry_module
from attnkit.judge.registry import Check, check, registry

TABLE = """\
# a comment
["a.first"]
example = 1
hidden = 2
calls = ["a.Second"]

["a.Second"]
hidden = 3
flag = true       # a bool is no check
note = "words"    # nor is a string

["a.Second".stand_in]
init = ["d"]
layers = [["W", "Linear", ["d", "d"], {}]]

["b.third"]
example = 4
"""


@pytest.fixture
def table(tmp_path, monkeypatch):
    """The exercise table read from TABLE instead of exercises.toml."""
    path = tmp_path / "exercises.toml"
    path.write_text(TABLE)
    monkeypatch.setattr(exercises, "POINTS_FILE", path)
    items.cache_clear()
    yield
    items.cache_clear()


def test_a_table_is_read_as_written(table):
    got = items()
    assert list(got) == ["a.first", "a.Second", "b.third"]
    assert got["a.first"] == Item("a.first", {"example": 1, "hidden": 2}, ("a.Second",), None)
    assert got["a.Second"].checks == {"hidden": 3}
    assert got["a.Second"].stand_in == {"init": ["d"], "layers": [["W", "Linear", ["d", "d"], {}]]}
    assert [i.points for i in got.values()] == [3, 3, 4]
    assert [(i.module, i.name, i.kind) for i in got.values()] == [
        ("a", "first", "function"), ("a", "Second", "class"), ("b", "third", "function")]


def test_what_derives_from_a_table(table):
    assert stand_ins() == {"a.first": {"kind": "function"},
                           "a.Second": {"kind": "module", "init": ["d"], "layers": [["W", "Linear", ["d", "d"], {}]]},
                           "b.third": {"kind": "function"}}
    assert allowed_calls() == {"a.first": ["a.Second"]}
    assert [i.key for i in items_of("a")] == ["a.first", "a.Second"] and items_of("c") == []
    assert (module_points("a"), module_points("b"), module_points("c")) == (6, 4, 0)


def test_module_totals_add_up_by_module():
    assert module_totals({"a.f": 1.5, "b.g": 2, "a.h": 3}) == {"a": 4.5, "b": 2}
    assert module_totals({}) == {}


# --------------------------------------------------------------------------- the kit's own table

def test_the_kits_items_in_teaching_order():
    assert list(items()) == [
        "simplified_attention.query_scores", "simplified_attention.attention_scores",
        "simplified_attention.normalize_by_sum", "simplified_attention.softmax",
        "simplified_attention.context_vectors", "simplified_attention.simplified_self_attention",
        "self_attention.project_qkv", "self_attention.attention_scores", "self_attention.attention_weights",
        "self_attention.context_vectors", "self_attention.SelfAttention", "self_attention.SelfAttentionV2",
        "causal_attention.causal_mask", "causal_attention.mask_scores", "causal_attention.renormalize_masked",
        "causal_attention.CausalAttention",
        "multihead_attention.MultiHeadAttentionWrapper", "multihead_attention.split_heads",
        "multihead_attention.merge_heads", "multihead_attention.MultiHeadAttention"]
    assert exercises.MODULES == ("simplified_attention", "self_attention", "causal_attention", "multihead_attention")
    assert items()["causal_attention.CausalAttention"].checks == {
        "example": 2, "hidden": 3, "short_sequence": 2, "dropout": 3, "gradients": 1, "structure": 1, "seed": 1}


def test_every_function_and_the_causal_module_can_stand_in():
    got = stand_ins()
    classes = {"self_attention.SelfAttention", "self_attention.SelfAttentionV2", "causal_attention.CausalAttention",
               "multihead_attention.MultiHeadAttentionWrapper", "multihead_attention.MultiHeadAttention"}
    assert set(got) == set(items()) - classes | {"causal_attention.CausalAttention"}
    assert len(got) == 16
    assert got["causal_attention.CausalAttention"]["init"] == ["d_in", "d_out", "context_length", "dropout", "qkv_bias"]
    assert [layer[0] for layer in got["causal_attention.CausalAttention"]["layers"]] == [
        "W_query", "W_key", "W_value", "dropout"]


def test_an_item_may_call_only_other_items_that_can_stand_in():
    """What the grader answers for must exist, be something else, and know how to stand in."""
    for item, calls in allowed_calls().items():
        assert item not in calls, item
        assert set(calls) <= set(stand_ins()), (item, set(calls) - set(stand_ins()))
        assert len(calls) == len(set(calls)), item
    # a stage that would compute the item whole is never in its calls (exercises.toml says why)
    assert "simplified_attention.context_vectors" not in allowed_calls().get("self_attention.context_vectors", [])
    assert allowed_calls()["multihead_attention.MultiHeadAttentionWrapper"] == [
        "causal_attention.CausalAttention", "causal_attention.causal_mask"]


# --------------------------------------------------------------------------- the registry of checks

def test_a_check_is_priced_by_the_table_and_knows_if_it_is_public():
    softmax = "simplified_attention.softmax"  # example 1, hidden 2, stability 2
    assert [Check(softmax, k, None).points for k in ("example", "hidden", "stability", "masking")] == [1, 2, 2, 0]
    assert Check(softmax, "hidden", None).id == "simplified_attention.softmax::hidden"
    assert [Check(softmax, k, None).public for k in ("example", "hidden", "stability", "gradients")] == [
        True, False, True, False]


def test_the_decorator_records_the_function_and_marks_it_for_pytest(monkeypatch):
    monkeypatch.setattr(registry_module, "REGISTRY", [])

    def f(student):
        pass

    assert check("simplified_attention.softmax", "uniform")(f) is f
    assert registry_module.REGISTRY == [Check("simplified_attention.softmax", "uniform", f)]
    mark = next(m for m in f.pytestmark if m.name == "attnkit")
    assert mark.kwargs == {"item": "simplified_attention.softmax", "kind": "uniform"}


def test_the_registry_follows_the_table_order_then_each_items_kinds(monkeypatch):
    registry()  # the kit's checks are imported; what follows sorts a list made here
    made = [Check("x.unknown", "example", None), Check("simplified_attention.softmax", "extra", None),
            Check("simplified_attention.softmax", "stability", None), Check("self_attention.project_qkv", "example", None),
            Check("simplified_attention.softmax", "example", None), Check("simplified_attention.query_scores", "hidden", None)]
    monkeypatch.setattr(registry_module, "REGISTRY", made)
    assert [c.id for c in registry.__wrapped__()] == [
        "simplified_attention.query_scores::hidden", "simplified_attention.softmax::example",
        "simplified_attention.softmax::stability", "simplified_attention.softmax::extra",
        "self_attention.project_qkv::example", "x.unknown::example"]


def test_the_kits_registry_begins_with_the_first_items_checks():
    assert [c.id for c in registry()[:5]] == [
        "simplified_attention.query_scores::example", "simplified_attention.query_scores::hidden",
        "simplified_attention.attention_scores::example", "simplified_attention.attention_scores::hidden",
        "simplified_attention.normalize_by_sum::example"]
    assert registry()[-1].id == "multihead_attention.MultiHeadAttention::seed"
    assert sum(c.points for c in registry()) == 100
