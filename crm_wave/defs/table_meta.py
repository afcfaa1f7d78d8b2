"""What the UI shows about the DuckDB tables behind the assets: table name, column schema, size, owners.

Materializations report the table's size as `dagster/row_count` (records held, not what the run
wrote: per-run numbers keep their own names), its columns as `dagster/column_schema` and the
DuckDB table name as `dagster/table_name`. Every asset names its owners.
"""

import dagster as dg

from crm_wave.store import Store
from crm_wave.store.tables import column_types

#: Who answers for the sync's assets (shown on every asset page and filterable in the catalog).
OWNERS = ["team:operations"]


def _schema(columns: list[tuple[str, str]]) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, dtype) for name, dtype in columns])


def table_metadata(store: Store, table: str, *, count_from: str | None = None) -> dict:
    """`dagster/table_name`, `dagster/column_schema` and `dagster/row_count` of `table` in `store`.

    `count_from`: a FROM clause counting what the table holds when that is not its row count
    (a collected dataset holds versions; its records are the current, not deleted ones)."""
    with store.connect() as con:
        columns = column_types(con, table)
        if not columns:
            return {"dagster/table_name": table}
        (rows,) = con.execute(f"SELECT count(*) FROM {count_from or chr(34) + table + chr(34)}").fetchall()[0]
    return {"dagster/table_name": table, "dagster/column_schema": _schema(columns), "dagster/row_count": rows}


def recorded_conflicts(store: Store, entity: str) -> int:
    """Conflicts recorded for `entity` so far (what `crm-wave sql` shows in `field_conflicts`)."""
    with store.connect() as con:
        if column_types(con, "conflicts") is None:
            return 0
        return con.execute("SELECT count(*) FROM conflicts WHERE entity = ?", [entity]).fetchall()[0][0]
