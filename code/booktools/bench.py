"""``make bench``: execute every chapter cold and record its time and memory.

A measurement, not an input of the build: the table it writes,
``book/_static/benchmark.csv``, is shown on the status page and read by
nothing else (the build orders chapters by its own record of execution
times, :mod:`booktools.execute`).

First each chapter alone, in a fresh kernel, one after the other, as a
reader's first run would (the data's ``.npy`` cache aside, which a first
chapter fills): its wall time, the peak resident memory of its kernel, and
of the kernel and any process it started together (sampled every 0.2 s).
Then the whole book as ``make book`` executes it from an empty execution
cache: two chapters at a time, longest first. Last, the time of a rebuild of
the site after a prose-only edit, which must be a cache hit. The table goes
to ``book/_static/benchmark.csv``, which the status page shows, and to stdout.

    python -m booktools bench
"""

from __future__ import annotations

import csv
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from booktools.execute import chapter_workers, clear_cache, execute_notebook, execute_stale
from booktools.failures import ChapterFailed, headline
from booktools.layout import ROOT, executable_chapters, export_notebooks, source_of
from booktools.processes import descendants, signals_raise, stop

BENCHMARK = ROOT / "book" / "_static" / "benchmark.csv"

TARGETS = {"chapter_s": 120, "book_s": 300, "kernel_mb": 1024, "rebuild_s": 30}


