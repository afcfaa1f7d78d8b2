"""Self-explaining views for analysts, created inside a snapshot file (never the live one).

The SQL lives in `views.sql`: one object per `-- view: <name>` block. A block names the
tables it reads as `{table}`; a table the snapshot does not have yet (taken before the
first pass) is replaced by an empty stand-in with the same columns and types, so every
view exists in every snapshot and simply returns no rows until the sync has written it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from pathlib import Path

import duckdb

from crm_wave.mapping.canonical import canonical_fields
from crm_wave.mapping.flows import ENTITIES
from crm_wave.store.connection import schema_sql
from crm_wave.store.datasets import dataset_sql
from crm_wave.store.tables import column_types
from crm_wave.sync.names import dataset, global_table, share_table

__all__ = ["VIEW_NAMES", "create_views", "golden_columns", "views_digest"]

log = logging.getLogger(__name__)

_VIEWS_SQL = Path(__file__).with_name("views.sql")
_STORE_SQL = Path(__file__).parent.parent / "store"
_BLOCK = re.compile(r"^-- view: ([a-z_]+)[ \t]*$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{(golden:)?([a-z_]+)\}")
_SHARE_COLUMNS = ("global_id", "op", "target_id", "source_id", "changes", "before", "reason")
_LINK_COLUMNS = ("global_id", "crm_id", "wave_id", "how", "crm_state", "wave_state")
# Bookkeeping columns of a global table that are not golden values.
_NOT_GOLDEN = frozenset({"has_base", "crm_deleted", "wave_deleted", "crm_modified", "wave_modified"})


def _blocks() -> list[tuple[str, str]]:
    """`(name, sql)` of every object in views.sql, in file order, then the views built from the mapping."""
    text = _VIEWS_SQL.read_text()
    marks = list(_BLOCK.finditer(text))
    return [(m.group(1), text[m.end(): nxt.start() if nxt else len(text)].strip())
            for m, nxt in zip(marks, [*marks[1:], None])] + [("record_history", _record_history_sql())]


def _record_history_sql() -> str:
    """`record_history`: every collected version of every record of both systems, under its global id,
    with the field values under their canonical names (`fields->>'Phone'`, whichever system it came from).

    Built from the mapping (crm_wave/mapping/flows.py), so a new field appears here by itself."""
    parts = []
    for entity in ENTITIES:
        for system in ("crm", "wave"):
            name = dataset(system, entity)
            pairs = []
            for f in canonical_fields(entity).values():
                path = f.name if system == "crm" else f.wave
                arrow = "->" if f.kind == "lines" else "->>"
                pairs.append(f"'{f.name}', d.body{arrow}'$.{path}'")
            parts.append(
                f"SELECT '{entity}' AS entity, coalesce(l.global_id, '{name.replace('_', '-')}:' || d._source_id) "
                f"AS global_id, '{system}' AS system, d._source_id AS source_id, d._seq AS seq, d._deleted AS deleted, "
                f"d._ts AS valid_from, lead(d._ts) OVER (PARTITION BY d._id ORDER BY d._seq) AS valid_to, "
                f"try_cast(d._modified AS TIMESTAMP) AS modified_at, json_object({', '.join(pairs)}) AS fields "
                f"FROM {{{name}}} AS d LEFT JOIN {{links}} AS l ON l.entity = '{entity}' AND l.{system}_id = d._source_id")
    return "CREATE OR REPLACE VIEW record_history AS\n" + "\nUNION ALL ".join(parts) + ";"


#: Every view (and the `entity_as_of` table macro) a snapshot gets.
VIEW_NAMES: tuple[str, ...] = tuple(name for name, _ in _blocks())


@functools.cache
def views_digest() -> str:
    """A digest of what `create_views` makes the analyst views from, besides the columns of the tables they
    read: their SQL (views.sql and the mapping's `record_history`), the mapping's field kinds (the golden
    columns' types), the store's schemas (the empty stand-ins) and this module (how it renders them). A
    database whose tables have the columns of another's, at the same digest, gets the same analyst views
    (crm_wave/analyst/segments.py, `shape`)."""
    kinds = {e: {n: f.kind for n, f in canonical_fields(e).items()} for e in ENTITIES}
    sources = [(_STORE_SQL / f).read_text() for f in ("schema.sql", "datasets.sql")]
    try:
        sources.append(Path(__file__).read_text())
    except OSError:  # an install without its sources: the rest still tells releases apart
        pass
    return hashlib.sha1(json.dumps([_blocks(), kinds, sources]).encode()).hexdigest()


@functools.cache
def _standin_columns() -> dict[str, tuple[tuple[str, str], ...]]:
    """`table -> ((column, type), ...)` of every table the views read, as the sync creates them."""
    out: dict[str, tuple[tuple[str, str], ...]] = {}
    with duckdb.connect() as mem:
        mem.execute(schema_sql(mem))
        for entity in ENTITIES:
            for system in ("crm", "wave"):
                mem.execute(dataset_sql(mem, dataset(system, entity)))
        rows = mem.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position"
        ).fetchall()
    for table, column, dtype in rows:
        out[table] = (*out.get(table, ()), (column, dtype))
    for entity in ENTITIES:
        fields = [*canonical_fields(entity), *(["Type"] if entity == "customer" else [])]
        out[global_table(entity)] = tuple((c, "VARCHAR") for c in (*_LINK_COLUMNS, *fields))
        for system in ("crm", "wave"):
            out[share_table(system, entity)] = tuple((c, "VARCHAR") for c in _SHARE_COLUMNS)
    return out


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _standin(table: str) -> str:
    """An empty relation with the columns and types of `table`."""
    cols = _standin_columns().get(table)
    if cols is None:
        raise KeyError(f"views.sql reads {table!r}, which has no known columns for an empty stand-in")
    select = ", ".join(f"CAST(NULL AS {dtype}) AS {_quote(col)}" for col, dtype in cols)
    return f"(SELECT {select} WHERE false)"


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """Columns of `table` in order, from a statement's description (`information_schema` builds every
    table's columns first: 15 such reads were a third of a small tenant's snapshot, ~0.1 CPU-s)."""
    return [c for c, _ in column_types(con, table) or []]


def golden_columns(columns: list[str]) -> list[str]:
    """The golden columns of a global table's columns: ids, link and states first, then the field values."""
    keep = [c for c in columns if not c.endswith(("__crm", "__wave", "__base")) and c not in _NOT_GOLDEN]
    first = [c for c in _LINK_COLUMNS if c in keep]
    return first + [c for c in keep if c not in first]


#: SQL type of a golden value by its field kind (cells are text; the views give them their types).
_KIND_TYPES = {"decimal2": "DECIMAL(18, 2)", "decimal5": "DECIMAL(18, 5)", "decimal8": "DECIMAL(18, 8)",
               "date": "DATE", "bool": "BOOLEAN", "lines": "JSON"}


def _typed(table: str, column: str) -> str:
    """`column` of global table `table` as a select item of its field's type (text stays VARCHAR)."""
    entity = table.removeprefix("global_")
    field = canonical_fields(entity).get(column) if entity in ENTITIES else None
    sql_type = _KIND_TYPES.get(field.kind) if field is not None else None
    if sql_type is None:
        return _quote(column)
    return f"try_cast({_quote(column)} AS {sql_type}) AS {_quote(column)}"


def _render(con: duckdb.DuckDBPyConnection, sql: str, tables: set[str], stand_in: set[str]) -> str:
    def sub(m: re.Match[str]) -> str:
        table = m.group(2)
        if m.group(1):  # {golden:table}
            cols = golden_columns(_columns(con, table)) if table not in stand_in else [c for c, _ in _standin_columns()[table]]
            return ", ".join(_typed(table, c) for c in cols)
        return _standin(table) if table in stand_in else _quote(table)

    return _PLACEHOLDER.sub(sub, sql)


def create_views(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Create every analyst view in the database of `con` (a snapshot opened read-write).

    Returns `view -> tables replaced by empty stand-ins` (an empty list: the view reads real
    data). A view whose tables exist but cannot be created over them (a table of an older,
    different shape) falls back to stand-ins for all its tables, with a warning.
    """
    tables = {r[0] for r in con.execute(  # a snapshot's tables are views over its Parquet segments
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() "
        "AND table_schema = 'main' AND table_type IN ('BASE TABLE', 'VIEW')").fetchall()}
    created: dict[str, list[str]] = {}
    for name, sql in _blocks():
        reads = sorted({m.group(2) for m in _PLACEHOLDER.finditer(sql)})
        missing = {t for t in reads if t not in tables}
        try:
            con.execute(_render(con, sql, tables, missing))
        except duckdb.Error as exc:
            if missing == set(reads):
                raise
            log.warning("analyst view %s: cannot be built over %s (%s); created empty", name, ", ".join(reads), exc)
            missing = set(reads)
            con.execute(_render(con, sql, tables, missing))
        created[name] = sorted(missing)
    return created
