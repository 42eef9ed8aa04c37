"""Damage a SQLite store the way a failing disk would: pages overwritten with garbage.

Pages are found through `sqlite_schema.rootpage` (every SQLite build has it): overwriting a
table's root page breaks every read of that table and the integrity check. While a server has
the file open, `damage_open_store` also moves the WAL on, so that its connections drop the pages
they had cached and read the damaged ones from the file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

GARBAGE = 0xA5


def root_pages(db: Path, tables: tuple[str, ...] | None = None) -> list[int]:
    """The root pages of these tables and their indexes (every one but the schema's when
    `tables` is None)."""
    connection = sqlite3.connect(db)
    try:
        rows = connection.execute(
            "SELECT tbl_name, rootpage FROM sqlite_schema WHERE rootpage > 1"
        ).fetchall()
    finally:
        connection.close()
    return sorted(page for name, page in rows if tables is None or name in tables)


def overwrite_pages(db: Path, pages: list[int]) -> None:
    """Fill each page (numbered from 1) with garbage, in place."""
    connection = sqlite3.connect(db)
    try:
        page_size = int(connection.execute("PRAGMA page_size").fetchone()[0])
    finally:
        connection.close()
    with db.open("r+b") as handle:
        for page in pages:
            handle.seek((page - 1) * page_size)
            handle.write(bytes([GARBAGE]) * page_size)


def checkpoint(db: Path) -> None:
    """Move every committed page from the WAL into the file, so the file alone holds them."""
    connection = sqlite3.connect(db, timeout=10)
    try:
        busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0, "a reader kept the WAL from being checkpointed"
    finally:
        connection.close()


def damage_stopped_store(db: Path, *tables: str) -> list[int]:
    """Overwrite the root pages of `tables` (all but the schema when none are named) in a
    store no server has open; returns the pages."""
    checkpoint(db)
    pages = root_pages(db, tables or None)
    overwrite_pages(db, pages)
    return pages


def damage_open_store(db: Path, *tables: str) -> list[int]:
    """The same while a server has the store open: afterwards one harmless commit (the
    header's user_version) tells every connection that the file changed."""
    checkpoint(db)
    pages = root_pages(db, tables or None)
    overwrite_pages(db, pages)
    connection = sqlite3.connect(db, timeout=10)
    try:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        connection.execute(f"PRAGMA user_version = {version + 1}")
        connection.commit()
    finally:
        connection.close()
    return pages
