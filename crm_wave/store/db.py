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
import orjson
import polars as pl

__all__ = ["Store", "Version", "VERSION_SCHEMA", "body_text"]

_SQL_DIR = Path(__file__).parent
_IDENT_OK = set("abcdefghijklmnopqrstuvwxyz_0123456789")


#: Up to this many rows go one statement each; more go as one frame (DuckDB's
#: `executemany` costs about 5 ms a row, registering a frame about as much as one statement).
_FEW = 1
#: Versions handed to DuckDB per statement.
APPEND_CHUNK = 100_000
#: The columns a batch of collected versions comes in (`Store.append_frame`).
VERSION_SCHEMA = {"_id": pl.String, "_source_id": pl.String, "_hash": pl.String, "_deleted": pl.Boolean,
                  "_modified": pl.String, "_version": pl.Int64, "body": pl.String}
_LINK_SCHEMA = {"global_id": pl.String, "crm_id": pl.String, "wave_id": pl.String, "how": pl.String}
_CONFLICT_SCHEMA = {"global_id": pl.String, "field": pl.String, "crm_value": pl.String, "wave_value": pl.String,
                    "base_value": pl.String, "winner": pl.String, "reason": pl.String}


def body_text(body: dict[str, Any] | None) -> str:
    """A record body as stored and hashed: JSON with sorted keys, compact, UTF-8 (not escaped).

    orjson does this about ten times faster than `json`; what orjson refuses (an integer
    beyond 64 bits) goes through `json` with the same options, so one odd record never
    stops a read.
    """
    try:
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    """An exclusive `fcntl` lock on the file `path` (created if missing), between processes."""
    with open(path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """`con` in a transaction: committed on success, rolled back on error."""
    con.execute("BEGIN")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            con.execute("ROLLBACK")
        raise


def _arrow(frame: pl.DataFrame):
    """A frame as Arrow with plain (not view) strings: DuckDB scans those about twice as fast."""
    return frame.to_arrow(compat_level=pl.CompatLevel.oldest())


def _sql_str(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _sql_ident(text: str) -> str:
    """A quoted SQL identifier."""
    return '"' + text.replace('"', '""') + '"'


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
        self._session: tuple[int, duckdb.DuckDBPyConnection] | None = None
        with self.connect() as con:
            con.execute((_SQL_DIR / "schema.sql").read_text())

    @contextlib.contextmanager
    def named_lock(self, name: str) -> Iterator[None]:
        """An exclusive lock of its own beside the database, e.g. one push of one share table at a time."""
        with _flock(self.path.with_name(f"{self.path.name}.{_ident(name)}.lock")):
            yield

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the database's exclusive lock (no connection open): for copying the file."""
        if self._in_session():
            raise RuntimeError(f"{self.path}: locked() inside this thread's own session would wait for itself")
        with self._thread_lock, _flock(self._lock_path):
            yield

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Hold the file lock and one open connection for a whole step: the `connect()` calls of
        this thread inside it reuse that connection, each still its own transaction.

        Opening the file costs about 15 ms and closing it checkpoints what was written: in a
        small incremental pass, reconnecting for every read and write was half the time. Other
        processes and threads wait for the session to end, as they would for a connection.
        """
        if self._in_session():
            yield
            return
        with self.locked():
            con = duckdb.connect(str(self.path))
            self._session = (threading.get_ident(), con)
            try:
                yield
            finally:
                self._session = None
                con.close()

    def _in_session(self) -> bool:
        return self._session is not None and self._session[0] == threading.get_ident()

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection under the file lock (the session's, inside `session()`), committed on
        success, rolled back on error."""
        if self._in_session():
            with _transaction(self._session[1]) as con:
                yield con
            return
        with self.locked():
            con = duckdb.connect(str(self.path))
            try:
                with _transaction(con):
                    yield con
            finally:
                con.close()

    # ---- datasets -------------------------------------------------------------------
    def ensure_dataset(self, con: duckdb.DuckDBPyConnection, name: str) -> None:
        """Create dataset table `name` and its `_current` view if missing."""
        if name in self._datasets:
            return
        con.execute((_SQL_DIR / "datasets.sql").read_text().replace("{name}", _ident(name)))
        self._datasets.add(name)

    def append_versions(self, con: duckdb.DuckDBPyConnection, name: str, versions: Sequence[Version], now: datetime) -> int:
        """Append the versions that are new or changed (hash or deleted flag); return how many."""
        frame = pl.DataFrame(
            [(v.id, v.source_id, v.hash, v.deleted, v.modified, v.version,
              None if v.body is None else body_text(v.body)) for v in versions],
            schema=VERSION_SCHEMA, orient="row")
        return self.append_frame(con, name, frame, now)

    def append_frame(self, con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame, now: datetime) -> int:
        """`append_versions` of a frame (columns of `VERSION_SCHEMA`; `_hash` may be null: then it is the
        SHA-1 of `body`, or of "null" for no body). Rows are taken in order, so an id read twice
        gets two versions when they differ; return how many versions were written."""
        self.ensure_dataset(con, name)
        if frame.height == 0:
            return 0
        frame = frame.select(list(VERSION_SCHEMA)).cast(VERSION_SCHEMA).with_row_index("_pos")
        rounds = frame.with_columns(pl.int_range(pl.len()).over("_id").alias("_round"))
        written = 0
        for part in rounds.partition_by("_round", maintain_order=True, include_key=False):
            for piece in part.iter_slices(APPEND_CHUNK):  # bounded memory in DuckDB
                written += self._append_round(con, name, piece, now)
        return written

    def _append_round(self, con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame, now: datetime) -> int:
        """Append versions of distinct ids (new, or hash/deleted flag changed)."""
        table = _ident(name)
        ((next_seq,),) = con.execute(f"SELECT coalesce(max(_seq), 0) FROM {table}").fetchall()
        con.register("_versions_in", _arrow(frame))
        try:
            ((n,),) = con.execute(
                f"""
                INSERT INTO {table}
                WITH incoming AS (
                    SELECT *, coalesce(_hash, sha1(coalesce(body, 'null'))) AS _h FROM _versions_in
                ), cur AS (
                    SELECT _id, _seq, _hash, _deleted FROM {table}
                    WHERE _id IN (SELECT _id FROM _versions_in)
                    QUALIFY row_number() OVER (PARTITION BY _id ORDER BY _seq DESC) = 1
                )
                SELECT i._id, ? + row_number() OVER (ORDER BY i._pos), i._h, i._deleted, ?, c._seq,
                       i._source_id, i._modified, i._version, i.body
                FROM incoming i LEFT JOIN cur c ON c._id = i._id
                WHERE CASE WHEN c._id IS NULL THEN NOT i._deleted
                           ELSE c._hash <> i._h OR c._deleted <> i._deleted END
                """,
                [next_seq, now],
            ).fetchall()
        finally:
            con.unregister("_versions_in")
        return int(n)

    def live_ids_not_in(self, con: duckdb.DuckDBPyConnection, name: str, seen: pl.Series) -> tuple[int, list[str]]:
        """(how many entities are live, the live ids not among `seen`, sorted): for full reads."""
        self.ensure_dataset(con, name)
        con.register("_seen_ids", pl.DataFrame({"_id": seen.cast(pl.String)}))
        try:
            rows = con.execute(
                f"WITH live AS (SELECT _id, _deleted FROM {_ident(name)} "
                f"QUALIFY row_number() OVER (PARTITION BY _id ORDER BY _seq DESC) = 1) "
                f"SELECT (SELECT count(*) FROM live WHERE NOT _deleted), list(_id ORDER BY _id) FROM live "
                f"WHERE NOT _deleted AND _id NOT IN (SELECT _id FROM _seen_ids)").fetchall()
        finally:
            con.unregister("_seen_ids")
        return int(rows[0][0]), list(rows[0][1] or [])

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
        rows = list(links)
        if not rows:
            return
        self.upsert_links_frame(con, entity, pl.DataFrame(rows, schema=_LINK_SCHEMA, orient="row"), now)

    def upsert_links_frame(self, con: duckdb.DuckDBPyConnection, entity: str, frame: pl.DataFrame, now: datetime,
                           *, writer: str | None = None, log: bool = True) -> None:
        """`upsert_links` of a frame (global_id, crm_id, wave_id, how), in one statement."""
        if frame.height == 0:
            return
        frame = frame.select(list(_LINK_SCHEMA)).cast(_LINK_SCHEMA)
        if frame["global_id"].n_unique() != frame.height:  # the same link twice: one after the other
            for part in frame.with_row_index("_i").with_columns(
                    pl.int_range(pl.len()).over("global_id").alias("_n")).partition_by("_n", maintain_order=True):
                self.upsert_links_frame(con, entity, part.drop("_i", "_n"), now, writer=writer, log=log)
            return
        update = ("ON CONFLICT (entity, global_id) DO UPDATE SET "
                  "crm_id = coalesce(links.crm_id, excluded.crm_id), wave_id = coalesce(links.wave_id, excluded.wave_id), "
                  "how = CASE WHEN links.crm_id IS NULL OR links.wave_id IS NULL THEN excluded.how ELSE links.how END, "
                  "linked_at = CASE WHEN links.crm_id IS NULL OR links.wave_id IS NULL THEN excluded.linked_at "
                  "ELSE links.linked_at END")
        if frame.height <= _FEW:
            for g, c, w, h in frame.iter_rows():
                con.execute(f"INSERT INTO links VALUES (?, ?, ?, ?, ?, ?) {update}", [entity, g, c, w, h, now])
        else:
            con.register("_links_in", _arrow(frame))
            try:
                con.execute(f"INSERT INTO links SELECT ?, global_id, crm_id, wave_id, how, ? FROM _links_in {update}",
                            [entity, now])
            finally:
                con.unregister("_links_in")
        if log:
            self.log_changes(con, entity, frame["global_id"], "link", writer=writer)

    def drop_links(self, con: duckdb.DuckDBPyConnection, entity: str, global_ids: Sequence[str], *,
                   writer: str | None = None) -> None:
        """Remove link rows (a half link absorbed into another one)."""
        if not global_ids:
            return
        ids = pl.DataFrame({"global_id": list(global_ids)}, schema={"global_id": pl.String})
        con.register("_drop_in", ids)
        try:
            con.execute("DELETE FROM links WHERE entity = ? AND global_id IN (SELECT global_id FROM _drop_in)", [entity])
        finally:
            con.unregister("_drop_in")
        self.log_changes(con, entity, ids["global_id"], "link", writer=writer)

    def read_agreed(self, con: duckdb.DuckDBPyConnection, entity: str) -> dict[str, dict[str, Any]]:
        """`global_id -> last agreed canonical values`."""
        rows = con.execute('SELECT global_id, "values"::VARCHAR FROM agreed WHERE entity = ?', [entity]).fetchall()
        return {g: json.loads(v) for g, v in rows}

    def read_agreed_frame(self, con: duckdb.DuckDBPyConnection, entity: str, fields: Sequence[str],
                          global_ids: pl.Series | None = None) -> pl.DataFrame:
        """Agreed values as a frame: `global_id` and one String column per field (null when not agreed)."""
        schema = {"global_id": pl.String, **{f: pl.String for f in fields}}
        if global_ids is not None and global_ids.len() == 0:
            return pl.DataFrame(schema=schema)
        structure = json.dumps({f: "VARCHAR" for f in fields})
        where = ""
        if global_ids is not None:
            con.register("_agreed_ids", pl.DataFrame({"global_id": global_ids.cast(pl.String)}))
            where = " AND global_id IN (SELECT global_id FROM _agreed_ids)"
        try:
            sel = ", ".join(f"s[{_sql_str(f)}] AS {_sql_ident(f)}" for f in fields)
            frame = con.execute(
                f"SELECT global_id{', ' + sel if fields else ''} FROM (SELECT global_id, json_transform(\"values\", ?) AS s "
                f"FROM agreed WHERE entity = ?{where})", [structure, entity]).pl()
        finally:
            if global_ids is not None:
                con.unregister("_agreed_ids")
        return frame.cast(schema) if frame.height else pl.DataFrame(schema=schema)

    def upsert_agreed(self, con: duckdb.DuckDBPyConnection, entity: str, values: dict[str, dict[str, Any]], now: datetime) -> None:
        """Store agreed values per global id (merged over what was agreed before)."""
        if not values:
            return
        frame = pl.DataFrame({"global_id": list(values),
                              "values": [json.dumps(v, sort_keys=True) for v in values.values()]},
                             schema={"global_id": pl.String, "values": pl.String})
        self._upsert_agreed_json(con, entity, frame, now)

    def upsert_agreed_frame(self, con: duckdb.DuckDBPyConnection, entity: str, frame: pl.DataFrame, now: datetime,
                            *, log: bool = True) -> None:
        """`upsert_agreed` of a frame: `global_id` plus one String column per agreed field.

        `log=False` for the global step's own writes (it has merged those rows already)."""
        if frame.height == 0:
            return
        fields = [c for c in frame.columns if c != "global_id"]
        encoded = frame.select("global_id", pl.struct(fields).struct.json_encode().alias("values"))
        self._upsert_agreed_json(con, entity, encoded, now, log=log)

    def _upsert_agreed_json(self, con: duckdb.DuckDBPyConnection, entity: str, frame: pl.DataFrame, now: datetime,
                            *, log: bool = True) -> None:
        # A null in the new values stands for "agreed: empty"; json_merge_patch drops the key, which
        # reads back as null all the same.
        con.register("_agreed_in", _arrow(frame))
        try:
            con.execute(
                'INSERT INTO agreed SELECT ?, global_id, json_merge_patch(\'{}\', "values"), ? FROM _agreed_in '
                'ON CONFLICT (entity, global_id) DO UPDATE SET '
                '"values" = json_merge_patch(agreed."values", excluded."values"), updated_at = excluded.updated_at',
                [entity, now],
            )
        finally:
            con.unregister("_agreed_in")
        if log:
            self.log_changes(con, entity, frame["global_id"], "agreed")

    # ---- whole tables written by the global and share steps -------------------------
    def replace_table(self, con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
        """Replace table `name` with `frame` (global and share tables are recomputed each pass)."""
        con.register("_frame", _arrow(frame))
        try:
            con.execute(f"CREATE OR REPLACE TABLE {_ident(name)} AS SELECT * FROM _frame")
        finally:
            con.unregister("_frame")

    def read_table(self, con: duckdb.DuckDBPyConnection, name: str) -> pl.DataFrame | None:
        """A whole table as polars, or None if it does not exist yet."""
        exists = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [_ident(name)]
        ).fetchall()[0][0]
        return con.execute(f"SELECT * FROM {name}").pl() if exists else None

    def head(self, con: duckdb.DuckDBPyConnection, name: str, columns: Sequence[str], n: int) -> pl.DataFrame | None:
        """The first `n` rows of table `name`, just those of `columns` it has; None if it does not exist."""
        have = self.table_columns(con, name)
        if have is None:
            return None
        sel = ", ".join(_sql_ident(c) for c in columns if c in have) or "*"
        return con.execute(f"SELECT {sel} FROM {_ident(name)} LIMIT {int(n)}").pl()

    def table_columns(self, con: duckdb.DuckDBPyConnection, name: str) -> list[str] | None:
        """Column names of table `name` in order, or None if it does not exist."""
        rows = con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND table_schema = 'main' "
            "ORDER BY ordinal_position", [_ident(name)]).fetchall()
        return [r[0] for r in rows] or None

    def read_rows(self, con: duckdb.DuckDBPyConnection, name: str, key: str, values: pl.Series,
                  columns: Sequence[str] | None = None) -> pl.DataFrame:
        """The rows of table `name` whose column `key` is one of `values`."""
        sel = ", ".join(_sql_ident(c) for c in columns) if columns else "*"
        con.register("_rows_keys", pl.DataFrame({"k": values.cast(pl.String)}))
        try:
            return con.execute(
                f"SELECT {sel} FROM {_ident(name)} WHERE {_sql_ident(key)} IN (SELECT k FROM _rows_keys)").pl()
        finally:
            con.unregister("_rows_keys")

    def replace_rows(self, con: duckdb.DuckDBPyConnection, name: str, key: str, values: pl.Series,
                     frame: pl.DataFrame) -> None:
        """Delete the rows of `name` whose `key` is one of `values`, then insert `frame` (by column name)."""
        con.register("_rows_keys", pl.DataFrame({"k": values.cast(pl.String)}))
        try:
            con.execute(f"DELETE FROM {_ident(name)} WHERE {_sql_ident(key)} IN (SELECT k FROM _rows_keys)")
        finally:
            con.unregister("_rows_keys")
        self.insert_rows(con, name, frame)

    def insert_rows(self, con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
        """Insert `frame` into table `name` (by column name)."""
        if frame.height:
            con.register("_frame", _arrow(frame))
            try:
                con.execute(f"INSERT INTO {_ident(name)} BY NAME SELECT * FROM _frame")
            finally:
                con.unregister("_frame")

    def swap_table(self, con: duckdb.DuckDBPyConnection, staging: str, name: str) -> None:
        """Replace table `name` by table `staging` (renamed), in the caller's transaction."""
        con.execute(f"DROP TABLE IF EXISTS {_ident(name)}")
        con.execute(f"ALTER TABLE {_ident(staging)} RENAME TO {_ident(name)}")

    def row_ranges(self, con: duckdb.DuckDBPyConnection, name: str, size: int) -> list[tuple[int, int]]:
        """`[lo, hi)` rowid ranges of table `name`, about `size` rows each (for reading it in parts)."""
        lo, hi = con.execute(f"SELECT coalesce(min(rowid), 0), coalesce(max(rowid), -1) + 1 FROM {_ident(name)}").fetchall()[0]
        return [(a, min(a + size, hi)) for a in range(lo, hi, size)] or [(0, 0)]

    def read_range(self, con: duckdb.DuckDBPyConnection, name: str, rows: tuple[int, int],
                   columns: Sequence[str] | None = None) -> pl.DataFrame:
        """The rows of table `name` with rowid in `[lo, hi)` (just `columns`, if given)."""
        sel = ", ".join(_sql_ident(c) for c in columns) if columns else "*"
        return con.execute(f"SELECT {sel} FROM {_ident(name)} WHERE rowid >= ? AND rowid < ?", list(rows)).pl()

    # ---- incremental steps: what changed since a step last ran ----------------------
    def max_seq(self, con: duckdb.DuckDBPyConnection, name: str) -> int:
        """The newest `_seq` of dataset `name` (0 when empty)."""
        self.ensure_dataset(con, name)
        return int(con.execute(f"SELECT coalesce(max(_seq), 0) FROM {_ident(name)}").fetchall()[0][0])

    def changed_source_ids(self, con: duckdb.DuckDBPyConnection, name: str, after: int, upto: int) -> pl.Series:
        """Source ids of dataset `name` with a version in (`after`, `upto`]."""
        self.ensure_dataset(con, name)
        frame = con.execute(f"SELECT DISTINCT _source_id FROM {_ident(name)} WHERE _seq > ? AND _seq <= ?",
                            [after, upto]).pl()
        return frame["_source_id"].cast(pl.String) if frame.height else pl.Series("_source_id", [], pl.String)

    def log_changes(self, con: duckdb.DuckDBPyConnection, entity: str, global_ids: pl.Series | Sequence[str], kind: str,
                    *, writer: str | None = None) -> None:
        """Record that these global ids' links, agreed values or golden rows changed (see `changes`).

        `global_ids` of just "*" means "all of them" (after a full rebuild).
        """
        ids = global_ids if isinstance(global_ids, pl.Series) else pl.Series(list(global_ids), dtype=pl.String)
        if ids.len() == 0:
            return
        ((seq,),) = con.execute("SELECT nextval('change_seq')").fetchall()
        ids = ids.cast(pl.String).unique(maintain_order=True)
        if ids.len() <= _FEW:
            for g in ids:
                con.execute("INSERT INTO changes VALUES (?, ?, ?, ?, ?)", [seq, entity, g, kind, writer])
            return
        con.register("_changes_in", pl.DataFrame({"global_id": ids}))
        try:
            con.execute("INSERT INTO changes SELECT ?, ?, global_id, ?, ? FROM _changes_in", [seq, entity, kind, writer])
        finally:
            con.unregister("_changes_in")

    def last_change(self, con: duckdb.DuckDBPyConnection) -> int:
        """The newest change sequence number (0 when none)."""
        return int(con.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchall()[0][0])

    def read_changes(self, con: duckdb.DuckDBPyConnection, after: int, upto: int) -> pl.DataFrame:
        """Changes in (`after`, `upto`]: entity, global_id, kind, writer."""
        return con.execute("SELECT entity, global_id, kind, writer FROM changes WHERE seq > ? AND seq <= ?",
                           [after, upto]).pl().cast({"entity": pl.String, "global_id": pl.String, "kind": pl.String,
                                                     "writer": pl.String})

    def read_marks(self, con: duckdb.DuckDBPyConnection, step: str) -> dict[str, int]:
        """`source -> mark` of one incremental step."""
        return dict(con.execute("SELECT source, mark FROM step_marks WHERE step = ?", [step]).fetchall())

    def set_marks(self, con: duckdb.DuckDBPyConnection, step: str, marks: dict[str, int]) -> None:
        """Replace the marks of one step; then forget changes every step has read."""
        frame = pl.DataFrame({"step": step, "source": list(marks), "mark": [int(v) for v in marks.values()]},
                             schema={"step": pl.String, "source": pl.String, "mark": pl.Int64})
        con.register("_marks_in", _arrow(frame))
        try:
            con.execute("INSERT INTO step_marks SELECT * FROM _marks_in "
                        "ON CONFLICT (step, source) DO UPDATE SET mark = excluded.mark")
        finally:
            con.unregister("_marks_in")
        con.execute("DELETE FROM changes WHERE seq <= (SELECT min(mark) FROM step_marks WHERE source = 'changes')")

    # ---- conflicts, intents, dead letters, sync log ---------------------------------
    def record_conflicts(self, con: duckdb.DuckDBPyConnection, entity: str, rows: Iterable[dict[str, Any]], now: datetime) -> int:
        """Append conflicts not already recorded with the same values; return how many are new."""
        rows = list(rows)
        if not rows:
            return 0
        return self.record_conflicts_frame(con, entity, pl.DataFrame(rows, schema=_CONFLICT_SCHEMA), now)

    def record_conflicts_frame(self, con: duckdb.DuckDBPyConnection, entity: str, frame: pl.DataFrame, now: datetime) -> int:
        """`record_conflicts` of a frame (global_id, field, crm_value, wave_value, base_value, winner, reason)."""
        if frame.height == 0:
            return 0
        frame = frame.select(list(_CONFLICT_SCHEMA)).cast(_CONFLICT_SCHEMA).unique(
            ["global_id", "field", "crm_value", "wave_value"], keep="first", maintain_order=True)
        con.register("_conflicts_in", _arrow(frame))
        try:
            ((n,),) = con.execute(
                "INSERT INTO conflicts SELECT ?, n.global_id, n.field, n.crm_value, n.wave_value, n.base_value, "
                "n.winner, n.reason, ? FROM _conflicts_in n WHERE NOT EXISTS (SELECT 1 FROM conflicts c "
                "WHERE c.entity = ? AND c.global_id = n.global_id AND c.field = n.field "
                "AND c.crm_value IS NOT DISTINCT FROM n.crm_value AND c.wave_value IS NOT DISTINCT FROM n.wave_value)",
                [entity, now, entity]).fetchall()
        finally:
            con.unregister("_conflicts_in")
        return int(n)

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
        if len(rows) <= _FEW:
            for row in rows:
                con.execute("INSERT INTO sync_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", list(row))
            return
        frame = pl.DataFrame(rows, schema={"logged_at": pl.Datetime("us"), "run_id": pl.String, "system": pl.String,
                                           "entity": pl.String, "global_id": pl.String, "record_id": pl.String,
                                           "op": pl.String, "changes": pl.String, "before": pl.String,
                                           "outcome": pl.String}, orient="row")
        con.register("_log_in", _arrow(frame))
        try:
            con.execute("INSERT INTO sync_log SELECT * FROM _log_in")
        finally:
            con.unregister("_log_in")

    def add_intents(self, con: duckdb.DuckDBPyConnection, system: str, entity: str,
                    intents: Sequence[tuple[str, str, dict[str, Any]]], now: datetime) -> None:
        """`add_intent` of many `(global_id, key, payload)` at once."""
        if not intents:
            return
        frame = pl.DataFrame([(g, k, json.dumps(p, sort_keys=True)) for g, k, p in intents],
                             schema={"global_id": pl.String, "key": pl.String, "payload": pl.String}, orient="row")
        con.register("_intents_in", _arrow(frame))
        try:
            con.execute("INSERT INTO intents SELECT ?, ?, global_id, key, payload, ? FROM _intents_in ON CONFLICT DO NOTHING",
                        [system, entity, now])
        finally:
            con.unregister("_intents_in")

    def clear_many(self, con: duckdb.DuckDBPyConnection, table: str, system: str, entity: str,
                   global_ids: Sequence[str]) -> None:
        """`clear_intent` / `clear_dead_letter` of many global ids at once (`table`: intents or dead_letters)."""
        if table not in ("intents", "dead_letters") or not global_ids:
            return
        con.register("_clear_ids", pl.DataFrame({"g": list(global_ids)}, schema={"g": pl.String}))
        try:
            con.execute(f"DELETE FROM {table} WHERE system = ? AND entity = ? AND global_id IN (SELECT g FROM _clear_ids)",
                        [system, entity])
        finally:
            con.unregister("_clear_ids")
