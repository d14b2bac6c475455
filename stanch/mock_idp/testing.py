"""Start a real mock IdP on a free local port, for any test suite.

    url, stop = start_mock_idp(tmp_path)
    try: ... httpx.get(f"{url}/identities/u-alice") ...
    finally: stop()

The server runs uvicorn in a daemon thread with its own event loop, on port 0: the OS picks
a free port and we read it back once the server listens, so there is no port race. Calling
it again with the same directory reuses the same database: a restart keeps state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn

from stanch.mock_idp.app import create_app


def start_mock_idp(
    tmp_path: Path,
    *,
    db_name: str = "mock_idp.db",
    seed: bool = True,
    startup_timeout: float = 10.0,
) -> tuple[str, Callable[[], None]]:
    """Serve the mock IdP over ``tmp_path / db_name``; return its base URL and a stop()."""
    app = create_app(tmp_path / db_name, seed=seed)
    # A socket handed to uvicorn (``sockets=``) loses TCP_NODELAY on accepted connections
    # and every response waits ~40 ms for a delayed ACK; binding port 0 itself does not.
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                            access_log=False, lifespan="on", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="mock-idp", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout=5)
            raise RuntimeError("mock IdP did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return f"http://127.0.0.1:{port}", stop
