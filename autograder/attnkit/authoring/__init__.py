"""What kit developers and instructors generate from the reference solutions:
``attnkit build`` (stubs, public example data, notebooks, the README's points
table), ``course`` (an nbgrader course), ``handout`` (the self-study folder and
its checker's wheel).

May import: the core, ``intake``, the judge and the outputs. Never the front ends.
"""
