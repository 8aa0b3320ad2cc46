"""The ways in: the command line (``cli.py``), class grading (``classgrade.py``, with
``classjobs.py`` and ``classfiles.py``),
the Gradescope bundle (``gradescope.py``), the public checker (``check.py``),
the pytest integrations (``pytest_plugin.py`` for instructors,
``student_view.py`` for students), nbgrader's tree and grading helper.

May import anything; nothing imports them.
"""
