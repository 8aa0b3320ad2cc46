"""``python -m attnkit``: the command line (``frontends/cli.py``)."""

from attnkit.frontends.cli import run

run()
