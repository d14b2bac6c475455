"""Start a real mock IdP on a free local port, for any test suite.

    url, stop = start_mock_idp(tmp_path)
    try: ... httpx.get(f"{url}/identities/u-alice") ...
    finally: stop()

The server runs uvicorn in a daemon thread with its own event loop, on port 0: the OS picks
a free port and we read it back once the server listens, so there is no port race. Calling
it again with the same directory reuses the same database: a restart keeps state.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from stanch.mock_idp.app import create_app
from stanch.testing import serve_in_thread


def start_mock_idp(
    tmp_path: Path,
    *,
    db_name: str = "mock_idp.db",
    seed: bool = True,
    startup_timeout: float = 10.0,
) -> tuple[str, Callable[[], None]]:
    """Serve the mock IdP over ``tmp_path / db_name``; return its base URL and a stop()."""
    app = create_app(tmp_path / db_name, seed=seed)
    return serve_in_thread(app, name="mock-idp", startup_timeout=startup_timeout)
