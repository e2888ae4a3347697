"""One node's SQLite connection, used from its event loop, statements run inline.

Theory of operation. A node's statements are small: a lookup by key, a few inserts,
a commit. Each takes microseconds of SQLite's time, while handing it to a worker
thread and waking the loop with the result (what aiosqlite does for every call) cost
about 0.2 ms of CPU per call on the 2-core machine this is measured on: more than the
statements themselves, and a relay makes a dozen such calls per hop. So statements
run on the loop's thread, through the same ``await`` API the stores were written
against (``execute``, ``execute_fetchall``, ``executemany``;
``async with connection.execute(...) as cursor``).

What must not happen is the loop waiting on another process: the CLI (or the
simulator's coordinator) writing to the same file holds the write lock for a few
milliseconds. SQLite's own busy handler would sleep on the loop's thread, so it is
off (``busy_timeout=0``); a statement refused with "database is locked" is retried
here after an ``asyncio.sleep``, with backoff, for up to ``LOCK_WAIT_S``, and then
fails as it would have with a busy timeout.

A durable commit waits for an fsync (about 0.4 ms here, far more under load), so
``commit`` runs it in a worker thread, and so do checkpoints (on a connection of
their own). SQLite holds the connection's mutex for the whole COMMIT: the next
statements on this connection wait for the commit to end (asynchronously) instead of
running into the mutex with the loop blocked. One rule follows: no Python callback
(``create_function``, trace, progress or authorizer hooks) may be registered on the
connection, since the committing thread would need the GIL while holding the mutex
that a statement on the loop, holding the GIL, might be waiting for.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, TypeVar

LOCK_WAIT_S = 5.0
_FIRST_RETRY_S = 0.001
_MAX_RETRY_S = 0.05

T = TypeVar("T")

# Threads of their own, created as needed and shared by every node of the process:
# a commit never queues behind a checkpoint copying megabytes, nor behind sealing
# (asyncio's default executor). Many commits at once let the kernel sync them together.
_COMMITS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="sqlite-commit")
_CHECKPOINTS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sqlite-checkpoint")


class Cursor:
    """The rows of one statement, already read (statements here return few rows)."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        self._rows = []


class _Statement:
    """What ``Database.execute`` returns: awaited, a cursor; or ``async with`` it. The
    statement runs once, when first awaited."""

    def __init__(self, run: Callable[[], Awaitable[Cursor]]) -> None:
        self._run = run
        self._cursor: Cursor | None = None

    def __await__(self):
        return self._execute().__await__()

    async def _execute(self) -> Cursor:
        if self._cursor is None:
            self._cursor = await self._run()
        return self._cursor

    async def __aenter__(self) -> Cursor:
        return await self._execute()

    async def __aexit__(self, *exc_info: object) -> None:
        if self._cursor is not None:
            await self._cursor.close()


class Database:
    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self._connection = connection
        self._path = path
        self._committing: asyncio.Future | None = None  # a COMMIT running in a thread
        self._checkpointing: asyncio.Future | None = None  # a checkpoint running in a thread
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint_lock = threading.Lock()

    @classmethod
    def open(cls, path: Path | str) -> "Database":
        connection = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA busy_timeout=0")  # waits happen in ``_run``
        return cls(connection, str(path))

    @property
    def in_transaction(self) -> bool:
        return self._connection.in_transaction

    def execute(self, sql: str, parameters: Iterable[Any] = ()) -> _Statement:
        def run() -> Cursor:
            cursor = self._connection.execute(sql, parameters)
            try:
                return Cursor(cursor.fetchall(), cursor.rowcount)
            finally:
                cursor.close()

        return _Statement(lambda: self._run(run))

    async def execute_fetchall(self, sql: str, parameters: Iterable[Any] = ()) -> list[Any]:
        return await self._run(lambda: self._connection.execute(sql, parameters).fetchall())

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        # Not retried: outside a transaction the rows before a refused one would be
        # committed already (every caller writes inside ``transaction``, holding the lock).
        await self._run(lambda: self._connection.executemany(sql, rows).close(), retry=False)

    async def commit(self) -> None:
        """``COMMIT`` in a worker thread: with ``synchronous=FULL`` it waits for the disk
        (an fsync), which on the loop would stall every task of the process (in the
        simulator, a hundred other nodes) for each commit. SQLite holds this
        connection's mutex throughout, so this connection's next statements wait for
        the commit (in ``_run``, without blocking the loop) rather than for the mutex.
        A cancelled caller still waits for the commit to end: it happens either way, and
        the transaction lock must not be released while it runs. If the commit fails,
        the transaction is rolled back."""
        committing = self._committing = asyncio.get_running_loop().run_in_executor(
            _COMMITS, self._connection.execute, "COMMIT")
        cancelled = False
        while not committing.done():
            try:
                await asyncio.shield(committing)
            except asyncio.CancelledError:
                cancelled = True
            except Exception:
                break
        self._committing = None
        try:
            committing.result()
        except Exception:
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
            raise
        if cancelled:
            raise asyncio.CancelledError

    async def checkpoint(self, *, restart: bool = False) -> None:
        """Copy the WAL into the database file, in a worker thread and on a connection
        of its own, so that neither the loop nor this connection's statements wait
        while pages are copied and the file is synced. Automatic checkpoints are off
        (``open_database``): SQLite would run them inside the COMMIT that crosses the
        threshold.

        ``PASSIVE`` never waits for anyone, but under a steady stream of commits it
        never lets the WAL start over either; ``restart=True`` (``RESTART``) holds new
        writers back until the copy is done (this node's writers wait for it in
        ``_run``, the loop free meanwhile), so that the next commit rewinds the WAL."""
        checkpointing = self._checkpointing = asyncio.get_running_loop().run_in_executor(
            _CHECKPOINTS, self._checkpoint_now, "RESTART" if restart else "PASSIVE")
        try:
            await asyncio.shield(checkpointing)
        finally:
            if checkpointing.done():
                self._checkpointing = None

    def _checkpoint_now(self, mode: str) -> None:
        with self._checkpoint_lock:
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(self._path, isolation_level=None,
                                                     check_same_thread=False)
                self._checkpointer.execute("PRAGMA busy_timeout=1000")  # a thread: may wait
            self._checkpointer.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()

    async def close(self) -> None:
        for running in (self._committing, self._checkpointing):
            if running is not None:
                await asyncio.wait([running])
        with self._checkpoint_lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
        self._connection.close()

    async def _run(self, statement: Callable[[], T], *, retry: bool = True) -> T:
        """Run ``statement`` now, after a commit of this connection still running, and
        through another connection's write lock: "database is locked" is retried after
        an ``asyncio.sleep`` (or once this node's own checkpoint ends) until
        ``LOCK_WAIT_S`` has passed."""
        while self._committing is not None:
            await asyncio.wait([self._committing])
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + LOCK_WAIT_S, _FIRST_RETRY_S
        while True:
            try:
                return statement()
            except sqlite3.OperationalError as error:
                # Inside a transaction this node already holds the write lock (every
                # write transaction starts with BEGIN IMMEDIATE), so a lock error there
                # is not a wait; outside one the refused statement changed nothing.
                if not retry or not _is_locked(error) or self._connection.in_transaction:
                    raise
                checkpointing = self._checkpointing
                if checkpointing is not None and not checkpointing.done():
                    await asyncio.wait([checkpointing])  # our own RESTART: not a timeout
                    continue
                if loop.time() + pause > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, _MAX_RETRY_S)


def _is_locked(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "database is locked" in str(error)