def _tree_rss_mb(root_pid: int) -> float:
    """Resident memory of every descendant of ``root_pid``, summed, in MB."""
    total = 0.0
    for pid in descendants(root_pid):
        try:
            rss_kb = next(int(line.split()[1]) for line in
                          Path(f"/proc/{pid}/status").read_text().splitlines()
                          if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
        total += rss_kb / 1024
    return total


class PeakMemory:
    """Samples the memory of this process's descendants every 0.2 s while in a ``with`` block."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak_mb = max(self.peak_mb, _tree_rss_mb(os.getpid()))
            time.sleep(0.2)

    def __enter__(self) -> PeakMemory:
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._sampler.join()


def run_chapter(path: Path) -> tuple[float, float]:
    """Execute one notebook in a fresh kernel, as the build does; return
    (seconds, peak MB of the process tree)."""
    with PeakMemory() as memory:
        seconds = execute_notebook(path)
    return seconds, memory.peak_mb


def whole_book_cold() -> tuple[float, float]:
    """``make book``'s execution from an empty cache: (seconds, peak MB of all kernels)."""
    clear_cache()
    start = time.perf_counter()
    with PeakMemory() as memory:
        execute_stale(chapter_workers())
    return time.perf_counter() - start, memory.peak_mb


def one_chapter_main(path: str) -> None:
    """Child process: run one chapter, print 'seconds tree_mb largest_mb cpu_seconds'.

    The CPU seconds are the kernel's (user + system, all its threads): unlike the
    wall time they hardly change when other work shares the machine, so they
    tell a chapter's cost on a busy machine, and their sum over the chapters,
    divided by the cores, bounds the whole book's time from below.
    """
    try:
        with signals_raise():
            seconds, tree_mb = run_chapter(Path(path))
    except ChapterFailed as error:  # the parent shows the report: its first line names the chapter
        print(error, flush=True)
        sys.exit(FAILED)
    except BaseException:  # interrupted, or anything else: no kernel outlives this process
        stop(descendants(os.getpid()))
        raise
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    largest_mb = children.ru_maxrss / 1024
    print(f"{seconds:.2f} {tree_mb:.1f} {largest_mb:.1f} {children.ru_utime + children.ru_stime:.1f}")


def time_chapters(stems: list[str]) -> None:
    """``python -m booktools time STEM ...``: each chapter once, cold, in a fresh kernel."""
    with tempfile.TemporaryDirectory() as folder:
        paths = {p.stem: p for p in export_notebooks(Path(folder))}
        unknown = [s for s in stems if s not in paths]
        if unknown:
            sys.exit(f"no executable chapter named {', '.join(unknown)}; chapters: {', '.join(paths)}")
        for stem in stems:
            seconds, _, largest_mb, cpu = _run_in_child(paths[stem])
            print(f"{stem:28s} {seconds:7.1f} s wall  {cpu:7.1f} s CPU  {largest_mb:6.0f} MB", flush=True)


FAILED = 3  # the exit code of a child whose chapter raised; its stdout holds the report


def _run_in_child(path: Path) -> tuple[float, float, float, float]:
    """(seconds, tree MB, largest MB, CPU seconds) of one chapter run in a child process.

    A chapter that raises raises :class:`ChapterFailed` here, its report first.
    """
    with signals_raise():
        child = subprocess.Popen([sys.executable, "-m", "booktools.bench", "--one", str(path)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = child.communicate()
        except BaseException:  # interrupted: the child, its kernel and what that started stop too
            stop(descendants(os.getpid()))
            raise
    if child.returncode == FAILED:
        raise ChapterFailed(stdout.strip())
    if child.returncode != 0:  # killed, out of memory, ...: what it said last
        raise ChapterFailed(f"{headline(path, None, f'its process exited with code {child.returncode}')}"
                            f"\n{stderr[-3000:]}")
    seconds, tree_mb, largest_mb, cpu = map(float, stdout.split()[-4:])
    return seconds, tree_mb, largest_mb, cpu


def rebuild_after_prose_edit() -> float:
    """Seconds for ``jupyter-book build`` after a prose-only edit of one chapter."""
    build = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT),
             "--builder", "html", "-n", "-W", "--keep-going"]
    subprocess.run(build, check=True, capture_output=True)  # every chapter is cached: no execution
    source = source_of(executable_chapters()[0])
    original = source.read_text()
    try:
        source.write_text(original + "\nA sentence added by `make bench`.\n")
        start = time.perf_counter()
        subprocess.run(build, check=True, capture_output=True)
        return time.perf_counter() - start
    finally:
        source.write_text(original)


def machine() -> str:
    """The processor the times were measured on: the same code runs twice as fast on some
    2-core machines as on others, so a time means little without it."""
    info: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    name = info.get("model name", "unknown processor")
    family = f" (family {info['cpu family']}, model {info['model']})" if "cpu family" in info else ""
    return f"measured on: {os.cpu_count()} cores, {name}{family}"


def write_table(rows: list[dict]) -> None:
    BENCHMARK.parent.mkdir(parents=True, exist_ok=True)
    with BENCHMARK.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["chapter", "wall time (s)", "largest process (MB)", "all processes (MB)"])
        writer.writerows([r["chapter"], f"{r['seconds']:.1f}"]
                         + [f"{r[k]:.0f}" if r[k] is not None else "" for k in ("peak_mb", "peak_tree_mb")]
                         for r in rows)
        writer.writerow([machine(), "", "", ""])


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for path in export_notebooks(Path(folder)):
            seconds, tree_mb, largest_mb, _ = _run_in_child(path)
            rows.append({"chapter": path.stem, "seconds": seconds,
                         "peak_mb": largest_mb, "peak_tree_mb": tree_mb})
            print(f"{path.stem:28s} {seconds:7.1f} s  largest process {largest_mb:6.0f} MB"
                  f"  all processes {tree_mb:6.0f} MB", flush=True)
    total = sum(r["seconds"] for r in rows)
    slowest = max(rows, key=lambda r: r["seconds"])
    largest = max(r["peak_mb"] for r in rows)
    rows.append({"chapter": "every chapter, one at a time (sum)", "seconds": total,
                 "peak_mb": largest, "peak_tree_mb": max(r["peak_tree_mb"] for r in rows)})
    write_table(rows)  # the status page shows this table, so the builds below need it
    book_s, book_mb = whole_book_cold()
    rows.append({"chapter": f"whole book as make book runs it ({chapter_workers()} at a time)",
                 "seconds": book_s,
                 "peak_mb": None, "peak_tree_mb": book_mb})
    print(f"{'whole book, as make book runs it':28s} {book_s:7.1f} s  "
          f"all processes {book_mb:6.0f} MB", flush=True)
    write_table(rows)
    rebuild = rebuild_after_prose_edit()
    rows.append({"chapter": "rebuild after a prose-only edit", "seconds": rebuild,
                 "peak_mb": None, "peak_tree_mb": None})
    write_table(rows)
    print(f"\nwhole book {book_s:.0f} s (target {TARGETS['book_s']}; one chapter at a time "
          f"{total:.0f} s), slowest chapter "
          f"{slowest['chapter']} {slowest['seconds']:.0f} s (target {TARGETS['chapter_s']}), "
          f"largest process {largest:.0f} MB (target {TARGETS['kernel_mb']}), "
          f"prose-only rebuild {rebuild:.0f} s (target {TARGETS['rebuild_s']})")
    print(f"written to {BENCHMARK}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        one_chapter_main(sys.argv[2])
    else:
        main()
