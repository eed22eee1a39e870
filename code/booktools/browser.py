"""Debian's Chromium, driven by Playwright, on a site served from this machine with no network.

Used by the browser test of the built site (``tests/test_browser.py``) and by ``make pdf``
(:mod:`booktools.pdf`): :func:`serve` serves a folder on 127.0.0.1, :func:`offline` blocks every
request that leaves it, so that a page that needs the network fails here as it would offline.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) while in the ``with`` block; yield its URL."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def offline(page: Page) -> None:
    """Abort every request of ``page`` outside 127.0.0.1 (and ``data:`` URLs)."""
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
        ("http://127.0.0.1", "data:")) else route.abort())
