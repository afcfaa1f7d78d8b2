"""Dead letters as operators see them: listed per target and type, and retried on request."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from crm_wave.store.tables import column_types

__all__ = ["DeadLetter", "list_dead_letters", "retry_dead_letters"]


@dataclass(frozen=True)
class DeadLetter:
    """One record a system refused: which, what, and how often."""

    system: str
    entity: str
    global_id: str
    record_id: str | None
    op: str
    field: str | None
    message: str
    attempts: int

    def describe(self) -> str:
        """One line: the record, the field and the system's message."""
        return (f"{self.global_id} (record {self.record_id or 'not created yet'}) {self.op}: "
                f"{self.field or 'record'}: {self.message} [attempts {self.attempts}]")


def _exists(con: duckdb.DuckDBPyConnection) -> bool:
    return column_types(con, "dead_letters") is not None


def list_dead_letters(con: duckdb.DuckDBPyConnection, system: str | None = None,
                      entity: str | None = None) -> list[DeadLetter]:
    """The dead letters (of one target `system` and `entity` when given), oldest failure first."""
    if not _exists(con):
        return []
    rows = con.execute(
        "SELECT system, entity, global_id, record_id, op, field, message, attempts FROM dead_letters "
        "WHERE (? IS NULL OR system = ?) AND (? IS NULL OR entity = ?) ORDER BY first_seen, global_id",
        [system, system, entity, entity]).fetchall()
    return [DeadLetter(*r) for r in rows]


def retry_dead_letters(con: duckdb.DuckDBPyConnection, global_ids: list[str] | None) -> tuple[int, list[str]]:
    """Reset the attempts of the named dead letters (None: all) so the next sync sends them again.

    Returns (how many were reset, the named ids that are no dead letter). Nothing is reset when
    any named id is unknown."""
    if not _exists(con):
        return 0, list(global_ids or [])
    if global_ids is not None:
        known = {r[0] for r in con.execute("SELECT DISTINCT global_id FROM dead_letters "
                                           "WHERE global_id IN (SELECT unnest(?))", [global_ids]).fetchall()}
        unknown = [g for g in global_ids if g not in known]
        if unknown:
            return 0, unknown
    where, params = ("", []) if global_ids is None else ("WHERE global_id IN (SELECT unnest(?))", [global_ids])
    (n,) = con.execute(f"UPDATE dead_letters SET attempts = 0 {where}", params).fetchall()[0]
    return n, []
