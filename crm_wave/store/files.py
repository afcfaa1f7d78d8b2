"""File-backed tables: a large golden or share table as Parquet files written by polars, under views.

A full rebuild rewrites a golden table whole. Storing 1.1M rows of 67 columns in DuckDB's file
took 7.3-9.8 s; polars writes the same rows as Parquet in 1.1-1.7 s, a quarter of the size
(docs/benchmarks.md, "Session 16" and "Session 17"). Reads of the files cost more than a table's,
so the global step writes files only for a rebuild of more than `FILES_PAST` rows (50,000, in
crm_wave/sync/global_step.py; `Tables.replace_table(..., as_files=True)`); a share rebuild of more rows
than that does the same, and an incremental share step that leaves at most that many makes it a DuckDB table again
(crm_wave/sync/share_step.py: a share table shrinks as its pushes are done). A file-backed table
`<name>` is three things in the DuckDB file, and one folder beside it
(`<store file>.files/<name>/<generation>/`):

- `<name>__files`, a view over the Parquet parts of the current generation (one part per part
  the rebuild wrote, `part-00000.parquet`, ...). Written once, never changed: a new rebuild is a
  new generation;
- `<name>__changed`, a DuckDB table: the rows an incremental step wrote since the generation
  (the golden columns and `_gone`, true for a row deleted);
- `<name>`, the view everything reads: the files' rows less those in `__changed`, plus the
  `__changed` rows not gone. Columns, types and order are those of the table it replaces.

`table_files` records, per table, its generation, parts and the folder its `__files` view reads;
a rebuild in progress is recorded under its staging name (`<name>__rebuild`) until `publish`,
which creates the three objects in the caller's transaction: a rollback leaves the old
generation in place. The parts are synced to disk before that transaction commits. Older
generations are deleted when the next rebuild starts (under the global step's lock of the
table), never while a transaction may still point at them.

A copy of the DuckDB file (a dry run's scratch copy, a snapshot copy) carries the files as hard
links (`carry`); a store whose files are missing (a copy without them) reads the table as absent
(`table_columns`), so the next global step rebuilds it from the datasets; a store moved or restored
with its folder of files points its views at the new place when a process first opens it
(`follow`; `missing` checks again at a step's first read). Nothing else changes for the readers:
they read `<name>` with SQL, and a rebuild's reader in parts reads a part file at a time (`parts`).

A large dataset (an append-only log of versions, crm_wave/store/datasets.py) is file-backed too, by
appends rather than rebuilds: a collect's append of many versions is written as the next part of the
dataset's one generation (`append`). Its first such append renames the DuckDB table to `<name>__rows`,
which keeps the versions appended a few at a time, and `<name>` becomes the view of the parts' rows
and those rows (`UNION ALL`). Parts of a dataset are never deleted: they are its history. A store
whose dataset parts are missing stops with `FilesMissing` (`place`), as nothing can rebuild them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, NamedTuple

import duckdb
import polars as pl

from crm_wave.store.connection import forget_columns, ident, ids_predicate, registered, sql_ident, sql_str

__all__ = ["COMPRESSION", "COMPRESSION_LEVEL", "FILES_TABLE", "GONE", "ROWS", "STAGING", "FilesMissing", "Part", "add", "append", "backed", "carry",
           "changed_table", "copy_store", "current", "delete_parts", "drop", "files_view", "follow", "forget_staging", "fsync", "generations", "is_backed",
           "link", "link_parts", "missing", "parts", "place", "publish", "read_part", "replace_rows", "root_of", "rows_table", "start"]

FILES_TABLE = "table_files"
#: The column of `<name>__changed` that marks a deleted row.
GONE = "_gone"
#: The suffix of a rebuild's staging name.
STAGING = "__rebuild"
#: The suffix of a file-backed dataset's DuckDB table: the versions appended a few at a time.
ROWS = "__rows"
#: Rows per row group of a dataset's part: a read of some records by `_seq` range skips the others.
LOG_ROW_GROUP = 16_384
#: Compression of the parts: zstd, 1.1-1.2 s and 36 MB for the golden customers at 1M (lz4 1.0 s, 113 MB).
COMPRESSION: Final = "zstd"
#: At level 1, not polars' default 3: a part of 200,000 dataset versions takes 18-33 % less CPU to write, as
#: small or smaller; a golden part 5-16 % less (docs/benchmarks.md, "Session 29"). The snapshots' segments
#: are written at 1 too (`analyst.segments`). Readers see no difference: the level is not in the file's format.
COMPRESSION_LEVEL: Final = 1


def backed(name: str) -> bool:
    """Whether table `name` may be file-backed: the golden tables `global_<entity>` and the share tables
    `<side>_<entity>_share` (and their staging)."""
    base = name.removesuffix(STAGING)
    return (base.startswith("global_") or base.endswith("_share")) and "__" not in base


class FilesMissing(RuntimeError):
    """A file-backed dataset's parts are not in the store's folder of table files."""


def rows_table(name: str) -> str:
    return f"{name}{ROWS}"


def changed_table(name: str) -> str:
    return f"{name}__changed"


def files_view(name: str) -> str:
    return f"{name}__files"


def root_of(store_path: Path) -> Path:
    """The folder of a store's table files: `<store file>.files`."""
    return Path(str(store_path) + ".files")


