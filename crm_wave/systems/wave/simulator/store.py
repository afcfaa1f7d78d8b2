"""SQLite persistence of the Wave simulator (stdlib sqlite3, WAL, one locked connection).

Every business-owned object (customer, product, invoice, invoice payment, account,
sales tax) is one row of `entities`: its business uuid, type, a per-business-and-type
integer `n` (never reused, from `counters`), created/modified times in epoch
milliseconds, a few indexed columns used for filters and sorts, and the JSON body.

`modified_ms` is strictly increasing per business across all writes: every write takes
`max(now, last + 1)` from `businesses.last_ms` inside its transaction, so an
incremental reader using "modified strictly after the last seen modifiedAt" neither
misses nor re-reads anything. A store opened with `second_precision=True` (strict mode)
plays the harsh case instead: times are whole seconds and never go backwards, so several
records share one `modifiedAt`.

All access goes through one connection guarded by a re-entrant lock; writes run in
`BEGIN IMMEDIATE` transactions (`Store.write()`), so concurrent requests (and other
processes on the same file, thanks to WAL and the busy timeout) never lose writes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .values import business_id, node_id, now_ms

__all__ = ["DEFAULT_BUSINESS_UUID", "Node", "Store", "Tx"]

#: The default business' uuid: derived from a constant, so that it survives restarts.
DEFAULT_BUSINESS_UUID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://wave-simulator.invalid/default-business"))

Node = dict[str, Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS businesses (
    id TEXT PRIMARY KEY,
    is_default INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    business TEXT NOT NULL,
    type TEXT NOT NULL,
    last_n INTEGER NOT NULL,
    PRIMARY KEY (business, type)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entities (
    business TEXT NOT NULL,
    type TEXT NOT NULL,
    n INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL,
    sort_name TEXT,
    lookup TEXT,
    ref INTEGER,
    day TEXT,
    archived INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL,
    PRIMARY KEY (business, type, n)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entities_modified ON entities (business, type, modified_ms);
CREATE INDEX IF NOT EXISTS entities_created ON entities (business, type, created_ms);
CREATE INDEX IF NOT EXISTS entities_lookup ON entities (business, type, lookup);
CREATE INDEX IF NOT EXISTS entities_ref ON entities (business, type, ref);
"""

_COLS = "business, type, n, created_ms, modified_ms, body"


def _index_columns(kind: str, body: dict[str, Any]) -> tuple[Any, ...]:
    """(sort_name, lookup, ref, day, archived) of a body."""
    name = body.get("name")
    sort_name = name.strip().lower() if isinstance(name, str) else None
    lookup = ref = day = None
    if kind == "Customer":
        email = body.get("email")
        lookup = email.strip().lower() if isinstance(email, str) and email.strip() else None
    elif kind == "Invoice":
        lookup, ref, day = body.get("invoiceNumber"), body.get("customerN"), body.get("invoiceDate")
    elif kind == "InvoicePayment":
        ref = body.get("invoiceN")
    return sort_name, lookup, ref, day, int(bool(body.get("isArchived")))


def _node(row: Sequence[Any]) -> Node:
    bid, kind, n, created, modified, body = row
    node: Node = json.loads(body)
    node.update(_bid=bid, _type=kind, _n=n, id=node_id(kind, bid, n), createdAt=created, modifiedAt=modified)
    return node


def _business_node(row: Sequence[Any]) -> Node:
    bid, is_default, created, modified, body = row
    node: Node = json.loads(body)
    node.update(_bid=bid, _default=bool(is_default), id=business_id(bid), createdAt=created, modifiedAt=modified)
    return node


def _dump(body: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in body.items() if not k.startswith("_") and k not in _META},
                      separators=(",", ":"))


_META = {"id", "createdAt", "modifiedAt"}


class _Reader:
    """Read queries over one connection; the caller holds the store lock."""

    _conn: sqlite3.Connection

    def get(self, bid: str, kind: str, n: int) -> Node | None:
        row = self._conn.execute(f"SELECT {_COLS} FROM entities WHERE business=? AND type=? AND n=?",
                                 (bid, kind, n)).fetchone()
        return _node(row) if row else None

    def get_many(self, bid: str, kind: str, ns: Iterable[int]) -> dict[int, Node]:
        wanted = sorted(set(ns))
        out: dict[int, Node] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(
                f"SELECT {_COLS} FROM entities WHERE business=? AND type=? AND n IN ({marks})", (bid, kind, *chunk)
            ):
                out[row[2]] = _node(row)
        return out

    def select(self, bid: str, kind: str, where: str = "", params: Sequence[Any] = (),
               order: str = "created_ms DESC, n DESC", limit: int | None = None, offset: int = 0) -> list[Node]:
        sql = f"SELECT {_COLS} FROM entities WHERE business=? AND type=?"
        if where:
            sql += f" AND ({where})"
        sql += f" ORDER BY {order}"
        args: list[Any] = [bid, kind, *params]
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        return [_node(r) for r in self._conn.execute(sql, args)]

    def count(self, bid: str, kind: str, where: str = "", params: Sequence[Any] = ()) -> int:
        sql = "SELECT COUNT(*) FROM entities WHERE business=? AND type=?"
        if where:
            sql += f" AND ({where})"
        return int(self._conn.execute(sql, (bid, kind, *params)).fetchone()[0])

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """An ad-hoc read (aggregates over `entities`)."""
        return list(self._conn.execute(sql, params))

    def business(self, bid: str) -> Node | None:
        row = self._conn.execute("SELECT id, is_default, created_ms, modified_ms, body FROM businesses WHERE id=?",
                                 (bid,)).fetchone()
        return _business_node(row) if row else None


