"""SIEM export: an outage delays delivery, loses nothing; the SIEM gets exactly the records."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from stanch.audit import AuditStore
from stanch.audit.outbox import ExportError, OutboxShipper

from .helpers import event


class _Siem:
    """A real HTTP endpoint on 127.0.0.1 that records what it accepts."""

    def __init__(self, port: int, fail_first: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.auth: set[str] = set()
        self.fail_left = fail_first
        siem = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                siem.auth.add(self.headers.get("Authorization", ""))
                if siem.fail_left > 0:
                    siem.fail_left -= 1
                    self.send_response(503)
                else:
                    siem.received.extend(json.loads(body))
                    self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until(cond: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(cond):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_siem_outage_delays_but_loses_nothing(store: AuditStore) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/ocsf"
    store.append_many([event(i) for i in range(30)])
    shipper = OutboxShipper(store, url, "siem-token", batch_size=7, poll_interval=0.05,
                            min_backoff=0.05, max_backoff=0.2, timeout=2.0)
    with pytest.raises(ExportError, match=r"records 1\.\.7 failed"):
        await shipper.ship_once()  # nothing listens on the port yet

    stop = asyncio.Event()
    task = asyncio.create_task(shipper.run(stop))
    await asyncio.sleep(0.6)  # down for a while; appends keep coming
    await asyncio.to_thread(store.append_many, [event(i) for i in range(30, 40)])
    assert store.outbox_backlog() == 40

    siem = _Siem(port, fail_first=2)  # back up, but sick for two more requests
    try:
        await _until(lambda: store.outbox_backlog() == 0)
        await asyncio.to_thread(store.append, event(40))
        await _until(lambda: store.outbox_backlog() == 0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        siem.stop()

    records = store.query(limit=1000)
    assert len(records) == 41
    uids = [e["metadata"]["uid"] for e in siem.received]
    assert set(uids) == {r.hash for r in records}  # exactly the set, no loss
    assert len(uids) == len(set(uids))  # a clean 2xx is never resent
    assert sorted(e["metadata"]["sequence"] for e in siem.received) == list(range(1, 42))
    assert siem.auth == {"Bearer siem-token"}


async def test_ship_once_on_empty_outbox_sends_nothing(store: AuditStore) -> None:
    port = _free_port()
    shipper = OutboxShipper(store, f"http://127.0.0.1:{port}/", None)
    assert await shipper.ship_once() == 0  # no request made: the port is closed
    await shipper.aclose()
