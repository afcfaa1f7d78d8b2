"""The conflict queue in the store: what waits for a person, the decisions, and their history.

Plain functions over a DuckDB connection. The global step reads the open and decided items of
the global ids it merges (`read_queue`) and records what its merge found (`reconcile`): still
waiting, newly waiting, applied (both sides now hold the decided value) or superseded (a later
edit or a policy change made the item moot). `decide` records a person's decision and marks the
global id changed, so the next sync's global step merges it again and applies the decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import duckdb
import polars as pl

from crm_wave.logic.decide import DecisionError, decided_value
from crm_wave.logic.merge import QUEUE_SCHEMA, WAIT_SCHEMA
from crm_wave.store.connection import FEW_IDS, fetch_frame, ids_predicate, registered
from crm_wave.store.writes import log_rows

__all__ = ["has_items", "read_queue", "reconcile", "list_items", "decide", "ITEM_COLUMNS", "WRITER"]

#: `changes.writer` of a decision (the global step re-merges that global id).
WRITER = "conflicts"
ITEM_COLUMNS = ("id", "entity", "global_id", "field", "kind", "crm_value", "wave_value", "base_value",
                "crm_modified", "wave_modified", "detected_at", "status", "decision", "value", "decided_by",
                "decided_at", "closed_at")


def has_items(con: duckdb.DuckDBPyConnection, entity: str) -> bool:
    """Whether any item of `entity` is open or decided (what `read_queue` reads)."""
    return bool(con.execute("SELECT 1 FROM conflict_queue WHERE entity = ? AND status IN ('open', 'decided') LIMIT 1",
                            [entity]).fetchall())


def read_queue(con: duckdb.DuckDBPyConnection, entity: str, global_ids: pl.Series) -> pl.DataFrame:
    """Open and decided items of these global ids, as the merge reads them (`QUEUE_SCHEMA`)."""
    if global_ids.len() == 0:
        return pl.DataFrame(schema=QUEUE_SCHEMA)
    with ids_predicate(con, "_queue_ids", global_ids, "global_id") as (among, params):
        frame = fetch_frame(
            con, "SELECT global_id, field, kind, crm_value, wave_value, status = 'decided' AS decided, value "
            f"FROM conflict_queue WHERE entity = ? AND status IN ('open', 'decided') AND {among} ORDER BY id",
            [entity, *params], small=global_ids.len() <= FEW_IDS)
    return frame.cast(QUEUE_SCHEMA) if frame.height else pl.DataFrame(schema=QUEUE_SCHEMA)


def reconcile(con: duckdb.DuckDBPyConnection, entity: str, waits: pl.DataFrame, fates: pl.DataFrame,
              now: datetime) -> int:
    """Close the items the merge found applied or superseded; add the new waits; return how many are new."""
    closing = fates.filter(pl.col("status").is_in(["applied", "superseded"]))
    if closing.height:
        with registered(con, "_queue_fates", closing):
            con.execute(
                "UPDATE conflict_queue q SET status = f.status, closed_at = ? FROM _queue_fates f "
                "WHERE q.entity = ? AND q.status IN ('open', 'decided') AND q.global_id = f.global_id "
                "AND q.field = f.field", [now, entity])
        log_rows(con, "conflict_queue", closing["global_id"])
    if waits.height == 0:
        return 0
    with registered(con, "_queue_waits", waits.cast(WAIT_SCHEMA)):
        ((n,),) = con.execute(
            "INSERT INTO conflict_queue (entity, global_id, field, kind, crm_value, wave_value, base_value, "
            "crm_modified, wave_modified, detected_at, status) "
            "SELECT ?, w.global_id, w.field, w.kind, w.crm_value, w.wave_value, w.base_value, w.crm_modified, "
            "w.wave_modified, ?, 'open' FROM _queue_waits w WHERE NOT EXISTS (SELECT 1 FROM conflict_queue q "
            "WHERE q.entity = ? AND q.global_id = w.global_id AND q.field = w.field AND q.status IN ('open', 'decided'))",
            [entity, now, entity]).fetchall()
    log_rows(con, "conflict_queue", waits["global_id"])
    return int(n)


def list_items(con: duckdb.DuckDBPyConnection, *, statuses: Sequence[str] = ("open",),
               ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Queue items with these statuses (or these ids), oldest first."""
    where, params = "status IN (SELECT unnest(?))", [list[Any](statuses)]
    if ids is not None:
        where, params = "id IN (SELECT unnest(?))", [list[Any](ids)]
    rows = con.execute(f"SELECT {', '.join(ITEM_COLUMNS)} FROM conflict_queue WHERE {where} ORDER BY id", params).fetchall()
    return [dict(zip(ITEM_COLUMNS, r)) for r in rows]


def decide(store: Any, con: duckdb.DuckDBPyConnection, items: list[dict[str, Any]], take: str, value: str | None,
           who: str, now: datetime) -> list[dict[str, Any]]:
    """Record the decision on open (or already decided, not yet applied) items; the next sync applies it.

    Raises `DecisionError` before writing anything when one item cannot take the decision."""
    decided = []
    for item in items:
        if item["status"] not in ("open", "decided"):
            raise DecisionError(f"conflict {item['id']} is {item['status']}; only open conflicts can be decided "
                                "(`crm-wave conflicts` lists them)")
        decision, cell = decided_value(item, take, value)
        decided.append({**item, "decision": decision, "value": cell})
    for item in decided:
        con.execute("UPDATE conflict_queue SET status = 'decided', decision = ?, value = ?, decided_by = ?, "
                    "decided_at = ? WHERE id = ?", [item["decision"], item["value"], who, now, item["id"]])
        log_rows(con, "conflict_queue", [item["global_id"]])
        store.log_changes(con, item["entity"], [item["global_id"]], "agreed", writer=WRITER)
    return decided
