"""Parquet segments that snapshots share: a snapshot writes what changed since the one before.

Every table of the live store goes to `<snapshots>/segments/<table>/` as immutable Parquet files:

- a dataset (append-only versions, each with a `_seq`) as a chain of `seq` segments, each holding
  the versions with `lo < _seq <= hi`. A new snapshot writes only the versions above the chain's
  end (checked first: the live dataset still holds as many versions up to it, and the same last
  `TAIL`);
- any other table (golden, share, links, agreed, conflicts, the queue, ...) as a `base` segment
  plus `delta` segments. Every row carries `_snap_h`, DuckDB's `hash()` of the whole live row:
  a row's identity is its content. Under the store's lock one scan hashes the live rows; an anti
  join with the hashes the previous snapshot shows (read from its own Parquet files before the
  lock) gives the rows to add and the hashes to remove, and only those are written, as one delta
  (`_snap_gone` marks a removal). A changed row is the old one removed and the new one added. The
  snapshot's view of the table is the base and the deltas' added rows, less every row a later
  delta removed. A table with two identical rows (no content identity) is written `whole`
  instead, again only when its rows' hashes changed;
- `compact` merges a chain into a new base from its own Parquet files, never touching the live
  store (so outside its lock), once the deltas grow past `MAX_DELTAS` files or `COMPACT_SHARE` of
  the base's rows.

A snapshot file is a small DuckDB database: one view per live table over its segments (by
absolute path), the live views, the analyst views and `snapshot_files`, the list of its segments.
Segment files are written to a temporary name, synced and renamed before the snapshot that reads
them is published, and never changed afterwards. Nothing here reads DuckDB's file layout: only SQL.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from crm_wave.analyst.views import create_views

if TYPE_CHECKING:  # pyarrow is DuckDB's to load when a table is fetched: not at import
    import pyarrow as pa

__all__ = ["COMPACT_SHARE", "DATASET_COLUMNS", "MANIFEST", "MAX_DELTAS", "SEGMENTS_DIR", "Export", "Segment", "TooMuchChange",
           "collect_garbage", "compact", "dir_lock", "export", "finish", "previous_hashes", "read_manifest", "remember",
           "snapshot_bytes", "view_sql", "write_snapshot"]

SEGMENTS_DIR = "segments"
#: The table in every snapshot file that lists the segment files its views read.
MANIFEST = "snapshot_files"
#: Deltas a chain may have before it is compacted into a new base.
MAX_DELTAS = 16
#: Rows in a chain's deltas, as a share of its base's, at which it is compacted.
COMPACT_SHARE = 0.25
#: A dataset's chain of `seq` segments longer than this is compacted.
MAX_SEQ_CHAIN = 16
#: The columns of a dataset table (crm_wave/store/datasets.sql).
DATASET_COLUMNS = ("_id", "_seq", "_hash", "_deleted", "_ts", "_previous", "_source_id", "_modified", "_version", "body")
HASH, GONE, POS = "_snap_h", "_snap_gone", "_snap_pos"
_ORPHAN = ".orphaned"
#: Versions at the end of a dataset chain whose checksum is compared with the live dataset's.
TAIL = 1000
_CHECK = "coalesce(sum(hash(_seq, _id, _hash)::HUGEINT), 0)"


class TooMuchChange(Exception):
    """More rows changed than the export under the lock may write: the caller copies the file instead."""


@dataclass(frozen=True)
class Segment:
    """One Parquet file of a table. `file` is relative to the snapshots directory; `kind` is `seq` (a
    dataset's `_seq` range `lo < _seq <= hi`), `base`, `delta` or `whole`; `columns` the live table's
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
    views to recreate; the files this publish wrote; how long the store's lock was held."""

    segments: dict[str, list[Segment]] = field(default_factory=dict)
    types: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    views: list[str] = field(default_factory=list)
    written: list[Segment] = field(default_factory=list)
    pending: list[tuple[Path, Path]] = field(default_factory=list)


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


_manifests: dict[tuple[str, int, int], list[Segment]] = {}


def read_manifest(snapshot: Path) -> list[Segment]:
    """The segments snapshot file `snapshot` reads ([] for a snapshot that is a whole copy)."""
    try:
        st = snapshot.stat()
    except FileNotFoundError:
        return []
    key = (str(snapshot), st.st_ino, st.st_mtime_ns)
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


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(con: duckdb.DuckDBPyConnection, query: str, target: Path, out: Export) -> None:
    """Write the result of `query` to a temporary file beside `target`; `finish(out)` syncs and renames it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    out.pending.append((tmp, target))
    con.execute(f"COPY ({query}) TO {_lit(str(tmp))} (FORMAT parquet, COMPRESSION zstd)")


def finish(out: Export) -> None:
    """Sync the segments `out` wrote to disk and give them their names (outside the store's lock)."""
    for tmp, target in out.pending:
        _fsync(tmp)
        os.replace(tmp, target)
    for d in {target.parent for _, target in out.pending}:
        _fsync(d)
    out.pending.clear()


def discard(out: Export) -> None:
    """Remove the temporary files of an export that will not be published."""
    for tmp, _ in out.pending:
        tmp.unlink(missing_ok=True)
    out.pending.clear()


def _fresh(seg_dir: Path, table: str, kind: str) -> Path:
    """A new file name for a segment of `table` (a segment, once written, never changes)."""
    return seg_dir / table / f"{kind}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:10]}.parquet"


def _base_tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str]]]:
    rows = con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns c "
        "WHERE table_catalog = current_database() AND table_schema = 'main' AND table_name IN ("
        "  SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() "
        "  AND table_schema = 'main' AND table_type = 'BASE TABLE') ORDER BY table_name, ordinal_position").fetchall()
    out: dict[str, list[tuple[str, str]]] = {}
    for table, column, dtype in rows:
        out.setdefault(table, []).append((column, dtype))
    return out


