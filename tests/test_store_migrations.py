"""Schema migrations: a database written by an older version opens with its rows intact.

Databases are built at an older ``user_version`` by applying the first migration
scripts by hand, filled with rows, then opened with ``open_database`` as a node does.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from node.store.db import _apply, _statements, migrations, open_database

pytestmark = pytest.mark.asyncio

DOC, MSG, FRAME_ID, SHA = b"d" * 16, b"m" * 16, b"f" * 16, b"s" * 32
BIG = bytes(range(256)) * 20  # ~5 KiB: the rows that made rowid storage worth having


def database_at(path: Path, version: int) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    for number, script in migrations():
        if number <= version:
            connection.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    return connection


def fill_version_2(connection: sqlite3.Connection) -> None:
    connection.execute("INSERT INTO documents VALUES (?, 'received', 'gd', '通知', '', '通知', "
                       "'', '', 1, NULL, NULL, 2, ?)", (DOC, BIG))
    connection.execute("INSERT INTO attachments VALUES (?, ?, ?)", (SHA, len(BIG), BIG))
    connection.execute("INSERT INTO inbound VALUES (?, ?, 'gd', 'delivered', 1, 3, ?)",
                       (MSG, DOC, BIG))
    connection.execute("INSERT INTO deliveries VALUES (?, ?, 'gd.a', 'main', 'sent', 0, 4)",
                       (FRAME_ID, DOC))
    connection.execute("INSERT INTO outbox VALUES (?, 'gd.a', 'gd.a', ?, 5)", (FRAME_ID, BIG))


def table_sql(connection: sqlite3.Connection, table: str) -> str:
    return connection.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND "
                              "name = ?", (table,)).fetchone()[0]


async def test_version_2_database_keeps_every_row_and_moves_blobs_to_rowid_tables(tmp_path):
    path = tmp_path / "node.db"
    old = database_at(path, 2)
    fill_version_2(old)
    before = {table: old.execute(f"SELECT * FROM {table}").fetchall()
              for table in ("documents", "attachments", "inbound", "deliveries", "outbox")}
    old.close()

    connection = await open_database(path)
    try:
        (version,), = await connection.execute_fetchall("PRAGMA user_version")
        (foreign_keys,), = await connection.execute_fetchall("PRAGMA foreign_keys")
        assert version == max(number for number, _ in migrations()) and foreign_keys == 1
        for table, rows in before.items():
            assert list(await connection.execute_fetchall(f"SELECT * FROM {table}")) == rows
        # The references still hold: a delivery of an unknown document is refused.
        with pytest.raises(sqlite3.IntegrityError):
            await connection.execute("INSERT INTO deliveries VALUES (?, ?, 'gd.b', 'main', "
                                     "'sent', 0, 6)", (b"x" * 16, b"unknown-document"))
        # And the keys are still unique: INSERT OR IGNORE ignores a repeat.
        await connection.execute("INSERT OR IGNORE INTO outbox VALUES (?, 'gd.b', 'gd.b', "
                                 "x'00', 7)", (FRAME_ID,))
        assert len(await connection.execute_fetchall("SELECT * FROM outbox")) == 1
    finally:
        await connection.close()
    check = sqlite3.connect(path)
    for table in ("documents", "attachments", "inbound", "outbox"):
        assert "WITHOUT ROWID" not in table_sql(check, table), table
    assert "WITHOUT ROWID" in table_sql(check, "deliveries")  # small rows stay as they were
    check.close()


async def test_a_migration_that_would_break_a_reference_changes_nothing(tmp_path):
    path = tmp_path / "node.db"
    old = database_at(path, 2)
    fill_version_2(old)
    # A delivery whose document is gone (written with foreign keys off, as a damaged
    # file might hold): migrating must refuse rather than carry it over silently.
    old.execute("INSERT INTO deliveries VALUES (?, ?, 'gd.a', 'main', 'sent', 0, 4)",
                (b"o" * 16, b"no-such-document"))
    schema_before = old.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    old.close()

    with pytest.raises(RuntimeError, match="migration 003 leaves rows whose foreign keys"):
        await open_database(path)
    after = sqlite3.connect(path)
    assert after.execute("PRAGMA user_version").fetchone() == (2,)
    assert after.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == \
        schema_before
    after.close()


async def test_a_migration_script_is_split_into_whole_statements():
    script = ("-- a comment; with a semicolon\n"
              "CREATE TABLE a (x);\n"
              "CREATE TRIGGER a_guard BEFORE INSERT ON a BEGIN\n"
              "    SELECT RAISE(ABORT, 'no; never');\n"
              "END;\n"
              "INSERT INTO a VALUES (';')")
    statements = _statements(script)
    assert len(statements) == 3
    assert statements[1].strip().startswith("CREATE TRIGGER") and \
        statements[1].rstrip().endswith("END;")
    assert statements[2].strip() == "INSERT INTO a VALUES (';')"
    connection = sqlite3.connect(":memory:")
    for statement in statements[:2]:
        connection.execute(statement)
    with pytest.raises(sqlite3.IntegrityError, match="no; never"):
        connection.execute(statements[2])


async def test_a_migration_another_process_applied_meanwhile_is_skipped(tmp_path):
    """Two processes may both find a migration pending; the second to get the write
    lock finds it applied and does nothing (else: "table ... already exists")."""
    connection = await open_database(tmp_path / "node.db")  # at the latest version
    try:
        schema = await connection.execute_fetchall("SELECT sql FROM sqlite_master")
        first_number, first_script = migrations()[0]
        await _apply(connection, first_number, first_script)
        assert await connection.execute_fetchall("SELECT sql FROM sqlite_master") == schema
        assert not connection.in_transaction
    finally:
        await connection.close()
