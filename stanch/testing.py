"""Serve an ASGI app over a real socket, in a thread: for tests and benchmarks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn


def serve_in_thread(app: Any, *, name: str = "asgi", startup_timeout: float = 10.0
                    ) -> tuple[str, Callable[[], None]]:
    """Start uvicorn on 127.0.0.1, port chosen by the OS; return its base URL and a stop().

    uvicorn binds port 0 itself: a socket handed to it (``sockets=``) loses TCP_NODELAY on
    accepted connections and every response waits ~40 ms for a delayed ACK.
    """
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                            access_log=False, lifespan="on", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout=5)
            raise RuntimeError(f"{name} server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return f"http://127.0.0.1:{port}", stop
