"""Which attnkit this is: the whole kit, or the public checker of a handout.

``attnkit handout`` replaces this file in its copy of the package by one that
says ``"checker"``; the command line offers there only what can work without
the kit's repository and its reference solutions (``cli.COMMANDS``).
"""

EDITION = "kit"
