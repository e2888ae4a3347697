"""The node's SQLite connection: statements inline, waits for other processes' locks
off the loop (node/store/connection.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from federation import wait_until
from node.store import connection as connection_module
from node.store.db import SPILL_PAGES, open_database, transaction

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def database(tmp_path):
    db = await open_database(tmp_path / "node.db")
    await db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    yield db
    await db.close()


def other_writer(tmp_path) -> sqlite3.Connection:
    """Another process's connection (the CLI, say), holding the write lock."""
    other = sqlite3.connect(tmp_path / "node.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (100, 'from the CLI')")
    return other


async def test_cursor_reads_rows_and_counts_changes(database):
    await database.executemany("INSERT INTO t VALUES (?, ?)", [(1, "a"), (2, "b"), (3, "c")])
    async with database.execute("SELECT k FROM t ORDER BY k") as cursor:
        assert await cursor.fetchone() == (1,)
        assert await cursor.fetchall() == [(2,), (3,)]
        assert await cursor.fetchone() is None
    cursor = await database.execute("UPDATE t SET v = 'x' WHERE k >= 2")
    assert cursor.rowcount == 2
    assert await database.execute_fetchall("SELECT v FROM t ORDER BY k") == [("a",), ("x",),
                                                                            ("x",)]


async def test_a_write_waits_for_another_connections_lock_without_blocking_the_loop(
        database, tmp_path):
    other = other_writer(tmp_path)
    turns = LoopTurns()

    async def write() -> None:
        async with transaction(database):
            await database.execute("INSERT INTO t VALUES (1, 'from the node')")

    writing = asyncio.create_task(write())
    try:
        # The loop keeps running other callbacks while the node's write waits.
        await wait_until(lambda: turns.count > 50, what="the loop to run other callbacks")
        assert not writing.done()
        other.execute("COMMIT")
        await asyncio.wait_for(writing, 10)
    finally:
        turns.stop()
        other.close()
    assert await database.execute_fetchall("SELECT k, v FROM t ORDER BY k") == [
        (1, "from the node"), (100, "from the CLI")]


