"""Analysts' side of the sync: read-only DuckDB snapshots with self-explaining views.

Analysts never open the live database: `publish_snapshot` copies it between transactions
(under the store's lock, briefly) into `crm_wave-<UTC time>.duckdb`, adds the views of
`views.sql` (`crm_customers_now`, `golden_orders`, `entity_history`, `entity_as_of(ts)`,
`field_conflicts`, `waiting_records`, ...) and renames it into place atomically.
`latest_snapshot` finds the newest (or the one valid at a time) and `run_sql` queries it
read-only as a table, CSV or JSON.
"""

from crm_wave.analyst.snapshot import latest_snapshot, list_snapshots, publish_snapshot
from crm_wave.analyst.sql import ReadOnlyError, run_sql
from crm_wave.analyst.views import VIEW_NAMES, create_views

__all__ = [
    "VIEW_NAMES",
    "ReadOnlyError",
    "create_views",
    "latest_snapshot",
    "list_snapshots",
    "publish_snapshot",
    "run_sql",
]
