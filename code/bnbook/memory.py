"""Keep a kernel's memory near what it holds: the C allocator's side of training many models.

TensorFlow allocates its buffers with the C library's ``malloc``. Two habits
of glibc's allocator make a kernel that trains model after model, in
several threads, look far larger than what it holds:

* every thread that allocates gets a heap (an *arena*) of its own, up to
  eight per core, and memory freed into one arena serves only that arena;
* freed memory goes back to the system only from the top of a heap.

:func:`limit_arenas` caps the arenas (:func:`bnbook.notebook.start` calls
it, before any thread trains); :func:`release_memory` collects Python's
garbage and hands every free page back (:func:`bnbook.sweeps.run_sweep`
calls it between experiments). Neither changes a number a model computes.
Elsewhere than glibc (macOS, musl) both do nothing and return ``False``.
"""

from __future__ import annotations

import ctypes
import functools
import gc

__all__ = ["limit_arenas", "release_memory"]

#: ``mallopt`` parameter number of ``M_ARENA_MAX`` in glibc's ``malloc.h``.
_M_ARENA_MAX = -8


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim, libc.mallopt   # noqa: B018 - both exist only in glibc
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(arenas: int = 2) -> bool:
    """Let threads share at most ``arenas`` heaps (default 2); return whether it took
    effect.

    Affects the threads that allocate for the first time afterwards, so call
    it early, before threads start to allocate. Threads then wait for each
    other's heap now and then; in the replication chapter, which trains in
    threads, that cost no measurable time and lowered the kernel's peak memory
    by about 40 MB.
    """
    if arenas < 1:
        raise ValueError(f"arenas must be at least 1, got {arenas}")
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(_M_ARENA_MAX, int(arenas)))


def release_memory() -> bool:
    """Collect Python's garbage, then hand the C heap's free pages back to the system.

    A finished model's buffers go back to the C allocator, which keeps them
    for later; glibc's ``malloc_trim(0)`` returns every free page, so that a
    kernel that trains model after model peaks near what it holds, not near
    what it once held. Returns whether the trim ran.
    """
    gc.collect()
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
