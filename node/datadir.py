"""A node's data directory: config, keys and database, and how to open them.

```
DIR/node.toml     configuration (node.config)
DIR/keys.json     secret keys, mode 0600, optionally sealed with a passphrase
DIR/node.db       SQLite database (WAL), with node.db-wal and node.db-shm beside it
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from protocol.keys import NodeKeys, key_file_is_sealed, load_key_file, read_key_file

from node.config import CONFIG_FILE, NodeConfig, load_config
from node.store.db import DATABASE_FILE

KEYS_FILE = "keys.json"
NEXT_KEYS_FILE = "keys.next.json"  # written by `govnode rekey` until the new cert arrives
PREVIOUS_KEYS_FILE = "keys.previous.json"  # the keys before the last re-key (decryption only)


@dataclass(frozen=True)
class DataDir:
    path: Path

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def keys_file(self) -> Path:
        return self.path / KEYS_FILE

    @property
    def next_keys_file(self) -> Path:
        return self.path / NEXT_KEYS_FILE

    @property
    def previous_keys_file(self) -> Path:
        return self.path / PREVIOUS_KEYS_FILE

    @property
    def database_file(self) -> Path:
        return self.path / DATABASE_FILE

    @property
    def wal_file(self) -> Path:
        """SQLite's write-ahead log beside the database: it moves when anyone commits."""
        return self.path / f"{DATABASE_FILE}-wal"

    def load_config(self) -> NodeConfig:
        return load_config(self.path)

    def load_keys(self, config: NodeConfig, passphrase: str | None = None,
                  *, next_keys: bool = False, previous: bool = False) -> NodeKeys:
        """Load the key file; a sealed one takes the passphrase, or the configured env var."""
        path = self.next_keys_file if next_keys else (
            self.previous_keys_file if previous else self.keys_file)
        data = read_key_file(path)
        if passphrase is None and key_file_is_sealed(data):
            passphrase = os.environ.get(config.passphrase_env)
        return load_key_file(data, passphrase)