# --- the view of a chain ---------------------------------------------------------------------------


def view_sql(snapshots_dir: Path, chain: list[Segment], select: str) -> str:
    """A query of `select` (column list) over `chain`'s rows as the snapshot shows them."""
    paths = [_lit(str(Path(snapshots_dir) / s.file)) for s in chain]
    if not chain:
        raise ValueError("an empty chain")
    if chain[0].kind in ("seq", "whole") or len(chain) == 1:
        return f"SELECT {select} FROM read_parquet([{', '.join(paths)}])"
    adds = [f"SELECT * EXCLUDE ({GONE}), {i} AS {POS} FROM read_parquet({p}) WHERE NOT {GONE}" if i else
            f"SELECT *, 0 AS {POS} FROM read_parquet({p})" for i, p in enumerate(paths)]
    gone = [f"SELECT {HASH}, {i} AS {POS} FROM read_parquet({p}) WHERE {GONE}" for i, p in enumerate(paths) if i]
    return (f"WITH _adds AS ({' UNION ALL BY NAME '.join(adds)}), _gone AS ({' UNION ALL '.join(gone)}) "
            f"SELECT {select} FROM _adds ANTI JOIN _gone ON _gone.{HASH} = _adds.{HASH} AND _gone.{POS} > _adds.{POS}")


#: What a publish knows of a table's rows in the previous snapshot: every `_snap_h`, and their
#: fingerprint (count, sum, bit_xor), compared with the live rows' before anything is joined.
Previous = tuple["pa.Table", tuple[int, int, int]]
_FINGERPRINT = f"SELECT count(*), coalesce(sum({HASH}::HUGEINT), 0), coalesce(bit_xor({HASH}), 0) FROM "


def previous_hashes(snapshots_dir: Path, previous: Iterable[Segment]) -> dict[str, Previous]:
    """`table -> (the _snap_h of every row, their fingerprint)` the snapshot whose segments are `previous`
    shows, for each base/delta/whole chain whose files are all there. Read from the Parquet files
    alone (before the store's lock)."""
    chains: dict[str, list[Segment]] = {}
    for s in previous:
        chains.setdefault(s.table, []).append(s)
    out: dict[str, Previous] = {}
    with duckdb.connect() as con:
        for table, chain in chains.items():
            if chain[0].kind not in ("base", "whole") or any(not (Path(snapshots_dir) / s.file).is_file() for s in chain):
                continue
            hashes = con.execute(view_sql(snapshots_dir, chain, HASH)).to_arrow_table()
            con.register("_snap_prev", hashes)
            ((n, total, xor),) = con.execute(_FINGERPRINT + "_snap_prev").fetchall()
            con.unregister("_snap_prev")
            out[table] = (hashes, (int(n), int(total), int(xor)))
    return out


# --- export ------------------------------------------------------------------------------------------


