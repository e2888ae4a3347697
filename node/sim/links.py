"""What the simulated network does to requests between nodes: cuts, drops, delays.

A ``LinkPolicy`` is consulted before every request a node makes (``Node.links``).
A link is the unordered pair of node ids; faults name links by the subtree they
cut off or by a share of requests to drop or delay. Draws come from a seeded
generator so that a run can be repeated.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import aiohttp

from protocol import ids


class LinkCut(aiohttp.ClientConnectionError):
    """Raised into a node's request: the simulated link is down."""


@dataclass
class LinkPolicy:
    rng: random.Random
    cut_subtrees: set[str] = field(default_factory=set)  # roots of subtrees cut off
    drop_share: float = 0.0  # share of requests lost on the chosen links
    delay_ms: int = 0  # added to requests on the chosen links
    chosen: str = "*"  # "*" = every link; else links touching this subtree
    dropped: int = 0
    delayed: int = 0

    def _chosen(self, a: str, b: str) -> bool:
        return self.chosen == "*" or any(ids.is_under(n, self.chosen, strict=False) for n in (a, b))

    def is_cut(self, a: str, b: str) -> bool:
        return any(ids.is_under(a, root, strict=False) != ids.is_under(b, root, strict=False)
                   for root in self.cut_subtrees)

    async def before_request(self, local: str, peer: str | None) -> None:
        if peer is None:
            return
        if self.is_cut(local, peer):
            raise LinkCut(f"simulated partition between {local} and {peer}")
        if not self._chosen(local, peer):
            return
        if self.drop_share and self.rng.random() < self.drop_share:
            self.dropped += 1
            raise LinkCut(f"simulated loss of a request from {local} to {peer}")
        if self.delay_ms:
            self.delayed += 1
            await asyncio.sleep(self.delay_ms / 1000)  # the simulated link's latency
