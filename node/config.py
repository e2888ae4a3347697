"""A node's configuration: ``node.toml`` in its data directory.

Every setting has a default except the node's identity and trust anchor, which
``govnode init`` writes. Unknown sections or keys are refused with the file name and
the key, so a typo never silently falls back to a default. The README's
configuration reference lists the same keys as ``DEFAULTS`` below.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import ids
from protocol.certs import Level
from protocol.errors import BadKeyFile, BadNodeId
from protocol.keys import normalise_fingerprint

CONFIG_FILE = "node.toml"

DEFAULTS: dict[str, dict[str, Any]] = {
    "node": {"id": None, "name": None, "level": None, "division": "", "trust_anchor": None},
    "server": {"host": "127.0.0.1", "port": 8440, "public_urls": []},
    "parent": {"url": ""},
    "keys": {"passphrase_env": "GOVNODE_PASSPHRASE"},
    "enrollment": {"cert_days": 365, "poll_interval_ms": 2000},
    "gossip": {"interval_ms": 1000, "fanout": 3, "eager_fanout": 1, "random_peers": 1,
               "quiet_rounds": 25, "status_interval_ms": 10000, "request_timeout_ms": 5000,
               "max_records_per_request": 512},
    "delivery": {"batch_frames": 256, "batch_bytes": 4 * 1024 * 1024, "initial_backoff_ms": 200,
                 "max_backoff_ms": 60_000, "request_timeout_ms": 30_000,
                 "max_attachment_bytes": 8 * 1024 * 1024, "crypto_threads": True},
    "discovery": {"enabled": True, "interfaces": []},
    "storage": {"secure_delete": False},
    "log": {"level": "info", "format": "text"},
}


class ConfigError(Exception):
    """A node.toml that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class GossipSettings:
    interval_ms: int
    fanout: int
    eager_fanout: int
    random_peers: int
    quiet_rounds: int
    status_interval_ms: int
    request_timeout_ms: int
    max_records_per_request: int


@dataclass(frozen=True)
class NodeConfig:
    node_id: str
    name: str
    level: Level
    division: str | None
    trust_anchor: str
    host: str
    port: int
    public_urls: tuple[str, ...]
    parent_url: str
    passphrase_env: str
    cert_days: int
    enrollment_poll_ms: int
    gossip: GossipSettings
    delivery: dict[str, int | bool]
    discovery_enabled: bool
    discovery_interfaces: tuple[str, ...]
    secure_delete: bool
    log_level: str
    log_format: str
    raw: dict[str, dict[str, Any]] = field(repr=False, compare=False, default_factory=dict)

    @property
    def is_root(self) -> bool:
        return ids.parent(self.node_id) is None


def load_config(data_dir: Path) -> NodeConfig:
    path = Path(data_dir) / CONFIG_FILE
    try:
        parsed = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (create the node with `govnode init`)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return config_from_dict(parsed, source=str(path))


def config_from_dict(parsed: dict[str, Any], *, source: str = CONFIG_FILE) -> NodeConfig:
    merged = _merge_with_defaults(parsed, source)
    node, server, gossip = merged["node"], merged["server"], merged["gossip"]
    for key in ("id", "name", "level", "trust_anchor"):
        if not node[key]:
            raise ConfigError(f"{source}: [node] {key} is required")
    try:
        node_id = ids.validate_node_id(node["id"])
        trust_anchor = normalise_fingerprint(node["trust_anchor"])
        level = Level(node["level"])
    except (BadNodeId, BadKeyFile, ValueError) as exc:
        raise ConfigError(f"{source}: [node] {exc}") from None
    if not isinstance(server["port"], int) or not 0 <= server["port"] <= 65535:
        raise ConfigError(f"{source}: [server] port must be 0-65535 (0 = any free port)")
    return NodeConfig(
        node_id=node_id, name=node["name"], level=level, division=node["division"] or None,
        trust_anchor=trust_anchor, host=server["host"], port=server["port"],
        public_urls=tuple(server["public_urls"]), parent_url=merged["parent"]["url"].rstrip("/"),
        passphrase_env=merged["keys"]["passphrase_env"],
        cert_days=merged["enrollment"]["cert_days"],
        enrollment_poll_ms=merged["enrollment"]["poll_interval_ms"],
        gossip=GossipSettings(**gossip), delivery=dict(merged["delivery"]),
        discovery_enabled=bool(merged["discovery"]["enabled"]),
        discovery_interfaces=tuple(merged["discovery"]["interfaces"]),
        secure_delete=merged["storage"]["secure_delete"],
        log_level=merged["log"]["level"], log_format=merged["log"]["format"], raw=merged)


def _merge_with_defaults(parsed: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for section, values in parsed.items():
        if section not in DEFAULTS:
            raise ConfigError(f"{source}: unknown section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        for key, value in values.items():
            if key not in DEFAULTS[section]:
                raise ConfigError(f"{source}: unknown key {key!r} in [{section}]")
            default = DEFAULTS[section][key]
            if default is not None and not isinstance(value, type(default)):
                raise ConfigError(f"{source}: [{section}] {key} must be "
                                  f"{type(default).__name__}, got {value!r}")
    for section, defaults in DEFAULTS.items():
        merged[section] = {**defaults, **parsed.get(section, {})}
    return merged


def render_config(values: dict[str, dict[str, Any]]) -> str:
    """TOML text for ``values`` (sections of str/int/bool/list-of-str), defaults shown."""
    lines = ["# govnode node configuration; see README.md, 'Configuration reference'.", ""]
    for section, defaults in DEFAULTS.items():
        lines.append(f"[{section}]")
        for key, default in defaults.items():
            value = values.get(section, {}).get(key, default)
            if value is None:
                continue
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")
