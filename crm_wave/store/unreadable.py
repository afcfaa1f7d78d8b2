"""Records the global step could not read, as operators see them (`unreadable_records`).

The global step holds such a record (`sync.global_step._hold`): at its newest readable version, or
left out when it never had one. Its row stays until a version of the record the step reads can be
read again (fixed at its source, or deleted there), so the state table, the global asset's check and
ad hoc SQL show it between the passes that read it, not only in the pass that did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb
import polars as pl

from crm_wave.store.connection import ids_predicate

__all__ = ["Unreadable", "list_unreadable", "record_unreadable"]


@dataclass(frozen=True)
class Unreadable:
    """One record the global step holds: which, and what is wrong with it."""

    system: str
    entity: str
    record_id: str
    message: str
    first_seen: datetime


def record_unreadable(con: duckdb.DuckDBPyConnection, entity: str, held: Sequence[tuple[str, str, str]],
                      read: Mapping[str, pl.Series | None], now: datetime) -> None:
    """After a global step of `entity`: `held` its (system, record id, message) of the records it could not
    read; `read`, per system, the records whose current version it read (None: every record, a rebuild).
    Those no longer held are taken off the list (a record only changes there with a new version, which
    the step reads)."""
    if not held and not con.execute("SELECT count(*) FROM unreadable_records WHERE entity = ?", [entity]).fetchall()[0][0]:
        return  # the usual case: nothing listed, nothing to list
    for system, ids in read.items():
        if ids is None:
            con.execute("DELETE FROM unreadable_records WHERE system = ? AND entity = ?", [system, entity])
        elif ids.len():
            with ids_predicate(con, "_unreadable_ids", ids, "record_id") as (among, params):
                con.execute(f"DELETE FROM unreadable_records WHERE system = ? AND entity = ? AND {among}",
                            [system, entity, *params])
    if held:
        con.executemany(
            "INSERT INTO unreadable_records VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (system, entity, record_id) "
            "DO UPDATE SET message = excluded.message, last_seen = excluded.last_seen",
            [[system, entity, rid, message, now, now] for system, rid, message in held])


def list_unreadable(con: duckdb.DuckDBPyConnection, entity: str | None = None) -> list[Unreadable]:
    """The records held (of `entity` when given), the longest held first."""
    rows = con.execute("SELECT system, entity, record_id, message, first_seen FROM unreadable_records "
                       "WHERE ? IS NULL OR entity = ? ORDER BY first_seen, system, record_id", [entity, entity]).fetchall()
    return [Unreadable(*r) for r in rows]
