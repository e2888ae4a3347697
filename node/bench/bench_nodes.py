"""The bench's real nodes: a sender and a receiver in two processes, and the helpers that
build, drive and watch nodes for ``govnode bench delivery`` (``node.bench.delivery``).

The sender runs in the bench's process, so that the bench drives sending through the
node's own code (``node.sending.send_documents``) and watches its inbound path directly
instead of polling; the receiver runs as ``python -m node.cli run`` in a subprocess, so
the two nodes use the machine's two cores the way two deployed nodes use their own.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from protocol.documents import Document

from node import operations
from node.app import Node
from node.clock import new_document_id, now_ms
from node.inbound import TransferResult
from node.local_federation import FederationTimeout, wait_for
from node.operations import NewNode
from node.sending import send_documents
from node.topology import load_topology
from node.bench.limits import BODY_BYTES
from node.bench.processes import REPO, child_env, cpu_seconds, terminate

SEND_CHUNK = 128  # documents per send_documents transaction in the throughput run
SUBMITTERS = 2  # chunks submitted at once: one is sealed while the other commits
WARMUP_DOCS = 64
# The bench's nodes share this machine's two cores, so by default they do their bulk
# crypto on their event loops, in slices, rather than in worker threads whose GIL
# hand-offs would cost CPU that the other node needs ([delivery] crypto_threads).
CRYPTO_THREADS = False
SENDER, RECEIVER = "gd", "gd.chaozhou"
# The latency federation is the mini topology (configs/topologies/mini.toml).
FEDERATION = [(node.id, node.name) for node in load_topology("mini").nodes]  # parents first
FAST_GOSSIP_MS = 100  # in-process nodes gossip fast to converge, then quietly
QUIET_GOSSIP_MS = 60_000
QUIET_STATUS_MS = 3_600_000


class BenchError(Exception):
    """The bench could not finish (a node did not come up, a deadline passed)."""


class NodePair:
    """The root in this process (sender), its enrolled child in a subprocess (receiver)."""

    def __init__(self, path: Path, crypto_threads: bool = CRYPTO_THREADS) -> None:
        self.path = path
        self.crypto_threads = crypto_threads

    async def __aenter__(self) -> "NodePair":
        root_dir, child_dir = self.path / SENDER, self.path / RECEIVER
        await operations.init_root(root_dir, new_node(SENDER, FEDERATION[0][1],
                                                      self.crypto_threads))
        self.sender = Node(root_dir, discovery=False)
        await self.sender.start()
        gossip_every(self.sender, FAST_GOSSIP_MS)
        self.process: subprocess.Popen | None = None
        try:
            await operations.init_child(child_dir, replace(
                new_node(RECEIVER, FEDERATION[1][1], self.crypto_threads),
                parent_url=self.sender.urls[0],
                trust_anchor=self.sender.keys.fingerprint))
            await operations.approve_request(root_dir, RECEIVER)
            self.log_path = self.path / "receiver.log"
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "node.cli", "run", "--data", str(child_dir),
                     "--no-discovery"], stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, cwd=REPO, env=child_env())
            await wait_or_fail(self._receiver_reachable, 60, "the receiving node to enroll "
                               "and announce its endpoint", self._receiver_log)
            # Converged: from now on the sender gossips at its configured pace, as the
            # receiver does, not ten times a second.
            gossip_every(self.sender, self.sender.config.gossip.interval_ms)
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
        receipts = Arrivals(sender)
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
        return [draft(self.sender, RECEIVER, body, number) for number in range(docs)]

    async def _send(self, drafts: list[Document], receipts: "Arrivals", what: str) -> float:
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


class Arrivals:
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


def new_node(node_id: str, name: str, crypto_threads: bool) -> NewNode:
    """Default settings but for the status beacon (once, at start: no background writes)
    and ``crypto_threads`` (the bench's nodes share this machine's cores)."""
    return NewNode(node_id=node_id, name=name, host="127.0.0.1", port=0, discovery=False,
                   status_interval_ms=QUIET_STATUS_MS, crypto_threads=crypto_threads)


def gossip_every(node: Node, interval_ms: int) -> None:
    """Change the round interval of a running node's gossip (from its next round on)."""
    node.gossip.settings = replace(node.gossip.settings, interval_ms=interval_ms)


def body_text() -> str:
    """4 KiB (UTF-8) of Chinese text that does not compress to nothing, the same every run."""
    rng = random.Random(9704)
    text = "".join(rng.choices("关于做好防汛防风工作的紧急通知各地级以上市人民政府办公厅", k=BODY_BYTES // 3))
    return text + "." * (BODY_BYTES - len(text.encode()))


def draft(sender: Node, recipient: str, body: str, number: int) -> Document:
    return Document(doc_id=new_document_id(), title=f"基准测试公文 第{number + 1}号", kind="通知",
                    issuer=sender.config.name, issuer_id=sender.id, main_recipients=(recipient,),
                    body=body)


async def wait_or_fail(condition: Callable[[], bool], timeout: float, what: str,
                       detail: Callable[[], str] = lambda: "") -> None:
    """``wait_for``, failing as a ``BenchError`` (with ``detail()`` appended)."""
    try:
        await wait_for(condition, timeout=timeout, what=what)
    except FederationTimeout as error:
        raise BenchError(f"{error}{detail()}") from None
