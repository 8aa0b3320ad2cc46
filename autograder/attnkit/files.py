"""Writing files so that a reader sees the old or the new content, never half."""

from __future__ import annotations

import os
import tempfile


def write_atomic(path: str, text: str) -> None:
    """Write to a temporary file next to ``path``, then rename it over ``path``.

    No fsync: the runs this protects against are killed processes (SIGKILL,
    Ctrl-C), after which the kernel still holds every byte written; fsync only
    matters for a power cut and costs milliseconds per student."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
