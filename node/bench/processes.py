"""Child processes of the benches: started with this checkout importable, stopped
politely, and their CPU time read."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import node as node_package

REPO = Path(node_package.__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of another process, where /proc tells (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after "pid (comm)"; utime, stime: 14, 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def terminate(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not ended within 10 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
