"""The DuckDB file of one sync: every write goes through `Store`.

`Store` is the file (`connection.Connection`: locks, sessions, transactions) with one part
per concept, each in its own module:

| part | module | tables |
|---|---|---|
| `Datasets` | `datasets.py` | `crm_customer`, `wave_invoice`, ... (append-only versions), `cursors` |
| `Links` (with `ChangeLog`) | `links.py`, `changes.py` | `links`, `agreed`; `changes`, `step_marks` |
| `Tables` | `tables.py` | golden and share tables, rewritten by the global and share steps |
| `Outcomes` | `outcomes.py` | `conflicts`, `intents`, `dead_letters`, `sync_log` |
| (logs the writes of golden, share, `links`, `agreed`, `conflict_queue`) | `writes.py` | `row_writes`, `row_writes_state` (for snapshots) |

Each method takes the open connection (`with store.connect() as con`) as its first argument,
so the caller decides what one transaction holds. The schema is in `schema.sql` and
`datasets.sql`.
"""

from __future__ import annotations

from crm_wave.store.connection import Connection
from crm_wave.store.datasets import VERSION_SCHEMA, Datasets, Version, body_text
from crm_wave.store.links import Links
from crm_wave.store.outcomes import Outcomes
from crm_wave.store.tables import Tables

__all__ = ["Store", "Version", "VERSION_SCHEMA", "body_text"]


class Store(Connection, Datasets, Links, Tables, Outcomes):
    """The sync's DuckDB database at `path`."""
