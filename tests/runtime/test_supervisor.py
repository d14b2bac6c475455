"""`stanch up` keeps its children running: real processes killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from stanch.runtime import Child, Supervisor

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"]
CRASHER = [sys.executable, "-c", "import sys; print('boom', flush=True); sys.exit(3)"]


def _wait(cond, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_a_killed_child_is_restarted_logged_and_counted(tmp_path: Path) -> None:
    worker = Child("worker", SLEEPER, dict(os.environ), tmp_path / "logs" / "worker.log")
    api = Child("api", SLEEPER, dict(os.environ), tmp_path / "logs" / "api.log")
    for c in (worker, api):
        c.start()
    lines: list[str] = []
    stop = threading.Event()
    sup = Supervisor([worker, api], out=lines.append, poll=0.05)
    runner = threading.Thread(target=lambda: lines.append(sup.run(stop.is_set)))
    runner.start()
    try:
        first = worker.proc.pid if worker.proc else 0
        os.kill(first, signal.SIGKILL)
        _wait(lambda: worker.restarts == 1 and worker.alive())
        assert worker.proc is not None and worker.proc.pid != first
        assert api.restarts == 0 and api.alive()  # the others were left alone
        assert any(line.startswith("worker exited (code -9); restarting in 0.5 s")
                   for line in lines), lines
        assert any(line.startswith("worker restarted (restart #1") for line in lines), lines
        os.kill(worker.proc.pid, signal.SIGKILL)  # a second death: a longer backoff
        _wait(lambda: worker.restarts == 2 and worker.alive())
        assert any("restarting in 1 s" in line for line in lines), lines
    finally:
        stop.set()
        runner.join(timeout=10)
        for c in (worker, api):
            c.stop(grace=2)
    assert lines[-1] == ""  # stopped on request, not given up


def test_a_child_that_keeps_dying_makes_it_give_up_saying_why(tmp_path: Path) -> None:
    crasher = Child("worker", CRASHER, dict(os.environ), tmp_path / "logs" / "worker.log")
    steady = Child("api", SLEEPER, dict(os.environ), tmp_path / "logs" / "api.log")
    for c in (crasher, steady):
        c.start()
    lines: list[str] = []
    try:
        reason = Supervisor([crasher, steady], out=lines.append, poll=0.02, max_restarts=3,
                            max_backoff=0.1).run()
    finally:
        steady.stop(grace=2)
    assert crasher.restarts == 3
    assert reason.startswith("giving up: worker died 4 times in 120 s (last exit code 3); "
                             "stopping everything."), reason
    assert "boom" in reason  # the tail of its log says what happened
    assert steady.restarts == 0
