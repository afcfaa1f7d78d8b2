"""What the sync decided and did, per record: conflicts, create intents, dead letters, the sync log."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal

import duckdb
import polars as pl

from crm_wave.store.connection import FEW, ids_predicate, registered

__all__ = ["Outcomes", "CONFLICT_SCHEMA"]

#: A recorded conflict: the two sides' values, the base they were merged against, who won and why.
CONFLICT_SCHEMA = pl.Schema({"global_id": pl.String, "field": pl.String, "crm_value": pl.String, "wave_value": pl.String,
                   "base_value": pl.String, "winner": pl.String, "reason": pl.String})
_LOG_SCHEMA = pl.Schema({"logged_at": pl.Datetime("us"), **{c: pl.String() for c in (
    "run_id", "system", "entity", "global_id", "record_id", "op", "changes", "before", "outcome")}})


class Outcomes:
    """The `conflicts`, `intents`, `dead_letters` and `sync_log` tables."""

    def record_conflicts(self, con: duckdb.DuckDBPyConnection, entity: str,
                         rows: pl.DataFrame | Iterable[dict[str, Any]], now: datetime) -> int:
        """Append conflicts (rows or a frame of `CONFLICT_SCHEMA`) not already recorded with the same
        values; return how many are new."""
        frame = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(list(rows), schema=CONFLICT_SCHEMA)
        if frame.height == 0:
            return 0
        frame = frame.select(list(CONFLICT_SCHEMA)).cast(CONFLICT_SCHEMA).unique(
            ["global_id", "field", "crm_value", "wave_value"], keep="first", maintain_order=True)
        with registered(con, "_conflicts_in", frame):
            ((n,),) = con.execute(
                "INSERT INTO conflicts SELECT ?, n.global_id, n.field, n.crm_value, n.wave_value, n.base_value, "
                "n.winner, n.reason, ? FROM _conflicts_in n WHERE NOT EXISTS (SELECT 1 FROM conflicts c "
                "WHERE c.entity = ? AND c.global_id = n.global_id AND c.field = n.field "
                "AND c.crm_value IS NOT DISTINCT FROM n.crm_value AND c.wave_value IS NOT DISTINCT FROM n.wave_value)",
                [entity, now, entity]).fetchall()
        return int(n)

    # ---- intents: creates whose outcome is not known yet -----------------------------
    def add_intents(self, con: duckdb.DuckDBPyConnection, system: str, entity: str,
                    intents: Sequence[tuple[str, str, dict[str, Any]]], now: datetime) -> None:
        """Record that creates `(global_id, key, payload)` are about to be sent (a pending one is kept)."""
        if not intents:
            return
        frame = pl.DataFrame([(g, k, json.dumps(p, sort_keys=True)) for g, k, p in intents],
                             schema={"global_id": pl.String, "key": pl.String, "payload": pl.String}, orient="row")
        with registered(con, "_intents_in", frame):
            con.execute("INSERT INTO intents SELECT ?, ?, global_id, key, payload, ? FROM _intents_in ON CONFLICT DO NOTHING",
                        [system, entity, now])

    def pending_intents(self, con: duckdb.DuckDBPyConnection, system: str, entity: str) -> dict[str, tuple[str, dict[str, Any], datetime]]:
        """`global_id -> (key, payload, created_at)` of creates whose outcome is unknown."""
        rows = con.execute(
            "SELECT global_id, key, payload::VARCHAR, created_at FROM intents WHERE system = ? AND entity = ?",
            [system, entity],
        ).fetchall()
        return {g: (k, json.loads(p), t) for g, k, p, t in rows}

    def clear(self, con: duckdb.DuckDBPyConnection, table: Literal["intents", "dead_letters"], system: str, entity: str,
              global_ids: Sequence[str]) -> None:
        """Forget the intents (outcome known: linked or failed) or dead letters (a later write
        succeeded) of these global ids."""
        if table not in ("intents", "dead_letters"):
            raise ValueError(f"not an outcome table: {table!r}")
        if not global_ids:
            return
        with ids_predicate(con, "_clear_ids", list(global_ids), "global_id") as (among, params):
            con.execute(f"DELETE FROM {table} WHERE system = ? AND entity = ? AND {among}", [system, entity, *params])

    # ---- dead letters: records a system refused --------------------------------------
    def dead_letter(self, con: duckdb.DuckDBPyConnection, *, system: str, entity: str, global_id: str,
                    record_id: str | None, op: str, field: str | None, message: str, now: datetime,
                    changes_hash: str | None = None) -> None:
        """Record (or count again) a per-entity failure; a different version restarts the count."""
        con.execute(
            "INSERT INTO dead_letters VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?) ON CONFLICT (system, entity, global_id) "
            "DO UPDATE SET record_id = excluded.record_id, op = excluded.op, field = excluded.field, "
            "message = excluded.message, last_seen = excluded.last_seen, changes_hash = excluded.changes_hash, "
            "attempts = CASE WHEN dead_letters.changes_hash IS NOT DISTINCT FROM excluded.changes_hash "
            "THEN dead_letters.attempts + 1 ELSE 1 END",
            [system, entity, global_id, record_id, op, field, message[:2000], now, now, changes_hash],
        )

    def dead_letters(self, con: duckdb.DuckDBPyConnection, system: str, entity: str) -> dict[str, tuple[str | None, int]]:
        """`global_id -> (changes_hash, attempts)` of one target's dead letters."""
        rows = con.execute(
            "SELECT global_id, changes_hash, attempts FROM dead_letters WHERE system = ? AND entity = ?", [system, entity]
        ).fetchall()
        return {g: (h, a) for g, h, a in rows}

    # ---- what the sync itself wrote to Wave ------------------------------------------------
    def record_own_writes(self, con: duckdb.DuckDBPyConnection, dataset: str, written: Sequence[tuple[str, str]],
                          at: datetime) -> None:
        """Remember `(source id, modifiedAt)` that Wave answered for this sync's writes to `dataset`, answered by
        `at` (naive UTC); rows older than an hour go."""
        if not written:
            return
        con.execute("DELETE FROM own_writes WHERE dataset = ? AND written_at < ? - INTERVAL 1 HOUR", [dataset, at])
        con.execute("INSERT INTO own_writes SELECT ?, unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), ?",
                    [dataset, [w[0] for w in written], [w[1] for w in written], at])

    def own_writes(self, con: duckdb.DuckDBPyConnection, dataset: str, written: Sequence[tuple[str, str]],
                   before: datetime) -> bool:
        """Whether every `(source id, modifiedAt)` of `written` is one of this sync's own writes to `dataset`
        whose answer came before `before` (naive UTC)."""
        if not written:
            return True
        ((n,),) = con.execute(
            "SELECT count(DISTINCT (w.i, w.m)) FROM (SELECT unnest(?::VARCHAR[]) AS i, unnest(?::VARCHAR[]) AS m) w "
            "JOIN own_writes o ON o.dataset = ? AND o.source_id = w.i AND o.modified = w.m AND o.written_at < ?",
            [[w[0] for w in written], [w[1] for w in written], dataset, before]).fetchall()
        return n == len(set(written))

    # ---- the sync log ----------------------------------------------------------------
    def log(self, con: duckdb.DuckDBPyConnection, rows: Iterable[tuple[Any, ...]]) -> None:
        """Append sync-log rows `(logged_at, run_id, system, entity, global_id, record_id, op, changes, before, outcome)`."""
        rows = [tuple(json.dumps(x, sort_keys=True, default=str) if isinstance(x, (dict, list)) else x for x in r) for r in rows]
        if len(rows) <= FEW:
            for row in rows:
                con.execute("INSERT INTO sync_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", list(row))
            return
        with registered(con, "_log_in", pl.DataFrame(rows, schema=_LOG_SCHEMA, orient="row")):
            con.execute("INSERT INTO sync_log SELECT * FROM _log_in")
