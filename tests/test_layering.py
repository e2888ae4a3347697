"""The dependency rule of DESIGN §2: protocol/ is sans-I/O and imports nothing of ours."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_IN_PROTOCOL = {
    "aiohttp", "aiosqlite", "sqlite3", "asyncio", "socket", "ssl", "http", "urllib",
    "zeroconf", "subprocess", "threading", "selectors", "time", "datetime", "random",
    "node", "admin_ui",
}


def _imported_top_level_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_protocol_sources_import_no_io_library_and_nothing_of_ours():
    offenders = {}
    for path in sorted((ROOT / "protocol").glob("*.py")):
        bad = _imported_top_level_modules(path) & FORBIDDEN_IN_PROTOCOL
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}


def test_importing_protocol_loads_no_network_or_database_module():
    code = (
        "import sys, pkgutil, importlib, protocol\n"
        "for m in pkgutil.iter_modules(protocol.__path__): importlib.import_module('protocol.' + m.name)\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = set(subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout.split())
    assert "protocol.frames" in loaded  # the probe really imported the package
    assert not loaded & {"aiohttp", "aiosqlite", "sqlite3", "asyncio", "zeroconf", "node", "admin_ui"}
