"""bnbook.memory: fewer C heaps, freed pages handed back (glibc only)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from bnbook.memory import limit_arenas, release_memory

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")


def _resident_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


@linux_only
def test_release_memory_hands_freed_heap_pages_back_to_the_system() -> None:
    """Small blocks freed below a live one stay in the C heap until it is trimmed."""
    blocks = [bytearray(4096) for _ in range(50_000)]   # 200 MB from the C heap
    last = blocks[-1]                                   # keeps the heap's top in use
    del blocks
    before = _resident_mb()
    assert release_memory() is True
    assert _resident_mb() < before - 100, "the freed 200 MB should have left the process"
    assert len(last) == 4096


def _arenas_after_four_threads(limit: int | None) -> int:
    """Run four allocating threads in a fresh process; count the heaps glibc reports."""
    script = textwrap.dedent(f"""
        import ctypes, threading
        from bnbook.memory import limit_arenas
        if {limit!r} is not None:
            assert limit_arenas({limit!r})
        def work():
            blocks = [bytearray(2048) for _ in range(2000)]
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        ctypes.CDLL("libc.so.6").malloc_stats()
    """)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=True)
    return child.stderr.count("Arena ")


@linux_only
def test_limit_arenas_makes_threads_share_the_heaps() -> None:
    assert _arenas_after_four_threads(None) > 1     # glibc's default: a heap per thread
    assert _arenas_after_four_threads(1) == 1


def test_limit_arenas_refuses_zero() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        limit_arenas(0)
