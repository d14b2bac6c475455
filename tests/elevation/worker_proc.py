"""A Stanch worker in its own process, so a test can kill -9 it mid-elevation.

    python tests/elevation/worker_proc.py ADDRESS TASK_QUEUE STATE_DIR MOCK_IDP_URL LEDGER_NS

Prints ``ready`` once polling; runs until killed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from stanch.audit import SqliteAuditStore
from stanch.config import ProviderSettings, Settings, TemporalSettings
from stanch.temporal import connect
from stanch.worker import build_worker
from tests.elevation.helpers import configure


async def main(address: str, task_queue: str, state_dir: str, idp: str, ns: str) -> None:
    settings = configure(Settings(
        state_dir=Path(state_dir), temporal=TemporalSettings(address=address),
        providers={"mock": ProviderSettings(type="mock", options={"url": idp})},
        _env_file=None,  # type: ignore[call-arg]
    ), ns)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    client = await connect(settings, retries=20)
    store = SqliteAuditStore(settings.audit_sqlite_path)
    async with build_worker(client, settings, store, task_queue=task_queue):
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