async def test_a_lock_held_too_long_fails_like_a_busy_timeout_and_changes_nothing(
        database, tmp_path, monkeypatch):
    monkeypatch.setattr(connection_module, "LOCK_WAIT_S", 0.2)
    other = other_writer(tmp_path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            async with transaction(database):
                await database.execute("INSERT INTO t VALUES (1, 'never')")
        assert not database.in_transaction
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await database.execute_fetchall("SELECT * FROM t") == []
    async with transaction(database):  # and the connection is usable again
        await database.execute("INSERT INTO t VALUES (2, 'later')")
    assert await database.execute_fetchall("SELECT k FROM t") == [(2,)]


async def test_commits_never_checkpoint_and_checkpoint_copies_the_wal_off_the_loop(
        database, tmp_path):
    file = tmp_path / "node.db"
    size_before = file.stat().st_size
    rows = [(k, "x" * 4000) for k in range(1500)]  # ~6 MiB, past SQLite's own threshold
    async with transaction(database):
        await database.executemany("INSERT INTO t VALUES (?, ?)", rows)
    assert file.stat().st_size == size_before  # still all in the WAL
    await database.checkpoint()
    assert file.stat().st_size > 5 * 1024 * 1024
    assert len(await database.execute_fetchall("SELECT k FROM t")) == 1500


def _wal_bytes(tmp_path) -> int:
    wal = tmp_path / "node.db-wal"
    return wal.stat().st_size if wal.exists() else 0


async def test_a_transaction_writes_the_wal_when_it_commits_not_before(database, tmp_path):
    """Megabytes of dirty pages stay in memory until the commit, which writes them on
    the commit thread: SQLite's default would spill what passes its 2 MB page cache
    to the WAL mid-transaction, on the loop's thread."""
    before = _wal_bytes(tmp_path)
    async with transaction(database):
        await database.executemany("INSERT INTO t VALUES (?, ?)",
                                   [(k, "x" * 4000) for k in range(1500)])  # ~6 MiB
        assert _wal_bytes(tmp_path) == before
    assert _wal_bytes(tmp_path) > before + 5 * 1024 * 1024


async def test_a_transaction_past_the_spill_threshold_still_spills(database, tmp_path):
    """Memory stays bounded: beyond ``SPILL_PAGES`` dirty pages SQLite spills again."""
    before = _wal_bytes(tmp_path)
    async with transaction(database):
        await database.executemany("INSERT INTO t VALUES (?, ?)",
                                   [(k, "x" * 4000) for k in range(SPILL_PAGES + 500)])
        assert _wal_bytes(tmp_path) > before + 1024 * 1024
    assert len(await database.execute_fetchall("SELECT k FROM t")) == SPILL_PAGES + 500


async def test_a_restart_checkpoint_lets_the_next_commit_rewind_the_wal(database, tmp_path):
    async with transaction(database):
        await database.executemany("INSERT INTO t VALUES (?, ?)",
                                   [(k, "x" * 4000) for k in range(300)])
    await database.checkpoint(restart=True)
    async with transaction(database):
        await database.execute("INSERT INTO t VALUES (1000, 'small')")
    observer = sqlite3.connect(tmp_path / "node.db", isolation_level=None)
    try:
        busy, wal_frames, copied = observer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        observer.close()
    assert busy == 0 and wal_frames < 10  # the WAL holds only the last commit's pages


async def test_deleting_big_rows_does_not_write_their_freed_pages(database, tmp_path):
    """A frame leaving the outbox frees its overflow page; with SQLite's SECURE_DELETE
    build option that page would be zeroed and written out, a 4 KiB write per frame."""
    assert await database.execute_fetchall("PRAGMA secure_delete") == [(2,)]  # FAST
    async with transaction(database):
        await database.executemany("INSERT INTO t VALUES (?, ?)",
                                   [(k, "x" * 5000) for k in range(100)])
    await database.checkpoint(restart=True)
    async with transaction(database):
        await database.execute("DELETE FROM t WHERE k % 2 = 0")  # row by row, as the outbox
    observer = sqlite3.connect(tmp_path / "node.db", isolation_level=None)
    try:
        busy, wal_frames, copied = observer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        observer.close()
    assert await database.execute_fetchall("SELECT COUNT(*) FROM t") == [(50,)]
    assert busy == 0 and wal_frames < 50  # leaf and freelist pages: fewer than the freed ones


async def test_a_node_asked_to_zeroes_every_freed_page(tmp_path):
    """``[storage] secure_delete = true``: residual-information clearing, at a write per
    freed page (the 50 overflow pages below, besides the leaves)."""
    database = await open_database(tmp_path / "node.db", secure_delete=True)
    try:
        assert await database.execute_fetchall("PRAGMA secure_delete") == [(1,)]  # ON
        await database.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        async with transaction(database):
            await database.executemany("INSERT INTO t VALUES (?, ?)",
                                       [(k, "secret" * 800) for k in range(100)])
        await database.checkpoint(restart=True)
        before = (tmp_path / "node.db").read_bytes().count(b"secret")
        async with transaction(database):
            await database.execute("DELETE FROM t WHERE k % 2 = 0")
        observer = sqlite3.connect(tmp_path / "node.db", isolation_level=None)
        try:
            busy, wal_frames, copied = observer.execute(
                "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            observer.close()
        assert busy == 0 and wal_frames >= 50
        after = (tmp_path / "node.db").read_bytes().count(b"secret")
        assert after <= before * 0.55  # the deleted half is gone from the file
    finally:
        await database.close()


async def test_a_non_durable_transaction_that_cannot_begin_leaves_commits_durable(
        database, tmp_path, monkeypatch):
    monkeypatch.setattr(connection_module, "LOCK_WAIT_S", 0.1)
    other = other_writer(tmp_path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            async with transaction(database, durable=False):
                pass
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await database.execute_fetchall("PRAGMA synchronous") == [(2,)]  # FULL


async def test_statements_wait_for_a_running_commit_without_blocking_the_loop(
        database, monkeypatch):
    commit_started = asyncio.Event()
    monkeypatch.setattr(connection_module, "_COMMITS", NotifyingExecutor(commit_started))
    rows = [(k, "x" * 4000) for k in range(2000)]

    async def write() -> None:
        async with transaction(database):
            await database.executemany("INSERT INTO t VALUES (?, ?)", rows)

    writing = asyncio.create_task(write())
    await asyncio.wait_for(commit_started.wait(), 10)
    assert database._committing is not None  # the COMMIT is running in its thread
    turns = LoopTurns()
    try:
        # A reader arriving now waits for the commit, the loop turning meanwhile (a read
        # run into SQLite's mutex would hold the loop still), and sees what it committed.
        assert await database.execute_fetchall("SELECT COUNT(*) FROM t") == [(2000,)]
        assert turns.count > 0 and database._committing is None
        await writing
    finally:
        turns.stop()


class LoopTurns:
    """Counts the event loop's turns, from now on: a callback that schedules itself
    again, so the count stands still while anything blocks the loop."""

    def __init__(self) -> None:
        self.count = 0
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_soon(self._turn)

    def _turn(self) -> None:
        self.count += 1
        self._handle = self._loop.call_soon(self._turn)

    def stop(self) -> None:
        self._handle.cancel()


class NotifyingExecutor(ThreadPoolExecutor):
    """One worker thread, setting ``event`` (from the loop's thread, where
    ``run_in_executor`` submits) when a call is handed to it."""

    def __init__(self, event: asyncio.Event) -> None:
        super().__init__(max_workers=1)
        self.event = event

    def submit(self, fn, /, *args, **kwargs):
        future = super().submit(fn, *args, **kwargs)
        self.event.set()
        return future