class Tx(_Reader):
    """One write transaction (`Store.write()`)."""

    def __init__(self, conn: sqlite3.Connection, second_precision: bool = False) -> None:
        self._conn = conn
        self._seconds = second_precision

    def tick(self, bid: str) -> int:
        """The next modification time of `bid`: now, or 1 ms after the last one
        (with second precision: this second, never earlier than the last one)."""
        row = self._conn.execute("SELECT last_ms FROM businesses WHERE id=?", (bid,)).fetchone()
        last = row[0] if row else 0
        ms = max(now_ms(), last) // 1000 * 1000 if self._seconds else max(now_ms(), last + 1)
        self._conn.execute("UPDATE businesses SET last_ms=? WHERE id=?", (ms, bid))
        return ms

    def insert(self, bid: str, kind: str, body: dict[str, Any]) -> Node:
        row = self._conn.execute("SELECT last_n FROM counters WHERE business=? AND type=?", (bid, kind)).fetchone()
        n = (row[0] if row else 0) + 1
        self._conn.execute("INSERT OR REPLACE INTO counters (business, type, last_n) VALUES (?, ?, ?)", (bid, kind, n))
        ms = self.tick(bid)
        data = _dump(body)
        self._conn.execute(
            "INSERT INTO entities (business, type, n, created_ms, modified_ms, sort_name, lookup, ref, day, archived, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (bid, kind, n, ms, ms, *_index_columns(kind, body), data),
        )
        return _node((bid, kind, n, ms, ms, data))

    def update(self, node: Node, body: dict[str, Any], *, touch: bool = True) -> Node:
        """Replace the body of `node` and bump its `modifiedAt` (kept as it is when `touch` is False)."""
        bid, kind, n = node["_bid"], node["_type"], node["_n"]
        ms = self.tick(bid) if touch else node["modifiedAt"]
        data = _dump(body)
        self._conn.execute(
            "UPDATE entities SET modified_ms=?, sort_name=?, lookup=?, ref=?, day=?, archived=?, body=?"
            " WHERE business=? AND type=? AND n=?",
            (ms, *_index_columns(kind, body), data, bid, kind, n),
        )
        return _node((bid, kind, n, node["createdAt"], ms, data))

    def delete(self, node: Node) -> None:
        self._conn.execute("DELETE FROM entities WHERE business=? AND type=? AND n=?",
                           (node["_bid"], node["_type"], node["_n"]))

    def create_business(self, body: dict[str, Any], *, bid: str | None = None, is_default: bool = False) -> Node:
        bid = bid or str(uuid.uuid4())
        ms = now_ms()
        self._conn.execute(
            "INSERT INTO businesses (id, is_default, created_ms, modified_ms, last_ms, body) VALUES (?, ?, ?, ?, ?, ?)",
            (bid, int(is_default), ms, ms, ms, _dump(body)),
        )
        node = self.business(bid)
        assert node is not None
        return node


class Store(_Reader):
    """The simulator's database. Reads lock the connection; writes use `write()`."""

    def __init__(self, db_path: Path | str, *, second_precision: bool = False) -> None:
        self.path = Path(db_path)
        self.second_precision = second_precision
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A serialised write transaction; rolled back when the block raises."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._conn, self.second_precision)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[_Reader]:
        """Several reads under the lock (no snapshot isolation needed by callers)."""
        with self._lock:
            yield self

    def get(self, bid: str, kind: str, n: int) -> Node | None:
        with self._lock:
            return super().get(bid, kind, n)

    def get_many(self, bid: str, kind: str, ns: Iterable[int]) -> dict[int, Node]:
        with self._lock:
            return super().get_many(bid, kind, ns)

    def select(self, *args: Any, **kwargs: Any) -> list[Node]:
        with self._lock:
            return super().select(*args, **kwargs)

    def count(self, *args: Any, **kwargs: Any) -> int:
        with self._lock:
            return super().count(*args, **kwargs)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return super().rows(sql, params)

    def business(self, bid: str) -> Node | None:
        with self._lock:
            return super().business(bid)

    def businesses(self) -> list[Node]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, is_default, created_ms, modified_ms, body FROM businesses ORDER BY is_default DESC, created_ms, id"
            ).fetchall()
        return [_business_node(r) for r in rows]

    def default_business(self) -> Node | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT id, is_default, created_ms, modified_ms, body FROM businesses ORDER BY is_default DESC, created_ms LIMIT 1"
            ).fetchone()
        return _business_node(row) if row else None

    def has_businesses(self) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM businesses LIMIT 1").fetchone() is not None
