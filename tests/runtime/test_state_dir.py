"""The state directory and everything in it are private to the user running Stanch."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from stanch.config import Settings
from stanch.runtime import DevCredentials, banner, free_port
from stanch.statedir import make_private

REPO = Path(__file__).resolve().parents[2]


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_a_state_dir_left_open_is_tightened(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "logs").mkdir(parents=True)
    for name in ("audit.db", "temporal.db", "dead_letter.db", "logs/api.log"):
        (state / name).write_text("x")
        (state / name).chmod(0o644)
    state.chmod(0o755)
    make_private(state)
    assert _mode(state) == 0o700 and _mode(state / "logs") == 0o700
    for name in ("audit.db", "temporal.db", "dead_letter.db", "logs/api.log"):
        assert _mode(state / name) == 0o600, name


def test_the_api_process_keeps_its_files_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STANCH_")}
    env.update(STANCH_STATE_DIR=str(state), STANCH_API__PORT=str(port),
               STANCH_TEMPORAL__ADDRESS=f"127.0.0.1:{free_port()}",
               STANCH_CONFIG=str(tmp_path / "absent.toml"))
    proc = subprocess.Popen([sys.executable, "-m", "stanch.cli", "api"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "api did not start"
            time.sleep(0.2)
        files = [p for p in state.rglob("*") if p.is_file()]
        assert {p.name for p in files} >= {"audit.db", "dead_letter.db"}
        assert _mode(state) == 0o700
        assert {str(p.relative_to(state)): _mode(p) for p in files} == {
            str(p.relative_to(state)): 0o600 for p in files}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_banner_names_only_token_files_that_work(tmp_path: Path,
                                                     monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for var in ("STANCH_API_TOKENS", "STANCH_SOURCES", "STANCH_AUDIT__CHECKPOINT_KEY"):
        monkeypatch.delenv(var, raising=False)
    settings = Settings(state_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    creds = DevCredentials.load_or_create(tmp_path)
    text = banner(settings, tmp_path, creds.in_effect(settings))
    assert "dev-token" in text and "source-token" in text and "checkpoint-key" in text

    monkeypatch.setenv("STANCH_API_TOKENS", "[]")
    monkeypatch.setenv("STANCH_SOURCES", "{}")
    files = creds.in_effect(settings)
    assert files == {"checkpoint-key"}
    creds.write_token_files(tmp_path, files)
    text = banner(settings, tmp_path, files)
    assert "dev-token" not in text and "source-token" not in text
    assert not (tmp_path / "dev-token").exists() and not (tmp_path / "source-token").exists()
    assert "$STANCH_TOKEN" in text
