"""Rate measurement shared by the benchmarks.

Theory of operation: a machine shared with other work is noisy, so a figure and its
physical limit are measured in interleaved short rounds (figure, limit, figure, ...)
and each is reported as the median of its rounds; the ratio is the median of the
per-round ratios. Whatever slows the machine down during one pair of rounds slows
both sides about equally, which keeps the ratio honest.
"""

from __future__ import annotations

import statistics
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
    paired_ratio: float | None = None  # median of per-round ratios, when measured in pairs

    @property
    def ratio(self) -> float:
        if self.paired_ratio is not None:
            return self.paired_ratio
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
    return Comparison(label, statistics.median(ours), limit_label, statistics.median(theirs),
                      target_ratio, statistics.median(a / b for a, b in zip(ours, theirs)))