def _tail_checksum(con: duckdb.DuckDBPyConnection, table: str, hi: int) -> int:
    (checksum,) = con.execute(f"SELECT {_CHECK} FROM {_q(table)} WHERE _seq > ? AND _seq <= ?", [hi - TAIL, hi]).fetchall()[0]
    return int(checksum)


def _chain_valid(con: duckdb.DuckDBPyConnection, snapshots_dir: Path, table: str, chain: list[Segment], columns: str) -> bool:
    """The live dataset still holds the chain's versions: as many up to the chain's end, the last `TAIL`
    of them the same (a dataset is append-only; a store rebuilt from scratch is not), and the chain's
    files are all there. Milliseconds: `_seq` ranges are found by DuckDB's zone maps."""
    if not chain or any(s.kind != "seq" or s.hi is None or s.columns != columns or not (snapshots_dir / s.file).is_file()
                        for s in chain):
        return False
    hi, checksum = chain[-1].hi, chain[-1].checksum
    assert hi is not None
    (n,) = con.execute(f"SELECT count(*) FROM {_q(table)} WHERE _seq <= ?", [hi]).fetchall()[0]
    return n == sum(s.rows for s in chain) and checksum is not None and _tail_checksum(con, table, hi) == checksum


def export(con: duckdb.DuckDBPyConnection, snapshots_dir: Path, previous: Iterable[Segment],
           hashes: dict[str, Previous], *, max_rows: int | None = None) -> Export:
    """Write what changed in the store of `con` (one transaction) since the snapshot whose segments are
    `previous` (`hashes`: `previous_hashes` of them): new dataset versions, rows added and removed.

    With `max_rows`, raises TooMuchChange (having written nothing) when more rows would be written."""
    snapshots_dir = Path(snapshots_dir)
    seg_dir = snapshots_dir / SEGMENTS_DIR
    before: dict[str, list[Segment]] = {}
    for s in previous:
        before.setdefault(s.table, []).append(s)
    out = Export()
    engine = duckdb.__version__
    con.execute("BEGIN TRANSACTION")  # the caller holds the store's lock; one transaction all the same
    try:
        tables = _base_tables(con)
        plans = []
        for table, cols in tables.items():
            out.types[table] = cols
            columns = json.dumps(cols)
            if tuple(c for c, _ in cols) == DATASET_COLUMNS:
                plans.append(_plan_dataset(con, snapshots_dir, table, before.get(table, []), columns))
            else:
                plans.append(_plan_rows(con, table, before.get(table, []), hashes.get(table), columns, engine))
        if max_rows is not None and sum(p.rows for p in plans) > max_rows:
            raise TooMuchChange(f"{sum(p.rows for p in plans)} rows changed; at most {max_rows} are written under the lock")
        for p in plans:
            out.segments[p.table] = p.write(con, seg_dir, snapshots_dir, out)
        out.views = [sql for (sql,) in con.execute(
            "SELECT sql FROM duckdb_views() WHERE NOT internal AND database_name = current_database() "
            "AND schema_name = 'main' ORDER BY view_oid").fetchall()]
    finally:
        con.execute("ROLLBACK")  # read only: the temporary tables go with it
    return out


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

    def write(self, con: duckdb.DuckDBPyConnection, seg_dir: Path, snapshots_dir: Path, out: Export) -> list[Segment]:
        if not self.kind:
            return self.chain
        target = _fresh(seg_dir, self.table, self.kind)
        _copy(con, self.query, target, out)
        seg = Segment(self.table, str(target.relative_to(snapshots_dir)), self.rows, self.kind, self.lo, self.hi,
                      self.checksum, self.columns, self.engine)
        out.written.append(seg)
        return [*self.chain, seg] if self.kind in ("seq", "delta") else [seg]


def _plan_dataset(con: duckdb.DuckDBPyConnection, snapshots_dir: Path, table: str, chain: list[Segment],
                  columns: str) -> _Plan:
    (top,) = con.execute(f"SELECT coalesce(max(_seq), 0) FROM {_q(table)}").fetchall()[0]
    if not _chain_valid(con, snapshots_dir, table, chain, columns):
        chain = []
    covered = chain[-1].hi if chain else 0
    assert covered is not None
    if chain and top == covered:
        return _Plan(table, chain, 0)
    (n,) = con.execute(f"SELECT count(*) FROM {_q(table)} WHERE _seq > ? AND _seq <= ?", [covered, top]).fetchall()[0]
    # Parameters are not allowed in COPY: `covered` and `top` are ints of our own.
    query = f"SELECT * FROM {_q(table)} WHERE _seq > {int(covered)} AND _seq <= {int(top)}"
    return _Plan(table, chain, n, "seq", query, covered, top, columns, "", _tail_checksum(con, table, top))


