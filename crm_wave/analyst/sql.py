"""Ad hoc SQL on a snapshot, read-only, formatted as an aligned table, CSV or JSON."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

__all__ = ["FORMATS", "ReadOnlyError", "run_sql"]

FORMATS = ("table", "csv", "json")


class ReadOnlyError(RuntimeError):
    """The query tried to change the snapshot (or write elsewhere); snapshots are read-only."""


def _plain(value: Any) -> Any:
    """A JSON-ready value: dates, times, decimals and ids as strings, nested values converted."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (Decimal, uuid.UUID, dt.timedelta)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _text(value: Any) -> str | None:
    """One cell as text (None stays None): booleans lower-case, nested values as JSON."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(_plain(value), ensure_ascii=False)
    plain = _plain(value)
    return plain if isinstance(plain, str) else str(plain)


def _table(columns: list[str], types: list[str], rows: list[tuple[Any, ...]]) -> str:
    numeric = [t.split("(")[0] in {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                                   "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL"} for t in types]
    cells = [["NULL" if (s := _text(v)) is None else s.replace("\n", "\\n") for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]

    def line(values: list[str], align: bool) -> str:
        return " | ".join(v.rjust(w) if align and numeric[i] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))).rstrip()
    out = [line(columns, False), "-+-".join("-" * w for w in widths)]
    out += [line(r, True) for r in cells]
    out.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(out) + "\n"


def _csv(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if (s := _text(v)) is None else s for v in row])
    return buf.getvalue()


def _json(columns: list[str], types: list[str], rows: list[tuple[Any, ...]]) -> str:
    out = []
    for row in rows:
        obj = {}
        for col, typ, value in zip(columns, types, row):
            if typ == "JSON" and isinstance(value, str):  # a JSON column: its value, not a string of it
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            obj[col] = _plain(value)
        out.append(obj)
    return json.dumps(out, ensure_ascii=False, indent=2) + "\n"


#: Statements that only read. COPY, EXPORT, ATTACH, INSTALL/LOAD and every write are refused.
_READS = frozenset({"SELECT", "EXPLAIN", "PRAGMA", "CALL", "SET", "VARIABLE_SET"})
_OTHER_FILES = frozenset({"COPY", "COPY_DATABASE", "EXPORT", "ATTACH", "DETACH", "LOAD", "EXTENSION"})


def _open(path: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the snapshot attached read-only as its default database, allowed to
    read the snapshot's own Parquet segments and no other file."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    try:
        with duckdb.connect(str(path), read_only=True) as probe:  # the segments its views read
            try:
                files = [r[0] for r in probe.execute("SELECT path FROM snapshot_files").fetchall()]
            except duckdb.CatalogException:  # a copy of a store without golden Parquet parts reads no file
                files = []
        missing = [f for f in files if not Path(f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"snapshot {path.name} reads {len(missing)} segment file(s) that are gone, e.g. {missing[0]}: the "
                "snapshots folder was moved, or the snapshot was pruned; query a newer snapshot")
        if files:
            con.execute("SET allowed_paths = ?", [files])
        quoted = "'" + str(path).replace("'", "''") + "'"  # ATTACH takes no parameters
        con.execute(f"ATTACH {quoted} AS snapshot (READ_ONLY)")
        con.execute("USE snapshot")
        con.execute("SET enable_external_access = false")
    except BaseException:
        con.close()
        raise
    return con


def _check_reads_only(con: duckdb.DuckDBPyConnection, path: Path, query: str) -> None:
    """ReadOnlyError unless every statement of `query` only reads."""
    for statement in con.extract_statements(query):
        kind = statement.type.name
        if kind in _OTHER_FILES:
            raise ReadOnlyError(f"queries on snapshot {path.name} may not touch other files: {kind} was refused")
        if kind not in _READS:
            raise ReadOnlyError(f"snapshot {path.name} is read-only; the statement was refused: {kind}")


def run_sql(path: Path, query: str, *, fmt: str = "table") -> str:
    """Run `query` on the snapshot at `path` through a read-only connection; return it formatted.

    `fmt`: "table" (aligned text with a header), "csv" (with a header) or "json" (a list of
    objects; dates, times and decimals as strings, JSON columns as values). Statements that
    would write (to the snapshot, or to other files: ATTACH, COPY TO) raise `ReadOnlyError`.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no snapshot at {path}")
    con = _open(path)
    try:
        try:
            _check_reads_only(con, path, query)
            cur = con.execute(query)
        except (duckdb.InvalidInputException, duckdb.PermissionException) as exc:
            if isinstance(exc, duckdb.PermissionException):
                raise ReadOnlyError(f"queries on snapshot {path.name} may not touch other files: {exc}") from exc
            if "read-only" in str(exc):
                raise ReadOnlyError(f"snapshot {path.name} is read-only; the statement was refused: {exc}") from exc
            raise
        if cur.description is None:
            return ""
        columns = [d[0] for d in cur.description]
        types = [str(d[1]) for d in cur.description]
        rows = cur.fetchall()
    finally:
        con.close()
    if fmt == "csv":
        return _csv(columns, rows)
    if fmt == "json":
        return _json(columns, types, rows)
    return _table(columns, types, rows)
