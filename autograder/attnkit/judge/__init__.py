"""The judge: everything that decides a grade, in the grader's process.

The engine (``engine.py``) grades a ``Submission`` in the sandbox; the checks
(``checks/``, registered by ``registry.py``) ask the student's code through
``student.py`` and compare (``compare.py``) with the reference
(``reference.py``); ``diagnosis/`` names mistakes, ``scoring.py`` turns
outcomes into points, ``integrity.py`` flags what an instructor should look at.

May import: the core (``exercises``, ``config``, ``errors``, ``text``),
``intake`` and ``sandbox``. Never the outputs, the kernel, authoring or the
front ends.
"""
