"""SQLite storage: one database file per node, WAL mode, versioned migrations.

``db.py`` opens and migrates; one module per aggregate reads and writes it
(``directory_store``, ``enrollment_store``, ``state_store``).
"""
