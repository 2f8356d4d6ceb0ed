"""Keys a run has seen, kept on disk so a target's memory does not grow with its input.

A target has to remember things about every record of a run: which source ids came already
(target-sage300 rejects a repeat), which vendor documents it sent (a second invoice with the
same one is rejected with a reason), which references arrived (target-basware holds an order
back until its vendor is in Basware). In Python sets and dicts that is 100 to 400 bytes per
record, and the small long-lived strings keep the allocator's arenas from being freed: tens
of MB at 100,000 records. Here each kind of key is a table of a private temporary SQLite
database: SQLite keeps a bounded page cache (2 MB) in memory and the rest in a file it deletes
when the run closes it (SQLite docs, "Temporary Databases"). A look-up or an insert costs a
few microseconds.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable

Value = str | int | None
_KIND = re.compile(r"[a-z_]+")


class RunKeys:
    """Named sets of keys, each key with the value it was first added with."""

    def __init__(self, *kinds: str) -> None:
        if not kinds or not all(_KIND.fullmatch(kind) for kind in kinds):
            raise ValueError(f"kinds must be lowercase names, got {kinds!r}")
        self.kinds = kinds
        # "": a private on-disk database, deleted when the connection closes. Autocommit:
        # nothing here outlives the run.
        self._db = sqlite3.connect("", isolation_level=None)
        self._db.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + "".join(
            # `value` has no declared type, so SQLite gives back the int or str it was given.
            f"CREATE TABLE {self._table(kind)} (key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
            for kind in kinds))

    def first(self, kind: str, key: str) -> Value:
        """The value `key` was first added with (None when it was not, or with None)."""
        row = self._db.execute(f"SELECT value FROM {self._table(kind)} WHERE key = ?",
                               (key,)).fetchone()
        return row[0] if row else None

    def has(self, kind: str, key: str) -> bool:
        return self._db.execute(f"SELECT 1 FROM {self._table(kind)} WHERE key = ?",
                                (key,)).fetchone() is not None

    def add(self, kind: str, key: str, value: Value = None) -> None:
        """Remember `key`; a key added before keeps its first value."""
        self._db.execute(f"INSERT OR IGNORE INTO {self._table(kind)} VALUES (?, ?)",
                         (key, value))

    def add_all(self, kind: str, keys: Iterable[str]) -> None:
        self._db.executemany(f"INSERT OR IGNORE INTO {self._table(kind)} VALUES (?, NULL)",
                             ((key,) for key in keys))

    def close(self) -> None:
        self._db.close()

    def _table(self, kind: str) -> str:
        if kind not in self.kinds:  # never format an unknown name into SQL
            raise KeyError(f"unknown kind of key {kind!r}; this run keeps {self.kinds}")
        return f'"{kind}"'  # quoted: a kind may be an SQL keyword ("references")
