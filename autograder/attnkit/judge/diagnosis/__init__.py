"""Naming the mistake behind a wrong answer.

Checks compare the student's answers and say the facts of a difference;
``compare.close`` records every comparison that knows its call
(``evidence``), and a probe may propose a catalogued misconception
(``catalogue.finding``). Once all the checks of an item have run, the grading
loop asks ``conclude``: it recomputes the catalogue's known-wrong variants on
the very same inputs, here in the grader process, and names a misconception
only when it fits every case of the item and no other entry does. Either way
the facts stay in the details, and items that produce attention weights or a
mask carry expected/actual pictures.
"""

from __future__ import annotations

from attnkit.judge.diagnosis.call import Call
from attnkit.judge.diagnosis.catalogue import BY_ID, ENTRIES, finding, reason
from attnkit.judge.diagnosis.conclude import conclude
from attnkit.judge.diagnosis.evidence import Case, collecting, record

__all__ = ["Call", "Case", "ENTRIES", "BY_ID", "reason", "finding", "conclude", "collecting", "record"]
