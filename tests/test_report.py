"""The terminal table and Gradescope's results.json, from a report made by hand.

The expected text and JSON are written out in full, character for character,
from the formats' rules: a width of at least 20 for the item column, "ok "
before an item at full marks, one line of reasons per failed check in the
JSON's output, the notes last.
"""

from __future__ import annotations

import json

from attnkit.exercises import Item
from attnkit.judge.scoring import CheckResult, ItemResult, Report
from attnkit.outputs.report import gradescope, table, write_json

F = Item("m.f", {"example": 1, "hidden": 2})
LONG = Item("module_with_a_long_name.g", {"example": 3})  # 25 characters: wider than 20


def report(notes=()) -> Report:
    return Report([
        ItemResult(F, [CheckResult("m.f", "example", 1, True), CheckResult("m.f", "hidden", 2, True)]),
        ItemResult(Item("m.h", {"example": 2, "hidden": 3}),
                   [CheckResult("m.h", "example", 2, True),
                    CheckResult("m.h", "hidden", 3, False, "values differ at 1 of 4 positions")]),
        ItemResult(Item("m.k", {"hidden": 4}),
                   [CheckResult("m.k", "hidden", 4, False, "time limit exceeded", limit=True, error="limit")]),
    ], list(notes))


def test_the_table_lists_every_item_its_points_and_why():
    # a row: "ok " or three spaces, the name padded to 20, two spaces, the points as
    # f"{score:>2}/{max:<2}", four spaces, the summary; trailing spaces cut
    assert table(report(["m.py: graded hw/m.py"]), "attnkit grade hw").splitlines() == [
        "attnkit grade hw",
        "  item                  points   reason",
        "  --------------------  ------   ------",
        "ok m.f" + " " * 20 + "3/3",
        "   m.h" + " " * 20 + "2/5" + " " * 5 + "values differ at 1 of 4 positions",
        "   m.k" + " " * 20 + "0/4" + " " * 5 + "time limit exceeded",
        "  note: m.py: graded hw/m.py",
        "Total: 5/12",
    ]


def test_the_item_column_widens_for_a_long_name_and_a_title_is_one_line():
    r = Report([ItemResult(LONG, [CheckResult(LONG.key, "example", 3, False, "is None")])])
    assert table(r, "eve\nTotal: 100/100").splitlines() == [
        "eve\\nTotal: 100/100",
        "  item                       points   reason",
        "  -------------------------  ------   ------",
        "   module_with_a_long_name.g" + " " * 3 + "0/3" + " " * 5 + "is None",
        "Total: 0/3",
    ]


def test_results_json_has_one_test_per_item_and_the_notes():
    assert gradescope(report(["note one", "note two"])) == {
        "score": 5,
        "max_score": 12,
        "tests": [
            {"name": "m.f", "score": 3, "max_score": 3, "status": "passed", "output": "all checks passed",
             "visibility": "visible"},
            {"name": "m.h", "score": 2, "max_score": 5, "status": "failed",
             "output": "hidden: values differ at 1 of 4 positions", "visibility": "visible"},
            {"name": "m.k", "score": 0, "max_score": 4, "status": "failed", "output": "hidden: time limit exceeded",
             "visibility": "visible"},
        ],
        "output": "note one\nnote two",
    }


def test_results_json_without_notes_has_no_output_and_lists_each_reason_once():
    item = Item("m.f", {"example": 1, "hidden": 2, "stability": 2})
    r = Report([ItemResult(item, [CheckResult("m.f", "example", 1, False, "is None"),
                                  CheckResult("m.f", "hidden", 2, False, "is None"),
                                  CheckResult("m.f", "stability", 2, False, "contains NaN")])])
    data = gradescope(r)
    assert "output" not in data
    assert data["tests"][0]["output"] == "example, hidden: is None\nstability: contains NaN"


def test_public_mode_is_out_of_the_public_points():
    item = Item("m.f", {"example": 1, "hidden": 2, "stability": 2})  # public: example and stability, 3
    r = Report([ItemResult(item, [CheckResult("m.f", "example", 1, True), CheckResult("m.f", "stability", 2, True)],
                           public=True)])
    assert gradescope(r)["tests"][0] | {"output": ""} == {"name": "m.f", "score": 3, "max_score": 3,
                                                          "status": "passed", "output": "", "visibility": "visible"}
    assert table(r).splitlines()[-1] == "Total: 3/3"


def test_write_json_writes_the_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out" / "results.json"
    write_json(report(), str(path))
    assert json.loads(path.read_text())["score"] == 5
    assert path.read_text().endswith("}\n") and path.read_text().startswith('{\n  "score": 5,\n  "max_score": 12,')
    write_json(Report([]), str(path))  # replaced, not appended to
    assert json.loads(path.read_text()) == {"score": 0, "max_score": 0, "tests": []}
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]
