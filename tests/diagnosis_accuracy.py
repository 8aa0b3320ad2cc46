"""How well the diagnosis names the mistakes the test suite makes.

    python tests/diagnosis_accuracy.py

Grades every distinct wrong submission of tests/test_diagnosis.py,
tests/test_wrong_submissions.py and tests/test_words.py (one module each,
one shared worker) and sorts the item that carries the mistake into:

- named right: the misconception the test expects is named, and no other;
- facts: no misconception named (the reason says what differs, where);
  counted apart where the test expects the facts;
- named wrong: a misconception other than the expected one is named, or one
  is named where the test expects the facts.

The expected names are the tests' own, written by hand there.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import grade_folder, make_submission  # noqa: E402


def cases() -> dict[tuple, tuple[str, str, str | None, bool]]:
    """(module, edits) -> (label, item, expected entry id or None, public)."""
    import test_diagnosis
    import test_wrong_submissions
    import test_words

    out: dict[tuple, tuple[str, str, str | None, bool]] = {}
    for entry_id, rows in test_diagnosis.CASES.items():
        for n, (module, edits, item, _) in enumerate(rows):
            out[(module, tuple(edits), False)] = (f"diagnosis:{entry_id}-{n}", item, entry_id, False)
    for name, (edits, changed, named) in test_wrong_submissions.CASES.items():
        ((module, module_edits),) = edits.items()
        (item,) = changed
        out.setdefault((module, tuple(module_edits), False), (f"wrong:{name}", item, named, False))
    for name, w in test_words.WORDS.items():
        out.setdefault((w.module, tuple(w.edits), w.public), (f"words:{name}", w.item, w.named, w.public))
    return out


def main() -> int:
    from attnkit.sandbox import Zygote

    zygote = Zygote()
    tally = {"named right": 0, "facts, as expected": 0, "facts, a name was expected": 0, "named wrong": 0}
    lines = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n, ((module, edits, _), (label, item, expected, public)) in enumerate(cases().items()):
                folder = make_submission(Path(tmp) / str(n), {module: list(edits)})
                result = grade_folder(zygote, folder, (module,), public=public).by_item()[item]
                named = {c.diagnosis for c in result.checks if not c.passed and c.diagnosis}
                if not named:
                    verdict = "facts, as expected" if expected is None else "facts, a name was expected"
                elif named == {expected}:
                    verdict = "named right"
                else:
                    verdict = "named wrong"
                tally[verdict] += 1
                lines.append(f"{verdict:28} {label:55} {', '.join(sorted(named)) or '-'}")
    finally:
        zygote.close()
    print("\n".join(sorted(lines)))
    total = sum(tally.values())
    facts = tally["facts, as expected"] + tally["facts, a name was expected"]
    print(f"\n{total} distinct mistakes: named right {tally['named right']} / facts {facts} "
          f"({tally['facts, as expected']} as expected, {tally['facts, a name was expected']} where a name "
          f"was expected) / named wrong {tally['named wrong']}")
    return 1 if tally["named wrong"] else 0


if __name__ == "__main__":
    sys.exit(main())
