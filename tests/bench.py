"""``make bench``: execute every chapter cold and record its time and memory.

Each chapter runs in a fresh kernel, one after the other, as a reader's
first run would (the data's ``.npy`` cache aside, which a first chapter fills).
Recorded per chapter: wall time; the peak resident memory of the largest
process (the kernel, or a worker it started); and the peak of the kernel and
its workers together, sampled every 0.2 s. Then the time of a rebuild of the
site after a prose-only edit, which must be a cache hit. The table goes to
``book/_static/benchmark.csv``, which the status page shows, and to stdout.

    python tests/bench.py
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

import nbclient
import nbformat

from book_layout import ROOT, executable_chapters, export_notebooks, source_of

TABLE = ROOT / "book" / "_static" / "benchmark.csv"
TARGETS = {"chapter_s": 120, "book_s": 300, "kernel_mb": 1024, "rebuild_s": 30}


def _tree_rss_mb(root_pid: int) -> float:
    """Resident memory of every descendant of ``root_pid``, summed, in MB."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0.0, list(children.get(root_pid, []))
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        try:
            rss_kb = next(int(line.split()[1]) for line in
                          Path(f"/proc/{pid}/status").read_text().splitlines()
                          if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
        total += rss_kb / 1024
    return total


def run_chapter(path: Path) -> tuple[float, float]:
    """Execute one notebook in a fresh kernel; return (seconds, peak MB of the process tree)."""
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_mb(os.getpid()))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    sampler.start()
    try:
        nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        done.set()
        sampler.join()
    return time.perf_counter() - start, peak


def one_chapter_main(path: str) -> None:
    """Child process: run one chapter, print 'seconds tree_mb largest_mb'."""
    seconds, tree_mb = run_chapter(Path(path))
    largest_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{seconds:.2f} {tree_mb:.1f} {largest_mb:.1f}")


def rebuild_after_prose_edit() -> float:
    """Seconds for ``jupyter-book build`` after a prose-only edit of one chapter."""
    build = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT),
             "--builder", "html", "-n", "-W", "--keep-going"]
    subprocess.run(build, check=True, capture_output=True)  # fill the cache first
    source = source_of(executable_chapters()[0])
    original = source.read_text()
    try:
        source.write_text(original + "\nA sentence added by `make bench`.\n")
        start = time.perf_counter()
        subprocess.run(build, check=True, capture_output=True)
        return time.perf_counter() - start
    finally:
        source.write_text(original)


def write_table(rows: list[dict]) -> None:
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    with TABLE.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["chapter", "wall time (s)", "largest process (MB)", "all processes (MB)"])
        writer.writerows([r["chapter"], f"{r['seconds']:.1f}"]
                         + [f"{r[k]:.0f}" if r[k] is not None else "" for k in ("peak_mb", "peak_tree_mb")]
                         for r in rows)


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for path in export_notebooks(Path(folder)):
            out = subprocess.run([sys.executable, __file__, "--one", str(path)], check=True,
                                 capture_output=True, text=True).stdout.split()
            seconds, tree_mb, largest_mb = map(float, out[-3:])
            rows.append({"chapter": path.stem, "seconds": seconds,
                         "peak_mb": largest_mb, "peak_tree_mb": tree_mb})
            print(f"{path.stem:28s} {seconds:7.1f} s  largest process {largest_mb:6.0f} MB"
                  f"  all processes {tree_mb:6.0f} MB", flush=True)
    total = sum(r["seconds"] for r in rows)
    slowest = max(rows, key=lambda r: r["seconds"])
    rows.append({"chapter": "whole book (sum)", "seconds": total,
                 "peak_mb": max(r["peak_mb"] for r in rows),
                 "peak_tree_mb": max(r["peak_tree_mb"] for r in rows)})
    write_table(rows)  # the status page shows this table, so the rebuild below needs it
    rebuild = rebuild_after_prose_edit()
    rows.append({"chapter": "rebuild after a prose-only edit", "seconds": rebuild,
                 "peak_mb": None, "peak_tree_mb": None})
    write_table(rows)
    print(f"\nwhole book {total:.0f} s (target {TARGETS['book_s']}), slowest chapter "
          f"{slowest['chapter']} {slowest['seconds']:.0f} s (target {TARGETS['chapter_s']}), "
          f"largest process {rows[-2]['peak_mb']:.0f} MB (target {TARGETS['kernel_mb']}), "
          f"prose-only rebuild {rebuild:.0f} s (target {TARGETS['rebuild_s']})")
    print(f"written to {TABLE}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        one_chapter_main(sys.argv[2])
    else:
        main()
