"""Parquet segments that snapshots share: a snapshot writes what changed since the one before.

Every table of the live store goes to `<snapshots>/segments/<table>/` as immutable Parquet files:

- a dataset (append-only versions, each with a `_seq`) as a chain of `seq` segments, each holding
  the versions with `lo < _seq <= hi`. A new snapshot writes only the versions above the chain's
  end (checked first: the live dataset still holds as many versions up to it, and the same last
  `TAIL`);
- any other table (golden, share, links, agreed, conflicts, the queue, ...) as a `base` segment
  plus `delta` segments. Every row carries `_snap_h`, DuckDB's `hash()` of the whole live row:
  a row's identity is its content. A delta holds the rows to add and the hashes to remove
  (`_snap_gone` marks a removal); a changed row is the old one removed and the new one added. The
  snapshot's view of the table is the base and the deltas' added rows, less every row a later
  delta removed. A table with two identical rows (no content identity) is written `whole`
  instead, again only when its rows' hashes changed;
- how the changed rows are found, under the store's lock:
  - a table the store's row-write log covers (crm_wave/store/writes.py: golden, share, `links`,
    `agreed`, `conflict_queue`; every write of them logs the global ids it wrote, in the same
    transaction) is read from the log since the mark the previous snapshot recorded
    (`snapshot_log_mark`): not written, it is shared as it was once its row count (no scan of the
    rows) is the previous snapshot's; written by rows, its key column is scanned for the logged
    ids and only those rows are hashed, against the previous snapshot's rows of the same ids read
    from its Parquet files, and the counts must add up to the live count;
  - any other table, or one whose log cannot be trusted (another log id: a store built again; a
    log behind the mark or with other rows at it: a file restored from an older copy; the rows
    after the mark pruned; a whole rewrite; counts that do not add up: a write the log missed),
    has every live row hashed in one scan, and an anti join with the hashes the previous snapshot
    shows (read from its own Parquet files) gives the rows to add and remove. A whole rewrite of a
    table bigger than `max_rows`, or more logged ids than that, goes straight to the copy;
- `compact` merges a chain from its own Parquet files, never touching the live store (so outside its
  lock), once the deltas grow past `MAX_DELTAS` files or `COMPACT_SHARE` of the base's rows
  (`EMPTY_BASE_ROWS` rows over an empty base): into one delta when they mostly cancel out (the same
  rows changed again: `MERGE_BELOW`), at a cost that follows the change, else into a new base.

A snapshot file is a small DuckDB database: one view per live table over its segments (by
absolute path; the log's own tables are left out), the live views, the analyst views,
`snapshot_files`, the list of its segments, `snapshot_log_mark`, where the store's row-write
log stood, `snapshot_prints` (these three views of their own rows: `_rows_view`), and the table
`snapshot_shape`, a digest of what the rest is made from (`shape`): a publish whose
digest is the newest snapshot's copies that file and replaces the views of what changed. At 1M
records hashing every row held the lock for 9-21 s after no change; with the log (and the changes of
the sessions since) it is held 0.03-0.04 s after no change and 0.16-0.20 s after a 1 % change
(docs/benchmarks.md, "Session 23").
Segment files are written to a temporary name, synced and renamed before the snapshot that reads
them is published, and never changed afterwards. Nothing here reads DuckDB's file layout: only SQL.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from crm_wave.analyst.views import create_views, views_digest
from crm_wave.store import files, writes
from crm_wave.store.connection import commit, scratch
from crm_wave.store.datasets import DATASET_COLUMNS

if TYPE_CHECKING:  # pyarrow is DuckDB's to load when a table is fetched: not at import
    import pyarrow as pa

__all__ = ["COMPACT_SHARE", "DATASET_COLUMNS", "MANIFEST", "MAX_DELTAS", "SEGMENTS_DIR", "Export", "Segment", "TooMuchChange",
           "collect_garbage", "compact", "dir_lock", "export",
           "files_place", "files_segments", "finish", "previous_hashes", "read_manifest", "read_mark", "remember",
           "remember_manifest",
           "shape", "snapshot_bytes", "view_sql", "write_manifest", "write_snapshot"]

SEGMENTS_DIR = "segments"
#: The view in every snapshot file that lists the segment files its views read (a view of its rows: `_rows_view`).
MANIFEST = "snapshot_files"
#: The view in every snapshot file of the store's row-write log mark it was taken at (one row; none: no log).
MARK = "snapshot_log_mark"
#: The table in every snapshot file that holds the digest of what its objects are made from (`shape`).
SHAPE = "snapshot_shape"
#: The view of the fingerprint (count, sum, bit_xor of `_snap_h`) of each hashed table's rows as the snapshot shows them, where
#: the export knew it: the next publish of a new process compares the live rows with it before it reads any
#: chain's hashes (`previous_hashes`), and reads the hashes only of a table whose rows changed.
PRINTS = "snapshot_prints"
#: Deltas a chain may have before it is compacted.
MAX_DELTAS = 16
#: Rows in a chain's deltas, as a share of its base's, at which it is compacted. A new base rewrites (1 + share) / share
#: rows per row changed, and a read of the chain reads up to 1 + share rows per row it returns: at 0.5, 3 and 1.5 (at
#: 0.25, 5 and 1.25). On the 1M store a share table's chain at its longest (100,000 rows, two deltas of 20,000) took
#: 5 ms to count and 33 ms to find one row, against 0.5 and 24 ms on its base alone (docs/benchmarks.md, "Session 24").
COMPACT_SHARE = 0.5
#: A chain due to be compacted whose deltas, merged, hold at most this share of `COMPACT_SHARE` of the base's rows
#: (the same rows changed again) gets them merged into one delta and keeps its base; otherwise a new base. At half,
#: the next merge comes only after new deltas of at least as many rows again (or `MAX_DELTAS` of them), and reads
#: about twice their rows: it costs in proportion to the change.
MERGE_BELOW = 0.5
#: Rows in the deltas of a chain over an empty base (a golden table's `__changed` rows after a rebuild) at which
#: it is compacted: any share of nothing is more, and every publish after a change rewrote the chain (0.085 s of
#: 0.49 s at 10,000 rows; docs/benchmarks.md, "Session 18").
EMPTY_BASE_ROWS = 100_000
#: A dataset's chain of `seq` segments longer than this is compacted.
MAX_SEQ_CHAIN = 16
#: A table of at most this many rows whose delta would be compacted at once is written as a new base instead.
DIRECT_BASE_ROWS = 50_000
HASH, GONE, POS = "_snap_h", "_snap_gone", "_snap_pos"
_ORPHAN = ".orphaned"
#: Versions at the end of a dataset chain whose checksum is compared with the live dataset's.
TAIL = 1000
#: The checksum of those versions (a `FILTER` may follow the sum), and of a range of them.
_CHECK_SUM = "sum(hash(_seq, _id, _hash)::HUGEINT)"
_CHECK = f"coalesce({_CHECK_SUM}, 0)"


class TooMuchChange(Exception):
    """More rows changed than the export under the lock may write: the caller copies the file instead."""


@dataclass(frozen=True)
class Segment:
    """One Parquet file of a table. `file` is relative to the snapshots directory; `kind` is `seq` (a
    dataset's `_seq` range `lo < _seq <= hi`), `base`, `delta`, `whole` or `files` (a part of a
    file-backed table's `<name>__files`, crm_wave/store/files.py: a hard link of the live part); `columns` the live table's
    `[[column, type], ...]` as JSON and `engine` the DuckDB version whose `hash()` made `_snap_h`."""

    table: str
    file: str
    rows: int
    kind: str
    lo: int | None = None
    hi: int | None = None
    checksum: int | None = None
    columns: str = ""
    engine: str = ""


@dataclass
class Export:
    """What a snapshot reads: per table its segments in order and the live column types; the live
    views to recreate; the files this publish wrote; the store's row-write log `mark` it was taken
    at; per table how its changes were found (`read`: `seq`, `log: none`, `log: rows`, `log: base`, `hashed`)."""

    segments: dict[str, list[Segment]] = field(default_factory=dict)
    types: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    views: list[str] = field(default_factory=list)
    written: list[Segment] = field(default_factory=list)
    pending: list[tuple[Path, Path]] = field(default_factory=list)
    mark: Mark | None = None
    read: dict[str, str] = field(default_factory=dict)
    prints: dict[str, tuple[int, int, int]] = field(default_factory=dict)


#: Where the store's row-write log (crm_wave/store/writes.py) stood: its id, its newest seq and a
#: checksum of that seq's rows (a store restored from an older file has other rows there).
Mark = tuple[str, int, int]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@contextlib.contextmanager
def dir_lock(snapshots_dir: Path) -> Iterator[None]:
    """One publish or prune of `snapshots_dir` at a time, between threads and processes."""
    seg = Path(snapshots_dir) / SEGMENTS_DIR
    seg.mkdir(parents=True, exist_ok=True)
    with open(seg / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def _attached(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A `scratch` cursor with the DuckDB file `path` attached and in use, detached at the end, which checkpoints
    it (the file whole, no WAL beside it: `_install` renames the file alone). 22 ms where `duckdb.connect(path)`,
    the same statements and `close` took 45 (docs/benchmarks.md, "Session 25")."""
    alias = _q(f"snapshot_{uuid.uuid4().hex}")
    with scratch() as con:
        con.execute(f"ATTACH {_lit(str(path))} AS {alias}")
        try:
            con.execute(f"USE {alias}")
            yield con
        finally:
            with contextlib.suppress(duckdb.Error):  # a transaction the block left open
                con.execute("ROLLBACK")
            con.execute("USE memory")
            con.execute(f"DETACH {alias}")


_manifests: dict[tuple[str, int, int], list[Segment]] = {}


def _file_key(snapshot: Path) -> tuple[str, int, int] | None:
    """What the caches of a snapshot file's contents are keyed by: a file replaced under the same name is another."""
    try:
        st = snapshot.stat()
    except FileNotFoundError:
        return None
    return str(snapshot), st.st_ino, st.st_mtime_ns


def read_manifest(snapshot: Path) -> list[Segment]:
    """The segments snapshot file `snapshot` reads ([] for a whole copy of a store without golden Parquet parts)."""
    key = _file_key(snapshot)
    if key is None:
        return []
    if key not in _manifests:
        with duckdb.connect(str(snapshot), read_only=True) as con:
            try:
                rows = con.execute(f"SELECT table_name, file, row_count, kind, seq_from, seq_to, checksum, columns, engine "
                                   f"FROM {MANIFEST} ORDER BY table_name, position").fetchall()
            except duckdb.CatalogException:
                rows = []
        _manifests[key] = [Segment(t, f, n, k, lo, hi, None if c is None else int(c), cols, e)
                           for t, f, n, k, lo, hi, c, cols, e in rows]
    return _manifests[key]


_infos: dict[tuple[str, int, int], tuple[Mark | None, str | None, dict[str, tuple[int, int, int]]]] = {}


def _info(snapshot: Path) -> tuple[Mark | None, str | None, dict[str, tuple[int, int, int]]]:
    """(`read_mark`, `read_shape`, `read_prints`) of snapshot file `snapshot`, read once per file (one connection)."""
    key = _file_key(snapshot)
    if key is None:
        return None, None, {}
    if key not in _infos:
        with duckdb.connect(str(snapshot), read_only=True) as con:
            def rows(sql: str) -> list[tuple[Any, ...]]:
                try:
                    return con.execute(sql).fetchall()
                except duckdb.CatalogException:  # a snapshot from before the table
                    return []
            marks = rows(f"SELECT log_id, seq, checksum FROM {MARK}")
            digest = rows(f"SELECT digest FROM {SHAPE}")
            prints = {str(t): (int(n), int(total), int(xor)) for t, n, total, xor in
                      rows(f"SELECT table_name, row_count, hash_sum, hash_xor FROM {PRINTS}")}
        _infos[key] = ((str(marks[0][0]), int(marks[0][1]), int(marks[0][2])) if len(marks) == 1 else None,
                       str(digest[0][0]) if len(digest) == 1 else None, prints)
    return _infos[key]


def read_mark(snapshot: Path) -> Mark | None:
    """The row-write log mark snapshot file `snapshot` was taken at (None: none, or a whole copy)."""
    return _info(snapshot)[0]


def read_prints(snapshot: Path) -> dict[str, tuple[int, int, int]]:
    """`table -> fingerprint` of the hashed tables whose fingerprint snapshot file `snapshot` recorded (`PRINTS`)."""
    return _info(snapshot)[2]


def read_shape(snapshot: Path) -> str | None:
    """The `shape` digest snapshot file `snapshot` was written with (None: none, a copy or an older snapshot)."""
    return _info(snapshot)[1]


def _all_rows(table: str) -> str:
    """The query of every row of `table` with its hash (`_snap_h`): a base or whole segment's rows."""
    return f"SELECT t.*, hash(t) AS {HASH} FROM {_q(table)} AS t"


def _copy(con: duckdb.DuckDBPyConnection, query: str, target: Path) -> Path:
    """Write the result of `query` to a temporary file beside `target`, synced to disk (returned; `finish` renames
    it): an export's on the worker that wrote it, beside the other tables' writes. zstd at level 1: as small as
    the default level 3 and 15-30 % faster to write for the tables of strings (docs/benchmarks.md, "Session 25")."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    con.execute(f"COPY ({query}) TO {_lit(str(tmp))} (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1)")
    files.fsync(tmp)
    return tmp


def finish(out: Export) -> None:
    """Give the segments `out` wrote (synced by `_copy`) their names, and sync those (outside the store's lock)."""
    for tmp, target in out.pending:
        os.replace(tmp, target)
    for d in {target.parent for _, target in out.pending}:
        files.fsync(d)
    out.pending.clear()


def discard(out: Export) -> None:
    """Remove the temporary files of an export that will not be published."""
    for tmp, _ in out.pending:
        tmp.unlink(missing_ok=True)
    out.pending.clear()


def _fresh(seg_dir: Path, table: str, kind: str) -> Path:
    """A new file name for a segment of `table` (a segment, once written, never changes)."""
    return seg_dir / table / f"{kind}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:10]}.parquet"


def _relations(con: duckdb.DuckDBPyConnection) -> tuple[dict[str, list[tuple[str, str]]], dict[str, list[tuple[str, str]]]]:
    """(base tables, views) of the store's main schema, each with its (column, type) pairs in order.

    One statement of the catalog functions (information_schema took 6-15 ms where they take 4), where the
    export read the tables and the file-backed tables' views apart: each statement builds every relation's
    columns (8.6 ms against 14.5 for both, the customers' store at 1M; docs/benchmarks.md, "Session 26")."""
    rows = con.execute(
        "SELECT table_name, column_name, data_type, table_oid IN (SELECT table_oid FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name = 'main') FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'main' ORDER BY table_name, column_index").fetchall()
    tables: dict[str, list[tuple[str, str]]] = {}
    views: dict[str, list[tuple[str, str]]] = {}
    for table, column, dtype, is_table in rows:
        (tables if is_table else views).setdefault(table, []).append((column, dtype))
    return tables, views


# --- the view of a chain ---------------------------------------------------------------------------


def view_sql(snapshots_dir: Path, chain: list[Segment], select: str) -> str:
    """A query of `select` (column list) over `chain`'s rows as the snapshot shows them."""
    paths = [_lit(str(Path(snapshots_dir) / s.file)) for s in chain]
    if not chain:
        raise ValueError("an empty chain")
    if chain[0].kind in ("seq", "whole", "files") or len(chain) == 1:
        return f"SELECT {select} FROM read_parquet([{', '.join(paths)}])"
    adds, gone = _delta_parts(snapshots_dir, chain[1:], f"* EXCLUDE ({GONE})")
    return (f"WITH _adds AS (SELECT *, 0 AS {POS} FROM read_parquet({paths[0]}) UNION ALL BY NAME {adds}), _gone AS ({gone}) "
            f"SELECT {select} FROM _adds ANTI JOIN _gone ON _gone.{HASH} = _adds.{HASH} AND _gone.{POS} > _adds.{POS}")


def _delta_parts(snapshots_dir: Path, deltas: list[Segment], select: str) -> tuple[str, str]:
    """(the rows the deltas add, the hashes they remove), each with `_snap_pos`, the delta's place (from 1)."""
    paths = [_lit(str(Path(snapshots_dir) / s.file)) for s in deltas]
    adds = " UNION ALL BY NAME ".join(f"SELECT {select}, {i} AS {POS} FROM read_parquet({p}) WHERE NOT {GONE}"
                                      for i, p in enumerate(paths, 1))
    gone = " UNION ALL ".join(f"SELECT {HASH}, {i} AS {POS} FROM read_parquet({p}) WHERE {GONE}" for i, p in enumerate(paths, 1))
    return adds, gone


def _print_of(h: str) -> str:
    """The select list of the fingerprint (count, sum, bit_xor) of the 64-bit hashes `h` (a column or an expression)."""
    return f"count(*), coalesce(sum({h}::HUGEINT), 0), coalesce(bit_xor({h}), 0)"


_FINGERPRINT = f"SELECT {_print_of(HASH)} FROM "


class Previous:
    """What a publish knows of a table's rows in the previous snapshot (its chain's Parquet files):
    `count`, and every `_snap_h` with their fingerprint (count, sum, bit_xor), compared with the live
    rows' before anything is joined. The hashes are read when first asked for, the count from the
    `_snap_gone` column alone (a chain of a base is rows added less rows removed)."""

    def __init__(self, snapshots_dir: Path, chain: list[Segment], fingerprint: tuple[int, int, int] | None = None) -> None:
        self.snapshots_dir, self.chain = Path(snapshots_dir), chain
        self._hashes: pa.Table | None = None
        self._fingerprint = fingerprint  # known without the hashes: recorded by the snapshot (`PRINTS`)
        self._count: int | None = None

    def load(self, con: duckdb.DuckDBPyConnection | None = None) -> Previous:
        """Read the hashes and their fingerprint now (on `con`, an in-memory connection, if given, else on a
        `scratch` cursor)."""
        if self._hashes is None:
            with contextlib.nullcontext(con) if con is not None else scratch() as mem:
                self._hashes = mem.execute(view_sql(self.snapshots_dir, self.chain, HASH)).to_arrow_table()
                mem.register("_snap_prev", self._hashes)
                ((n, total, xor),) = mem.execute(_FINGERPRINT + "_snap_prev").fetchall()
                mem.unregister("_snap_prev")
            self._fingerprint = (int(n), int(total), int(xor))
        return self

    def into(self, con: duckdb.DuckDBPyConnection, name: str) -> Callable[[], None]:
        """Make `name` in `con` show the hashes (column `_snap_h`); returns what drops it again. Hashes in memory
        are registered; others are read from the chain's files by `con` itself, into a temporary table: a table
        whose fingerprint the snapshot recorded has its hashes read only now, under the store's lock, and
        reading them on a connection of their own and handing them over as Arrow took 20-40 ms a table where
        this takes a few (the small tables every pass rewrites: docs/benchmarks.md, "Session 23")."""
        in_memory = self._hashes is not None
        if in_memory:
            con.register(name, self._hashes)
        else:
            con.execute(f"CREATE TEMP TABLE {_q(name)} AS {view_sql(self.snapshots_dir, self.chain, HASH)}")

        def drop() -> None:
            if in_memory:
                con.unregister(name)
            else:
                con.execute(f"DROP TABLE {_q(name)}")
        return drop

    @property
    def hashes(self) -> pa.Table:
        """Every `_snap_h` the previous snapshot shows."""
        self.load()
        assert self._hashes is not None
        return self._hashes

    @property
    def fingerprint(self) -> tuple[int, int, int]:
        """(count, sum, bit_xor) of the hashes (read with them, unless the snapshot recorded it)."""
        if self._fingerprint is None:
            self.load()
        assert self._fingerprint is not None
        return self._fingerprint

    @property
    def count(self) -> int:
        """Rows the previous snapshot shows."""
        if self._count is None:
            if self._fingerprint is not None or self.chain[0].kind != "base":
                self._count = self.fingerprint[0]
            else:
                paths = ", ".join(_lit(str(self.snapshots_dir / s.file)) for s in self.chain[1:])
                removed = 0
                if paths:
                    with scratch() as con:
                        ((removed,),) = con.execute(
                            f"SELECT count(*) FILTER ({GONE}) * 2 FROM read_parquet([{paths}])").fetchall()
                self._count = sum(s.rows for s in self.chain) - int(removed)  # a delta's rows: added and removed
        return self._count


#: The chains `previous_hashes` gave the last publish into each snapshots folder, by (folder, files).
_loaded: dict[tuple[str, tuple[str, ...]], Previous] = {}


def previous_hashes(snapshots_dir: Path, previous: Iterable[Segment],
                    later: Callable[[str], bool] = lambda table: False,
                    prints: Mapping[str, tuple[int, int, int]] | None = None) -> dict[str, Previous]:
    """`table -> Previous` of the snapshot whose segments are `previous`, for each base/delta/whole chain
    whose files are all there, read from the Parquet files alone (before the store's lock); the
    hashes of the tables `later` names are read only if asked for (the row-write log may spare it), and
    so are those of a table whose fingerprint the snapshot recorded (`prints`, `read_prints`: the live rows
    are compared with it first, so only a table whose rows changed has its hashes read, under the lock)."""
    chains: dict[str, list[Segment]] = {}
    for s in previous:
        chains.setdefault(s.table, []).append(s)
    out: dict[str, Previous] = {}
    with contextlib.ExitStack() as stack:
        con: duckdb.DuckDBPyConnection | None = None  # opened for the first chain to read now
        for table, chain in chains.items():
            if chain[0].kind not in ("base", "whole") or any(not (Path(snapshots_dir) / s.file).is_file() for s in chain):
                continue
            # A chain's files never change: what the publish before read of it (in this process: a worker's or
            # `crm-wave sync`'s loop) is still so.
            known = _loaded.get((str(snapshots_dir), tuple(s.file for s in chain)))
            if known is not None:
                out[table] = known
            elif prints and table in prints:
                out[table] = Previous(snapshots_dir, chain, prints[table])
            elif later(table) and chain[0].kind == "base":
                out[table] = Previous(snapshots_dir, chain)
            else:
                con = con or stack.enter_context(scratch())
                out[table] = Previous(snapshots_dir, chain).load(con)
    for key in [k for k in _loaded if k[0] == str(snapshots_dir)]:  # this folder's: the chains of this publish only
        del _loaded[key]
    _loaded.update({(str(snapshots_dir), tuple(s.file for s in p.chain)): p for p in out.values()})
    return out


# --- export ------------------------------------------------------------------------------------------


def _chain_files(snapshots_dir: Path, chain: list[Segment], columns: str) -> bool:
    """A dataset's chain of `seq` segments of these `columns`, every file there (what `_plan_datasets` then checks
    against the live rows)."""
    return bool(chain) and all(s.kind == "seq" and s.hi is not None and s.columns == columns
                               and (snapshots_dir / s.file).is_file() for s in chain)


def _log_mark(con: duckdb.DuckDBPyConnection) -> Mark | None:
    """Where the store's row-write log stands now (None: the store has no log)."""
    try:
        state = con.execute(f"SELECT log_id, pruned FROM {writes.STATE}").fetchall()
        ((top,),) = con.execute(f"SELECT coalesce(max(seq), 0) FROM {writes.LOG}").fetchall()
    except duckdb.CatalogException:
        return None
    if len(state) != 1:
        return None
    top = max(int(top), int(state[0][1]))  # an emptied log stands where it was pruned
    return str(state[0][0]), top, _mark_checksum(con, top)


def _mark_checksum(con: duckdb.DuckDBPyConnection, seq: int) -> int:
    ((check,),) = con.execute(f"SELECT coalesce(sum(hash(table_name, global_id)::HUGEINT), 0) FROM {writes.LOG} "
                              "WHERE seq = ?", [seq]).fetchall()
    return int(check)


def log_of(table: str) -> str | None:
    """The logged table (crm_wave/store/writes.py) whose row-write log speaks for `table`: `table` itself; for the
    changed rows of a file-backed golden table (`<name>__changed`), `<name>`: they are written only by
    `Tables.replace_rows` (`files.replace_rows`), which logs the ids under `<name>`, and made anew only by a
    rebuild, which logs `<name>` whole. None: not logged."""
    if writes.logged(table):
        return table
    name = table.removesuffix(files.changed_table(""))
    return name if name != table and writes.logged(name) else None


def _written_since(con: duckdb.DuckDBPyConnection, before: Mark | None,
                   now: Mark | None) -> dict[str, tuple[str, int]] | None:
    """`table -> ("rows", global ids logged) | ("whole", 0)` for each logged table written since the
    mark `before` (a logged table not named was not written), or None when the log cannot say:
    another log (a store built again), one behind the mark (restored from an older file), or its
    rows after the mark pruned."""
    if before is None or now is None or before[0] != now[0] or now[1] < before[1]:
        return None
    ((pruned,),) = con.execute(f"SELECT max(pruned) FROM {writes.STATE}").fetchall()
    if pruned > before[1] or (pruned < before[1] and _mark_checksum(con, before[1]) != before[2]):
        return None
    # A write logs each id once (`writes.log_rows`): a table written once has as many ids as rows; the ids of one
    # written more than once are counted apart (a `count(DISTINCT global_id)` of every table: ~10 ms more at 1 %).
    rows = con.execute(f"SELECT table_name, bool_or(global_id IS NULL), count(global_id), count(DISTINCT seq) "
                       f"FROM {writes.LOG} WHERE seq > ? GROUP BY table_name", [before[1]]).fetchall()
    again = [table for table, _, _, writes_n in rows if writes_n > 1]
    ids = dict(con.execute(f"SELECT table_name, count(DISTINCT global_id) FROM {writes.LOG} WHERE seq > ? "
                           "AND list_contains(?, table_name) GROUP BY table_name", [before[1], again]).fetchall()) if again else {}
    return {table: ("whole", 0) if whole else ("rows", int(ids.get(table, n))) for table, whole, n, _ in rows}


def export(con: duckdb.DuckDBPyConnection, snapshots_dir: Path, previous: Iterable[Segment],
           hashes: dict[str, Previous], *, max_rows: int | None = None, mark: Mark | None = None,
           use_log: bool = True) -> Export:
    """Write what changed in the store of `con` (one transaction) since the snapshot whose segments are
    `previous` (`hashes`: `previous_hashes` of them; `mark`: its `read_mark`): new dataset versions,
    rows added and removed. A logged table (crm_wave/store/writes.py) the log says was not written
    since `mark` is shared as it was, one written by rows has just those rows read; any other table
    has every row hashed (`use_log=False`: every table, as before the log).

    With `max_rows`, raises TooMuchChange when more rows would be written (what it wrote already removed)."""
    snapshots_dir = Path(snapshots_dir)
    seg_dir = snapshots_dir / SEGMENTS_DIR
    before: dict[str, list[Segment]] = {}
    for s in previous:
        before.setdefault(s.table, []).append(s)
    out = Export()
    engine = duckdb.__version__
    con.execute("BEGIN TRANSACTION")  # the caller holds the store's lock; one transaction all the same
    try:
        tables, views = _relations(con)
        for name in (*writes.LOG_TABLES, files.FILES_TABLE):  # the store's own bookkeeping
            tables.pop(name, None)
        out.mark = _log_mark(con)
        written = _written_since(con, mark, out.mark) if use_log else None
        if max_rows is not None and written is not None:
            # Known to be too much before reading any row: the copy is the shorter lock.
            whole = [t for t, (how, _) in written.items() if how == "whole" and t in hashes and hashes[t].count > max_rows]
            ids = sum(n for how, n in written.values() if how == "rows")
            if whole or ids > max_rows:
                raise TooMuchChange(f"the row-write log names {ids} rows and whole rewrites of {whole or 'no table'}; "
                                    f"at most {max_rows} rows are written under the lock")
        def by_log(table: str, cols: list[tuple[str, str]], chain: list[Segment]) -> bool:
            """Whether the row-write log may speak for `table` (else, or if it cannot after all, it is hashed)."""
            return (written is not None and log_of(table) is not None and table in hashes and "global_id" in (c for c, _ in cols)
                    and _comparable(chain, json.dumps(cols), engine, ("base",)))

        # The tables to hash whose previous rows can be compared: their fingerprints in one statement, so an
        # unchanged one costs no statement of its own (~2.5 ms each, a dozen tables a publish).
        prints = _fingerprints(con, [t for t, cols in tables.items() if tuple(c for c, _ in cols) != DATASET_COLUMNS
                                     and not by_log(t, cols, before.get(t, [])) and t in hashes
                                     and _comparable(before.get(t, []), json.dumps(cols), engine, ("base", "whole"))])
        datasets = [(t, before.get(t, []), json.dumps(cols)) for t, cols in tables.items()
                    if tuple(c for c, _ in cols) == DATASET_COLUMNS]
        plans = {p.table: p for p in _plan_datasets(con, snapshots_dir, datasets)}
        # The logged tables' live counts (one statement, no scan): of those not written, to see they are as they
        # were; of those written by rows, to see whether one is small and its log names so many rows that it is
        # written anew (`_rewritten`).
        counts = _live_counts(con, [t for t, cols in tables.items() if by_log(t, cols, before.get(t, []))])
        jobs: dict[str, Callable[[duckdb.DuckDBPyConnection], tuple[_Plan, str]]] = {}
        rows: dict[str, float] = {}  # what each job reads: its rows (so its columns times these: its cells)
        for table, cols in tables.items():
            out.types[table] = cols
            columns = json.dumps(cols)
            chain = before.get(table, [])
            if table in plans:
                out.read[table] = "seq"
                continue
            if by_log(table, cols, chain):
                how, n_ids = (written or {}).get(str(log_of(table)), ("none", 0))
                if how == "none" and counts[table] == hashes[table].count:  # shared as it was
                    plans[table], out.read[table] = _Plan(table, chain, 0), "log: none"
                    continue
                if how == "rows":
                    anew = _rewrite_whole(chain, counts[table], n_ids)
                    rows[table] = counts[table] if anew else n_ids
                    jobs[table] = functools.partial(_rewritten if anew else _by_log_or_hash, snapshots_dir=snapshots_dir,
                                                    table=table, chain=chain, previous=hashes[table],
                                                    since=mark[1] if mark else 0, columns=columns, engine=engine,
                                                    log=str(log_of(table)))
                    continue
            if table in prints and prints[table] == hashes[table].fingerprint:  # the same rows (see `_plan_rows`)
                plans[table], out.read[table] = _Plan(table, chain, 0, fingerprint=prints[table]), "hashed"
                continue
            rows[table] = prints[table][0] if table in prints else float("inf")  # unknown: at once
            if table in prints and prints[table][0] <= SMALL_ROWS:  # changed, and small: written anew
                jobs[table] = functools.partial(_small, table=table, columns=columns, engine=engine, now=prints[table])
                continue
            jobs[table] = functools.partial(_hashed, table=table, chain=chain, previous=hashes.get(table),
                                            columns=columns, engine=engine)
        # Each table's plan is followed at once by its write, in the same cursor (a delta's query reads the
        # temporary tables of the cursor that planned it); the datasets' versions, whose plans are known, too.
        # The largest first (cells: rows to read times columns), so that no large one starts last.
        budget = _Budget(max_rows)
        work: dict[str, Callable[[duckdb.DuckDBPyConnection], tuple[_Plan, str]]] = {
            t: functools.partial(lambda plan, _cur: (plan, "seq"), p) for t, p in plans.items() if p.kind}
        work.update(jobs)
        rows.update((t, p.rows) for t, p in plans.items() if p.kind)
        files_out = Export()  # the file-backed tables' views, while the jobs run: merged below, after the tables

        def meanwhile() -> tuple[set[str], list[tuple[str, str]]]:
            linked = _export_files(con, snapshots_dir, before, files_out, views)
            return linked, con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal AND database_name = "
                                       "current_database() AND schema_name = 'main' ORDER BY view_oid").fetchall()

        with _Workers(con) as workers, _one_thread_each(con, len(work) > 1 and max(rows.values(), default=0) <= ONE_THREAD_ROWS):
            found, (linked, live_views) = workers.map(
                {t: functools.partial(_plan_and_write, work[t], budget, seg_dir, snapshots_dir)
                 for t in sorted(work, key=lambda t: rows[t] * len(tables[t]), reverse=True)},
                discard=_discard_made, meanwhile=meanwhile)
        for t, (plan, how, _) in found.items():
            plans[t] = plan
            if t in jobs:
                out.read[t] = how
        for t in tables:
            if t not in plans:
                continue
            p, made = plans[t], found[t][2] if t in found else None
            segs, tmp = made or (p.chain, None)
            out.segments[t] = segs
            if p.fingerprint is not None:
                out.prints[t] = p.fingerprint
            if tmp is not None:
                out.pending.append(tmp)
                out.written.append(segs[-1])
        out.segments.update(files_out.segments)
        out.written += files_out.written
        out.read.update(files_out.read)
        out.types.update(files_out.types)
        out.views = [sql for name, sql in live_views if name not in linked]
    finally:
        con.execute("ROLLBACK")  # read only: the temporary tables go with it
    return out


def files_place(snapshots_dir: Path) -> Callable[[str, str, int], Path]:
    """Where a snapshot links the parts of a file-backed table: `segments/<name>__files/<generation>-part-N.parquet`."""
    seg_dir = Path(snapshots_dir) / SEGMENTS_DIR
    return lambda name, generation, i: seg_dir / files.files_view(name) / f"{generation}-part-{i:05d}.parquet"


def files_segments(con: duckdb.DuckDBPyConnection, snapshots_dir: Path, linked: list[tuple[str, Path]]) -> list[Segment]:
    """The segments of parts `files.carry` or `_export_files` linked into `snapshots_dir` (their row counts
    from the Parquet footers)."""
    if not linked:
        return []
    counts = dict(con.execute("SELECT file_name, num_rows FROM parquet_file_metadata(?)",
                              [[str(p) for _, p in linked]]).fetchall())
    engine = duckdb.__version__
    return [Segment(files.files_view(name), str(p.relative_to(snapshots_dir)), int(counts[str(p)]), "files", engine=engine)
            for name, p in linked]


def _export_files(con: duckdb.DuckDBPyConnection, snapshots_dir: Path, before: dict[str, list[Segment]],
                  out: Export, views: dict[str, list[tuple[str, str]]]) -> set[str]:
    """Each file-backed table's `<name>__files` as its parts, linked into the segments (an unchanged
    generation: the previous snapshot's links, shared); returns the views the snapshot makes of them (their
    columns from `views`, `_relations`).
    The table's `__changed` rows are an ordinary table's, and the view `<name>` is recreated as it is."""
    place = files_place(snapshots_dir)
    made: set[str] = set()
    for name, paths in files.generations(con):
        view = files.files_view(name)
        targets = [place(name, p.parent.name, i) for i, p in enumerate(paths)]
        if not all(p.is_file() or t.is_file() for p, t in zip(paths, targets)):
            continue  # a copy without its files: the store reads the table as absent
        chain = before.get(view, [])
        if [s.file for s in chain] == [str(t.relative_to(snapshots_dir)) for t in targets] and \
                all(t.is_file() for t in targets):
            out.segments[view] = chain
        else:
            for src, dst in zip(paths, targets):
                files.link(src, dst)  # none if linked already (by the copy of "segments from a copy", under the lock)
            out.segments[view] = files_segments(con, snapshots_dir, [(name, t) for t in targets])
            out.written += out.segments[view]
        out.read[view] = "files"
        made.add(view)
    out.types.update((view, list(views[view])) for view in sorted(made) if view in views)
    return made


_MANIFEST_COLUMNS = (("table_name", "VARCHAR"), ("position", "INTEGER"), ("file", "VARCHAR"), ("path", "VARCHAR"),
                     ("row_count", "BIGINT"), ("kind", "VARCHAR"), ("seq_from", "BIGINT"), ("seq_to", "BIGINT"),
                     ("checksum", "HUGEINT"), ("columns", "VARCHAR"), ("engine", "VARCHAR"))
_MARK_COLUMNS = (("log_id", "VARCHAR"), ("seq", "BIGINT"), ("checksum", "HUGEINT"))
_PRINTS_COLUMNS = (("table_name", "VARCHAR"), ("row_count", "BIGINT"), ("hash_sum", "HUGEINT"), ("hash_xor", "UBIGINT"))


def _rows_view(con: duckdb.DuckDBPyConnection, name: str, columns: Sequence[tuple[str, str]],
               rows: Iterable[Sequence[Any]]) -> None:
    """Create or replace view `name` of `rows`, written into its definition, with `columns` ((name, type), ...).

    The bookkeeping of a snapshot file (`MANIFEST`, `MARK`, `PRINTS`) is views of this kind, not tables: a publish
    that updates the file before replaces them, where the rows deleted and inserted in tables made the checkpoint
    of its detach rewrite them (the detach took 14-18 ms where it takes 4-7, the whole update 29-38 where it takes
    16-24: docs/benchmarks.md, "Session 30"). Every value is a string literal cast to its column's type: exact for
    any HUGEINT."""
    cells = [f"CAST(c{i} AS {dtype}) AS {_q(col)}" for i, (col, dtype) in enumerate(columns)]
    values = ", ".join("(" + ", ".join("NULL" if v is None else _lit(str(v)) for v in row) + ")" for row in rows)
    if values:
        names = ", ".join(f"c{i}" for i in range(len(columns)))
        con.execute(f"CREATE OR REPLACE VIEW {_q(name)} AS SELECT {', '.join(cells)} FROM (VALUES {values}) AS t({names})")
    else:  # the columns and their types, no row
        nulls = ", ".join(f"CAST(NULL AS {dtype}) AS {_q(col)}" for col, dtype in columns)
        con.execute(f"CREATE OR REPLACE VIEW {_q(name)} AS SELECT {nulls} WHERE false")


def write_manifest(con: duckdb.DuckDBPyConnection, snapshots_dir: Path, segs: Iterable[tuple[int, Segment]]) -> None:
    """Create or replace `snapshot_files` in the snapshot of `con`: the segments `segs` ((position, segment))."""
    _rows_view(con, MANIFEST, _MANIFEST_COLUMNS,
               [(s.table, i, s.file, str(Path(snapshots_dir) / s.file), s.rows, s.kind, s.lo, s.hi, s.checksum, s.columns,
                 s.engine) for i, s in segs])


def _write_bookkeeping(con: duckdb.DuckDBPyConnection, snapshots_dir: Path, exported: Export) -> None:
    """The manifest, the log mark and the fingerprints of the snapshot of `con`, from `exported`."""
    write_manifest(con, snapshots_dir, [(i, s) for segs in exported.segments.values() for i, s in enumerate(segs)])
    _rows_view(con, MARK, _MARK_COLUMNS, [exported.mark] if exported.mark is not None else [])
    _rows_view(con, PRINTS, _PRINTS_COLUMNS, [(t, n, total, xor) for t, (n, total, xor) in sorted(exported.prints.items())])


@dataclass
class _Plan:
    """What one table's export will write: `rows` rows (0: the chain is shared as it is)."""

    table: str
    chain: list[Segment]
    rows: int
    kind: str = ""
    query: str = ""
    lo: int | None = None
    hi: int | None = None
    columns: str = ""
    engine: str = ""
    checksum: int | None = None
    fingerprint: tuple[int, int, int] | None = None  # of the live rows, where they were hashed (`PRINTS`)

    def write(self, con: duckdb.DuckDBPyConnection, *, seg_dir: Path, snapshots_dir: Path
              ) -> tuple[list[Segment], tuple[Path, Path]]:
        """Write the new segment (to a temporary file: `finish` gives it its name); the chain with it, and
        (temporary file, name)."""
        target = _fresh(seg_dir, self.table, self.kind)
        tmp = _copy(con, self.query, target)
        seg = Segment(self.table, str(target.relative_to(snapshots_dir)), self.rows, self.kind, self.lo, self.hi,
                      self.checksum, self.columns, self.engine)
        return ([*self.chain, seg] if self.kind in ("seq", "delta") else [seg]), (tmp, target)


class _Budget:
    """The rows an export may still write under the lock (`max_rows`; None: any), taken by each table's plan
    before it is written, from the threads of `_Workers`."""

    def __init__(self, max_rows: int | None) -> None:
        self.max_rows, self.taken, self.lock = max_rows, 0, threading.Lock()

    def take(self, plan: _Plan) -> None:
        with self.lock:
            self.taken += plan.rows
            if self.max_rows is not None and self.taken > self.max_rows:
                raise TooMuchChange(f"{self.taken} rows changed or more; at most {self.max_rows} are written under the lock")


_Made = tuple[list[Segment], tuple[Path, Path]]


def _plan_and_write(job: Callable[[duckdb.DuckDBPyConnection], tuple[_Plan, str]], budget: _Budget, seg_dir: Path,
                    snapshots_dir: Path, con: duckdb.DuckDBPyConnection) -> tuple[_Plan, str, _Made | None]:
    """A table's plan (`job`: the plan and how its rows were read) and, if it writes rows within the budget,
    its new segment at once (`_Plan.write`), in the same cursor."""
    plan, how = job(con)
    budget.take(plan)
    return plan, how, plan.write(con, seg_dir=seg_dir, snapshots_dir=snapshots_dir) if plan.kind else None


def _discard_made(done: Any) -> None:
    """Remove the temporary file a `_plan_and_write` wrote, when another table's job failed."""
    made = done[2]
    if made is not None:
        made[1][0].unlink(missing_ok=True)


def _by_log_or_hash(con: duckdb.DuckDBPyConnection, *, snapshots_dir: Path, table: str, chain: list[Segment],
                    previous: Previous, since: int, columns: str, engine: str, log: str) -> tuple[_Plan, str]:
    """A table the row-write log says was written by rows: `_plan_written`, or, if the log cannot speak for it
    after all, every row hashed."""
    plan = _plan_written(con, snapshots_dir, table, chain, previous, since, columns, engine, log)
    if plan is not None:
        return plan, "log: rows"
    return _hashed(con, table=table, chain=chain, previous=previous, columns=columns, engine=engine)


def _rewrite_whole(chain: list[Segment], n_cur: int, n_ids: int) -> bool:
    """Whether a logged table of `n_cur` rows whose log names `n_ids` global ids is written anew rather than
    compared: it has at most `DIRECT_BASE_ROWS` rows, and were the rows named all changed, their delta (a row
    added and one removed per id) would hold as many rows as the table (the ids are at least `COMPACT_SHARE`
    of its rows) or would have its chain compacted at once (`_compacts`)."""
    return n_cur <= DIRECT_BASE_ROWS and (n_ids >= COMPACT_SHARE * n_cur or _compacts(chain, 2 * n_ids, MAX_DELTAS,
                                                                                        COMPACT_SHARE))


def _rewritten(con: duckdb.DuckDBPyConnection, *, snapshots_dir: Path, table: str, chain: list[Segment],
               previous: Previous, since: int, columns: str, engine: str, log: str) -> tuple[_Plan, str]:
    """A logged table `_rewrite_whole` picks (a golden table's `__changed` rows when a pass changes most of them):
    a new base of its rows, without comparing them with the previous snapshot's (the comparison costs about
    what writing the rows does: docs/benchmarks.md, "Session 25"). Rows with a key (`global_id`) twice are not
    identified by content: `_by_log_or_hash` then, which finds the kind to write."""
    ((n, keys),) = con.execute(f"SELECT count(*), count(DISTINCT global_id) FROM {_q(table)}").fetchall()
    if n != keys:
        return _by_log_or_hash(con, snapshots_dir=snapshots_dir, table=table, chain=chain, previous=previous,
                               since=since, columns=columns, engine=engine, log=log)
    return _Plan(table, [], int(n), "base", _all_rows(table),
                 columns=columns, engine=engine), "log: base"


def _hashed(con: duckdb.DuckDBPyConnection, *, table: str, chain: list[Segment], previous: Previous | None,
            columns: str, engine: str) -> tuple[_Plan, str]:
    return _plan_rows(con, table, chain, previous, columns, engine), "hashed"


#: A table the export hashes (the row-write log does not cover it) whose rows changed is written as a new base
#: when it has at most this many rows, without comparing them with the previous snapshot's: the small tables
#: every pass rewrites (`step_marks`, `cursors`, `changes`). Their comparison (temporary tables of the hashes,
#: the previous ones read from Parquet, two anti joins: eight statements) took 6-11 ms a table in a 1 % publish
#: at 1M, on the export's critical path; its delta would be compacted into a base at once anyway (`_delta`).
SMALL_ROWS = 1_000


def _small(con: duckdb.DuckDBPyConnection, *, table: str, columns: str, engine: str,
           now: tuple[int, int, int]) -> tuple[_Plan, str]:
    """A hashed table of at most `SMALL_ROWS` rows whose fingerprint (`now`, the export's) differs from the previous
    snapshot's: a new base of its rows (`whole` when two rows are the same: no identity by content)."""
    ((distinct,),) = con.execute(f"SELECT count(DISTINCT hash(t)) FROM {_q(table)} AS t").fetchall()
    kind = "base" if distinct == now[0] else "whole"
    return _Plan(table, [], now[0], kind, _all_rows(table), columns=columns,
                 engine=engine, fingerprint=now), "hashed"


#: Statements of an export at once (each table's own in a cursor of its own): the cores of this machine.
EXPORT_THREADS = max(1, min(4, os.cpu_count() or 1))
#: An export whose jobs each read at most this many rows (DuckDB's row group: a scan of fewer is one task anyway)
#: runs each statement on its own thread (`_one_thread_each`).
ONE_THREAD_ROWS = 122_880


@contextlib.contextmanager
def _one_thread_each(con: duckdb.DuckDBPyConnection, on: bool) -> Iterator[None]:
    """With `on`, DuckDB runs every statement of the block on the thread that calls it (`threads` 1), the
    setting it had given back at the end. The workers of an export already keep the cores busy, a table each;
    with DuckDB's own threads as well, the small statements of a 1 % change waited on one another: the publish
    took 0.23-0.27 s where it takes 0.19-0.23 (docs/benchmarks.md, "Session 30")."""
    if not on:
        yield
        return
    ((threads,),) = con.execute("SELECT current_setting('threads')").fetchall()
    con.execute("SET threads = 1")
    try:
        yield
    finally:
        con.execute(f"SET threads = {int(threads)}")


class _Workers:
    """Jobs on the tables of an export, at once: each in a read-only transaction of a cursor of `con` (a
    connection of its own to the same database), which stays open until the end (its temporary tables are
    read again by the writes)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.cursors: list[duckdb.DuckDBPyConnection] = []
        self.pool = ThreadPoolExecutor(EXPORT_THREADS, thread_name_prefix="snapshot-export")

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for cur in self.cursors:
            with contextlib.suppress(duckdb.Error):
                cur.execute("ROLLBACK")
            cur.close()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur = self.con.cursor()
        self.cursors.append(cur)
        cur.execute("BEGIN TRANSACTION")
        return cur

    def map(self, jobs: Mapping[str, Callable[[duckdb.DuckDBPyConnection], Any]],
            discard: Callable[[Any], None] = lambda done: None, meanwhile: Callable[[], Any] = lambda: None
            ) -> tuple[dict[str, Any], Any]:
        """`key -> job(cursor)` of each job, each in a cursor of its own, in the order given, and what `meanwhile()`
        returned, called on this thread while they run (on the caller's connection: the work an export does once
        the jobs are known). When a job or `meanwhile` fails, the jobs are let finish, `discard` is called with
        each result they gave, and the first error is raised (`meanwhile`'s first)."""
        futures = {k: self.pool.submit(lambda job: job(self._cursor()), job) for k, job in jobs.items()} if len(jobs) > 1 else {}
        done = {} if futures else {k: job(self.con) for k, job in jobs.items()}  # one job: the caller's connection
        failed: list[BaseException] = []
        side = None
        try:
            side = meanwhile()
        except BaseException as exc:  # noqa: BLE001 - raised below, once the jobs are done and their files discarded
            failed.append(exc)
        wait(futures.values())
        failed += [e for e in (f.exception() for f in futures.values()) if e is not None]
        done.update((k, f.result()) for k, f in futures.items() if f.exception() is None)
        if failed:
            for result in done.values():
                discard(result)
            raise failed[0]
        return done, side


def _plan_datasets(con: duckdb.DuckDBPyConnection, snapshots_dir: Path,
                   datasets: list[tuple[str, list[Segment], str]]) -> list[_Plan]:
    """The versions each dataset (`table`, chain, columns) holds above its chain's end, after checking the live
    dataset still holds the chain's versions: as many up to the chain's end, the last `TAIL` of them the same
    (a dataset is append-only; a store rebuilt from scratch is not), and the chain's files all there. Two
    statements for every dataset (the checks, then the checksums of the new ends), not five each."""
    if not datasets:
        return []
    ends = [(t, chain[-1].hi if _chain_files(snapshots_dir, chain, columns) else None) for t, chain, columns in datasets]
    rows = con.execute(" UNION ALL ".join(
        f"SELECT {i}, coalesce(max(_seq), 0), count(*) FILTER (WHERE _seq <= {int(hi or 0)}), "
        f"coalesce({_CHECK_SUM} FILTER (WHERE _seq > {int(hi or 0) - TAIL} AND _seq <= {int(hi or 0)}), 0), "
        f"count(*) FILTER (WHERE _seq > {int(hi or 0)}) FROM {_q(t)}" for i, (t, hi) in enumerate(ends))).fetchall()
    found = {int(i): (int(top), int(upto), int(check), int(after)) for i, top, upto, check, after in rows}
    plans: list[_Plan] = []
    for i, (table, chain, columns) in enumerate(datasets):
        top, upto, check, after = found[i]
        if ends[i][1] is None or upto != sum(s.rows for s in chain) or check != chain[-1].checksum:
            chain, after = [], upto + after  # a chain the live dataset no longer holds: every version again
        covered = chain[-1].hi if chain else 0
        assert covered is not None
        if chain and top == covered:
            plans.append(_Plan(table, chain, 0))
        else:  # parameters are not allowed in COPY: `covered` and `top` are ints of our own
            plans.append(_Plan(table, chain, after, "seq", f"SELECT * FROM {_q(table)} WHERE _seq > {int(covered)} "
                               f"AND _seq <= {int(top)}", covered, top, columns, ""))
    moved = [(i, p) for i, p in enumerate(plans) if p.kind]
    if moved:  # the checksums of the new ends, in one statement
        sums = dict(con.execute(" UNION ALL ".join(
            f"SELECT {i}, {_CHECK} FROM {_q(p.table)} WHERE _seq > {int(p.hi or 0) - TAIL} AND _seq <= {int(p.hi or 0)}"
            for i, p in moved)).fetchall())
        for i, p in moved:
            p.checksum = int(sums[i])
    return plans


def _comparable(chain: list[Segment], columns: str, engine: str, kinds: tuple[str, ...]) -> bool:
    """Whether the live rows of a table with `columns` can be compared with its chain's hashes: a chain that
    starts with one of `kinds`, written from those columns by this DuckDB version (whose `hash()` made them)."""
    return bool(chain) and chain[0].kind in kinds and all(s.columns == columns and s.engine == engine for s in chain)


def _fingerprints(con: duckdb.DuckDBPyConnection, tables: list[str]) -> dict[str, tuple[int, int, int]]:
    """`table -> (count, sum, bit_xor)` of the hashes of its live rows (`_plan_rows`' fingerprint), in one statement."""
    if not tables:
        return {}
    rows = con.execute(" UNION ALL ".join(
        f"SELECT {_lit(t)}, {_print_of('hash(t)')} FROM {_q(t)} AS t"
        for t in tables)).fetchall()
    return {str(t): (int(n), int(total), int(xor)) for t, n, total, xor in rows}


def _plan_rows(con: duckdb.DuckDBPyConnection, table: str, chain: list[Segment], previous: Previous | None,
               columns: str, engine: str) -> _Plan:
    """One scan hashes the live rows; when their fingerprint differs from the previous snapshot's, anti
    joins with its hashes give the rows added and removed."""
    cur = f"_snap_cur_{table}"
    con.execute(f"CREATE TEMP TABLE {_q(cur)} AS SELECT hash(t) AS {HASH}, rowid AS _r FROM {_q(table)} AS t")
    ((n_cur, total, xor),) = con.execute(_FINGERPRINT + _q(cur)).fetchall()
    now = (int(n_cur), int(total), int(xor))
    plan = _plan_hashed(con, table, chain, previous, columns, engine, now)
    plan.fingerprint = now
    return plan


def _plan_hashed(con: duckdb.DuckDBPyConnection, table: str, chain: list[Segment], previous: Previous | None,
                 columns: str, engine: str, now: tuple[int, int, int]) -> _Plan:
    """`_plan_rows` once the live rows' hashes are in `_snap_cur_<table>`, with their fingerprint `now`."""
    cur, add, gone, prev = f"_snap_cur_{table}", f"_snap_add_{table}", f"_snap_gone_{table}", f"_snap_prev_{table}"
    n_cur = now[0]
    usable = previous is not None and _comparable(chain, columns, engine, ("base", "whole"))
    if usable and previous is not None and previous.fingerprint == now:
        return _Plan(table, chain, 0)  # the same rows (a multiset of 64-bit hashes with the same count, sum and xor)
    everything = _all_rows(table)
    if not usable or previous is None or chain[0].kind == "whole":
        (distinct,) = con.execute(f"SELECT count(DISTINCT {HASH}) FROM {_q(cur)}").fetchall()[0]
        kind = "base" if distinct == n_cur else "whole"  # two identical rows: no identity by content
        return _Plan(table, [], n_cur, kind, everything, columns=columns, engine=engine)
    drop = previous.into(con, prev)
    try:
        con.execute(f"CREATE TEMP TABLE {_q(add)} AS SELECT {HASH}, _r FROM {_q(cur)} ANTI JOIN {_q(prev)} USING ({HASH})")
        con.execute(f"CREATE TEMP TABLE {_q(gone)} AS SELECT {HASH} FROM {_q(prev)} ANTI JOIN {_q(cur)} USING ({HASH})")
    finally:
        drop()
    ((n_add, d_add, lo, hi),) = con.execute(f"SELECT count(*), count(DISTINCT {HASH}), min(_r), max(_r) FROM {_q(add)}").fetchall()
    (n_gone,) = con.execute(f"SELECT count(*) FROM {_q(gone)}").fetchall()[0]
    if n_cur - n_add != previous.count - n_gone or d_add != n_add:  # a row now twice: no identity by content
        return _Plan(table, [], n_cur, "whole", everything, columns=columns, engine=engine)
    if not n_add and not n_gone:
        return _Plan(table, chain, 0)
    return _delta(table, chain, add, gone, n_add, n_gone, lo, hi, columns, engine, int(n_cur))


def _delta(table: str, chain: list[Segment], add: str, gone: str, n_add: int, n_gone: int, lo: int | None,
           hi: int | None, columns: str, engine: str, n_cur: int) -> _Plan:
    """A delta of the live rows whose rowids are in temporary table `add` (`lo`..`hi`) and the hashes in `gone`;
    or, for a table of at most `DIRECT_BASE_ROWS` (`n_cur`) rows whose chain `compact` would merge at once with
    it, a new base of its rows: written once, where the delta and then the base took one write more (the
    small tables a pass rewrites, `changes`, `cursors`, `step_marks`: docs/benchmarks.md, "Session 21").
    (A base of every row whenever all are new was tried: it gives a golden table's `__changed` rows, which
    grow pass by pass after a rebuild, a base that each later delta outgrows, so every publish compacted.)"""
    if n_cur <= DIRECT_BASE_ROWS and _compacts(chain, n_add + n_gone, MAX_DELTAS, COMPACT_SHARE):
        return _Plan(table, [], n_cur, "base", _all_rows(table),
                     columns=columns, engine=engine)
    # Changed rows are usually appended (DELETE + INSERT): the rowid range lets the scan skip the rest.
    if n_add:
        assert lo is not None and hi is not None
        adds = (f"SELECT t.*, hash(t) AS {HASH}, false AS {GONE} FROM {_q(table)} AS t "
                f"WHERE t.rowid BETWEEN {int(lo)} AND {int(hi)} AND t.rowid IN (SELECT _r FROM {_q(add)})")
    else:  # the data columns, all NULL, with their types
        adds = f"SELECT t.*, hash(t) AS {HASH}, false AS {GONE} FROM {_q(table)} AS t WHERE false"
    removals = f"SELECT {HASH}, true AS {GONE} FROM {_q(gone)}"
    query = f"{adds} UNION ALL BY NAME {removals}" if n_gone else adds
    return _Plan(table, chain, n_add + n_gone, "delta", query, columns=columns, engine=engine)


def _live_counts(con: duckdb.DuckDBPyConnection, tables: list[str]) -> dict[str, int]:
    """`table -> count(*)` of each table, in one statement (a count, no scan of the rows)."""
    if not tables:
        return {}
    rows = con.execute(" UNION ALL ".join(f"SELECT {_lit(t)}, count(*) FROM {_q(t)}" for t in tables)).fetchall()
    return {str(t): int(n) for t, n in rows}


def _plan_written(con: duckdb.DuckDBPyConnection, snapshots_dir: Path, table: str, chain: list[Segment],
                  previous: Previous, since: int, columns: str, engine: str, log: str) -> _Plan | None:
    """A logged table written by rows since the log's seq `since`: the live rows of the global ids logged (under `log`)
    (the key column is scanned, then just those rows hashed) against the previous snapshot's rows of
    the same ids (from its Parquet files) give the rows added and removed. None (hash every row) when
    the counts do not add up: a write that was not logged, or a row now twice."""
    # Names of their own: when this returns None, `_plan_rows` makes its own temporary tables.
    ids, rid, cur = f"_snap_w_ids_{table}", f"_snap_w_rid_{table}", f"_snap_w_cur_{table}"
    prev, add, gone = f"_snap_w_prev_{table}", f"_snap_w_add_{table}", f"_snap_w_gone_{table}"
    con.execute(f"CREATE TEMP TABLE {_q(ids)} AS SELECT DISTINCT global_id FROM {writes.LOG} "
                "WHERE seq > ? AND table_name = ? AND global_id IS NOT NULL", [since, log])
    con.execute(f"CREATE TEMP TABLE {_q(rid)} AS SELECT t.rowid AS _r FROM {_q(table)} AS t "
                f"WHERE t.global_id IN (SELECT global_id FROM {_q(ids)})")
    ((lo, hi),) = con.execute(f"SELECT min(_r), max(_r) FROM {_q(rid)}").fetchall()
    rows = (f"t.rowid BETWEEN {int(lo)} AND {int(hi)} AND t.rowid IN (SELECT _r FROM {_q(rid)})"
            if lo is not None else "false")
    con.execute(f"CREATE TEMP TABLE {_q(cur)} AS SELECT hash(t) AS {HASH}, t.rowid AS _r FROM {_q(table)} AS t WHERE {rows}")
    con.execute(f"CREATE TEMP TABLE {_q(prev)} AS SELECT {HASH} FROM ({view_sql(snapshots_dir, chain, f'global_id, {HASH}')}) "
                f"WHERE global_id IN (SELECT global_id FROM {_q(ids)})")
    con.execute(f"CREATE TEMP TABLE {_q(add)} AS SELECT {HASH}, _r FROM {_q(cur)} ANTI JOIN {_q(prev)} USING ({HASH})")
    con.execute(f"CREATE TEMP TABLE {_q(gone)} AS SELECT {HASH} FROM {_q(prev)} ANTI JOIN {_q(cur)} USING ({HASH})")
    ((n_add, d_add, a_lo, a_hi),) = con.execute(
        f"SELECT count(*), count(DISTINCT {HASH}), min(_r), max(_r) FROM {_q(add)}").fetchall()
    ((n_gone,),) = con.execute(f"SELECT count(*) FROM {_q(gone)}").fetchall()
    n_cur = _live_counts(con, [table])[table]
    if d_add != n_add or n_cur != previous.count - n_gone + n_add:
        return None
    if not n_add and not n_gone:
        return _Plan(table, chain, 0)
    return _delta(table, chain, add, gone, n_add, n_gone, a_lo, a_hi, columns, engine, n_cur)


# --- compaction --------------------------------------------------------------------------------------


def _limit(base: Segment, share: float) -> float:
    """The rows a base's deltas may hold before its chain is compacted: `share` of its rows (`EMPTY_BASE_ROWS`
    over an empty base)."""
    return share * base.rows if base.rows else EMPTY_BASE_ROWS


def _compacts(chain: list[Segment], rows: int, max_deltas: int, share: float) -> bool:
    """Whether a base chain with one more delta of `rows` rows is to be compacted: more than `max_deltas`
    deltas, or their rows at least `_limit`."""
    if not chain or chain[0].kind != "base":
        return False
    deltas = chain[1:]
    return len(deltas) + 1 > max_deltas or sum(s.rows for s in deltas) + rows >= _limit(chain[0], share)


#: The added rows no later delta removes, and the removals of rows of the base (no earlier delta added the row: a
#: row is live in one place at a time, `_plan_rows` checks that); less a base row removed and added back as it was
#: (its hash both added and removed).
_NET = (f"WITH _adds AS ({{adds}}), _gone AS ({{gone}}) SELECT * FROM ("
        f"SELECT {{a}} FROM _adds a ANTI JOIN _gone g ON g.{HASH} = a.{HASH} AND g.{POS} > a.{POS} "
        f"UNION ALL BY NAME "
        f"SELECT {{g}} FROM _gone g ANTI JOIN _adds a ON a.{HASH} = g.{HASH} AND a.{POS} < g.{POS}"
        f") QUALIFY count(*) OVER (PARTITION BY {HASH}) = 1")


def _net_delta_rows(con: duckdb.DuckDBPyConnection, snapshots_dir: Path, deltas: list[Segment]) -> int:
    """The rows of the one delta `deltas` would merge into (`_merged_deltas_sql`), from their hash columns alone."""
    adds, gone = _delta_parts(snapshots_dir, deltas, HASH)
    query = _NET.format(adds=adds, gone=gone, a=f"a.{HASH}", g=f"g.{HASH}")
    return int(con.execute(f"SELECT count(*) FROM ({query})").fetchall()[0][0])


def _merged_deltas_sql(snapshots_dir: Path, deltas: list[Segment]) -> str:
    """One delta that the base reads as it reads `deltas` in order: the rows they add that no later one removes,
    and the removals of the base's rows. A row changed again and again is in it once."""
    adds, gone = _delta_parts(snapshots_dir, deltas, f"* EXCLUDE ({GONE})")
    return _NET.format(adds=adds, gone=gone, a=f"a.* EXCLUDE ({POS}), false AS {GONE}", g=f"g.{HASH}, true AS {GONE}")


def compact(snapshots_dir: Path, exported: Export, *, max_deltas: int | None = None, share: float | None = None,
            max_seq_chain: int | None = None) -> list[Segment]:
    """Merge long chains from their own Parquet files (no lock on the store: it is not read): a base and
    deltas once the deltas are more than `max_deltas` files or `share` of the base's rows, into one delta when
    that holds at most `MERGE_BELOW` of the rows allowed (`_merged_deltas_sql`), else into a new base; a
    dataset's chain of more than `max_seq_chain` segments. Returns the new segments."""
    snapshots_dir = Path(snapshots_dir)
    max_deltas = MAX_DELTAS if max_deltas is None else max_deltas
    share = COMPACT_SHARE if share is None else share
    max_seq_chain = MAX_SEQ_CHAIN if max_seq_chain is None else max_seq_chain
    seg_dir = snapshots_dir / SEGMENTS_DIR
    made: list[Segment] = []
    with contextlib.ExitStack() as stack:
        con: duckdb.DuckDBPyConnection | None = None  # a `scratch` cursor, for the first chain to compact
        for table, chain in exported.segments.items():
            if chain[0].kind == "seq" and len(chain) > max_seq_chain:
                con = con or stack.enter_context(scratch())
                target = _fresh(seg_dir, table, "seq")
                query = view_sql(snapshots_dir, chain, "*")
                merged = Segment(table, "", sum(s.rows for s in chain), "seq", chain[0].lo, chain[-1].hi, chain[-1].checksum,
                                 chain[-1].columns, chain[-1].engine)
                kept: list[Segment] = []  # one segment in place of the whole chain
            elif len(chain) > 1 and _compacts(chain[:-1], chain[-1].rows, max_deltas, share):
                con = con or stack.enter_context(scratch())
                net = _net_delta_rows(con, snapshots_dir, chain[1:]) if len(chain) > 2 else None
                if net is not None and net <= _limit(chain[0], share) * MERGE_BELOW:
                    # The deltas cancel out enough (the same rows changed again): they become one delta, read
                    # and written in proportion to the change, and the base is kept.
                    target = _fresh(seg_dir, table, "delta")
                    query = _merged_deltas_sql(snapshots_dir, chain[1:])
                    merged = Segment(table, "", net, "delta", columns=chain[-1].columns, engine=chain[-1].engine)
                    kept = [chain[0]]
                else:
                    target = _fresh(seg_dir, table, "base")
                    query = view_sql(snapshots_dir, chain, f"* EXCLUDE ({POS})")
                    (n,) = con.execute(f"SELECT count(*) FROM ({view_sql(snapshots_dir, chain, HASH)})").fetchall()[0]
                    merged = Segment(table, "", n, "base", columns=chain[-1].columns, engine=chain[-1].engine)
                    kept = []
            else:
                continue
            exported.pending.append((_copy(con, query, target), target))
            merged = Segment(**{**merged.__dict__, "file": str(target.relative_to(snapshots_dir))})
            exported.written.append(merged)
            exported.segments[table] = [*kept, merged]
            made.append(merged)
    finish(exported)
    return made


# --- the snapshot file -------------------------------------------------------------------------------

#: DuckDB types that come back from Parquet as they went in; any other column is cast back in its view.
_ROUND_TRIP = frozenset({"VARCHAR", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "BOOLEAN", "DOUBLE", "FLOAT", "DATE",
                         "TIMESTAMP", "JSON", "BLOB"})


def _round_trips(dtype: str) -> bool:
    return dtype in _ROUND_TRIP or dtype.startswith("DECIMAL(")


def shape(snapshots_dir: Path, exported: Export) -> str:
    """A digest of what a snapshot file's objects are made from besides its segments and mark: the folder its
    views read, every table's live column types, the live views, the analyst views' sources (`views_digest`)
    and DuckDB's version. Files of the same shape differ only in the views of tables whose segments differ."""
    made = [str(Path(snapshots_dir).resolve()), sorted(exported.types.items()), exported.views, views_digest(),
            duckdb.__version__, PRINTS, "bookkeeping views"]  # a file from before `PRINTS` or `_rows_view` is written whole
    return hashlib.sha1(json.dumps(made).encode()).hexdigest()


def _table_view(con: duckdb.DuckDBPyConnection, snapshots_dir: Path, exported: Export, table: str) -> None:
    select = ", ".join(_q(c) if _round_trips(t) else f"CAST({_q(c)} AS {t}) AS {_q(c)}" for c, t in exported.types[table])
    con.execute(f"CREATE OR REPLACE VIEW {_q(table)} AS {view_sql(snapshots_dir, exported.segments[table], select)}")


def write_snapshot(path: Path, snapshots_dir: Path, exported: Export, over: Path | None = None) -> bool:
    """Create the snapshot database at `path`: a view per table over its segments (with the live
    column types, without the segments' own columns), the live views, `snapshot_files`, the mark, the
    `shape` digest and the analyst views.

    `over`: the snapshot before. When it has the same `shape`, it is copied and only what differs is
    replaced: the views of the tables whose segments differ, and the bookkeeping views (about 0.1 s less
    per publish at 1M records, most of it the analyst views: docs/benchmarks.md, "Session 21"). Returns
    whether the file was made so (False: written whole)."""
    snapshots_dir = Path(snapshots_dir).resolve()
    digest = shape(snapshots_dir, exported)
    if over is not None and read_shape(over) == digest:
        before: dict[str, list[Segment]] = {}
        for s in read_manifest(over):
            before.setdefault(s.table, []).append(s)
        shutil.copyfile(over, path)
        with _attached(path) as con:
            con.execute("BEGIN TRANSACTION")
            changed = [t for t, segs in exported.segments.items() if before.get(t) != segs]
            for table in changed:  # views over these are bound when queried: they read the new ones
                _table_view(con, snapshots_dir, exported, table)
            _write_bookkeeping(con, snapshots_dir, exported)
            commit(con)
        return True
    con = duckdb.connect(str(path))
    try:
        con.execute("BEGIN TRANSACTION")
        _write_bookkeeping(con, snapshots_dir, exported)
        for table in exported.segments:
            _table_view(con, snapshots_dir, exported, table)
        pending = list(exported.views)
        while pending:  # in the live store's order; a view over one created after it (a dataset that became
            failed = []  # a view of its parts, under its `_current` view) is tried again once that one is made
            for sql in pending:
                try:
                    con.execute(sql)
                except duckdb.Error:  # a live view over a table of another shape: the analyst views do not need it
                    failed.append(sql)
            if len(failed) == len(pending):
                break
            pending = failed
        create_views(con)
        con.execute(f"CREATE TABLE {SHAPE} (digest VARCHAR NOT NULL)")
        con.execute(f"INSERT INTO {SHAPE} VALUES (?)", [digest])
        commit(con)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return False


def remember(snapshot: Path, exported: Export) -> None:
    """Cache the manifest, mark, shape and fingerprints of the just-published `snapshot` (pruning reads every
    kept one's manifest; the next publish builds on its mark, shape and fingerprints)."""
    remember_manifest(snapshot, [s for segs in exported.segments.values() for s in segs])
    key = _file_key(snapshot)
    assert key is not None
    _infos[key] = (exported.mark, shape(snapshot.parent, exported), dict(exported.prints))


def remember_manifest(snapshot: Path, segs: list[Segment]) -> None:
    """Cache the manifest of the just-published `snapshot`, so that pruning does not open its file to read it
    (~10 ms, a small tenant's copy publish took 65 ms)."""
    key = _file_key(snapshot)
    assert key is not None
    _manifests[key] = list(segs)


def snapshot_bytes(snapshot: Path, counted: set[str]) -> int:
    """Bytes of `snapshot` and of its segments not in `counted` (which it then adds to)."""
    total = snapshot.stat().st_size
    root = snapshot.parent
    for s in read_manifest(snapshot):
        if s.file not in counted:
            counted.add(s.file)
            with contextlib.suppress(FileNotFoundError):
                total += (root / s.file).stat().st_size
    return total


def collect_garbage(snapshots_dir: Path, snapshots: Iterable[Path], grace_s: float) -> list[Path]:
    """Delete segments none of `snapshots` reads once they have been unused for `grace_s` seconds
    (marked `<file>.orphaned` when first found unused), and leftover temporary files; return the
    segments deleted. The caller holds `dir_lock`, so no publish is writing meanwhile."""
    snapshots_dir = Path(snapshots_dir)
    used = {s.file for p in snapshots for s in read_manifest(p)}
    removed: list[Path] = []
    now = time.time()
    seg_root = snapshots_dir / SEGMENTS_DIR
    if not seg_root.is_dir():
        return removed
    for path in sorted(seg_root.glob("*/*")):
        name = path.name
        if name.endswith(".tmp"):  # a publish that did not finish
            path.unlink(missing_ok=True)
            continue
        if not name.endswith(".parquet"):
            continue
        marker = path.with_name(name + _ORPHAN)
        if str(path.relative_to(snapshots_dir)) in used:
            marker.unlink(missing_ok=True)
            continue
        if grace_s > 0 and not marker.exists():
            marker.touch()
            continue
        if grace_s <= 0 or now - marker.stat().st_mtime >= grace_s:
            path.unlink(missing_ok=True)
            marker.unlink(missing_ok=True)
            removed.append(path)
    for marker in seg_root.glob(f"*/*{_ORPHAN}"):  # a marker whose segment is gone
        if not marker.with_name(marker.name[: -len(_ORPHAN)]).exists():
            marker.unlink(missing_ok=True)
    for d in seg_root.iterdir():
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return removed
