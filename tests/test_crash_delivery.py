"""SIGKILL anywhere on the route during a stream of 500 documents: nothing lost, nothing twice.

Five real node processes (county > city > province > city > county). While this test
queues 500 documents at the sending county (as the CLI does: straight into its
database), it kills the sender, a relay or the recipient with SIGKILL at seeded
random moments and restarts it. In the end every document must be stored exactly
once at the recipient and every ``delivered`` receipt must be back at the sender.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from federation import govnode, last_json, wait_until
from node import operations
from node.sending import send_document
from protocol.documents import Document
from protocol.frames import new_message_id

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = 500
ROUTE = ["gd.chaozhou.raoping", "gd.chaozhou", "gd", "gd.shantou", "gd.shantou.nanao"]
NAMES = {"gd": "广东省人民政府办公厅", "gd.chaozhou": "潮州市人民政府办公室",
         "gd.shantou": "汕头市人民政府办公室", "gd.chaozhou.raoping": "饶平县人民政府办公室",
         "gd.shantou.nanao": "南澳县人民政府办公室"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Processes:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.running: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.kills = 0
        self.victims: set[str] = set()

    def data(self, node_id: str) -> Path:
        return self.base / node_id

    def url(self, node_id: str) -> str:
        return f"http://127.0.0.1:{self.ports[node_id]}"

    def start(self, node_id: str) -> None:
        log = (self.base / f"{node_id}.log").open("ab")
        self.running[node_id] = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "run", "--data", str(self.data(node_id)),
             "--no-discovery"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def kill(self, node_id: str) -> None:
        process = self.running.pop(node_id)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        self.kills += 1
        self.victims.add(node_id)

    def stop_all(self) -> None:
        for process in self.running.values():
            process.send_signal(signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.running.clear()


def count(database: Path, query: str) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as connection:
        return connection.execute(query).fetchone()[0]


@pytest.fixture
async def processes(tmp_path):
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


async def build(procs: Processes) -> None:
    for node_id in ("gd", "gd.chaozhou", "gd.shantou", "gd.chaozhou.raoping", "gd.shantou.nanao"):
        procs.ports[node_id] = free_port()
        common = ("--data", str(procs.data(node_id)), "--id", node_id, "--name", NAMES[node_id],
                  "--listen", f"127.0.0.1:{procs.ports[node_id]}", "--no-discovery",
                  "--gossip-interval-ms", "200", "--status-interval-ms", "3600000")
        if node_id == "gd":
            anchor = last_json(await govnode("init", *common, "--root", "--json"))["trust_anchor"]
        else:
            parent = node_id.rsplit(".", 1)[0]
            await govnode("init", *common, "--parent-url", procs.url(parent), "--trust-anchor", anchor)
            await govnode("enroll", "approve", node_id, "--data", str(procs.data(parent)))
        procs.start(node_id)
        await wait_until(lambda: _enrolled(procs, node_id), timeout=30, what=f"{node_id} enrolled")
    sender = procs.data(ROUTE[0]) / "node.db"
    await wait_until(lambda: count(sender, "SELECT COUNT(*) FROM directory_records WHERE kind = 'cert'") == 5,
                     timeout=30, what="the sender to know every certificate")


def _enrolled(procs: Processes, node_id: str) -> bool:
    database = procs.data(node_id) / "node.db"
    return database.exists() and count(
        database, f"SELECT COUNT(*) FROM directory_records WHERE kind = 'endpoint' AND subject = '{node_id}'") == 1


async def queue_documents(procs: Processes, total: int, batch: int) -> None:
    """Queue ``total`` documents at the sender, as the CLI does, in batches."""
    async with operations.open_node(procs.data(ROUTE[0])) as node:
        context = node.context()
        for number in range(total):
            draft = Document(doc_id=new_message_id(), title=f"压力测试公文 第{number + 1}号", kind="函",
                             issuer=NAMES[ROUTE[0]], issuer_id=ROUTE[0],
                             main_recipients=(ROUTE[-1],), body="正文" * 500)
            await send_document(context, draft)
            if number % batch == batch - 1:
                # Pace the stream by the crashes, not by the clock: each batch waits for
                # one more kill, so kills land all through the stream.
                kills = procs.kills
                await wait_until(lambda: procs.kills > kills, timeout=30, what="the next kill")


async def kill_at_random(procs: Processes, stop: asyncio.Event, rng: random.Random) -> None:
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(0.3, 0.9))  # seeded moments of the crashes
        victim = rng.choice(ROUTE)
        procs.kill(victim)
        await asyncio.sleep(rng.uniform(0.1, 0.6))
        procs.start(victim)


async def test_no_document_or_receipt_is_lost_or_doubled_when_nodes_are_killed(processes):
    await build(processes)
    stop = asyncio.Event()
    killer = asyncio.create_task(kill_at_random(processes, stop, random.Random(20261125)))
    await queue_documents(processes, DOCUMENTS, batch=50)  # ten kills during the stream
    stop.set()
    await killer
    for node_id in ROUTE:
        if node_id not in processes.running:
            processes.start(node_id)

    sender, recipient = (processes.data(n) / "node.db" for n in (ROUTE[0], ROUTE[-1]))
    await wait_until(lambda: count(sender, "SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'")
                     == DOCUMENTS, timeout=180, what="every delivered receipt back at the sender")
    assert count(recipient, "SELECT COUNT(*) FROM inbound") == DOCUMENTS
    assert count(recipient, "SELECT COUNT(DISTINCT doc_id) FROM documents WHERE direction = 'received'") == DOCUMENTS
    assert count(recipient, "SELECT COUNT(*) FROM receipts") == DOCUMENTS  # one 'delivered' step each
    assert count(sender, "SELECT COUNT(*) FROM deliveries") == DOCUMENTS
    assert len(processes.victims) >= 3  # the seeded schedule hit several roles
    for relay in ROUTE[1:-1]:
        assert count(processes.data(relay) / "node.db", "SELECT COUNT(*) FROM documents") == 0