def _part(root: Path, name: str, generation: str, i: int) -> Path:
    return root / name / generation / f"part-{i:05d}.parquet"


def _paths(root: Path, name: str, generation: str, n_parts: int) -> list[Path]:
    return [_part(root, name, generation, i) for i in range(n_parts)]


def current(con: duckdb.DuckDBPyConnection, name: str) -> tuple[str, int, str] | None:
    """(generation, parts, folder) of `name` as `table_files` records it, or None."""
    rows = con.execute(f"SELECT generation, parts, root FROM {FILES_TABLE} WHERE name = ?", [name]).fetchall()
    return (rows[0][0], int(rows[0][1]), rows[0][2]) if rows else None


def is_backed(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether `name` is stored as files now (a store from before keeps a DuckDB table until its next rebuild)."""
    return backed(name) and current(con, name) is not None


def missing(con: duckdb.DuckDBPyConnection, root: Path, name: str) -> bool:
    """True if `name` is file-backed and a part file of its generation is not in `root`: the table must be
    read as absent until a rebuild writes it again. A store moved with its folder of files (its views
    name another folder) has its views pointed at `root`, in the caller's transaction."""
    if not backed(name):
        return False
    got = current(con, name)
    return got is not None and _missing(con, root, name, got)


def _missing(con: duckdb.DuckDBPyConnection, root: Path, name: str, got: tuple[str, int, str]) -> bool:
    """`missing` of a table whose `current` row is `got`."""
    generation, n_parts, folder = got
    paths = _paths(root, name, generation, n_parts)
    if not all(p.is_file() for p in paths):
        return True
    if folder != str(root):
        _point(con, name, paths, root)
    return False


def follow(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """Point the views of every file-backed table recorded in another folder than `root` at `root`, where its
    parts all are (a store moved or restored with its folder of files); in the caller's transaction."""
    try:
        moved = con.execute(f"SELECT name, generation, parts, root FROM {FILES_TABLE} WHERE root <> ? "
                            f"AND NOT ends_with(name, '{STAGING}')", [str(root)]).fetchall()
    except duckdb.CatalogException:  # a store from before file-backed tables
        return
    for name, generation, n_parts, folder in moved:
        _missing(con, root, name, (generation, int(n_parts), folder))


def place(con: duckdb.DuckDBPyConnection, root: Path, name: str) -> bool:
    """Whether dataset `name` is file-backed (`append`). A store moved with its folder of files has the
    dataset's views pointed at `root`, in the caller's transaction; raises `FilesMissing` when a part is
    not in `root` (the DuckDB file copied or restored without its `.files` folder)."""
    got = current(con, name)
    if got is None:
        return False
    if _missing(con, root, name, got):
        raise FilesMissing(f"{name}: its versions' Parquet parts are not in {root}; restore the store's "
                           f".files folder beside its DuckDB file (docs/runbook.md, 'Backing up or moving a store')")
    return True


def append(con: duckdb.DuckDBPyConnection, root: Path, name: str, frame: pl.DataFrame) -> None:
    """Write `frame` (rows of dataset `name`, in its columns) as the next part of the dataset's files, in the
    caller's transaction: the first time, table `name` becomes `<name>__rows` and `name` the view of both.
    The part is synced to disk before the transaction commits; after a rollback or a crash it is a file no
    row of `table_files` counts, which the next append writes over."""
    got = current(con, name)
    if got is None:
        generation, n_parts = uuid.uuid4().hex, 0
        shutil.rmtree(root / name, ignore_errors=True)  # a first part whose transaction rolled back
        (root / name / generation).mkdir(parents=True)
        forget_columns(con, name)
        con.execute(f"ALTER TABLE {ident(name)} RENAME TO {ident(rows_table(name))}")
    else:
        generation, n_parts, _ = got
    _write(frame, _part(root, name, generation, n_parts), LOG_ROW_GROUP)
    fsync(root / name / generation)
    con.execute(f"DELETE FROM {FILES_TABLE} WHERE name = ?", [name])
    con.execute(f"INSERT INTO {FILES_TABLE} VALUES (?, ?, ?, ?)", [name, generation, n_parts + 1, str(root)])
    _create_views(con, _paths(root, name, generation, n_parts + 1), name)


def _write(frame: pl.DataFrame, path: Path, row_group_size: int | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    frame.write_parquet(tmp, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL, row_group_size=row_group_size)
    fsync(tmp)
    os.replace(tmp, path)


def start(con: duckdb.DuckDBPyConnection, root: Path, staging: str, frame: pl.DataFrame) -> None:
    """Begin a new generation of `staging`'s table with its first part, and delete the generations
    neither current nor this one (a rebuild that crashed, or the one before the current)."""
    name = staging.removesuffix(STAGING)
    keep = current(con, name)
    generation = uuid.uuid4().hex
    folder = root / name
    if folder.is_dir():
        for old in folder.iterdir():
            if keep is None or old.name != keep[0]:
                shutil.rmtree(old, ignore_errors=True)
    (folder / generation).mkdir(parents=True)
    _write(frame, _part(root, name, generation, 0))
    con.execute(f"DELETE FROM {FILES_TABLE} WHERE name = ?", [staging])
    con.execute(f"INSERT INTO {FILES_TABLE} VALUES (?, ?, 1, ?)", [staging, generation, str(root)])


def add(con: duckdb.DuckDBPyConnection, root: Path, staging: str, frame: pl.DataFrame) -> None:
    """Write the next part of the generation `start` began."""
    got = current(con, staging)
    if got is None:
        raise RuntimeError(f"{staging}: no rebuild of its files was started")
    generation, n_parts, _ = got
    _write(frame, _part(root, staging.removesuffix(STAGING), generation, n_parts))
    con.execute(f"UPDATE {FILES_TABLE} SET parts = parts + 1 WHERE name = ?", [staging])


def fsync(path: Path) -> None:
    """Sync the file or folder `path` to disk (a folder: the names in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_views(con: duckdb.DuckDBPyConnection, paths: list[Path], name: str) -> None:
    listed = ", ".join(sql_str(str(p)) for p in paths)
    con.execute(f"CREATE OR REPLACE VIEW {ident(files_view(name))} AS SELECT * FROM read_parquet([{listed}])")
    if not backed(name):  # a dataset: its parts, then the versions appended since a few at a time
        con.execute(f"CREATE OR REPLACE VIEW {ident(name)} AS SELECT * FROM {ident(files_view(name))} "
                    f"UNION ALL BY NAME SELECT * FROM {ident(rows_table(name))}")
        return
    con.execute(f"CREATE OR REPLACE VIEW {ident(name)} AS SELECT b.* FROM {ident(files_view(name))} AS b "
                f"ANTI JOIN {ident(changed_table(name))} AS c ON c.global_id = b.global_id "
                f"UNION ALL BY NAME SELECT * EXCLUDE ({GONE}) FROM {ident(changed_table(name))} WHERE NOT {GONE}")


def _point(con: duckdb.DuckDBPyConnection, name: str, paths: list[Path], root: Path | None) -> None:
    """Make the views of `name` read `paths`, and record `root` as the folder they are in (None: the store of
    `con` is no store, a snapshot copy, which keeps no `table_files` row)."""
    _create_views(con, paths, name)
    if root is not None:
        con.execute(f"UPDATE {FILES_TABLE} SET root = ? WHERE name = ?", [str(root), name])


def publish(con: duckdb.DuckDBPyConnection, root: Path, staging: str) -> None:
    """Make the generation of `staging` the table's, in the caller's transaction (see the module)."""
    name = staging.removesuffix(STAGING)
    got = current(con, staging)
    if got is None:
        raise RuntimeError(f"{staging}: no rebuild of its files was started")
    generation, n_parts, _ = got
    fsync(root / name / generation)
    forget_columns(con, name)
    kind = con.execute("SELECT table_type FROM information_schema.tables WHERE table_catalog = current_database() "
                       "AND table_schema = 'main' AND table_name = ?", [name]).fetchall()
    if kind and kind[0][0] == "BASE TABLE":  # a table of a store from before the files: replaced once
        con.execute(f"DROP TABLE {ident(name)}")
    first = sql_str(str(_part(root, name, generation, 0)))
    con.execute(f"CREATE OR REPLACE TABLE {ident(changed_table(name))} AS "
                f"SELECT *, false AS {GONE} FROM read_parquet({first}) LIMIT 0")
    _create_views(con, _paths(root, name, generation, n_parts), name)
    con.execute(f"DELETE FROM {FILES_TABLE} WHERE name IN (?, ?)", [name, staging])
    con.execute(f"INSERT INTO {FILES_TABLE} VALUES (?, ?, ?, ?)", [name, generation, n_parts, str(root)])


def forget_staging(con: duckdb.DuckDBPyConnection, root: Path, staging: str) -> None:
    """A rebuild of `staging` into a DuckDB table: forget a generation of files begun for it earlier, and
    delete the parts of a table no longer stored as files (`drop`)."""
    if staging.endswith(STAGING):
        con.execute(f"DELETE FROM {FILES_TABLE} WHERE name = ?", [staging])
        name = staging.removesuffix(STAGING)
        if current(con, name) is None:
            delete_parts(root, name)


def delete_parts(root: Path, name: str) -> None:
    """Delete every generation of parts of table `name`, which `table_files` no longer records (`drop`): under the
    lock of the step that rebuilds it, so no rebuild writes a new generation meanwhile. A share table that became a
    DuckDB table again has its parts deleted so once that is committed (`share_step.build_share`)."""
    shutil.rmtree(root / name, ignore_errors=True)


def drop(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Stop storing `name` as files (its rebuild is a DuckDB table now): its views, its changed rows and
    its row of `table_files` dropped, in the caller's transaction; its parts go when its next rebuild starts
    (`forget_staging`), a share table's when the step that dropped it has committed (`delete_parts`)."""
    if name.endswith(STAGING) or current(con, name) is None:
        return
    forget_columns(con, name)
    con.execute(f"DROP VIEW IF EXISTS {ident(name)}")
    con.execute(f"DROP VIEW IF EXISTS {ident(files_view(name))}")
    con.execute(f"DROP TABLE IF EXISTS {ident(changed_table(name))}")
    con.execute(f"DELETE FROM {FILES_TABLE} WHERE name = ?", [name])


def replace_rows(con: duckdb.DuckDBPyConnection, name: str, key: str, values: pl.Series, frame: pl.DataFrame) -> None:
    """The rows of `name` whose `key` is one of `values` deleted, then `frame` inserted: as rows of
    `<name>__changed` (a deleted row as a `_gone` row of its key)."""
    changed = changed_table(name)
    keys = pl.concat([values.cast(pl.String), frame[key].cast(pl.String)]).drop_nulls().unique() if frame.height \
        else values.cast(pl.String).drop_nulls().unique()
    with ids_predicate(con, "_rows_keys", keys, sql_ident(key)) as (among, params):
        con.execute(f"DELETE FROM {ident(changed)} WHERE {among}", params)
    gone = keys.filter(~keys.is_in(frame[key].cast(pl.String).implode())) if frame.height else keys
    rows = pl.concat([frame.with_columns(pl.lit(False).alias(GONE)),
                      pl.DataFrame({key: gone, GONE: [True] * gone.len()}, schema={key: pl.String, GONE: pl.Boolean})],
                     how="diagonal_relaxed") if gone.len() else frame.with_columns(pl.lit(False).alias(GONE))
    if rows.height:
        with registered(con, "_changed_rows", rows):
            con.execute(f"INSERT INTO {ident(changed)} BY NAME SELECT * FROM _changed_rows")


class Part(NamedTuple):
    """One part of a file-backed table for a reader in parts: a Parquet part (`path`), or its changed rows."""

    kind: str  # "file" or "changed"
    path: str = ""


def parts(con: duckdb.DuckDBPyConnection, name: str) -> list[Part]:
    """The parts of `name` to read it whole in bounded memory: each Parquet part, then its changed rows."""
    got = current(con, name)
    if got is None:
        raise RuntimeError(f"{name} is not file-backed")
    generation, n_parts, folder = got
    return [Part("file", str(p)) for p in _paths(Path(folder), name, generation, n_parts)] + [Part("changed")]


def read_part(con: duckdb.DuckDBPyConnection, name: str, part: Part, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """The rows of `name` in `part` (just `columns`, if given).

    A Parquet part is read by polars, less its changed rows: at a million golden orders, 1.0 s for the
    ten parts where DuckDB's `read_parquet` and `.pl()` took 2.6-3.1 s, the same frame (docs/benchmarks.md,
    "Session 19")."""
    kind, path = part
    changed = ident(changed_table(name))
    if kind == "changed":
        sel = ", ".join(sql_ident(c) for c in columns) if columns else f"* EXCLUDE ({GONE})"
        return con.execute(f"SELECT {sel} FROM {changed} WHERE NOT {GONE}").pl()
    wanted = None if columns is None else list(dict.fromkeys([*columns, "global_id"]))
    frame = pl.read_parquet(path, columns=wanted)
    gone = con.execute(f"SELECT global_id FROM {changed}").pl()
    if gone.height:
        frame = frame.join(gone, on="global_id", how="anti", maintain_order="left")
    return frame if columns is None else frame.select(columns)


def generations(con: duckdb.DuckDBPyConnection) -> list[tuple[str, list[Path]]]:
    """(table, its current part files) of every file-backed table of the store of `con`."""
    try:
        rows = con.execute(f"SELECT name, generation, parts, root FROM {FILES_TABLE} "
                           f"WHERE NOT ends_with(name, '{STAGING}') ORDER BY name").fetchall()
    except duckdb.CatalogException:  # a store from before file-backed tables
        return []
    return [(name, _paths(Path(root), name, generation, int(n))) for name, generation, n, root in rows]


def link(source: Path, target: Path) -> None:
    """`target` as a hard link of `source` (a copy across file systems); the parts never change."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)


def copy_store(path: Path, target: Path) -> None:
    """Copy the store's DuckDB file at `path` (and its WAL) to `target`, with its file-backed tables' parts
    linked into the copy's own folder (`carry`). The caller holds the store's lock, or nothing writes it."""
    if path.exists():
        shutil.copyfile(path, target)
    wal = path.with_name(path.name + ".wal")
    if wal.exists():
        shutil.copyfile(wal, target.with_name(target.name + ".wal"))
    if target.exists():
        with duckdb.connect(str(target)) as con:
            carry(con, root_of(target))


def link_parts(con: duckdb.DuckDBPyConnection, place: Callable[[str, str, int], Path]) -> list[tuple[str, Path]]:
    """Link every file-backed table's parts of the store of `con` to `place(table, generation, part)`;
    (table, file) of each. Called under the store's file lock, so no rebuild deletes a part meanwhile."""
    out: list[tuple[str, Path]] = []
    for name, paths in generations(con):
        for i, src in enumerate(paths):
            dst = place(name, src.parent.name, i)
            link(src, dst)
            out.append((name, dst))
    return out


def carry(copy: duckdb.DuckDBPyConnection, root: Path | None,
          place: Callable[[str, str, int], Path] | None = None) -> list[tuple[str, Path]]:
    """In a fresh copy of a store's file (`copy`), whose views still read the store's table files: link
    the parts (`link_parts`) into `root`, the copy's own folder of table files (or to `place`, for a
    copy that is no store: a snapshot), and point the copy's views at them. Under the copied store's lock."""
    if place is None:
        assert root is not None
        place = lambda name, generation, i: _part(root, name, generation, i)  # noqa: E731
    linked = link_parts(copy, place)
    for name in dict.fromkeys(n for n, _ in linked):
        _point(copy, name, [p for n, p in linked if n == name], root)
    copy.execute(f"DELETE FROM {FILES_TABLE} WHERE ends_with(name, '{STAGING}')" if root is not None
                 else f"DELETE FROM {FILES_TABLE}")
    return linked
