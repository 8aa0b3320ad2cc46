"""What the grader writes for people: the terminal table and Gradescope's
results.json (``report.py``), ``feedback.html`` (``feedback.py``, with its
template) and its heatmaps (``heatmap.py``).

May import: the core and the judge's report types. Never the front ends.
"""
