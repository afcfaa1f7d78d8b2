"""SQLite storage of the CRM simulator (stdlib sqlite3, WAL mode).

One table holds every entity of every resource as its JSON text (`body`, exactly
what the API returns), plus the columns the API queries on: `seq` (the resource's
change sequence, stamped on every write in the write transaction; the listing
cursor), `version`, `deleted` (a tombstone row stays after a delete) and `ukey`
(the value of the resource's unique field); `extras` holds the free-text reference the
non-contract styles keep per record. Writers take the database lock up
front (`BEGIN IMMEDIATE`), so writes are serialised and sequence numbers are
committed in order: a reader that saw sequence N will find every later change
above N.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Row", "Store", "Tx", "utc_now"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    resource TEXT NOT NULL,
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    version INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    ukey TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (resource, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS entities_seq ON entities (resource, seq);
CREATE UNIQUE INDEX IF NOT EXISTS entities_ukey ON entities (resource, ukey)
    WHERE ukey IS NOT NULL AND deleted = 0;
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS extras (
    resource TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT,
    PRIMARY KEY (resource, id)
);
CREATE TABLE IF NOT EXISTS idempotency (
    resource TEXT NOT NULL,
    key TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (resource, key)
);
"""

#: First number handed out as an entity Id (C1001, P1001, O1001, ...).
FIRST_ID = 1001


def utc_now() -> str:
    """Current time as RFC 3339 UTC with milliseconds, e.g. 2026-11-27T12:00:00.123Z."""
    return format_ts(_dt.datetime.now(_dt.UTC))


def format_ts(when: _dt.datetime) -> str:
    when = when.astimezone(_dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Row:
    id: str
    seq: int
    version: int
    deleted: bool
    body: str


class Tx:
    """Queries and writes inside one open transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def get(self, resource: str, id: str) -> Row | None:
        r = self.conn.execute(
            "SELECT id, seq, version, deleted, body FROM entities WHERE resource = ? AND id = ?", (resource, id)
        ).fetchone()
        return None if r is None else Row(r[0], r[1], r[2], bool(r[3]), r[4])

    def exists(self, resource: str, id: str) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM entities WHERE resource = ? AND id = ? AND deleted = 0", (resource, id)
        ).fetchone() is not None

    def unique_owner(self, resource: str, ukey: str, exclude_id: str | None) -> str | None:
        """Id of the live entity holding unique value `ukey`, other than `exclude_id`."""
        r = self.conn.execute(
            "SELECT id FROM entities WHERE resource = ? AND ukey = ? AND deleted = 0 AND id IS NOT ?",
            (resource, ukey, exclude_id),
        ).fetchone()
        return None if r is None else r[0]

    def next_value(self, name: str, start: int) -> int:
        """Increment counter `name` (first value `start`) and return the new value."""
        r = self.conn.execute("UPDATE counters SET value = value + 1 WHERE name = ? RETURNING value", (name,)).fetchone()
        if r is not None:
            return int(r[0])
        self.conn.execute("INSERT INTO counters (name, value) VALUES (?, ?)", (name, start))
        return start

    def next_seq(self, resource: str) -> int:
        return self.next_value(f"seq:{resource}", 1)

    def put(self, resource: str, id: str, *, seq: int, version: int, deleted: bool, ukey: str | None, body: str) -> None:
        self.conn.execute(
            "INSERT INTO entities (resource, id, seq, version, deleted, ukey, body) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (resource, id) DO UPDATE SET seq = excluded.seq, version = excluded.version, "
            "deleted = excluded.deleted, ukey = excluded.ukey, body = excluded.body",
            (resource, id, seq, version, int(deleted), ukey, body),
        )

    def page(self, resource: str, after_seq: int, limit: int, *, include_deleted: bool) -> list[tuple[int, str]]:
        """Up to `limit` rows with seq > `after_seq`, oldest change first: one indexed query."""
        sql = "SELECT seq, body FROM entities WHERE resource = ? AND seq > ?"
        if not include_deleted:
            sql += " AND deleted = 0"
        sql += " ORDER BY seq LIMIT ?"
        return self.conn.execute(sql, (resource, after_seq, limit)).fetchall()

    def max_seq(self, resource: str) -> int:
        r = self.conn.execute("SELECT MAX(seq) FROM entities WHERE resource = ?", (resource,)).fetchone()
        return int(r[0] or 0)

    def bodies(self, resource: str, ids: Iterable[str]) -> dict[str, str]:
        """Bodies of live entities among `ids`."""
        ids = list(dict.fromkeys(ids))
        out: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for id_, body in self.conn.execute(
                f"SELECT id, body FROM entities WHERE resource = ? AND deleted = 0 AND id IN ({marks})",
                (resource, *chunk),
            ):
                out[id_] = body
        return out

    def idempotent_result(self, resource: str, key: str) -> tuple[int, str] | None:
        r = self.conn.execute(
            "SELECT status, body FROM idempotency WHERE resource = ? AND key = ?", (resource, key)
        ).fetchone()
        return None if r is None else (int(r[0]), r[1])

    def remember(self, resource: str, key: str, status: int, body: str) -> None:
        self.conn.execute(
            "INSERT INTO idempotency (resource, key, status, body, created_at) VALUES (?, ?, ?, ?, ?)",
            (resource, key, status, body, utc_now()),
        )


class Store:
    """The simulator's database file; one connection per thread."""

    def __init__(self, db_path: Path) -> None:
        self.path = Path(db_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        conn = self._conn()
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction holding the database write lock from the start."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield Tx(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read transaction: one consistent snapshot for every query in it."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield Tx(conn)
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.ProgrammingError:  # pragma: no cover - closed from another thread
                pass


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 60000")
    return conn


def bulk_put(conn: sqlite3.Connection, rows: Iterable[Sequence[object]]) -> None:
    """Insert (resource, id, seq, version, deleted, ukey, body) rows; caller holds the transaction."""
    conn.executemany(
        "INSERT INTO entities (resource, id, seq, version, deleted, ukey, body) VALUES (?, ?, ?, ?, ?, ?, ?)", rows
    )
