"""Open a node's SQLite database in WAL mode and bring its schema up to date.

Theory of operation: migrations are the numbered ``schema/NNN_*.sql`` files. The
database's ``PRAGMA user_version`` records the last one applied; opening applies
the rest in order, each in its own transaction together with the version bump, so
a crash mid-migration leaves the previous version intact. Foreign keys are off while
migrations run (a migration may rebuild a table that others refer to) and checked
before each one commits.

``synchronous=FULL``: a commit is on disk before it returns, which is what lets the
node acknowledge anything it has stored.

Dirty pages stay in memory until the commit (``cache_spill``, up to
``SPILL_PAGES``): a transaction of a few hundred documents and frames holds several
megabytes, more than the page cache's 2 MB, and SQLite would otherwise write the
excess to the WAL mid-transaction on the statement's thread, which is the event
loop's (``node/store/connection.py``), where a write under disk pressure may wait for
writeback. Held back, those pages go to the WAL in the commit, on the commit thread.
A bigger transaction still spills beyond ``SPILL_PAGES``, so a connection's memory
stays bounded (about 16 MB during its biggest transactions, per node of a process).

``secure_delete``: by default ``FAST``: deleted content is overwritten where that
costs no extra write (the b-tree pages a delete rewrites anyway), but a page the
delete frees keeps its old bytes in the database file until it is used again. What
a running node deletes is its outbox's frames once the next hop has them (document
bodies sealed; envelopes, receipts and their steps, actors and details in clear),
acknowledged frame ids and expired dedupe ids; it never deletes a document. Zeroing
every freed page (``ON``, what Debian's build of SQLite does unless told otherwise;
upstream's default is ``OFF``) costs a 4 KiB write to the WAL and again to the
database file for each frame of 4 KiB or more that leaves the outbox: a third of
all a sending node writes. A site that must clear residual information (等保
剩余信息保护) sets ``[storage] secure_delete = true`` in ``node.toml``.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import weakref
from contextlib import asynccontextmanager
from typing import AsyncIterator
from importlib import resources
from pathlib import Path

from node.store.connection import Database

DATABASE_FILE = "node.db"
WAL_KEPT_BYTES = 16 * 1024 * 1024
# About 16 MB of 4 KiB pages: twice what a 4 MiB transfer dirties (its documents and
# their frames). Not a multiple of 256: SQLite also reads the number as on/off by its
# low byte, and 4096 means off.
SPILL_PAGES = 4000
_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str]]:
    found = []
    for entry in resources.files("node.store").joinpath("schema").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    return sorted(found)


async def open_database(path: Path, *, secure_delete: bool = False) -> Database:
    """The node's database, migrated; ``secure_delete`` zeroes every page a delete
    frees (see the module docstring)."""
    connection = Database.open(path)
    await connection.execute("PRAGMA journal_mode=WAL")
    await connection.execute("PRAGMA synchronous=FULL")
    await connection.execute(f"PRAGMA secure_delete={'ON' if secure_delete else 'FAST'}")
    # No automatic checkpoints: SQLite would run one inside whichever COMMIT crosses
    # the threshold, copying megabytes on that statement's thread. A running node calls
    # ``Database.checkpoint`` (a thread, a connection of its own) from a loop of its own;
    # a CLI connection's WAL is folded in when the last connection to the file closes.
    await connection.execute("PRAGMA wal_autocheckpoint=0")
    await connection.execute(f"PRAGMA journal_size_limit={WAL_KEPT_BYTES}")  # cut when rewound
    await connection.execute("PRAGMA foreign_keys=ON")
    await connection.execute(f"PRAGMA cache_spill={SPILL_PAGES}")
    try:
        await _migrate(connection)
    except BaseException:
        await connection.close()
        raise
    return connection


async def _migrate(connection: Database) -> None:
    if not _pending(await _user_version(connection)):
        return  # the usual case, without taking the write lock
    # A migration may rebuild a table that others refer to: SQLite's procedure is to
    # turn foreign keys off (a no-op inside a transaction, so here, around them all)
    # and check them before committing.
    await connection.execute("PRAGMA foreign_keys=OFF")
    try:
        for number, script in _pending(await _user_version(connection)):
            await _apply(connection, number, script)
    finally:
        await connection.execute("PRAGMA foreign_keys=ON")


async def _user_version(connection: Database) -> int:
    ((version,),) = await connection.execute_fetchall("PRAGMA user_version")
    return version


def _pending(current: int) -> list[tuple[int, str]]:
    return [(number, script) for number, script in migrations() if number > current]


async def _apply(connection: Database, number: int, script: str) -> None:
    await connection.execute("BEGIN IMMEDIATE")  # waits (off the loop) for other writers
    try:
        if await _user_version(connection) >= number:
            await connection.execute("ROLLBACK")  # another process applied it meanwhile
            return
        for statement in _statements(script):
            await connection.execute(statement)
        await connection.execute(f"PRAGMA user_version = {number}")
        broken = await connection.execute_fetchall("PRAGMA foreign_key_check")
        if broken:
            raise RuntimeError(f"migration {number:03d} leaves rows whose foreign keys "
                               f"point nowhere: {list(broken)[:5]}")
        await connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            await connection.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """The statements of a migration file, one by one (``executescript`` would commit
    the transaction it is given before it starts)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current)
            current = ""
    if current.strip():  # a last statement without ";", or trailing comments
        statements.append(current)
    return statements


_locks: "weakref.WeakKeyDictionary[Database, asyncio.Lock]" = weakref.WeakKeyDictionary()


@asynccontextmanager
async def transaction(connection: Database, *, durable: bool = True
                      ) -> AsyncIterator[None]:
    """One write transaction at a time per connection (coroutines share the connection).

    ``durable=False`` commits without waiting for the disk (WAL with synchronous=NORMAL:
    safe against a crash of the process, not of the machine). It is for data that
    peers hold too and gossip brings back, such as directory records, or for changes
    whose loss only repeats work (the deletion of frames a neighbour acknowledged,
    which it deduplicates if they come again); documents and receipts stay durable.
    """
    lock = _locks.setdefault(connection, asyncio.Lock())
    async with lock:
        if not durable:
            await connection.execute("PRAGMA synchronous=NORMAL")
        try:  # whatever fails below, a non-durable transaction leaves FULL behind it
            # Statements run inline (node/store/connection.py): a BEGIN either ran or,
            # if a cancellation came while it waited for another process's lock, did not.
            await connection.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                await connection.execute("ROLLBACK")
                raise
            if durable:
                await connection.commit()  # the fsync off the loop; rolls back if it fails
            else:
                try:
                    await connection.execute("COMMIT")
                except BaseException:
                    if connection.in_transaction:
                        await connection.execute("ROLLBACK")
                    raise
        finally:
            if not durable:
                await connection.execute("PRAGMA synchronous=FULL")


async def data_version(connection: Database) -> int:
    """Changes when another connection (e.g. the CLI) commits to this database."""
    ((version,),) = await connection.execute_fetchall("PRAGMA data_version")
    return version
