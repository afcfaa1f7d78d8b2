"""Datasets: append-only logs of entity versions (Sesam's model), one table per system and type,
and the cursor each collect reads on from.

A large append (`FILES_FROM` versions or more, a collect's full read of a large tenant) is written
by polars as a Parquet part of the dataset (crm_wave/store/files.py, `append`): DuckDB took 3.2 s to
store a million CRM customers' versions in its file, where polars writes them in 0.7 s
(docs/benchmarks.md, "Session 18"). From then on `<name>` is a view of the parts and of the table
`<name>__rows`, which takes the small appends; readers read `<name>` with SQL as before."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import polars as pl
import pyarrow as pa

from crm_wave.store import files
from crm_wave.store.connection import arrow, ident, json_typed, registered, schema_sql

__all__ = ["Datasets", "Version", "dataset_sql", "VERSION_SCHEMA", "APPEND_CHUNK", "FILES_FROM", "body_bytes", "body_text"]

#: Versions handed to DuckDB per statement. (One statement of a whole part of a collect, 200,000, moves the
#: commit's work into the statement: the same CPU, alternating runs; docs/benchmarks.md, "Session 13".)
APPEND_CHUNK = 100_000
#: An append of at least this many versions (one round of `append_frame`, at most a collect's `COMMIT_ROWS`)
#: is hashed and compared in DuckDB, and written as a Parquet part when it writes as many. Smaller
#: datasets stay DuckDB tables: each read of a view opens its files (docs/benchmarks.md, "Session 17").
FILES_FROM = 100_000
#: Rows of an Arrow batch handed to DuckDB (`_versions_arrow`).
SCAN_BATCH = 25_000
#: The columns of a dataset, in order.
DATASET_COLUMNS = ("_id", "_seq", "_hash", "_deleted", "_ts", "_previous", "_source_id", "_modified", "_version", "body")
#: The columns a batch of collected versions comes in (`Datasets.append_frame`).
VERSION_SCHEMA = pl.Schema({"_id": pl.String, "_source_id": pl.String, "_hash": pl.String, "_deleted": pl.Boolean,
                  "_modified": pl.String, "_version": pl.Int64, "body": pl.String})


def body_bytes(body: dict[str, Any] | None) -> bytes:
    """A record body as stored and hashed, UTF-8 encoded: JSON with sorted keys, compact, not escaped.

    orjson does this about ten times faster than `json`; what orjson refuses (an integer
    beyond 64 bits) goes through `json` with the same options, so one odd record never
    stops a read.
    """
    try:
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def body_text(body: dict[str, Any] | None) -> str:
    """A record body as stored and hashed (`body_bytes` as text)."""
    return body_bytes(body).decode()


def dataset_sql(con: duckdb.DuckDBPyConnection, name: str) -> str:
    """The statements that create dataset table `name` and its `_current` view in `con`'s database."""
    return schema_sql(con, "datasets.sql").replace("{name}", ident(name))


def _versions_arrow(frame: pl.DataFrame) -> Any:
    """`frame` as Arrow with `body` typed as JSON (`json_typed`: the bodies are `body_bytes`' output, JSON by
    construction)."""
    table = arrow(frame)
    if table.num_rows > SCAN_BATCH:
        # In batches: DuckDB scans an Arrow table one batch per thread, and a collect's part of 200,000 versions
        # came as one (`sha1` of every body on one thread: 0.43 s against 0.25 s in batches of `SCAN_BATCH`).
        table = pa.Table.from_batches(table.to_batches(max_chunksize=SCAN_BATCH))
    return json_typed(table, "body")


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


