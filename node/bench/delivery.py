"""``govnode bench delivery``: documents end to end between real nodes, beside the limits.

Theory of operation. One run measures, on this machine and in this order:

1. **Limits** (the physical ceilings, measured with the nodes up and idle, in short
   rounds before *and* after the throughput run; each is the median of its rounds):

   - crypto-only ceiling: raw PyNaCl sealed-box seal + Ed25519 sign + verify +
     sealed-box open of one 4 KiB body, on one core, as documents per second;
   - raw SQLite: 4 KiB rows inserted with ``executemany`` in transactions of 256,
     WAL, ``synchronous=FULL``, time-ordered keys (what the node's outbox uses), as
     rows per second;
   - raw aiohttp: a trivial aiohttp server in its own process receiving msgpack
     POSTs of 256 4 KiB items, one request in flight (as one delivery worker does),
     as items per second.

2. **Throughput**: two real nodes built in a temporary directory through the same
   operations as ``govnode init`` / ``govnode enroll approve`` — the root ``gd``
   (sender) and its child ``gd.chaozhou`` (receiver). The receiver runs as
   ``python -m node.cli run`` in a subprocess and the sender in this process, so the
   two nodes use the machine's two cores the way two deployed nodes would use their
   own, while the bench drives sending through the node's own code
   (``node.sending.send_documents``) and watches the sender's inbound path directly
   instead of polling. ``--docs`` documents with a 4 KiB body, sealed to the
   receiver, signed, stored durably (``synchronous=FULL``) on both sides, are queued
   in chunks (one transaction each) as fast as the node takes them; the clock runs
   from the first send to the commit, at the sender, of the last ``delivered``
   receipt. A small warm-up batch goes first (connections, caches) and is not
   counted; the drafts are composed before the clock starts. Every node of the run
   (these two and the seven below) has ``[delivery] crypto_threads = false``, the
   setting for nodes that share a machine's cores (``node.crypto_work``), unless
   ``--crypto-threads`` asks for the default; the JSON says which.

3. **Latency**: the seven-node federation of the simulator (gd, two cities, four
   counties) in this process, built once the disk has written back what the
   throughput run left (``os.sync``), converged, then quietened (gossip slowed to
   once a minute). One document at a time from gd.chaozhou.raoping to gd.shantou.nanao:
   four hops, through three relays (gd.chaozhou, gd, gd.shantou), each of which
   stores the frame durably before acknowledging it. A sample is the
   time from ``send_document`` to the commit at the destination; the next sample
   starts only after the ``delivered`` receipt is back at the sender, so every
   document travels a federation at rest. All seven nodes share this one process:
   the hops run one after the other anyway, so this adds no queueing.

Ratios are ``docs_per_s / limit``. The targets (this 2-core machine): at least
2,000 documents/s and 40 % of the crypto-only ceiling; county-to-county p50 at most
25 ms. Beyond what the crypto ceiling counts, each document end to end also costs a
signed ``delivered`` receipt (one more sign and verify), validating and encoding the
document at both ends, and two ~4 KiB rows written durably at each node.

The limits are measured by ``node.bench.limits``.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from rich.table import Table

from protocol.documents import Document

from node import operations
from node.app import Node
from node.clock import new_document_id, now_ms
from node.local_federation import FederationTimeout, wait_for
from node.topology import load_topology
from node.bench.limits import (BODY_BYTES, PostServer, crypto_ceiling,
                               sqlite_batched_rows_per_s)
from node.bench.measure import Comparison
from node.bench.processes import REPO, child_env, cpu_seconds, terminate
from node.inbound import TransferResult
from node.operations import NewNode
from node.sending import send_documents, send_document

SEND_CHUNK = 128  # documents per send_documents transaction in the throughput run
SUBMITTERS = 2  # chunks submitted at once: one is sealed while the other commits
WARMUP_DOCS = 64
# The bench's nodes share this machine's two cores, so by default they do their bulk
# crypto on their event loops, in slices, rather than in worker threads whose GIL
# hand-offs would cost CPU that the other node needs ([delivery] crypto_threads).
CRYPTO_THREADS = False
TARGET_DOCS_PER_S = 2000.0
TARGET_RATIO_TO_CRYPTO = 0.4
TARGET_P50_MS = 25.0
SENDER, RECEIVER = "gd", "gd.chaozhou"
COUNTY_FROM, COUNTY_TO = "gd.chaozhou.raoping", "gd.shantou.nanao"
# The latency federation is the mini topology (configs/topologies/mini.toml).
FEDERATION = [(node.id, node.name) for node in load_topology("mini").nodes]  # parents first
FAST_GOSSIP_MS = 100  # in-process nodes gossip fast to converge, then quietly
QUIET_GOSSIP_MS = 60_000
QUIET_STATUS_MS = 3_600_000


class BenchError(Exception):
    """The bench could not finish (a node did not come up, a deadline passed)."""


# --- entry point ----------------------------------------------------------------------

def run_delivery_bench(*, docs: int = 6000, samples: int = 50, limit_rounds: int = 2,
                       crypto_threads: bool = CRYPTO_THREADS,
                       progress: Callable[[str], None] = lambda text: None) -> dict[str, object]:
    return asyncio.run(_run(docs=docs, samples=samples, limit_rounds=limit_rounds,
                            crypto_threads=crypto_threads, progress=progress))


async def _run(*, docs: int, samples: int, limit_rounds: int, crypto_threads: bool,
               progress: Callable[[str], None]) -> dict[str, object]:
    started = time.perf_counter()
    body = _body_text()
    with tempfile.TemporaryDirectory(prefix="govnode-bench-") as temp:
        temp_dir = Path(temp)
        limits: dict[str, list[float]] = {"crypto": [], "sqlite": [], "post": []}
        async with PostServer() as post_server:
            progress("starting two nodes (the receiver in its own process)…")
            async with _NodePair(temp_dir / "pair", crypto_threads) as pair:
                progress("measuring the limits (raw PyNaCl, SQLite, aiohttp)…")
                await _measure_limits(limits, temp_dir, post_server, limit_rounds)
                progress(f"sending {docs} documents end to end…")
                docs_per_s, cpu_ms_per_doc = await pair.throughput(docs, body)
                progress("measuring the limits again…")
                await _measure_limits(limits, temp_dir, post_server, limit_rounds)
        progress("building the seven-node federation for latency…")
        # At rest means the disk too: the throughput run left some hundred megabytes
        # for the kernel to write back, which would otherwise slow every fsync below.
        await asyncio.to_thread(os.sync)
        latencies = await _county_latency(temp_dir / "federation", samples, body,
                                          crypto_threads)
    crypto, sqlite_rows, post = (statistics.median(limits[key])
                                 for key in ("crypto", "sqlite", "post"))
    p50, p99 = _percentile(latencies, 50), _percentile(latencies, 99)
    result: dict[str, object] = {
        "docs": docs,
        "body_bytes": BODY_BYTES,
        "docs_per_s": round(docs_per_s, 1),
        "cpu_ms_per_doc": cpu_ms_per_doc,
        "crypto_ceiling_docs_per_s": round(crypto, 1),
        "ratio_to_crypto": round(docs_per_s / crypto, 3),
        "sqlite_batched_rows_per_s": round(sqlite_rows, 1),
        "ratio_to_sqlite": round(docs_per_s / sqlite_rows, 3),
        "aiohttp_post_docs_per_s": round(post, 1),
        "ratio_to_aiohttp": round(docs_per_s / post, 3),
        "latency_ms": {"p50": round(p50, 2), "p99": round(p99, 2),
                       "min": round(min(latencies), 2), "max": round(max(latencies), 2),
                       "samples": len(latencies), "from": COUNTY_FROM, "to": COUNTY_TO,
                       "hops": 4, "relays": 3},
        "limit_rounds": 2 * limit_rounds,
        "crypto_threads": crypto_threads,
        "targets": {"docs_per_s": TARGET_DOCS_PER_S, "ratio_to_crypto": TARGET_RATIO_TO_CRYPTO,
                    "latency_p50_ms": TARGET_P50_MS},
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    result["meets_targets"] = {
        "docs_per_s": docs_per_s >= TARGET_DOCS_PER_S,
        "ratio_to_crypto": docs_per_s / crypto >= TARGET_RATIO_TO_CRYPTO,
        "latency_p50_ms": p50 <= TARGET_P50_MS,
    }
    return result


def comparisons(result: dict[str, object]) -> list[Comparison]:
    label = "documents end to end"
    docs_per_s = float(result["docs_per_s"])
    return [
        Comparison(label, docs_per_s, "raw PyNaCl seal+sign+verify+open",
                   float(result["crypto_ceiling_docs_per_s"]), TARGET_RATIO_TO_CRYPTO),
        Comparison(label, docs_per_s, "raw SQLite batched insert (rows)",
                   float(result["sqlite_batched_rows_per_s"])),
        Comparison(label, docs_per_s, "raw aiohttp msgpack POST (items)",
                   float(result["aiohttp_post_docs_per_s"])),
    ]


def summary_table(result: dict[str, object]) -> Table:
    met = result["meets_targets"]
    latency = result["latency_ms"]
    verdict = {True: "ok", False: "MISSED"}
    table = Table(title=f"{latency['from']} → {latency['to']}: {latency['hops']} hops, "
                        f"at rest ({latency['samples']} documents one at a time)")
    for column in ("measure", "value", "target", ""):
        table.add_column(column, justify="right" if column == "value" else "left")
    table.add_row("documents/s end to end", f"{result['docs_per_s']:,.0f}",
                  f"≥ {TARGET_DOCS_PER_S:,.0f}", verdict[met["docs_per_s"]])
    table.add_row("latency p50", f"{latency['p50']:.1f} ms", f"≤ {TARGET_P50_MS:.0f} ms",
                  verdict[met["latency_p50_ms"]])
    table.add_row("latency p99", f"{latency['p99']:.1f} ms", "", "")
    return table


# --- the limits -------------------------------------------------------------------------

async def _measure_limits(limits: dict[str, list[float]], temp_dir: Path,
                          post_server: "PostServer", rounds: int) -> None:
    for _ in range(rounds):
        limits["crypto"].append(crypto_ceiling(0.2))
        limits["sqlite"].append(sqlite_batched_rows_per_s(temp_dir, 0.25))
        limits["post"].append(await post_server.items_per_s(0.4))


# --- throughput between two nodes -------------------------------------------------------

class _NodePair:
    """The root in this process (sender), its enrolled child in a subprocess (receiver)."""

    def __init__(self, path: Path, crypto_threads: bool = CRYPTO_THREADS) -> None:
        self.path = path
        self.crypto_threads = crypto_threads

    async def __aenter__(self) -> "_NodePair":
        root_dir, child_dir = self.path / SENDER, self.path / RECEIVER
        await operations.init_root(root_dir, _new_node(SENDER, FEDERATION[0][1],
                                                       self.crypto_threads))
        self.sender = Node(root_dir, discovery=False)
        await self.sender.start()
        _gossip_every(self.sender, FAST_GOSSIP_MS)
        self.process: subprocess.Popen | None = None
        try:
            await operations.init_child(child_dir, replace(
                _new_node(RECEIVER, FEDERATION[1][1], self.crypto_threads),
                parent_url=self.sender.urls[0],
                trust_anchor=self.sender.keys.fingerprint))
            await operations.approve_request(root_dir, RECEIVER)
            self.log_path = self.path / "receiver.log"
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "node.cli", "run", "--data", str(child_dir),
                     "--no-discovery"], stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, cwd=REPO, env=child_env())
            await _wait_for(self._receiver_reachable, 60, "the receiving node to enroll and "
                            "announce its endpoint", self._receiver_log)
            # Converged: from now on the sender gossips at its configured pace, as the
            # receiver does, not ten times a second.
            _gossip_every(self.sender, self.sender.config.gossip.interval_ms)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.process is not None:
            terminate(self.process)
        await self.sender.stop()

    def _receiver_reachable(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise BenchError(f"the receiving node exited ({self.process.returncode})"
                             f"{self._receiver_log()}")
        directory, now = self.sender.directory, now_ms()
        return directory.endpoint(RECEIVER) is not None and \
            directory.is_valid_member(RECEIVER, now)

    def _receiver_log(self) -> str:
        try:
            tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
        except OSError:
            return ""
        return f"; its log ends with:\n{tail}" if tail else ""

    async def throughput(self, docs: int, body: str) -> tuple[float, dict[str, float | None]]:
        """Documents per second, and CPU milliseconds per document of each process."""
        sender = self.sender
        receipts = _Arrivals(sender)
        try:
            await self._send(self._drafts(min(WARMUP_DOCS, docs), body), receipts, "warm-up")
            # Composed before the clock starts, as people compose documents before they
            # press send: the node's work begins with validating them.
            drafts = self._drafts(docs, body)
            cpu_before = self._cpu_seconds()
            started = time.perf_counter()
            elapsed = await self._send(drafts, receipts, "measured run") - started
            cpu_after = self._cpu_seconds()
        finally:
            receipts.close()
        cpu_ms = {side: None if cpu_before[side] is None or cpu_after[side] is None
                  else round((cpu_after[side] - cpu_before[side]) * 1000 / docs, 3)
                  for side in cpu_before}
        return docs / elapsed, cpu_ms

    def _cpu_seconds(self) -> dict[str, float | None]:
        """CPU time (all threads) used so far by this process and by the receiver's."""
        times = os.times()
        return {"sender": times.user + times.system,
                "receiver": cpu_seconds(self.process.pid)}

    def _drafts(self, docs: int, body: str) -> list[Document]:
        return [_draft(self.sender, RECEIVER, body, number) for number in range(docs)]

    async def _send(self, drafts: list[Document], receipts: "_Arrivals", what: str) -> float:
        """Queue the drafts, wait for all their receipts; return the clock at the end."""
        sender, docs = self.sender, len(drafts)
        expected = receipts.count + docs
        done = receipts.when(expected)
        submitting: set[asyncio.Task] = set()
        for start in range(0, docs, SEND_CHUNK):
            if len(submitting) == SUBMITTERS:
                finished, submitting = await asyncio.wait(
                    submitting, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    task.result()
            chunk = drafts[start:start + SEND_CHUNK]
            submitting.add(asyncio.create_task(send_documents(sender.context, chunk)))
        for task in asyncio.as_completed(submitting):
            await task
        deadline = 30 + docs / 50
        try:
            await asyncio.wait_for(asyncio.shield(done), deadline)
        except asyncio.TimeoutError:
            raise BenchError(f"{what}: {receipts.count - (expected - docs)} of {docs} "
                             f"delivered receipts after {deadline:.0f} s"
                             f"{self._receiver_log()}") from None
        async with sender.db.execute("SELECT COUNT(*) FROM deliveries WHERE state = 'sent'") as c:
            (pending,) = await c.fetchone()
        if pending:
            raise BenchError(f"{what}: {pending} documents still without a delivered receipt")
        return done.result()


class _Arrivals:
    """Counts frames delivered to ``node`` (documents or receipts), at the commit storing them."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.count = 0
        self._waiting: list[tuple[int, asyncio.Future]] = []
        self._original = node.inbound.receive
        node.inbound.receive = self._receive  # the transfer route looks it up per request

    async def _receive(self, batch: list[bytes]) -> TransferResult:
        result = await self._original(batch)
        if result.delivered_here:
            self.count += result.delivered_here
            now = time.perf_counter()
            for expected, future in self._waiting:
                if self.count >= expected and not future.done():
                    future.set_result(now)
        return result

    def when(self, expected: int) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((expected, future))
        return future

    def close(self) -> None:
        self.node.inbound.receive = self._original


# --- county-to-county latency -------------------------------------------------------------

async def _county_latency(path: Path, samples: int, body: str,
                          crypto_threads: bool) -> list[float]:
    nodes: dict[str, Node] = {}
    try:
        for node_id, name in FEDERATION:
            data_dir = path / node_id
            if "." not in node_id:
                await operations.init_root(data_dir, _new_node(node_id, name, crypto_threads))
            else:
                parent = nodes[node_id.rsplit(".", 1)[0]]
                await operations.init_child(data_dir, replace(
                    _new_node(node_id, name, crypto_threads), parent_url=parent.urls[0],
                    trust_anchor=nodes["gd"].keys.fingerprint))
                await operations.approve_request(parent.data.path, node_id)
            node = nodes[node_id] = Node(data_dir, discovery=False)
            await node.start()
            _gossip_every(node, FAST_GOSSIP_MS)
            await _wait_for(lambda: node.enrolled, 30, f"{node_id} to enroll")
        await _wait_for(lambda: _converged(nodes), 60, "the federation to converge")
        for node in nodes.values():  # at rest: no gossip during the samples
            _gossip_every(node, QUIET_GOSSIP_MS)
        sender, recipient = nodes[COUNTY_FROM], nodes[COUNTY_TO]
        stored = _Arrivals(recipient)
        receipts = _Arrivals(sender)
        latencies = []
        try:
            for number in range(samples + 1):
                arrived, receipted = stored.when(stored.count + 1), receipts.when(receipts.count + 1)
                started = time.perf_counter()
                await send_document(sender.context, _draft(sender, COUNTY_TO, body, number))
                await asyncio.wait_for(asyncio.shield(arrived), 30)
                if number:  # the first document opens the connections: not a sample
                    latencies.append((arrived.result() - started) * 1000)
                await asyncio.wait_for(asyncio.shield(receipted), 30)
        finally:
            stored.close()
            receipts.close()
        return latencies
    finally:
        await asyncio.gather(*(node.stop() for node in nodes.values()), return_exceptions=True)


def _converged(nodes: dict[str, Node]) -> bool:
    roots = {node.directory.digest.root for node in nodes.values()}
    return len(roots) == 1 and all(node.directory.endpoint(other) is not None
                                   for node in nodes.values() for other in nodes)


# --- helpers ------------------------------------------------------------------------------

def _new_node(node_id: str, name: str, crypto_threads: bool) -> NewNode:
    """Default settings but for the status beacon (once, at start: no background writes)
    and ``crypto_threads`` (the bench's nodes share this machine's cores)."""
    return NewNode(node_id=node_id, name=name, host="127.0.0.1", port=0, discovery=False,
                   status_interval_ms=QUIET_STATUS_MS, crypto_threads=crypto_threads)


def _gossip_every(node: Node, interval_ms: int) -> None:
    """Change the round interval of a running node's gossip (from its next round on)."""
    node.gossip.settings = replace(node.gossip.settings, interval_ms=interval_ms)


def _body_text() -> str:
    """4 KiB (UTF-8) of Chinese text that does not compress to nothing, the same every run."""
    rng = random.Random(9704)
    text = "".join(rng.choices("关于做好防汛防风工作的紧急通知各地级以上市人民政府办公厅", k=BODY_BYTES // 3))
    return text + "." * (BODY_BYTES - len(text.encode()))


def _draft(sender: Node, recipient: str, body: str, number: int) -> Document:
    return Document(doc_id=new_document_id(), title=f"基准测试公文 第{number + 1}号", kind="通知",
                    issuer=sender.config.name, issuer_id=sender.id, main_recipients=(recipient,),
                    body=body)


def _percentile(values: list[float], percent: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(percent) - 1]


async def _wait_for(condition: Callable[[], bool], timeout: float, what: str,
                    detail: Callable[[], str] = lambda: "") -> None:
    try:
        await wait_for(condition, timeout=timeout, what=what)
    except FederationTimeout as error:
        raise BenchError(f"{error}{detail()}") from None