def _plan_rows(con: duckdb.DuckDBPyConnection, table: str, chain: list[Segment], previous: Previous | None,
               columns: str, engine: str) -> _Plan:
    """One scan hashes the live rows; when their fingerprint differs from the previous snapshot's, anti
    joins with its hashes give the rows added and removed."""
    cur, add, gone, prev = f"_snap_cur_{table}", f"_snap_add_{table}", f"_snap_gone_{table}", f"_snap_prev_{table}"
    con.execute(f"CREATE TEMP TABLE {_q(cur)} AS SELECT hash(t) AS {HASH}, rowid AS _r FROM {_q(table)} AS t")
    ((n_cur, total, xor),) = con.execute(_FINGERPRINT + _q(cur)).fetchall()
    usable = (previous is not None and bool(chain) and chain[0].kind in ("base", "whole")
              and all(s.columns == columns and s.engine == engine for s in chain))
    if usable and previous is not None and previous[1] == (int(n_cur), int(total), int(xor)):
        return _Plan(table, chain, 0)  # the same rows (a multiset of 64-bit hashes with the same count, sum and xor)
    everything = f"SELECT t.*, hash(t) AS {HASH} FROM {_q(table)} AS t"
    if not usable or previous is None or chain[0].kind == "whole":
        (distinct,) = con.execute(f"SELECT count(DISTINCT {HASH}) FROM {_q(cur)}").fetchall()[0]
        kind = "base" if distinct == n_cur else "whole"  # two identical rows: no identity by content
        return _Plan(table, [], n_cur, kind, everything, columns=columns, engine=engine)
    hashes = previous[0]
    con.register(prev, hashes)
    try:
        con.execute(f"CREATE TEMP TABLE {_q(add)} AS SELECT {HASH}, _r FROM {_q(cur)} ANTI JOIN {_q(prev)} USING ({HASH})")
        con.execute(f"CREATE TEMP TABLE {_q(gone)} AS SELECT {HASH} FROM {_q(prev)} ANTI JOIN {_q(cur)} USING ({HASH})")
    finally:
        con.unregister(prev)
    ((n_add, d_add, lo, hi),) = con.execute(f"SELECT count(*), count(DISTINCT {HASH}), min(_r), max(_r) FROM {_q(add)}").fetchall()
    (n_gone,) = con.execute(f"SELECT count(*) FROM {_q(gone)}").fetchall()[0]
    if n_cur - n_add != hashes.num_rows - n_gone or d_add != n_add:  # a row now twice: no identity by content
        return _Plan(table, [], n_cur, "whole", everything, columns=columns, engine=engine)
    if not n_add and not n_gone:
        return _Plan(table, chain, 0)
    # Changed rows are usually appended (DELETE + INSERT): the rowid range lets the scan skip the rest.
    adds = (f"SELECT t.*, hash(t) AS {HASH}, false AS {GONE} FROM {_q(table)} AS t "
            f"WHERE t.rowid BETWEEN {int(lo)} AND {int(hi)} AND t.rowid IN (SELECT _r FROM {_q(add)})") if n_add else ""
    removals = f"SELECT {HASH}, true AS {GONE} FROM {_q(gone)}"
    if not n_add:  # the data columns, all NULL, with their types
        adds = f"SELECT t.*, hash(t) AS {HASH}, false AS {GONE} FROM {_q(table)} AS t WHERE false"
    query = f"{adds} UNION ALL BY NAME {removals}" if n_gone else adds
    return _Plan(table, chain, n_add + n_gone, "delta", query, columns=columns, engine=engine)


# --- compaction --------------------------------------------------------------------------------------


