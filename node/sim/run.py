"""The simulator's coordinator: build, start workers, drive, heal, wait, report.

Theory of operation. The topology is built on disk (``build``), split round-robin
over ``workers`` processes (``worker``), which start their nodes and say ``ready``.
The coordinator waits until every node knows every certificate, then gives all
workers one shared start time. Traffic and faults run for ``duration`` seconds; the
coordinator performs re-keys itself (as an operator would, on the nodes' data
directories) and notes when. After the last fault has healed it waits until the
network is quiet (no frame queued anywhere, every copy signed for), stops the
workers and reads the outcome from the nodes' databases (``report``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from node.operations import approve_request_file, rekey, request_file
from node.sim import report as reporting
from node.sim.build import BuiltNode, build_topology
from node.sim.faults import Fault, parse_faults
from node.topology import Topology, load_topology

ROOT = Path(__file__).resolve().parent.parent.parent
QUIET_TIMEOUT_S = 300
# Reading every node's SQLite file costs the coordinator ~0.3 s of CPU for guangdong:
# CPU the nodes themselves need, so it is not done more often than this.
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True)
class SimOptions:
    topology: str
    duration_s: float = 30.0
    rate: float = 5.0
    faults: str = ""
    workers: int = 2
    seed: int = 1
    data_dir: Path | None = None
    gossip_interval_ms: int | None = None
    fanout: int | None = None
    status_interval_ms: int = 10_000
    settle_timeout_s: float = QUIET_TIMEOUT_S  # how long to wait for quiet after the faults


class Coordinator:
    def __init__(self, options: SimOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.topology: Topology = load_topology(options.topology)
        self.rng = random.Random(options.seed)
        self.faults: list[Fault] = parse_faults(options.faults, list(self.topology.node_ids), self.rng)
        self.workers: list[asyncio.subprocess.Process] = []
        self.rekeyed_at: dict[str, float] = {}
        self.peak_rss_kb = 0
        self.directory_sync_s = 0.0  # from every node serving to every node knowing every member

    async def run(self) -> dict:
        started = time.monotonic()
        with (tempfile.TemporaryDirectory(prefix="govnode-sim-") if self.options.data_dir is None
              else nullcontext(str(self.options.data_dir))) as base:
            built = await self._build(Path(base))
            await self._start_workers(built, Path(base))
            try:
                await self._drive(built)
                results = await self._stop_workers(Path(base))
            finally:
                for worker in self.workers:
                    if worker.returncode is None:
                        worker.kill()
            data_dirs = {node_id: node.data_dir for node_id, node in built.items()}
            report = {"topology": self.topology.name, "nodes": len(built),
                      **reporting.documents_report(data_dirs),
                      "directory_sync_s": self.directory_sync_s,
                      "convergence_s": reporting.convergence_report(
                          self.rekeyed_at, [r["rekey_seen"] for r in results], len(built)),
                      "faults": [f.as_dict() for f in self.faults],
                      "links": {"dropped_requests": sum(r["dropped"] for r in results)},
                      "gossip": {"bytes_per_insync_round": reporting.percentile(
                          [size for r in results for size in r["insync_bytes"]], 0.5)},
                      "rss_mb_total": round(self.peak_rss_kb / 1024, 1),
                      "rss_mb_per_node": round(self.peak_rss_kb / 1024 / len(built), 2),
                      "workers": self.options.workers, "seed": self.options.seed,
                      "duration_s": self.options.duration_s, "rate": self.options.rate}
        report["wall_s"] = round(time.monotonic() - started, 1)
        report["problems"] = reporting.judge(report)
        return report

    # --- phases ---------------------------------------------------------------

    async def _build(self, base: Path) -> dict[str, BuiltNode]:
        gossip = self.topology.gossip
        with Progress(console=self.console, transient=True) as bar:
            task = bar.add_task("building and enrolling nodes", total=len(self.topology.nodes))
            return await build_topology(
                self.topology, base, gossip_interval_ms=self.options.gossip_interval_ms or gossip.interval_ms or 1000,
                status_interval_ms=self.options.status_interval_ms,
                fanout=self.options.fanout or gossip.fanout or 3,
                progress=lambda node_id: bar.advance(task))

    async def _start_workers(self, built: dict[str, BuiltNode], base: Path) -> None:
        levels = {n.id: n.level.value for n in self.topology.nodes}
        count = max(1, min(self.options.workers, len(built)))
        shares = [list(built)[i::count] for i in range(count)]
        for index, share in enumerate(shares):
            spec = {"nodes": {n: str(built[n].data_dir) for n in share}, "levels": levels,
                    "seed": self.options.seed * 1000 + index, "rate": self.options.rate / count,
                    "duration_s": self.options.duration_s,
                    "faults": [f.as_dict() for f in self.faults],
                    "result": str(base / f"worker-{index}.result.json")}
            spec_path = base / f"worker-{index}.json"
            spec_path.write_text(json.dumps(spec), encoding="utf-8")
            log = (base / f"worker-{index}.log").open("ab")
            self.workers.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "node.sim.worker", str(spec_path), cwd=ROOT,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log))
        with self.console.status(f"starting {len(built)} nodes in {count} worker processes…"):
            for worker in self.workers:
                line = await asyncio.wait_for(worker.stdout.readline(), timeout=600)
                if line.strip() != b"ready":
                    raise RuntimeError(f"a worker failed to start (see {base}/worker-*.log)")

    async def _drive(self, built: dict[str, BuiltNode]) -> None:
        data_dirs = {n: b.data_dir for n, b in built.items()}
        with self.console.status("waiting for every node to know every member…"):
            syncing = time.monotonic()
            await self._wait(lambda: self._certificates_everywhere(data_dirs, len(built)), 600)
            self.directory_sync_s = round(time.monotonic() - syncing, 1)
        start_at = time.time() + 1.0
        for worker in self.workers:
            worker.stdin.write(f"go {start_at}\n".encode())
            await worker.stdin.drain()
        rekeys = asyncio.create_task(self._rekeys(built, start_at))
        last_heal = max([f.at_s + f.duration_s for f in self.faults], default=0.0)
        end = start_at + max(self.options.duration_s, last_heal)
        with Progress(console=self.console, transient=True) as bar:
            task = bar.add_task("traffic and faults", total=end - time.time())
            while time.time() < end:
                self._sample_rss()
                totals = reporting.progress(data_dirs)
                bar.update(task, completed=time.time() - start_at,
                           description=f"sent {totals['sent']} · stored {totals['received']} · "
                                       f"signed {totals['settled']} · queued {totals['queued']}")
                await asyncio.sleep(PROGRESS_EVERY_S)  # display refresh (reads every node's file)
        await rekeys
        with self.console.status("faults healed; waiting for the network to go quiet…"):
            try:
                await self._wait(lambda: self._quiet(data_dirs), self.options.settle_timeout_s)
            except TimeoutError as error:  # the report will say what is missing
                self.console.print(f"[red]{error}[/red]")

    async def _rekeys(self, built: dict[str, BuiltNode], start_at: float) -> None:
        for fault in (f for f in self.faults if f.kind == "rekey"):
            await asyncio.sleep(max(0.0, start_at + fault.at_s - time.time()))
            node = built[fault.target]
            parent = built[fault.target.rsplit(".", 1)[0]]
            await rekey(node.data_dir, send=False)
            answer_request = await request_file(node.data_dir)
            await approve_request_file(parent.data_dir, answer_request)
            self.rekeyed_at[fault.target] = time.time()

    async def _stop_workers(self, base: Path) -> list[dict]:
        for worker in self.workers:
            worker.terminate()
        for worker in self.workers:
            await asyncio.wait_for(worker.wait(), timeout=120)
        return [json.loads((base / f"worker-{i}.result.json").read_text())
                for i in range(len(self.workers))]

    # --- conditions -----------------------------------------------------------

    async def _wait(self, condition, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(condition):
            self._sample_rss()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the simulation did not settle within {timeout:.0f} s")
            await asyncio.sleep(PROGRESS_EVERY_S)  # poll interval, bounded by the deadline above

    @staticmethod
    def _certificates_everywhere(data_dirs: dict[str, Path], nodes: int) -> bool:
        return all(reporting.rows(d / "node.db", "SELECT COUNT(*) FROM directory_records "
                                                  "WHERE kind IN ('cert', 'endpoint')")[0][0] >= 2 * nodes
                   for d in data_dirs.values())

    @staticmethod
    def _quiet(data_dirs: dict[str, Path]) -> bool:
        totals = reporting.progress(data_dirs)
        return totals["queued"] == 0 and totals["settled"] == totals["sent"]

    def _sample_rss(self) -> None:
        total = 0
        for worker in self.workers:
            try:
                status = Path(f"/proc/{worker.pid}/status").read_text()
            except OSError:
                continue
            total += int(next(line.split()[1] for line in status.splitlines()
                              if line.startswith("VmRSS:")))
        self.peak_rss_kb = max(self.peak_rss_kb, total)


def default_workers() -> int:
    return os.cpu_count() or 2
