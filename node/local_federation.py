"""A whole topology as real nodes in one process, on loopback (the demo; the simulator).

Every node gets its own data directory, keys, SQLite file and aiohttp server on a
port the OS picks, and joins exactly as an operator's node does: the root through
``operations.init_root`` (``govnode init --root``), every other node through
``operations.init_child`` (``govnode init --parent-url``, which sends the signed
request) and ``operations.approve_request`` at its parent (``govnode enroll
approve``); the started child then picks its certificate up by itself. Nodes of one
depth enroll at once, each depth after its parents. Waiting is always on a condition
with a deadline (``wait_for``), never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from protocol import ids

from node.app import Node
from node.operations import NewNode, approve_request, init_child, init_root
from node.topology import Topology, TopologyNode

POLL_S = 0.02


class FederationTimeout(Exception):
    """A condition did not become true before its deadline; the message says which."""


async def wait_for(condition: Callable[[], bool | Awaitable[bool]], *, timeout: float,
                   what: str) -> float:
    """Poll ``condition`` until true; return the seconds it took, or raise at the deadline."""
    started = time.monotonic()
    while True:
        outcome = condition()
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if outcome:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise FederationTimeout(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(POLL_S)


@dataclass
class LocalFederation:
    topology: Topology
    root_dir: Path
    host: str = "127.0.0.1"
    nodes: dict[str, Node] = field(default_factory=dict)
    trust_anchor: str = ""

    def data_dir(self, node_id: str) -> Path:
        return self.root_dir / node_id

    def _new_node(self, spec: TopologyNode, parent_url: str = "") -> NewNode:
        gossip = self.topology.gossip
        return NewNode(node_id=spec.id, name=spec.name, level=spec.level, division=spec.division,
                       host=self.host, port=0, parent_url=parent_url,
                       trust_anchor=self.trust_anchor, discovery=False,
                       gossip_interval_ms=gossip.interval_ms, gossip_fanout=gossip.fanout,
                       status_interval_ms=gossip.status_interval_ms)

    async def build(self, *, timeout: float = 30.0,
                    on_enrolled: Callable[[str], None] = lambda node_id: None) -> None:
        """Create, enroll and start every node of the topology, parents first."""
        groups = self.topology.depths()
        (root,) = groups[0]
        certificate = await init_root(self.data_dir(root.id), self._new_node(root))
        self.trust_anchor = certificate.fingerprint
        await self._start(root.id)
        on_enrolled(root.id)
        for group in groups[1:]:
            await asyncio.gather(*(self._enroll(spec, timeout, on_enrolled) for spec in group))

    async def _enroll(self, spec: TopologyNode, timeout: float,
                      on_enrolled: Callable[[str], None]) -> None:
        parent = self.nodes[spec.parent]
        await init_child(self.data_dir(spec.id), self._new_node(spec, parent.urls[0]))
        await approve_request(self.data_dir(parent.id), spec.id)
        node = await self._start(spec.id)
        await wait_for(lambda: node.enrolled, timeout=timeout,
                       what=f"{spec.id} to pick up its certificate")
        on_enrolled(spec.id)

    async def _start(self, node_id: str) -> Node:
        node = Node(self.data_dir(node_id), discovery=False)
        self.nodes[node_id] = node  # before start: a failed start is still stopped
        await node.start()
        return node

    def converged(self) -> bool:
        """Every node holds every member's certificate and endpoint, and the status
        beacons of its subtree (beacons travel up the tree)."""
        members = self.topology.node_ids
        return len(self.nodes) == len(members) and all(
            node.directory.certificate(other) is not None
            and node.directory.endpoint(other) is not None
            and (node.directory.status(other) is not None
                 or not ids.is_under(other, node.id, strict=False))
            for node in self.nodes.values() for other in members)

    async def wait_converged(self, timeout: float = 30.0) -> float:
        return await wait_for(self.converged, timeout=timeout, what="directory convergence")

    async def stop(self) -> None:
        await asyncio.gather(*(node.stop() for node in self.nodes.values()),
                             return_exceptions=True)
        self.nodes.clear()
