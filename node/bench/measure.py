"""Rate measurement shared by the benchmarks.

Theory of operation: a machine shared with other work is noisy, so a figure and its
physical limit are measured in interleaved short rounds (figure, limit, figure, ...)
and each is reported as its best round, the one least disturbed by whatever else
the machine was doing; the ratio is of the two bests. Interleaving means both sides
had the same chances of a quiet moment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Comparison:
    label: str
    per_second: float
    limit_label: str
    limit_per_second: float
    target_ratio: float | None = None

    @property
    def ratio(self) -> float:
        return self.per_second / self.limit_per_second if self.limit_per_second else 0.0

    @property
    def meets_target(self) -> bool | None:
        return None if self.target_ratio is None else self.ratio >= self.target_ratio


def rate(operation: Callable[[], object], seconds: float) -> float:
    """Operations per second of ``operation`` run in a loop for about ``seconds``."""
    count, started = 0, time.perf_counter()
    deadline = started + seconds
    batch = 1
    while True:
        for _ in range(batch):
            operation()
        count += batch
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started)
        batch = min(batch * 2, 1024)


def compare(label: str, operation: Callable[[], object], limit_label: str,
            limit: Callable[[], object], *, rounds: int, round_seconds: float,
            target_ratio: float | None = None) -> Comparison:
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(rate(operation, round_seconds))
        theirs.append(rate(limit, round_seconds))
    # Each side's best round: the one least disturbed by the rest of the machine (a
    # noisy VM moves single rounds by +-10%); the ratio is of the two bests.
    return Comparison(label, max(ours), limit_label, max(theirs), target_ratio)
