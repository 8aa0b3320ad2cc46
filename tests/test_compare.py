"""judge/compare.py, in-process on hand-written tensors: what passes, what fails,
and the exact words of each failure. No sandbox: the values are made here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnkit.errors import CheckFailure
from attnkit.judge import compare
from attnkit.judge.diagnosis import Call
from attnkit.sandbox.protocol import Foreign

F64 = torch.float64


def failure(actual, expected, **kw) -> CheckFailure:
    with pytest.raises(CheckFailure) as raised:
        compare.close(actual, expected, **kw)
    return raised.value


# --------------------------------------------------------------------------- not a tensor

@pytest.mark.parametrize("value, reason", [
    (None, "the result is None; is a `return` missing?"),
    ([1.0, 2.0], "the result is a list; a torch.Tensor was due (torch.stack or torch.tensor builds one)"),
    ((1.0,), "the result is a tuple; a torch.Tensor was due (torch.stack or torch.tensor builds one)"),
    (3, "the result is a int; a torch.Tensor was due"),
    (Foreign("builtins.object"), "the result is a builtins.object; a torch.Tensor was due"),
])
def test_what_is_no_tensor_is_named(value, reason):
    with pytest.raises(CheckFailure) as raised:
        compare.tensor(value)
    assert raised.value.reason == reason and raised.value.diagnosis == ""


def test_a_numpy_array_is_a_named_mistake_with_the_plain_facts_kept():
    with pytest.raises(CheckFailure) as raised:
        compare.tensor(Foreign("numpy.ndarray", np.zeros(2)), "the weights")
    assert raised.value.diagnosis == "returns_numpy"
    assert raised.value.reason.startswith("the weights is a numpy.ndarray: return a torch.Tensor")
    assert raised.value.facts == "the weights is a numpy.ndarray; a torch.Tensor was due"


def test_a_tensor_comes_back_as_it_is():
    t = torch.ones(2)
    assert compare.tensor(t) is t


# --------------------------------------------------------------------------- close

def test_equal_values_pass_and_come_back_unchanged():
    t = torch.tensor([[0.5, 0.25], [1.0, -2.0]], dtype=F64)
    assert compare.close(t, t.clone()) is t


def test_the_shape_is_never_reshaped_to_fit():
    f = failure(torch.zeros(2, 3, dtype=F64), torch.zeros(3, 2, dtype=F64))
    assert f.reason == "the result has shape (2, 3); expected (3, 2)"
    f = failure(torch.zeros(1, 4, dtype=F64), torch.zeros(4, dtype=F64), what="the scores")
    assert f.reason == "the scores has shape (1, 4); expected (4,)"


def test_hidden_tolerance_is_one_part_in_a_million():
    """atol 1e-9 + rtol 1e-6 * |expected|: at 1000, 1e-3 is the edge."""
    expected = torch.tensor([1000.0, 1.0], dtype=F64)
    compare.close(torch.tensor([1000.0009, 1.0000009], dtype=F64), expected)
    f = failure(torch.tensor([1000.0011, 1.0], dtype=F64), expected)
    assert f.reason == ("the result: values differ at 1 of 2 positions (shape (2,)); the largest difference is at "
                        "[0]: expected 1000, got 1000")
    assert f.details == "position | expected | yours\n[0] | 1000 | 1000"


def test_doc_tolerance_is_half_of_the_fourth_decimal():
    expected = torch.tensor([0.1234], dtype=torch.float32)
    compare.close(torch.tensor([0.12345], dtype=torch.float32), expected, atol=compare.DOC_ATOL, rtol=0.0)
    f = failure(torch.tensor([0.1235], dtype=torch.float32), expected, atol=compare.DOC_ATOL, rtol=0.0)
    assert "values differ at 1 of 1 positions" in f.reason and "expected 0.1234, got 0.1235" in f.reason


def test_the_worst_position_is_named_and_the_first_six_are_listed():
    expected = torch.arange(12, dtype=F64).reshape(3, 4)
    actual = expected.clone()
    actual[0, 1] += 0.5
    actual[2, 3] += 7.0  # the largest difference
    actual[1, 0] -= 1.0
    f = failure(actual, expected)
    assert f.reason == ("the result: values differ at 3 of 12 positions (shape (3, 4)); the largest difference is at "
                        "[2, 3]: expected 11, got 18")
    assert f.details.splitlines() == ["position | expected | yours", "[0, 1] | 1 | 1.5", "[1, 0] | 4 | 3",
                                      "[2, 3] | 11 | 18"]
    many = failure(expected + 1, expected)
    assert len(many.details.splitlines()) == 1 + 6


def test_nan_fails_where_the_expected_value_is_none():
    f = failure(torch.tensor([[1.0, float("nan")], [0.0, 0.0]], dtype=F64), torch.zeros(2, 2, dtype=F64))
    assert f.reason == "the result contains NaN at 1 of 4 positions (first at [0, 1])"


def test_the_same_bits_pass_but_nan_never_does_even_where_expected_has_it():
    x = torch.tensor([[1.0, -float("inf")], [0.25, 3.0]], dtype=F64)
    assert compare.close(x.clone(), x) is not None
    with_nan = torch.tensor([1.0, float("nan")], dtype=F64)
    assert failure(with_nan.clone(), with_nan).reason.startswith("the result: values differ at 1 of 2 positions")


def test_infinities_must_sit_exactly_where_expected():
    inf = float("inf")
    expected = torch.tensor([-inf, 0.5, inf], dtype=F64)
    compare.close(torch.tensor([-inf, 0.5, inf], dtype=F64), expected)
    f = failure(torch.tensor([-1e30, 0.5, inf], dtype=F64), expected)
    assert "values differ at 1 of 3 positions" in f.reason and "at [0]: expected -inf, got -1e+30" in f.reason
    f = failure(torch.tensor([-inf, inf, inf], dtype=F64), expected)
    assert "at [1]: expected 0.5, got inf" in f.reason


def test_a_dtype_change_alone_says_the_values_agree():
    f = failure(torch.tensor([0.5, 0.25], dtype=torch.float32), torch.tensor([0.5, 0.25], dtype=F64))
    assert f.reason == "the result has dtype torch.float32; expected torch.float64 (the values agree)"
    assert f.diagnosis == ""  # without the call, nothing says the inputs had float64 to keep


def test_a_dtype_change_from_float64_inputs_is_named():
    x = torch.tensor([0.5, 0.25], dtype=F64)
    f = failure(x.float(), x.clone(), call=Call("simplified_attention.normalize_by_sum", (x,)))
    assert f.diagnosis == "dtype_changed"
    assert f.reason.startswith("the result has dtype torch.float32; expected torch.float64, the dtype of the inputs: "
                               "a tensor created inside")
    assert f.facts == "the result has dtype torch.float32; expected torch.float64 (the values agree)"


def test_a_dtype_change_with_other_values_says_both():
    f = failure(torch.tensor([0.5, 0.75], dtype=torch.float32), torch.tensor([0.5, 0.25], dtype=F64))
    assert f.reason == ("the result has dtype torch.float32; expected torch.float64, and its values differ: "
                        "values differ at 1 of 2 positions (shape (2,)); the largest difference is at [1]: "
                        "expected 0.25, got 0.75")


def test_masks_compare_exactly_and_a_right_pattern_of_ints_is_named():
    expected = torch.tensor([[False, True], [False, False]])
    compare.close(expected.clone(), expected)
    f = failure(torch.tensor([[False, False], [False, False]]), expected)
    assert "values differ at 1 of 4 positions" in f.reason and "[0, 1]: expected 1, got 0" in f.reason
    f = failure(torch.tensor([[0, 1], [0, 0]]), expected, what="the mask")
    assert f.diagnosis == "mask_not_bool" and f.reason.startswith("the mask holds the right pattern as torch.int64")
    f = failure(torch.tensor([[1, 1], [0, 0]]), expected)
    assert f.diagnosis == "" and f.reason.startswith("the result has dtype torch.int64; expected torch.bool, and")


def test_matches_doc_reads_the_document():
    """s3_3_1_attn_scores_2 is printed as tensor([0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865])."""
    printed = torch.tensor([0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865])
    compare.matches_doc(printed, "s3_3_1_attn_scores_2")
    off = printed.clone()
    off[5] = 1.0867
    with pytest.raises(CheckFailure, match=r"at \[5\]: expected 1.0865, got 1.0867"):
        compare.matches_doc(off, "s3_3_1_attn_scores_2")


# --------------------------------------------------------------------------- arguments left alone

def test_an_argument_changed_in_place_is_named():
    before = (torch.tensor([1.0, float("nan")]), torch.tensor([2.0]), 3)
    compare.unchanged(before, (torch.tensor([1.0, float("nan")]), torch.tensor([2.0]), 4), ("a", "b", "n"))
    with pytest.raises(CheckFailure) as raised:
        compare.unchanged(before, (before[0], torch.tensor([0.0]), 3), ("a", "b", "n"))
    assert raised.value.diagnosis == "modifies_input_in_place"
    assert raised.value.reason.startswith("modifies its argument `b` in place: the caller still needs the original")
    with pytest.raises(CheckFailure, match="`a`"):
        compare.unchanged(before, (torch.tensor([1.0, float("nan"), 0.0]), before[1], 3), ("a", "b", "n"))


def test_near_one_shows_the_digits_that_differ_from_one():
    assert compare.near_one(torch.tensor([1.0, 1.0])) == "1"
    assert compare.near_one(torch.tensor([0.5, 2.0])) == "0.5 .. 2"
    assert compare.near_one(torch.tensor([1.000000001], dtype=F64)) == "1.000000001"


def test_what_a_returned_value_is_is_said_in_the_students_words():
    """A generator the child could only describe is "generator", not the
    grader's Foreign; a tuple says how many items it holds."""
    from attnkit.sandbox.protocol import Foreign

    assert compare.kind(Foreign("builtins.generator")) == "generator"
    assert compare.kind(Foreign("numpy.ndarray")) == "numpy.ndarray"
    assert compare.kind((1, 2)) == "tuple of 2" and compare.kind([]) == "list of 0"
    assert compare.kind(None) == "NoneType"