def compact(snapshots_dir: Path, exported: Export, *, max_deltas: int | None = None, share: float | None = None,
            max_seq_chain: int | None = None) -> list[Segment]:
    """Merge long chains into new bases from their own Parquet files (no lock on the store: it is not
    read): a base and deltas once the deltas are more than `max_deltas` files or `share` of the base's
    rows; a dataset's chain of more than `max_seq_chain` segments. Returns the new segments."""
    snapshots_dir = Path(snapshots_dir)
    max_deltas = MAX_DELTAS if max_deltas is None else max_deltas
    share = COMPACT_SHARE if share is None else share
    max_seq_chain = MAX_SEQ_CHAIN if max_seq_chain is None else max_seq_chain
    seg_dir = snapshots_dir / SEGMENTS_DIR
    made: list[Segment] = []
    with duckdb.connect() as con:
        for table, chain in exported.segments.items():
            if chain[0].kind == "seq" and len(chain) > max_seq_chain:
                target = _fresh(seg_dir, table, "seq")
                query = view_sql(snapshots_dir, chain, "*")
                merged = Segment(table, "", sum(s.rows for s in chain), "seq", chain[0].lo, chain[-1].hi, chain[-1].checksum,
                                 chain[-1].columns, chain[-1].engine)
            elif chain[0].kind == "base" and len(chain) > 1 and (
                    len(chain) - 1 > max_deltas or sum(s.rows for s in chain[1:]) >= share * max(chain[0].rows, 1)):
                target = _fresh(seg_dir, table, "base")
                query = view_sql(snapshots_dir, chain, f"* EXCLUDE ({POS})")
                (n,) = con.execute(f"SELECT count(*) FROM ({view_sql(snapshots_dir, chain, HASH)})").fetchall()[0]
                merged = Segment(table, "", n, "base", columns=chain[-1].columns, engine=chain[-1].engine)
            else:
                continue
            _copy(con, query, target, exported)
            merged = Segment(**{**merged.__dict__, "file": str(target.relative_to(snapshots_dir))})
            exported.written.append(merged)
            exported.segments[table] = [merged]
            made.append(merged)
    finish(exported)
    return made


# --- the snapshot file -------------------------------------------------------------------------------

#: DuckDB types that come back from Parquet as they went in; any other column is cast back in its view.
_ROUND_TRIP = frozenset({"VARCHAR", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "BOOLEAN", "DOUBLE", "FLOAT", "DATE",
                         "TIMESTAMP", "JSON", "BLOB"})


def _round_trips(dtype: str) -> bool:
    return dtype in _ROUND_TRIP or dtype.startswith("DECIMAL(")


def write_snapshot(path: Path, snapshots_dir: Path, exported: Export) -> dict[str, list[str]]:
    """Create the snapshot database at `path`: a view per table over its segments (with the live
    column types, without the segments' own columns), the live views, `snapshot_files`, and the
    analyst views; return create_views'."""
    snapshots_dir = Path(snapshots_dir).resolve()
    con = duckdb.connect(str(path))
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(f"CREATE TABLE {MANIFEST} (table_name VARCHAR NOT NULL, position INTEGER NOT NULL, "
                    "file VARCHAR NOT NULL, path VARCHAR NOT NULL, row_count BIGINT NOT NULL, kind VARCHAR NOT NULL, "
                    "seq_from BIGINT, seq_to BIGINT, checksum HUGEINT, columns VARCHAR NOT NULL, engine VARCHAR NOT NULL)")
        rows = []
        for table, segs in exported.segments.items():
            rows += [(table, i, s.file, str(snapshots_dir / s.file), s.rows, s.kind, s.lo, s.hi, s.checksum, s.columns,
                      s.engine) for i, s in enumerate(segs)]
            select = ", ".join(_q(c) if _round_trips(t) else f"CAST({_q(c)} AS {t}) AS {_q(c)}" for c, t in exported.types[table])
            con.execute(f"CREATE VIEW {_q(table)} AS {view_sql(snapshots_dir, segs, select)}")
        if rows:  # one statement: executemany costs a few ms a row
            con.execute(f"INSERT INTO {MANIFEST} VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(rows)),
                        [v for row in rows for v in row])
        for sql in exported.views:
            try:
                con.execute(sql)
            except duckdb.Error:  # a live view over a table of another shape: the analyst views do not need it
                pass
        created = create_views(con)
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return created


def remember(snapshot: Path, exported: Export) -> None:
    """Cache the manifest of the just-published `snapshot` (pruning reads every kept one's)."""
    st = snapshot.stat()
    _manifests[(str(snapshot), st.st_ino, st.st_mtime_ns)] = [s for segs in exported.segments.values() for s in segs]


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
