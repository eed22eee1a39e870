"""``python -m booktools COMMAND``: the steps of ``make book``, ``make test`` and ``make bench``."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

USAGE = """usage: python -m booktools COMMAND
  execute          execute the chapters the build's cache lacks, two at a time, and cache them
  export FOLDER    write every executable chapter as FOLDER/<stem>.ipynb
  cache FOLDER     hand the executed FOLDER/<stem>.ipynb to the build's cache
  bench            time every chapter cold, with its peak memory (book/_static/benchmark.csv)
  time STEM ...    run the named chapters once each, cold: wall time, CPU time, peak memory
  fresh-cache      keep the execution cache if the dependencies are unchanged, else clear it
  relaxed          requirements.txt with the computations' pins lifted (for make latest)
  latest OUT [STEM ...]  execute the chapters here, compare their glued values with the cache's
  pdf              print the single-page build (_build/singlehtml) to PDF with Chromium"""


def main(argv: list[str]) -> None:
    """Run one command; a chapter that failed, or an interrupt, ends it with a line that says so."""
    guarded(argv[1] if len(argv) > 1 else "", lambda: run(argv))


def guarded(command: str, action: Callable[[], object]) -> None:
    """Run ``action``; a chapter that failed ends it with each chapter's first line and exit
    code 1, SIGINT or SIGTERM with one line that says the build was interrupted (130, 143)."""
    from booktools.failures import ChapterFailed
    from booktools.processes import Interrupted

    try:
        action()
    except ChapterFailed as error:
        if not error.reported:
            print(error, file=sys.stderr)
        lines = "\n".join(f"  {line}" for line in error.headlines)
        sys.exit(f"booktools {command}: {len(error.headlines)} chapter(s) failed:\n{lines}")
    except (Interrupted, KeyboardInterrupt) as error:
        signum = error.signum if isinstance(error, Interrupted) else signal.SIGINT
        print(f"booktools {command}: the build was interrupted ({signal.Signals(signum).name}); "
              "its chapter workers and their kernels were stopped", file=sys.stderr, flush=True)
        sys.exit(128 + signum)


def run(argv: list[str]) -> None:
    """The command of ``argv`` (``python -m booktools COMMAND ARGS``)."""
    command, args = (argv[1], argv[2:]) if len(argv) > 1 else ("", [])
    if command == "execute" and not args:
        from booktools.execute import chapter_workers, execute_stale

        start = time.perf_counter()
        seconds = execute_stale(chapter_workers())
        for stem, s in seconds.items():
            print(f"executed {stem:28s} {s:6.1f} s")
        print(f"{len(seconds)} chapters executed in {time.perf_counter() - start:.0f} s"
              if seconds else "every chapter is in the execution cache")
    elif command == "export" and len(args) == 1:
        from booktools.layout import export_notebooks

        for path in export_notebooks(Path(args[0])):
            print(f"exported {path}")
    elif command == "cache" and len(args) == 1:
        from booktools.execute import cache_executed

        for page in cache_executed(Path(args[0])):
            print(f"cached the executed {page}")
    elif command == "time" and args:
        from booktools.bench import time_chapters

        time_chapters(args)
    elif command == "fresh-cache" and not args:
        from booktools.execute import fresh_cache

        if fresh_cache():
            print("requirements.txt or bnbook changed (or no record of them): execution cache cleared")
    elif command == "relaxed" and not args:
        from booktools.pins import REQUIREMENTS, relaxed

        print(relaxed(REQUIREMENTS.read_text()), end="")
    elif command == "latest" and args:
        from booktools.latest import main as latest

        sys.exit(latest(Path(args[0]), args[1:]))
    elif command == "pdf" and not args:
        from booktools.pdf import print_pdf, single_page

        print(f"The book as a PDF: {print_pdf(single_page())}")
    elif command == "bench" and not args:
        from booktools.bench import main as bench

        bench()
    else:
        sys.exit(USAGE)


if __name__ == "__main__":
    main(sys.argv)
