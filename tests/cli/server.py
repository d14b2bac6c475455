"""Serve an ASGI app over a real socket for a test: uvicorn on a free port, in a thread."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from stanch.testing import serve_in_thread


@contextmanager
def serving(app: Any, *, startup_timeout: float = 10.0) -> Iterator[str]:
    """Yield the base URL of ``app`` served on 127.0.0.1; stop the server on exit."""
    url, stop = serve_in_thread(app, name="test-api", startup_timeout=startup_timeout)
    try:
        yield url
    finally:
        stop()
