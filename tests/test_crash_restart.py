"""A node killed with SIGKILL keeps its keys, certificate and directory, and rejoins."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from federation import Federation, govnode, wait_until
from node.bench.processes import terminate
from node.clock import now_ms
from protocol.directory import RecordKind

ROOT = Path(__file__).resolve().parent.parent


def start_process(data_dir: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "node.cli", "run", "--data", str(data_dir),
                             "--no-discovery"], cwd=ROOT, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture
async def federation(tmp_path):
    federation = Federation(tmp_path)
    await federation.create_root()
    await federation.enroll("gd.chaozhou", "潮州市人民政府办公室")
    yield federation
    await federation.stop_all()


async def test_sigkilled_node_restarts_with_its_state_and_rejoins_gossip(federation, tmp_path):
    city = federation.nodes["gd.chaozhou"]
    county_dir = federation.data_dir("gd.chaozhou.raoping")
    await govnode("init", "--data", str(county_dir), "--id", "gd.chaozhou.raoping",
                  "--name", "饶平县人民政府办公室", "--parent-url", city.urls[0],
                  "--trust-anchor", federation.trust_anchor, "--listen", "127.0.0.1:0",
                  "--no-discovery", "--gossip-interval-ms", "100")
    await govnode("enroll", "approve", "gd.chaozhou.raoping", "--data", str(federation.data_dir(city.id)))
    keys_before = (county_dir / "keys.json").read_bytes()
    log = tmp_path / "county.log"

    process = start_process(county_dir, log)
    try:
        def county_status_seq() -> int:
            status = city.directory.status("gd.chaozhou.raoping")
            return status.seq if status else 0

        await wait_until(lambda: county_status_seq() >= 1, timeout=30,
                         what="the county to enroll and gossip its status to the city")
        first_seq = county_status_seq()
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL

        status = await govnode("status", "--data", str(county_dir), "--json")
        report = json.loads(status.output.strip().splitlines()[-1])
        assert report["certificate"]["serial"] == 1 and report["certificate"]["state"] == "valid"
        assert report["directory"]["members"] >= 3  # gd, gd.chaozhou and itself survived the kill
        assert (county_dir / "keys.json").read_bytes() == keys_before

        process = start_process(county_dir, log)
        await wait_until(lambda: county_status_seq() > first_seq, timeout=30,
                         what="the restarted county's new status beacon at the city")
        assert city.directory.is_valid_member("gd.chaozhou.raoping", now_ms())
        endpoint = city.directory.get(RecordKind.ENDPOINT, "gd.chaozhou.raoping")
        assert endpoint is not None and endpoint.seq >= 2  # republished after the restart
    finally:
        terminate(process)  # SIGTERM, then SIGKILL after 10 s
    assert process.returncode == 0, log.read_text()[-2000:]  # SIGTERM is a clean shutdown
