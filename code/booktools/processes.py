"""The processes a build starts: find them under a parent, stop them, and turn signals into an exception.

Chapters execute in worker processes, and each worker starts a Jupyter
kernel in a session of its own (``jupyter_client`` does, so that Ctrl-C in a
terminal does not reach the kernel). A kernel's parent is still its worker,
so walking ``/proc`` from the build's process finds every one of them, and
stopping that list leaves nothing behind when a build is interrupted::

    with signals_raise():          # SIGINT and SIGTERM raise Interrupted here
        ...
    stop(descendants(os.getpid()))  # SIGTERM, then SIGKILL after a grace period

Linux only (``/proc``), as the rest of the build.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Interrupted(Exception):
    """The build received SIGINT or SIGTERM; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process a signal ended (130, 143)."""
        return 128 + self.signum


def _children() -> dict[int, list[int]]:
    """``{parent pid: [child pids]}`` of every process on the machine, from ``/proc/<pid>/stat``."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return children


def descendants(root_pid: int) -> list[int]:
    """Every process below ``root_pid`` (children, their children, ...), parents first."""
    children = _children()
    found, queue = [], list(children.get(root_pid, []))
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue += children.get(pid, [])
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, finished but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _signal(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def stop(pids: list[int], grace_s: float = 5.0) -> list[int]:
    """SIGTERM to ``pids``, SIGKILL to those still running after ``grace_s``; return those killed."""
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    stubborn = [p for p in pids if alive(p)]
    _signal(stubborn, signal.SIGKILL)
    return stubborn


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def _signals_handled_by(handler: Any) -> Iterator[None]:
    """SIGINT and SIGTERM go to ``handler`` inside the block (main thread only: elsewhere
    signals cannot be handled, and the block changes nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def signals_raise() -> contextlib.AbstractContextManager[None]:
    """Inside the block, SIGINT and SIGTERM raise :class:`Interrupted`."""
    return _signals_handled_by(_raise_interrupted)


def signals_ignored() -> contextlib.AbstractContextManager[None]:
    """Inside the block, SIGINT and SIGTERM are ignored (while stopping what an interrupt stops)."""
    return _signals_handled_by(signal.SIG_IGN)
