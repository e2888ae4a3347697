"""Fault specifications: ``--faults "kill:random@10+5,partition:gd.chaozhou@15+10,..."``.

Each item is ``KIND:ARGUMENT@START+DURATION`` (seconds from the start of traffic):

=============================  ==================================================
``kill:ID@T+D``                SIGKILL-like stop of node ID at T, restart at T+D
``partition:ID@T+D``           cut the subtree of ID off from the rest for D s
``drop:5%@T+D``                lose 5% of requests on every link (``drop:5%:ID``:
                               only links touching the subtree of ID)
``delay:50@T+D``               add 50 ms to every request (``delay:50:ID`` likewise)
``rekey:ID@T``                 re-key node ID; its new certificate's spread is timed
=============================  ==================================================

``random`` as an ID picks, from the seed, a node other than the root (for ``kill``
and ``rekey``) or a city (for ``partition``), so a run repeats exactly.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass

from protocol import ids

KINDS = ("kill", "partition", "drop", "delay", "rekey")
_ITEM = re.compile(r"^(?P<kind>[a-z]+):(?P<argument>[^@]+)@(?P<at>[0-9.]+)(?:\+(?P<duration>[0-9.]+))?$")


class FaultSpecError(ValueError):
    pass


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str  # node id, subtree root, or "*"
    at_s: float
    duration_s: float = 0.0
    share: float = 0.0  # drop
    delay_ms: int = 0  # delay

    def as_dict(self) -> dict:
        return asdict(self)


def parse_faults(spec: str, node_ids: list[str], rng: random.Random) -> list[Fault]:
    faults = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        match = _ITEM.match(item)
        if not match or match["kind"] not in KINDS:
            raise FaultSpecError(f"cannot read fault {item!r}; expected KIND:ARG@START+DURATION "
                                 f"with KIND one of {', '.join(KINDS)}")
        kind, argument = match["kind"], match["argument"]
        at, duration = float(match["at"]), float(match["duration"] or 0)
        if kind in ("kill", "partition", "drop", "delay") and duration <= 0:
            raise FaultSpecError(f"{item!r}: a {kind} needs a duration (+SECONDS)")
        faults.append(_fault(kind, argument, at, duration, node_ids, rng, item))
    return sorted(faults, key=lambda fault: fault.at_s)


def _fault(kind: str, argument: str, at: float, duration: float, node_ids: list[str],
           rng: random.Random, item: str) -> Fault:
    if kind in ("kill", "rekey", "partition"):
        return Fault(kind, _node(argument, kind, node_ids, rng, item), at, duration)
    value, _, scope = argument.partition(":")
    target = _node(scope, kind, node_ids, rng, item) if scope else "*"
    try:
        if kind == "drop":
            share = float(value.rstrip("%")) / (100 if value.endswith("%") else 1)
            if not 0 < share < 1:
                raise ValueError
            return Fault(kind, target, at, duration, share=share)
        return Fault(kind, target, at, duration, delay_ms=int(value))
    except ValueError:
        raise FaultSpecError(f"{item!r}: bad {kind} amount {value!r}") from None


def _node(argument: str, kind: str, node_ids: list[str], rng: random.Random, item: str) -> str:
    if argument == "random":
        depth = 2 if kind == "partition" else None
        pool = [n for n in node_ids if ids.parent(n) is not None and
                (depth is None or ids.depth(n) == depth)]
        return rng.choice(sorted(pool))
    if argument not in node_ids:
        raise FaultSpecError(f"{item!r}: {argument} is not a node of this topology")
    if kind == "rekey" and ids.parent(argument) is None:
        raise FaultSpecError(f"{item!r}: the root cannot re-key in place (every node pins its key)")
    return argument