class Datasets:
    """Dataset tables (`crm_customer`, `wave_invoice`, ...) and the `cursors` of their collects."""

    _datasets: set[str]
    files_root: Path

    def ensure_dataset(self, con: duckdb.DuckDBPyConnection, name: str) -> None:
        """Create dataset table `name` and its `_current` view if missing (a file-backed one: check that
        its parts are where the store is, `files.place`)."""
        if name in self._datasets:
            return
        if not files.place(con, self.files_root, name):
            con.execute(dataset_sql(con, name))
        self._datasets.add(name)

    def _rows_table(self, con: duckdb.DuckDBPyConnection, name: str) -> str:
        """The DuckDB table small appends of dataset `name` go to (`<name>__rows` once it has parts)."""
        return ident(files.rows_table(name) if files.current(con, name) is not None else name)

    def has_dataset(self, name: str) -> bool:
        """Whether dataset table `name` is known to exist (this store created or met it)."""
        return name in self._datasets

    def append_versions(self, con: duckdb.DuckDBPyConnection, name: str, versions: Sequence[Version], now: datetime) -> int:
        """Append the versions that are new or changed (hash or deleted flag); return how many."""
        frame = pl.DataFrame(
            [(v.id, v.source_id, v.hash, v.deleted, v.modified, v.version,
              None if v.body is None else body_text(v.body)) for v in versions],
            schema=VERSION_SCHEMA, orient="row")
        return self.append_frame(con, name, frame, now)

    def append_frame(self, con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame, now: datetime, *,
                     new_deleted: bool = False) -> int:
        """`append_versions` of a frame (columns of `VERSION_SCHEMA`; `_hash` may be null: then it is the
        SHA-1 of `body`, or of "null" for no body). Rows are taken in order, so an id read twice
        gets two versions when they differ; return how many versions were written. A deleted version of
        an id the dataset never held is written only given `new_deleted` (a linked record a full read
        did not find: `linked_never_seen`); else it says nothing new."""
        self.ensure_dataset(con, name)
        if frame.height == 0:
            return 0
        frame = frame.select(list(VERSION_SCHEMA)).cast(VERSION_SCHEMA).with_row_index("_pos")
        if frame["_id"].n_unique() == frame.height:  # one version an id (every read but a rare one): one round
            # (numbering each id's versions costs 0.7 s a million, counting the ids 0.06 s)
            rounds = [frame]
        else:
            rounds = frame.with_columns(pl.int_range(pl.len()).over("_id").alias("_round")).partition_by(
                "_round", maintain_order=True, include_key=False)
        written = 0
        for part in rounds:
            if part.height >= FILES_FROM:
                written += self._append_part(con, name, part, now, new_deleted)
                continue
            for piece in part.iter_slices(APPEND_CHUNK):  # bounded memory in DuckDB
                written += self._append_round(con, name, piece, now, new_deleted)
        return written

    @staticmethod
    def _new_versions(table: str, select: str, new_deleted: bool) -> str:
        """`select` of the rows of `_versions_in` that are new versions of dataset `table` (new ids, or hash or
        deleted flag changed): `i` the incoming row with its hash `_h`, `c` the id's current version."""
        return f"""
                WITH incoming AS (
                    SELECT *, coalesce(_hash, sha1(coalesce(body, 'null'))) AS _h FROM _versions_in
                ), cur AS (
                    SELECT _id, _seq, _hash, _deleted FROM {table}
                    WHERE _id IN (SELECT _id FROM _versions_in)
                    QUALIFY row_number() OVER (PARTITION BY _id ORDER BY _seq DESC) = 1
                )
                SELECT {select}
                FROM incoming i LEFT JOIN cur c ON c._id = i._id
                WHERE CASE WHEN c._id IS NULL THEN {'true' if new_deleted else 'NOT i._deleted'}
                           ELSE c._hash <> i._h OR c._deleted <> i._deleted END"""

    def _append_part(self, con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame, now: datetime,
                     new_deleted: bool) -> int:
        """`_append_round` of many versions: DuckDB hashes and compares them (just the hash, sequence
        numbers and `_previous` come back), polars writes the new ones as a Parquet part of the dataset
        (`files.append`), or they go to its table when fewer than `FILES_FROM` are new."""
        table = ident(name)
        select = (f"i._pos, (SELECT coalesce(max(_seq), 0) FROM {table}) + row_number() OVER (ORDER BY i._pos) AS _seq, "
                  f"i._h AS _hash, c._seq AS _previous")
        with registered(con, "_versions_in", _versions_arrow(frame)):
            # A relation's result, materialised at once, not `execute(...).pl()`: that streams the result, and in
            # DuckDB 1.5.6 its fetch spun forever about once in 175 of these statements (`BatchedBufferedData`;
            # docs/benchmarks.md, "Session 23").
            new = con.sql(self._new_versions(table, select, new_deleted)).pl()
        if new.height == 0:
            return 0
        rows = new.sort("_seq").join(frame.drop("_hash"), on="_pos", how="left", maintain_order="left").with_columns(
            pl.lit(now, pl.Datetime("us")).alias("_ts"), pl.col("_previous").cast(pl.Int64)).select(DATASET_COLUMNS)
        if rows.height >= FILES_FROM:
            files.append(con, self.files_root, name, rows)
        else:
            with registered(con, "_versions_new", _versions_arrow(rows)):
                con.execute(f"INSERT INTO {self._rows_table(con, name)} SELECT * FROM _versions_new")
        return rows.height

    def _append_round(self, con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame, now: datetime,
                      new_deleted: bool = False) -> int:
        """Append versions of distinct ids (new, or hash/deleted flag changed)."""
        table = ident(name)
        select = (f"i._id, (SELECT coalesce(max(_seq), 0) FROM {table}) + row_number() OVER (ORDER BY i._pos), "
                  f"i._h, i._deleted, ?, c._seq, i._source_id, i._modified, i._version, i.body")
        with registered(con, "_versions_in", _versions_arrow(frame)):
            ((n,),) = con.execute(f"INSERT INTO {self._rows_table(con, name)}" + self._new_versions(table, select, new_deleted),
                                  [now]).fetchall()
        return int(n)

    def live_ids_not_in(self, con: duckdb.DuckDBPyConnection, name: str, seen: pl.Series) -> tuple[int, list[str]]:
        """(how many entities are live, the live ids not among `seen`, sorted): for full reads."""
        self.ensure_dataset(con, name)
        with registered(con, "_seen_ids", pl.DataFrame({"_id": seen.cast(pl.String)})):
            rows = con.execute(
                f"WITH live AS (SELECT _id, _deleted FROM {ident(name)} "
                f"QUALIFY row_number() OVER (PARTITION BY _id ORDER BY _seq DESC) = 1) "
                f"SELECT (SELECT count(*) FROM live WHERE NOT _deleted), list(_id ORDER BY _id) FROM live "
                f"WHERE NOT _deleted AND _id NOT IN (SELECT _id FROM _seen_ids)").fetchall()
        return int(rows[0][0]), list(rows[0][1] or [])

    def linked_never_seen(self, con: duckdb.DuckDBPyConnection, name: str, system: str, entity: str,
                          seen: pl.Series, before: datetime) -> list[str]:
        """Source ids of `system` linked (entity stem `entity`) before `before` (naive UTC) that dataset `name`
        has never held and `seen` (source ids) does not hold, sorted: records the sync created and linked
        that a full read begun well after the link does not find (deleted before any collect saw them)."""
        self.ensure_dataset(con, name)
        with registered(con, "_seen_ids", pl.DataFrame({"_id": seen.cast(pl.String)})):
            rows = con.execute(
                f"SELECT list(l.id ORDER BY l.id) FROM (SELECT {system}_id AS id FROM links WHERE entity = ? "
                f"AND {system}_id IS NOT NULL AND linked_at < ?) l ANTI JOIN {ident(name)} d ON d._source_id = l.id "
                f"ANTI JOIN _seen_ids s ON s._id = l.id", [entity, before]).fetchall()
        return list(rows[0][0] or [])

    def max_seq(self, con: duckdb.DuckDBPyConnection, name: str) -> int:
        """The newest `_seq` of dataset `name` (0 when empty)."""
        self.ensure_dataset(con, name)
        return int(con.execute(f"SELECT coalesce(max(_seq), 0) FROM {ident(name)}").fetchall()[0][0])

    def tops(self, con: duckdb.DuckDBPyConnection, names: Sequence[str]) -> tuple[dict[str, int], int]:
        """(the newest `_seq` of each dataset of `names`, the newest change sequence number), in one statement."""
        for name in names:
            self.ensure_dataset(con, name)
        cols = [f"(SELECT coalesce(max(_seq), 0) FROM {ident(n)})" for n in names]
        row = con.execute(f"SELECT {', '.join([*cols, '(SELECT coalesce(max(seq), 0) FROM changes)'])}").fetchall()[0]
        return {n: int(v) for n, v in zip(names, row)}, int(row[-1])

    def changed_source_ids(self, con: duckdb.DuckDBPyConnection, name: str, after: int, upto: int) -> pl.Series:
        """Source ids of dataset `name` with a version in (`after`, `upto`]."""
        self.ensure_dataset(con, name)
        frame = con.execute(f"SELECT DISTINCT _source_id FROM {ident(name)} WHERE _seq > ? AND _seq <= ?",
                            [after, upto]).pl()
        return frame["_source_id"].cast(pl.String) if frame.height else pl.Series("_source_id", [], pl.String)

    def mark_unread(self, con: duckdb.DuckDBPyConnection, dataset: str, written_at: datetime) -> None:
        """A push wrote to the system of `dataset`, answered at `written_at` (naive UTC): the dataset holds an
        older copy until a collect begun after that reads it (`read_back`)."""
        con.execute("INSERT INTO unread_writes VALUES (?, ?) ON CONFLICT (dataset) DO UPDATE SET "
                    "written_at = greatest(unread_writes.written_at, excluded.written_at)", [dataset, written_at])

    def read_back(self, con: duckdb.DuckDBPyConnection, dataset: str, started: datetime) -> None:
        """A collect of `dataset` begun at `started` (naive UTC) has ended: the writes answered before it are read."""
        con.execute("DELETE FROM unread_writes WHERE dataset = ? AND written_at < ?", [dataset, started])

    def unread(self, con: duckdb.DuckDBPyConnection, datasets: Sequence[str]) -> list[str]:
        """Those of `datasets` a push wrote to that no collect has read since (`mark_unread`), sorted."""
        rows = con.execute("SELECT dataset FROM unread_writes WHERE list_contains(?, dataset) ORDER BY dataset",
                           [list(datasets)]).fetchall()
        return [r[0] for r in rows]

    def get_cursor(self, con: duckdb.DuckDBPyConnection, dataset: str) -> tuple[str | None, datetime | None]:
        """(cursor, time of the last full read) of a dataset."""
        row = con.execute("SELECT cursor, last_full_at FROM cursors WHERE dataset = ?", [dataset]).fetchall()
        return (row[0][0], row[0][1]) if row else (None, None)

    def set_cursor(self, con: duckdb.DuckDBPyConnection, dataset: str, cursor: str | None, now: datetime,
                   *, full: bool) -> None:
        """Move a dataset's cursor (in the same transaction as the versions it covers). An `UPDATE`, or an
        `INSERT` the first time (an `ON CONFLICT` upsert costs 2.6x as much; each collect sets one)."""
        ((n,),) = con.execute(
            "UPDATE cursors SET cursor = ?, updated_at = ?, last_full_at = CASE WHEN ? THEN ? ELSE last_full_at END "
            "WHERE dataset = ?", [cursor, now, full, now, dataset]).fetchall()
        if not n:
            con.execute("INSERT INTO cursors VALUES (?, ?, ?, ?)", [dataset, cursor, now if full else None, now])
