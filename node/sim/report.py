"""Read a finished simulation back from every node's SQLite file and judge it.

The proof of "nothing lost, nothing twice" comes from the nodes' own stores, not from
the simulator's bookkeeping: every (document, recipient) copy a sender recorded must
be stored exactly once at its recipient, and each must have brought back both of its
receipts (``delivered`` and ``signed_for``).
"""

from __future__ import annotations

import sqlite3
import statistics
from collections import Counter
from contextlib import closing
from pathlib import Path

RECEIPTS_PER_COPY = 2  # delivered, signed_for (the simulated clerk signs for everything)


def rows(database: Path, query: str) -> list[tuple]:
    # (sqlite3's own context manager commits but does not close)
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)) as connection:
        return connection.execute(query).fetchall()


def progress(data_dirs: dict[str, Path]) -> dict[str, int]:
    """Cheap running totals for the progress display and the quiescence check."""
    totals = Counter()
    for data_dir in data_dirs.values():
        database = data_dir / "node.db"
        (sent, settled, queued, received), = rows(
            database, "SELECT COUNT(*), COALESCE(SUM(state = 'signed_for'), 0), "
                      "(SELECT COUNT(*) FROM outbox), (SELECT COUNT(*) FROM inbound) FROM deliveries")
        totals.update(sent=sent, settled=settled, queued=queued, received=received)
    return dict(totals)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def documents_report(data_dirs: dict[str, Path]) -> dict:
    copies: dict[tuple[bytes, str], int] = {}  # (doc_id, recipient) -> created_at at the sender
    receipts_received = 0
    for data_dir in data_dirs.values():
        database = data_dir / "node.db"
        for doc_id, recipient, created_at, last_seq in rows(
                database, "SELECT d.doc_id, d.recipient, m.created_at, d.last_seq FROM deliveries d "
                          "JOIN documents m ON m.doc_id = d.doc_id"):
            copies[(doc_id, recipient)] = created_at
            receipts_received += last_seq
    stored: Counter = Counter()
    latencies = []
    for node_id, data_dir in data_dirs.items():
        for doc_id, stored_at in rows(data_dir / "node.db",
                                       "SELECT i.doc_id, m.stored_at FROM inbound i "
                                       "JOIN documents m ON m.doc_id = i.doc_id"):
            stored[(doc_id, node_id)] += 1
            if (doc_id, node_id) in copies:
                latencies.append(stored_at - copies[(doc_id, node_id)])
    delivered = sum(1 for key in copies if stored[key] >= 1)
    return {
        "documents": {"sent": len(copies), "delivered": delivered, "lost": len(copies) - delivered,
                      "duplicated": sum(count - 1 for count in stored.values() if count > 1),
                      "unexpected": sum(1 for key in stored if key not in copies)},
        "receipts": {"expected": RECEIPTS_PER_COPY * len(copies), "received": receipts_received},
        "latency_ms": {"p50": percentile(latencies, 0.50), "p95": percentile(latencies, 0.95),
                       "p99": percentile(latencies, 0.99),
                       "mean": round(statistics.fmean(latencies), 1) if latencies else 0.0},
    }


def convergence_report(rekeys: dict[str, float], seen_by_worker: list[dict], nodes: int) -> dict:
    """Seconds from each re-key to each node holding the new certificate."""
    delays, incomplete = [], []
    for target, started in rekeys.items():
        seen = {}
        for result in seen_by_worker:
            seen.update(result.get(target, {}))
        if len(seen) < nodes:
            incomplete.append(target)
        delays.extend(max(0.0, at - started) for at in seen.values())
    return {"p50": round(percentile(delays, 0.5), 3), "max": round(max(delays, default=0.0), 3),
            "changes": len(rekeys), "incomplete": incomplete}


def judge(report: dict) -> list[str]:
    """What failed, in words; empty when the run proved what it should."""
    problems = []
    docs, receipts = report["documents"], report["receipts"]
    if docs["lost"]:
        problems.append(f"{docs['lost']} document copies lost")
    if docs["duplicated"] or docs["unexpected"]:
        problems.append(f"{docs['duplicated']} duplicated, {docs['unexpected']} unexpected copies")
    if receipts["received"] != receipts["expected"]:
        problems.append(f"receipts {receipts['received']} of {receipts['expected']}")
    if report["convergence_s"]["incomplete"]:
        problems.append(f"directory change not everywhere: {report['convergence_s']['incomplete']}")
    return problems
