"""Which runner grades on this machine: the fork runner where Linux and fork
are there (``forking.ForkZygote``), the portable one elsewhere or when asked for
(``portable.PortableZygote``); ``contract.runner`` decides."""

from __future__ import annotations

from attnkit.sandbox.contract import runner
from attnkit.sandbox.forking import ForkZygote
from attnkit.sandbox.portable import PortableZygote


def Zygote(*args, **kwargs) -> ForkZygote:  # noqa: N802 - used like the class it returns
    """The warm worker for this machine, behind one interface."""
    cls = PortableZygote if runner()[0] == "portable" else ForkZygote
    return cls(*args, **kwargs)
