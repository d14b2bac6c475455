"""``python -m bench --profile worker,api``: sample running processes with py-spy.

py-spy attaches to a process from outside (no restart, nothing in the process changes) and
records, while one bench phase runs, the Python stacks of the thread holding the GIL
(``--gil``): where that process's Python time goes. The raw collapsed stacks are kept in
the state dir (flamegraph.pl, speedscope.app and inferno read them), and a summary — GIL
busy share, top frames by self time, top Stanch frames by inclusive time — goes into the
table's footer and the JSON.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

RATE = 100  # samples per second
OURS = ("stanch/", "workflows/", "activities/")
ENTRY = ("stanch/cli/",)  # the process's entry frames: in every sample, say nothing


def py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else None


class Sampler:
    """py-spy record on each named pid from :meth:`start` until :meth:`stop`."""

    def __init__(self, pids: dict[str, int], out_dir: Path, phase: str) -> None:
        self.pids = pids
        self.out_dir = out_dir
        self.phase = phase
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.paths: dict[str, Path] = {}
        self.errors: dict[str, str] = {}

    def start(self) -> None:
        exe = py_spy()
        for name, pid in self.pids.items():
            if exe is None:
                self.errors[name] = "py-spy is not installed (pip install '.[bench]')"
                continue
            path = self.out_dir / f"profile-{name}-{self.phase}.txt"
            self.paths[name] = path
            self.procs[name] = subprocess.Popen(
                [exe, "record", "--pid", str(pid), "--format", "raw", "--gil",
                 "--rate", str(RATE), "--nonblocking", "--output", str(path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self, seconds: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, proc in self.procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            try:
                _, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            path = self.paths[name]
            if not path.exists() or path.stat().st_size == 0:
                tail = err.decode(errors="replace").strip().splitlines()[-3:]
                self.errors[name] = " / ".join(tail) or f"py-spy exited {proc.returncode}"
                continue
            out[name] = summarize(path, seconds) | {"raw": str(path)}
        for name, why in self.errors.items():
            out[name] = {"error": why}
        return out


def summarize(path: Path, seconds: float, top: int = 12) -> dict[str, Any]:
    self_time: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        self_time[frames[-1]] += count
        for f in set(frames):
            if any(f"({p}" in f for p in OURS) and not any(f"({p}" in f for p in ENTRY):
                ours[f] += count

    def share(c: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(v / total, 3)) for f, v in c.most_common(top)] if total else []

    return {"samples": total, "seconds": round(seconds, 1),
            "gil_busy": round(total / (RATE * seconds), 3) if seconds else None,
            "top_self": share(self_time), "top_stanch_inclusive": share(ours)}


def render(profiles: dict[str, Any]) -> str:
    lines = []
    for name, p in profiles.items():
        if "error" in p:
            lines.append(f"profile {name}: unavailable ({p['error']})")
            continue
        lines.append(f"profile {name} ({p['seconds']}s, {p['samples']} samples; GIL held "
                     f"{p['gil_busy']:.0%} of the time) — {p['raw']}")
        lines.append("  top frames by self time:")
        lines += [f"    {s:6.1%}  {f}" for f, s in p["top_self"][:8]]
        lines.append("  Stanch code by inclusive time:")
        lines += [f"    {s:6.1%}  {f}" for f, s in p["top_stanch_inclusive"][:8]]
    return "\n".join(lines)


def pids_for(names: list[str], pid_of: Any) -> dict[str, int]:
    return {n: int(pid_of(n)) for n in names if n in ("worker", "api", "mock-idp", "floor")}

