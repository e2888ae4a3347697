"""One simulator worker: a process running its share of the nodes as real ``Node``s.

Theory of operation. The coordinator (``node.sim.run``) starts a worker with a JSON
spec naming its nodes, the traffic rate it originates, the fault schedule and the
seed, and talks to it over stdin/stdout lines: the worker prints ``ready`` once its
nodes serve, waits for ``go EPOCH`` (the shared start of traffic), then runs until
SIGTERM:

- **traffic**: Poisson arrivals at its rate, each a realistic exchange drawn from
  the mix (province notices to all cities, county 请示 to its city, city-to-city 函,
  department-to-county notices), sent from one of its own nodes through
  ``send_document``, the same path as ``govnode send``;
- **responder**: its nodes sign for what they receive (签收) and answer each 请示
  with a 批复, as a clerk would;
- **faults**: crashes and restarts of its own nodes, and the link policy (partition,
  drop, delay) applied to every request its nodes make;
- **watch**: the moment each of its nodes first holds a re-keyed certificate.

On SIGTERM it stops its nodes cleanly and writes its result file.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from protocol import ids
from protocol.documents import Document
from protocol.workflow import Action

from node.actions import act
from node.app import Node
from node.clock import new_document_id
from node.sending import send_document
from node.sim.faults import Fault
from node.sim.links import LinkPolicy

log = logging.getLogger("govnode.sim")
RESPOND_EVERY_S = 0.5
WATCH_EVERY_S = 0.02


@dataclass
class Worker:
    spec: dict
    nodes: dict[str, Node] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    replied: set[bytes] = field(default_factory=set)
    rekey_seen: dict[str, dict[str, float]] = field(default_factory=dict)
    sent: int = 0
    send_errors: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.spec["seed"])
        self.links = LinkPolicy(random.Random(self.spec["seed"] + 1))
        self.levels: dict[str, str] = self.spec["levels"]
        self.faults = [Fault(**fault) for fault in self.spec["faults"]]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        # All at once: started one by one, the first nodes' gossip would starve the rest.
        await asyncio.gather(*(self._start(node_id) for node_id in self.spec["nodes"]))
        print("ready", flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        start_at = float(line.split()[1])
        # Everything so far (nodes, synced directories) lives as long as the run: keep
        # it out of the cyclic collector's way, or every full collection walks it all.
        gc.collect()
        gc.freeze()
        tasks = [asyncio.create_task(coroutine) for coroutine in (
            self._traffic(start_at), self._respond(), self._faults(start_at), self._watch(start_at))]
        await self.stop.wait()
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("simulator task failed", exc_info=task.exception())
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(node.stop() for node in self.nodes.values()), return_exceptions=True)
        Path(self.spec["result"]).write_text(json.dumps({
            "rekey_seen": self.rekey_seen, "dropped": self.links.dropped, "sent": self.sent,
            "insync_bytes": [n.gossip.last_insync_bytes for n in self.nodes.values()
                             if n.gossip.last_insync_bytes],
            "send_errors": self.send_errors}))

    async def _start(self, node_id: str) -> None:
        node = Node(self.spec["nodes"][node_id], discovery=False)
        node.links = self.links
        await node.start()
        self.nodes[node_id] = node

    # --- traffic ------------------------------------------------------------

    async def _traffic(self, start_at: float) -> None:
        await _until(start_at)
        rate, end = self.spec["rate"], start_at + self.spec["duration_s"]
        if rate <= 0:
            return
        while time.time() < end:
            await asyncio.sleep(self.rng.expovariate(rate))  # Poisson arrivals at `rate`
            exchange = self._draw_exchange()
            if exchange is not None:
                await self._send(*exchange)

    def _owned(self, level: str) -> list[str]:
        return [n for n in self.nodes if self.levels[n] == level]

    def _all(self, level: str) -> list[str]:
        return [n for n, lvl in self.levels.items() if lvl == level]

    def _draw_exchange(self) -> tuple[str, tuple[str, ...], str, str] | None:
        """(sender, recipients, kind, title) from the traffic mix, or None if this
        worker owns no node of the drawn kind."""
        draw = self.rng.choices(("notice", "request", "letter", "department"), (1, 4, 3, 2))[0]
        counties, cities = self._all("county"), self._all("city")
        if draw == "notice" and self._owned("province"):
            return self._owned("province")[0], tuple(cities), "通知", "关于做好近期重点工作的通知"
        if draw == "request" and self._owned("county"):
            sender = self.rng.choice(self._owned("county"))  # to its city (Shunde: the province)
            return sender, (ids.parent(sender),), "请示", "关于申请专项资金的请示"
        if draw == "letter" and len(cities) > 1 and self._owned("city"):
            sender = self.rng.choice(self._owned("city"))
            other = self.rng.choice([c for c in cities if c != sender])
            return sender, (other,), "函", "关于商请协助办理有关事项的函"
        if draw == "department" and self._owned("department") and counties:
            sender = self.rng.choice(self._owned("department"))
            return sender, tuple(self.rng.sample(counties, min(3, len(counties)))), "通知", "关于开展专项检查的通知"
        return None

    async def _send(self, sender: str, to: tuple[str, ...], kind: str, title: str,
                    in_reply_to: bytes | None = None) -> None:
        node = self.nodes.get(sender)
        if node is None or node.stopping:
            return  # crashed right now: a clerk would send later
        draft = Document(doc_id=new_document_id(), title=title, kind=kind, issuer=node.config.name,
                         issuer_id=sender, main_recipients=to, body="正文。" * 200,
                         signer="值班领导" if kind == "请示" else "", in_reply_to=in_reply_to)
        try:
            await send_document(node.context, draft)
            self.sent += 1
        except Exception as error:  # a crash mid-send is part of the simulation
            self.send_errors += 1
            log.info("send from %s failed: %s", sender, error)

    # --- the clerk at every node ---------------------------------------------

    async def _respond(self) -> None:
        while True:
            await asyncio.sleep(RESPOND_EVERY_S)  # a clerk looks at the inbox now and then
            for node in list(self.nodes.values()):
                if not node.stopping:
                    try:
                        await self._respond_at(node)
                    except Exception as error:  # the node may crash under us
                        log.info("responder at %s: %s", node.id, error)

    async def _respond_at(self, node: Node) -> None:
        async with node.db.execute(
                "SELECT i.doc_id, i.origin, d.kind FROM inbound i JOIN documents d "
                "ON d.doc_id = i.doc_id WHERE i.state = 'delivered'") as cursor:
            waiting = await cursor.fetchall()
        for doc_id, origin, kind in waiting:
            await act(node.context, doc_id, Action.SIGN_FOR, actor="值班员")
            if kind == "请示" and doc_id not in self.replied:
                self.replied.add(doc_id)
                await self._send(node.id, (origin,), "批复", "关于同意专项资金的批复", doc_id)

    # --- faults ---------------------------------------------------------------

    async def _faults(self, start_at: float) -> None:
        events = []
        for fault in self.faults:
            events.append((start_at + fault.at_s, "begin", fault))
            if fault.duration_s:
                events.append((start_at + fault.at_s + fault.duration_s, "end", fault))
        for when, phase, fault in sorted(events, key=lambda e: e[0]):
            await _until(when)
            await self._apply(fault, phase == "begin")

    async def _apply(self, fault: Fault, begin: bool) -> None:
        if fault.kind == "kill" and fault.target in self.nodes:
            if begin:
                await self.nodes[fault.target].crash()
            else:
                await self._start(fault.target)
        elif fault.kind == "partition":
            (self.links.cut_subtrees.add if begin else self.links.cut_subtrees.discard)(fault.target)
        elif fault.kind == "drop":
            self.links.drop_share, self.links.chosen = (fault.share, fault.target) if begin else (0.0, "*")
        elif fault.kind == "delay":
            self.links.delay_ms, self.links.chosen = (fault.delay_ms, fault.target) if begin else (0, "*")

    async def _watch(self, start_at: float) -> None:
        rekeys = [f for f in self.faults if f.kind == "rekey"]
        if not rekeys:
            return
        # A re-key is seen when a certificate's serial passes the one held at the start
        # (serials count per issuer: a province's hundredth child starts at 100).
        before = {fault.target: max((node.directory.certificate(fault.target).serial
                                     for node in self.nodes.values()
                                     if node.directory.certificate(fault.target)), default=0)
                  for fault in rekeys}
        while True:
            now = time.time()
            for fault in rekeys:
                seen = self.rekey_seen.setdefault(fault.target, {})
                if now < start_at + fault.at_s:
                    continue
                for node_id, node in self.nodes.items():
                    if node_id in seen or node.stopping:
                        continue
                    certificate = node.directory.certificate(fault.target)
                    if certificate is not None and certificate.serial > before[fault.target]:
                        seen[node_id] = now
            await asyncio.sleep(WATCH_EVERY_S)


async def _until(epoch: float) -> None:
    delay = epoch - time.time()
    if delay > 0:
        await asyncio.sleep(delay)  # scheduled wall-clock moment shared by all workers


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    asyncio.run(Worker(spec).run())


if __name__ == "__main__":
    main()
