"""What runs inside a student's notebook kernel: a test cell's ``score()``
(``notebook.py``) and the notebooks' pictures (``plots.py``).

The kernel is the student's: nothing here trusts it. ``score()`` grades the
saved notebook outside the kernel (a worker of the sandbox, or the nbgrader
grading helper) and returns a plain number.

May import: the core, ``intake``, the judge and ``sandbox``.
"""
