"""Whole tables the global and share steps rewrite (golden and share tables), read in parts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
import polars as pl

from crm_wave.store.connection import (
    FEW,
    FEW_IDS,
    fetch_frame,
    forget_columns,
    ident,
    ids_predicate,
    registered,
    remembered_columns,
    sql_ident,
)
from crm_wave.store import files
from crm_wave.store.writes import log_rows, logged

__all__ = ["Part", "Tables", "column_types"]

#: A part of a table for a reader in parts (`Tables.row_ranges`): a rowid range, or a part of a file-backed table.
Part = tuple[int, int] | files.Part


def column_types(con: duckdb.DuckDBPyConnection, name: str) -> list[tuple[str, str]] | None:
    """(column, DuckDB type) of table or view `name` in order, or None if it does not exist.

    From a statement's description, not `information_schema`: that builds every table's columns
    first (measured 50 ms against 2 ms with 120 tables and views; a pass asks ~15 times).
    """
    try:
        cursor = con.execute(f"SELECT * FROM main.{ident(name)} LIMIT 0")
    except duckdb.CatalogException:  # a binder error: the transaction goes on
        return None
    return [(d[0], str(d[1])) for d in cursor.description or []]


class Tables:
    """Reading and replacing whole tables, or the rows of some keys.

    A large golden table is file-backed (crm_wave/store/files.py): a rebuild begun `as_files` writes
    `<name>__rebuild` as Parquet parts (`replace_table`, `insert_rows`) that `swap_table` publishes,
    and `replace_rows` writes its changed rows; every read goes through the view `<name>`."""

    path: Path

    @property
    def files_root(self) -> Path:
        """The folder of this store's file-backed tables."""
        return files.root_of(self.path)

    def replace_table(self, con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame, *,
                      as_files: bool = False) -> None:
        """Replace table `name` with `frame` (global and share tables are recomputed each pass). `as_files`:
        as Parquet parts under a view (a golden table: crm_wave/store/files.py); for a staging table
        `<name>__rebuild`, the first part of a generation `insert_rows` adds to and `swap_table` publishes."""
        forget_columns(con, name)
        if as_files:
            staging = name if name.endswith(files.STAGING) else f"{name}{files.STAGING}"
            files.start(con, self.files_root, staging, frame)
            if staging != name:
                files.publish(con, self.files_root, staging)
                log_rows(con, name, None)
            return
        if files.backed(name):  # a DuckDB table from here on: no generation begun for it, no view of files in its place
            files.forget_staging(con, self.files_root, name)
            files.drop(con, name)
        with registered(con, "_frame", frame):
            con.execute(f"CREATE OR REPLACE TABLE {ident(name)} AS SELECT * FROM _frame")
        log_rows(con, name, None)

    def read_table(self, con: duckdb.DuckDBPyConnection, name: str) -> pl.DataFrame | None:
        """A whole table as polars, or None if it does not exist yet (or is file-backed and its files are not
        beside this store: `table_columns`)."""
        if files.backed(name) and self.table_columns(con, name) is None:
            return None
        try:
            return con.execute(f"SELECT * FROM main.{ident(name)}").pl()
        except duckdb.CatalogException:  # a binder error: the transaction goes on
            return None

    def head(self, con: duckdb.DuckDBPyConnection, name: str, columns: Sequence[str], n: int) -> pl.DataFrame | None:
        """The first `n` rows of table `name`, just those of `columns` it has; None if it does not exist."""
        have = self.table_columns(con, name)
        if have is None:
            return None
        sel = ", ".join(sql_ident(c) for c in columns if c in have) or "*"
        return con.execute(f"SELECT {sel} FROM {ident(name)} LIMIT {int(n)}").pl()

    def table_columns(self, con: duckdb.DuckDBPyConnection, name: str) -> list[str] | None:
        """Column names of table (or view) `name` in order, or None if it does not exist, or if it is
        file-backed and its files are not beside this store (a copy without them: the next global step
        rebuilds it).

        The golden and share tables' are remembered per connection (each step asks 1-3 times, ~2 ms
        a time): only `replace_table` and `swap_table` change their columns, and they forget them,
        as does a rollback (`connection.forget_columns`). No other process can change them while
        this connection is open: it holds the file."""
        if not logged(name):
            typed = column_types(con, name)
            return None if typed is None else [c for c, _ in typed]
        known = remembered_columns(con)
        if name not in known:  # a golden table is logged: its files are checked once per connection
            typed = None if files.missing(con, self.files_root, name) else column_types(con, name)
            known[name] = None if typed is None else [c for c, _ in typed]
        columns = known[name]
        return None if columns is None else list(columns)

    def read_rows(self, con: duckdb.DuckDBPyConnection, name: str, key: str, values: pl.Series,
                  columns: Sequence[str] | None = None) -> pl.DataFrame:
        """The rows of table `name` whose column `key` is one of `values`."""
        sel = ", ".join(sql_ident(c) for c in columns) if columns else "*"
        with ids_predicate(con, "_rows_keys", values, sql_ident(key)) as (among, params):
            return fetch_frame(con, f"SELECT {sel} FROM {ident(name)} WHERE {among}", params, small=values.len() <= FEW_IDS)

    def replace_rows(self, con: duckdb.DuckDBPyConnection, name: str, key: str, values: pl.Series,
                     frame: pl.DataFrame) -> None:
        """Delete the rows of `name` whose `key` is one of `values`, then insert `frame` (by column name)."""
        if files.is_backed(con, name):
            files.replace_rows(con, name, key, values, frame)
        else:
            with ids_predicate(con, "_rows_keys", values, sql_ident(key)) as (among, params):
                con.execute(f"DELETE FROM {ident(name)} WHERE {among}", params)
            self._insert(con, name, frame)
        if key == "global_id" and (key in frame.columns or not frame.height):  # else rows of any key changed
            log_rows(con, name, pl.concat([values.cast(pl.String), frame[key].cast(pl.String)]) if frame.height else values)
        else:
            log_rows(con, name, None)

    def insert_rows(self, con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
        """Insert `frame` into table `name` (by column name): the next Parquet part of a rebuild begun
        `as_files`."""
        if files.is_backed(con, name):
            files.add(con, self.files_root, name, frame)
            return
        self._insert(con, name, frame)
        if frame.height:
            log_rows(con, name, frame["global_id"] if "global_id" in frame.columns else None)

    def _insert(self, con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
        if 0 < frame.height <= FEW:  # one row as parameters: 6.8 ms against 10 ms registered (67 columns)
            con.execute(f"INSERT INTO {ident(name)} ({', '.join(sql_ident(c) for c in frame.columns)}) "
                        f"VALUES ({', '.join('?' for _ in frame.columns)})", list(frame.row(0)))
        elif frame.height:
            with registered(con, "_frame", frame):
                con.execute(f"INSERT INTO {ident(name)} BY NAME SELECT * FROM _frame")

    def swap_table(self, con: duckdb.DuckDBPyConnection, staging: str, name: str) -> None:
        """Replace table `name` by table `staging` (renamed), in the caller's transaction."""
        forget_columns(con, name, staging)
        if files.backed(name):
            if files.is_backed(con, staging):
                files.publish(con, self.files_root, staging)
                log_rows(con, name, None)
                return
            files.drop(con, name)  # a table stored as files until now: a DuckDB table from here on
        con.execute(f"DROP TABLE IF EXISTS {ident(name)}")
        con.execute(f"ALTER TABLE {ident(staging)} RENAME TO {ident(name)}")
        log_rows(con, name, None)

    def row_ranges(self, con: duckdb.DuckDBPyConnection, name: str, size: int) -> list[Part]:
        """`[lo, hi)` rowid ranges of table `name`, about `size` rows each (for reading it in parts); of a
        file-backed table, its Parquet parts (each as large as a part its rebuild wrote) and its changed rows."""
        if files.is_backed(con, name):
            return list(files.parts(con, name))
        lo, hi = con.execute(f"SELECT coalesce(min(rowid), 0), coalesce(max(rowid), -1) + 1 FROM {ident(name)}").fetchall()[0]
        return [(a, min(a + size, hi)) for a in range(lo, hi, size)] or [(0, 0)]

    def read_range(self, con: duckdb.DuckDBPyConnection, name: str, rows: Part,
                   columns: Sequence[str] | None = None) -> pl.DataFrame:
        """The rows of table `name` with rowid in `[lo, hi)`, or in a part of a file-backed table (just `columns`, if given)."""
        if isinstance(rows, files.Part):
            return files.read_part(con, name, rows, columns)
        sel = ", ".join(sql_ident(c) for c in columns) if columns else "*"
        return con.execute(f"SELECT {sel} FROM {ident(name)} WHERE rowid >= ? AND rowid < ?", list(rows)).pl()
