"""The DuckDB file of one sync: every write goes through `Store`.

DuckDB allows one writing process per file, so every connection is taken under an
exclusive lock file beside the database (`<file>.lock`, fcntl). Connections are held
briefly: read into polars, close, compute, reopen to write.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

__all__ = ["Store", "Version"]

_SQL_DIR = Path(__file__).parent
_IDENT_OK = set("abcdefghijklmnopqrstuvwxyz_0123456789")


def _ident(name: str) -> str:
    """Table names come from the fixed dataset names; refuse anything else."""
    if not name or set(name) - _IDENT_OK:
        raise ValueError(f"not a table name: {name!r}")
    return name


@dataclass(frozen=True)
class Version:
    """One collected entity version, before it gets its sequence number."""

    id: str
    source_id: str
    hash: str
    deleted: bool
    modified: str | None
    version: int | None
    body: dict[str, Any] | None


class Store:
    """The sync's DuckDB database at `path`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._thread_lock = threading.RLock()
        self._datasets: set[str] = set()
        with self.connect() as con:
            con.execute((_SQL_DIR / "schema.sql").read_text())

    @contextlib.contextmanager
    def named_lock(self, name: str) -> Iterator[None]:
        """An exclusive lock of its own beside the database, e.g. one push of one share table at a time."""
        path = self.path.with_name(f"{self.path.name}.{_ident(name)}.lock")
        with open(path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the database's exclusive lock (no connection open): for copying the file."""
        with self._thread_lock, open(self._lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection under the file lock, committed on success, rolled back on error."""
        with self.locked():
            con = duckdb.connect(str(self.path))
            try:
                con.execute("BEGIN")
                yield con
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    con.execute("ROLLBACK")
                raise
            finally:
                con.close()

    # ---- datasets -------------------------------------------------------------------
    def ensure_dataset(self, con: duckdb.DuckDBPyConnection, name: str) -> None:
        """Create dataset table `name` and its `_current` view if missing."""
        if name in self._datasets:
            return
        con.execute((_SQL_DIR / "datasets.sql").read_text().replace("{name}", _ident(name)))
        self._datasets.add(name)

    def current_index(self, con: duckdb.DuckDBPyConnection, name: str) -> dict[str, tuple[int, str, bool]]:
        """`_id -> (_seq, _hash, _deleted)` of the newest version of every entity."""
        self.ensure_dataset(con, name)
        rows = con.execute(f"SELECT _id, _seq, _hash, _deleted FROM {_ident(name)}_current").fetchall()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def append_versions(self, con: duckdb.DuckDBPyConnection, name: str, versions: Sequence[Version], now: datetime) -> int:
        """Append the versions that are new or changed (hash or deleted flag); return how many."""
        self.ensure_dataset(con, name)
        if not versions:
            return 0
        index = self.current_index(con, name)
        ((next_seq,),) = con.execute(f"SELECT coalesce(max(_seq), 0) + 1 FROM {_ident(name)}").fetchall()
        rows = []
        for v in versions:
            prev = index.get(v.id)
            if prev is not None and prev[1] == v.hash and prev[2] == v.deleted:
                continue
            if prev is None and v.deleted:
                continue  # a tombstone for something never seen: nothing to record
            rows.append((v.id, next_seq, v.hash, v.deleted, now, prev[0] if prev else None, v.source_id,
                         v.modified, v.version, None if v.body is None else json.dumps(v.body, sort_keys=True)))
            index[v.id] = (next_seq, v.hash, v.deleted)
            next_seq += 1
        if rows:
            frame = pl.DataFrame(rows, schema={
                "_id": pl.String, "_seq": pl.Int64, "_hash": pl.String, "_deleted": pl.Boolean,
                "_ts": pl.Datetime("us"), "_previous": pl.Int64, "_source_id": pl.String,
                "_modified": pl.String, "_version": pl.Int64, "body": pl.String}, orient="row")
            con.register("_new_versions", frame)
            con.execute(f"INSERT INTO {_ident(name)} SELECT * FROM _new_versions")
            con.unregister("_new_versions")
        return len(rows)

    def read_current(self, con: duckdb.DuckDBPyConnection, name: str) -> pl.DataFrame:
        """Newest version of every entity of dataset `name` (deleted ones included)."""
        self.ensure_dataset(con, name)
        return con.execute(
            f"SELECT _id, _source_id, _deleted, _modified, _version, body::VARCHAR AS body "
            f"FROM {_ident(name)}_current ORDER BY _id"
        ).pl()

    # ---- cursors --------------------------------------------------------------------
    def get_cursor(self, con: duckdb.DuckDBPyConnection, dataset: str) -> tuple[str | None, datetime | None]:
        """(cursor, time of the last full read) of a dataset."""
        row = con.execute("SELECT cursor, last_full_at FROM cursors WHERE dataset = ?", [dataset]).fetchall()
        return (row[0][0], row[0][1]) if row else (None, None)

    def set_cursor(self, con: duckdb.DuckDBPyConnection, dataset: str, cursor: str | None, now: datetime,
                   *, full: bool) -> None:
        """Move a dataset's cursor (in the same transaction as the versions it covers)."""
        con.execute(
            "INSERT INTO cursors VALUES (?, ?, ?, ?) ON CONFLICT (dataset) DO UPDATE SET "
            "cursor = excluded.cursor, updated_at = excluded.updated_at, "
            "last_full_at = CASE WHEN ? THEN excluded.updated_at ELSE cursors.last_full_at END",
            [dataset, cursor, now if full else None, now, full],
        )

    # ---- links and agreed values ----------------------------------------------------
    def read_links(self, con: duckdb.DuckDBPyConnection, entity: str) -> pl.DataFrame:
        """The link table of one entity stem."""
        return con.execute(
            "SELECT global_id, crm_id, wave_id, how FROM links WHERE entity = ? ORDER BY global_id", [entity]
        ).pl()

    def upsert_links(self, con: duckdb.DuckDBPyConnection, entity: str, links: Iterable[tuple[str, str | None, str | None, str]],
                     now: datetime) -> None:
        """Insert or complete links `(global_id, crm_id, wave_id, how)`; a side once set is never unset."""
        rows = [(entity, g, c, w, how, now) for g, c, w, how in links]
        if not rows:
            return
        con.executemany(
            "INSERT INTO links VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (entity, global_id) DO UPDATE SET "
            "crm_id = coalesce(links.crm_id, excluded.crm_id), wave_id = coalesce(links.wave_id, excluded.wave_id), "
            "how = CASE WHEN links.crm_id IS NULL OR links.wave_id IS NULL THEN excluded.how ELSE links.how END, "
            "linked_at = CASE WHEN links.crm_id IS NULL OR links.wave_id IS NULL THEN excluded.linked_at ELSE links.linked_at END",
            rows,
        )

    def read_agreed(self, con: duckdb.DuckDBPyConnection, entity: str) -> dict[str, dict[str, Any]]:
        """`global_id -> last agreed canonical values`."""
        rows = con.execute('SELECT global_id, "values"::VARCHAR FROM agreed WHERE entity = ?', [entity]).fetchall()
        return {g: json.loads(v) for g, v in rows}

    def upsert_agreed(self, con: duckdb.DuckDBPyConnection, entity: str, values: dict[str, dict[str, Any]], now: datetime) -> None:
        """Store agreed values per global id (merged over what was agreed before)."""
        if not values:
            return
        old = self.read_agreed(con, entity)
        rows = []
        for gid, vals in values.items():
            merged = {**old.get(gid, {}), **vals}
            rows.append((entity, gid, json.dumps(merged, sort_keys=True), now))
        con.executemany(
            'INSERT INTO agreed VALUES (?, ?, ?, ?) ON CONFLICT (entity, global_id) DO UPDATE SET '
            '"values" = excluded."values", updated_at = excluded.updated_at',
            rows,
        )

    # ---- whole tables written by the global and share steps -------------------------
    def replace_table(self, con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
        """Replace table `name` with `frame` (global and share tables are recomputed each pass)."""
        con.register("_frame", frame)
        con.execute(f"CREATE OR REPLACE TABLE {_ident(name)} AS SELECT * FROM _frame")
        con.unregister("_frame")

    def read_table(self, con: duckdb.DuckDBPyConnection, name: str) -> pl.DataFrame | None:
        """A whole table as polars, or None if it does not exist yet."""
        exists = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [_ident(name)]
        ).fetchall()[0][0]
        return con.execute(f"SELECT * FROM {name}").pl() if exists else None

    # ---- conflicts, intents, dead letters, sync log ---------------------------------
    def record_conflicts(self, con: duckdb.DuckDBPyConnection, entity: str, rows: Iterable[dict[str, Any]], now: datetime) -> int:
        """Append conflicts not already recorded with the same values; return how many are new."""
        n = 0
        for r in rows:
            seen = con.execute(
                "SELECT 1 FROM conflicts WHERE entity = ? AND global_id = ? AND field = ? "
                "AND crm_value IS NOT DISTINCT FROM ? AND wave_value IS NOT DISTINCT FROM ?",
                [entity, r["global_id"], r["field"], r["crm_value"], r["wave_value"]],
            ).fetchall()
            if seen:
                continue
            con.execute(
                "INSERT INTO conflicts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [entity, r["global_id"], r["field"], r["crm_value"], r["wave_value"], r["base_value"],
                 r["winner"], r["reason"], now],
            )
            n += 1
        return n

    def add_intent(self, con: duckdb.DuckDBPyConnection, system: str, entity: str, global_id: str, key: str,
                   payload: dict[str, Any], now: datetime) -> None:
        """Record that a create is about to be sent (kept if one is already pending)."""
        con.execute(
            "INSERT INTO intents VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [system, entity, global_id, key, json.dumps(payload, sort_keys=True), now],
        )

    def pending_intents(self, con: duckdb.DuckDBPyConnection, system: str, entity: str) -> dict[str, tuple[str, dict[str, Any], datetime]]:
        """`global_id -> (key, payload, created_at)` of creates whose outcome is unknown."""
        rows = con.execute(
            "SELECT global_id, key, payload::VARCHAR, created_at FROM intents WHERE system = ? AND entity = ?",
            [system, entity],
        ).fetchall()
        return {g: (k, json.loads(p), t) for g, k, p, t in rows}

    def clear_intent(self, con: duckdb.DuckDBPyConnection, system: str, entity: str, global_id: str) -> None:
        """The create's outcome is known (linked or failed)."""
        con.execute("DELETE FROM intents WHERE system = ? AND entity = ? AND global_id = ?", [system, entity, global_id])

    def dead_letter(self, con: duckdb.DuckDBPyConnection, *, system: str, entity: str, global_id: str,
                    record_id: str | None, op: str, field: str | None, message: str, now: datetime,
                    changes_hash: str | None = None) -> None:
        """Record (or count again) a per-entity failure; a different version restarts the count."""
        con.execute(
            "INSERT INTO dead_letters VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?) ON CONFLICT (system, entity, global_id) "
            "DO UPDATE SET record_id = excluded.record_id, op = excluded.op, field = excluded.field, "
            "message = excluded.message, last_seen = excluded.last_seen, changes_hash = excluded.changes_hash, "
            "attempts = CASE WHEN dead_letters.changes_hash IS NOT DISTINCT FROM excluded.changes_hash "
            "THEN dead_letters.attempts + 1 ELSE 1 END",
            [system, entity, global_id, record_id, op, field, message[:2000], now, now, changes_hash],
        )

    def dead_letters(self, con: duckdb.DuckDBPyConnection, system: str, entity: str) -> dict[str, tuple[str | None, int]]:
        """`global_id -> (changes_hash, attempts)` of one target's dead letters."""
        rows = con.execute(
            "SELECT global_id, changes_hash, attempts FROM dead_letters WHERE system = ? AND entity = ?", [system, entity]
        ).fetchall()
        return {g: (h, a) for g, h, a in rows}

    def clear_dead_letter(self, con: duckdb.DuckDBPyConnection, system: str, entity: str, global_id: str) -> None:
        """A later write of this entity succeeded."""
        con.execute("DELETE FROM dead_letters WHERE system = ? AND entity = ? AND global_id = ?", [system, entity, global_id])

    def log(self, con: duckdb.DuckDBPyConnection, rows: Iterable[tuple[Any, ...]]) -> None:
        """Append sync-log rows `(logged_at, run_id, system, entity, global_id, record_id, op, changes, before, outcome)`."""
        rows = [tuple(json.dumps(x, sort_keys=True, default=str) if isinstance(x, (dict, list)) else x for x in r) for r in rows]
        if rows:
            con.executemany("INSERT INTO sync_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
