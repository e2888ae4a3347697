"""How commands print: rich tables for people, one JSON object for programs.

With ``--json`` a command prints exactly one JSON object as its last line, so scripts
can read ``tail -n 1``.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from rich.console import Console
from rich.table import Table

from node.bench.measure import Comparison

console = Console()


def print_json(document: dict[str, Any]) -> None:
    print(json.dumps(document, ensure_ascii=False, sort_keys=True))


def comparisons_table(title: str, comparisons: Iterable[Comparison]) -> Table:
    table = Table(title=title)
    for column in ("measure", "per second", "physical limit (same run)", "per second",
                   "ratio", "target"):
        table.add_column(column, justify="right" if column in ("per second", "ratio") else "left")
    for item in comparisons:
        verdict = {None: "", True: f"≥ {item.target_ratio} ok", False: f"≥ {item.target_ratio} MISSED"}
        table.add_row(item.label, f"{item.per_second:,.0f}", item.limit_label,
                      f"{item.limit_per_second:,.0f}", f"{item.ratio:.2f}",
                      verdict[item.meets_target])
    return table
