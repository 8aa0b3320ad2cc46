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
    try:
        with open(f"/proc/{machine_zygote.proc.pid}/smaps_rollup") as f:
            rollup = f.read()
    except OSError as exc:  # the worker is another user's here, or already gone
        pytest.skip(f"the worker's memory map is not readable here ({exc})")
    huge_kib = int(re.search(r"^AnonHugePages:\s+(\d+) kB", rollup, re.M)[1])
    anon_kib = int(re.search(r"^Anonymous:\s+(\d+) kB", rollup, re.M)[1])
    # torch's import leaves most of the heap in a few large blocks: about 80 of
    # 145 MiB here; 4 KiB pages only, without the setting
    assert huge_kib >= anon_kib // 4, rollup
