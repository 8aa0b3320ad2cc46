"""The warm worker's heap lives in huge pages where the machine has them.

Each child is a fork of the worker; a fork copies, and the child's exit frees,
one page-table entry per page the two share. With the heap in 2 MiB pages
(glibc's ``glibc.malloc.hugetlb=1``, set by ``ForkZygote``) there are some
500 times fewer (README, *Speed*, for what it saves)."""

import os
import re
import sys

import pytest

from attnkit.sandbox import forking

THP = "/sys/kernel/mm/transparent_hugepage/enabled"


def _glibc() -> tuple[int, int]:
    try:
        found = re.fullmatch(r"glibc (\d+)\.(\d+).*", os.confstr("CS_GNU_LIBC_VERSION") or "")
    except (AttributeError, ValueError, OSError):
        found = None
    return (int(found[1]), int(found[2])) if found else (0, 0)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _rollup(pid: int) -> tuple[int, int] | None:
    """A process's own memory and how much of it is in huge pages, in KiB."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            rollup = f.read()
    except OSError:  # another user's here, or gone
        return None
    anon = re.search(r"^Anonymous:\s+(\d+) kB", rollup, re.M)
    huge = re.search(r"^AnonHugePages:\s+(\d+) kB", rollup, re.M)
    return (int(anon[1]), int(huge[1])) if anon and huge else None


def _huge_pages_offered() -> bool:
    try:
        with open(THP) as f:
            return "[never]" not in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork runner is Linux's")
@pytest.mark.skipif(_glibc() < (2, 35), reason="glibc's malloc takes huge pages from 2.35 on")
@pytest.mark.skipif(not _huge_pages_offered(), reason="this kernel offers no transparent huge pages")
def test_the_warm_workers_heap_is_in_huge_pages(machine_zygote):
    if not isinstance(machine_zygote, forking.ForkZygote):
        pytest.skip("the portable runner forks nothing")
    machine_zygote.ready()  # torch imported and warmed up: the heap a child shares
    # Without root the worker is a child of the process started, inside the PID
    # namespace that process made (confine.enter_worker_namespaces): the larger one.
    started = machine_zygote.proc.pid
    rollups = [_rollup(pid) for pid in [started, *_children(started)]]
    rollups = [r for r in rollups if r is not None]
    if not rollups:
        pytest.skip("the worker's memory map is not readable here")
    anon_kib, huge_kib = max(rollups)
    # torch's import leaves most of the heap in a few large blocks: about 80 of
    # 145 MiB here; 4 KiB pages only, without the setting
    assert huge_kib >= anon_kib // 4, (anon_kib, huge_kib)
