"""Build real federations for tests: real nodes, real ports, real SQLite, real keys.

Nodes are created and enrolled only through the ``govnode`` commands (``init``,
``enroll approve``), invoked with click's runner in a worker thread because the
parent's server runs on the test's own event loop. Waiting is always on a condition
with a deadline (``wait_until``), never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from click.testing import CliRunner, Result

from node.app import Node
from protocol import ids
from node.local_federation import FederationTimeout, wait_for
from node.cli import main

FAST_GOSSIP_MS = 100
QUIET_STATUS_MS = 3_600_000  # one beacon at start, so directories can be compared exactly


async def govnode(*args: str, expect_ok: bool = True) -> Result:
    """Run one govnode command in a thread (its own event loop) and return the result."""
    result = await asyncio.to_thread(CliRunner().invoke, main, list(args), catch_exceptions=False)
    if expect_ok and result.exit_code != 0:
        raise AssertionError(f"govnode {' '.join(args)} failed ({result.exit_code}):\n{result.output}")
    return result


def last_json(result: Result) -> dict:
    return json.loads(result.output.strip().splitlines()[-1])


async def wait_until(condition: Callable[[], bool | Awaitable[bool]], *, timeout: float = 15.0,
                     what: str = "condition") -> float:
    """Poll ``condition`` until true; return the seconds it took; fail at the deadline."""
    try:
        return await wait_for(condition, timeout=timeout, what=what)
    except FederationTimeout as timeout_error:
        raise AssertionError(str(timeout_error)) from None


@dataclass
class Federation:
    root_dir: Path
    nodes: dict[str, Node] = field(default_factory=dict)
    trust_anchor: str = ""
    gossip_ms: int = FAST_GOSSIP_MS
    status_ms: int = QUIET_STATUS_MS
    discovery_interface: str = ""  # set to run zeroconf on that interface only

    def data_dir(self, node_id: str) -> Path:
        return self.root_dir / node_id

    async def create_root(self, node_id: str = "gd", name: str = "广东省人民政府办公厅") -> Node:
        result = await govnode("init", "--data", str(self.data_dir(node_id)), "--id", node_id,
                               "--name", name, "--root", "--listen", "127.0.0.1:0",
                               *self._timing(), "--json")
        self.trust_anchor = last_json(result)["trust_anchor"]
        return await self.start(node_id)

    async def enroll(self, node_id: str, name: str, *, level: str | None = None) -> Node:
        """Init a child that sends its request, approve it at the parent, start it."""
        parent = self.nodes[node_id.rsplit(".", 1)[0]]
        await govnode("init", "--data", str(self.data_dir(node_id)), "--id", node_id, "--name", name,
                      "--parent-url", parent.urls[0], "--trust-anchor", self.trust_anchor,
                      "--listen", "127.0.0.1:0", *self._timing(),
                      *(("--level", level) if level else ()))
        await govnode("enroll", "approve", node_id, "--data", str(self.data_dir(parent.id)))
        node = await self.start(node_id)
        await wait_until(lambda: node.enrolled, what=f"{node_id} to pick up its certificate")
        return node

    async def start(self, node_id: str) -> Node:
        node = Node(self.data_dir(node_id), discovery=bool(self.discovery_interface))
        await node.start()
        self.nodes[node_id] = node
        return node

    async def stop(self, node_id: str) -> None:
        await self.nodes.pop(node_id).stop()

    async def stop_all(self) -> None:
        await asyncio.gather(*(node.stop() for node in self.nodes.values()), return_exceptions=True)
        self.nodes.clear()

    def _timing(self) -> tuple[str, ...]:
        discovery = (("--discovery-interface", self.discovery_interface) if self.discovery_interface
                     else ("--no-discovery",))
        return ("--gossip-interval-ms", str(self.gossip_ms),
                "--status-interval-ms", str(self.status_ms), *discovery)

    def roots(self) -> set[bytes]:
        return {node.directory.digest.root for node in self.nodes.values()}

    def converged(self) -> bool:
        """Same digest everywhere, holding every running node's endpoint (so a node that
        just started cannot be missed), and every node's status beacon at its ancestors."""
        return len(self.roots()) == 1 and all(
            node.directory.endpoint(other) is not None
            for node in self.nodes.values() for other in self.nodes) and all(
            self.nodes[above].directory.status(node_id) is not None
            for node_id in self.nodes for above in ids.ancestors(node_id) if above in self.nodes)

    async def wait_converged(self, timeout: float = 20.0) -> float:
        return await wait_until(self.converged, timeout=timeout, what="directory convergence")


SEVEN_NODES = [
    ("gd.chaozhou", "潮州市人民政府办公室"),
    ("gd.shantou", "汕头市人民政府办公室"),
    ("gd.chaozhou.raoping", "饶平县人民政府办公室"),
    ("gd.chaozhou.chaoan", "潮州市潮安区人民政府办公室"),
    ("gd.shantou.nanao", "南澳县人民政府办公室"),
    ("gd.shantou.chaoyang", "汕头市潮阳区人民政府办公室"),
]


async def seven_node_federation(root_dir: Path, **timing: int) -> Federation:
    federation = Federation(root_dir, **timing)
    await federation.create_root()
    for node_id, name in SEVEN_NODES:
        await federation.enroll(node_id, name)
    return federation
