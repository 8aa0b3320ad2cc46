"""Hostile inputs for intake: malformed notebooks and folders that are not what they seem.

Each malformed notebook is valid in one respect and wrong in another, as an
attacker (or a broken editor) would make it. ``MALFORMED`` maps a name to the
notebook's bytes and to whether its module can still be graded in part (a
bad cell costs that cell) or not at all (the file cannot be read as a notebook).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

from notebook_samples import source_notebook

S = "simplified_attention"
DEEP = 100_000


def _with_cell(edit) -> bytes:
    nb = copy.deepcopy(source_notebook(S))
    for cell in nb["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "softmax":
            edit(nb, cell)
            break
    return json.dumps(nb).encode()


def _cell_is_a_string(nb, cell):
    nb["cells"][nb["cells"].index(cell)] = "def softmax(scores, dim=-1):\n    return scores\n"


def _metadata_is_a_list(nb, cell):
    cell["metadata"] = ["nbgrader", {"grade_id": "softmax", "solution": True}]


def _source_of_ints(nb, cell):
    cell["source"] = [1, 2, 3]


def _deep_expression(nb, cell):
    cell["source"] = "def softmax(scores, dim=-1):\n    return " + "-" * DEEP + "scores\n"


def _deep_attribute_chain(nb, cell):
    cell["source"] = "def softmax(scores, dim=-1):\n    return scores" + ".T" * DEEP + "\n"


def _grade_id_is_a_list(nb, cell):
    cell["metadata"]["nbgrader"]["grade_id"] = [[["softmax"]]]


# name -> (bytes, graded in part: True when only a cell is lost, False when the whole notebook is)
MALFORMED: dict[str, tuple[bytes, bool]] = {
    "deep_nesting": (b'{"cells": ' + b"[" * DEEP + b"]" * DEEP + b"}", False),
    "top_level_list": (b"[1, 2, 3]", False),
    "cells_not_a_list": (b'{"cells": {"a": 1}}', False),
    "invalid_utf8": (b'{"cells": [], "x": "\xff\xfe\xfd"}', False),
    "not_json": (b"{not json", False),
    "cell_is_a_string": (_with_cell(_cell_is_a_string), True),
    "metadata_is_a_list": (_with_cell(_metadata_is_a_list), True),
    "source_of_ints": (_with_cell(_source_of_ints), True),
    "deep_expression": (_with_cell(_deep_expression), True),
    "deep_attribute_chain": (_with_cell(_deep_attribute_chain), True),
    "grade_id_is_a_list": (_with_cell(_grade_id_is_a_list), True),
}


def huge_notebook(path: Path, size: int) -> Path:
    """A sparse file of ``size`` bytes: costs no disk, and must never be read."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def sparse(path: Path, size: int = 64 << 30) -> Path:
    return huge_notebook(path, size)


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path
