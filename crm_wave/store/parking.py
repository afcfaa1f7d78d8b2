"""Dead letters parked at once: failures that no retry can mend (Wave locked the record)."""

from __future__ import annotations

import duckdb

__all__ = ["park"]


def park(con: duckdb.DuckDBPyConnection, system: str, entity: str, global_id: str, attempts: int) -> None:
    """Count a dead letter as `attempts` failures, so the push holds it until the record changes
    again or an operator retries it (instead of sending it again every pass)."""
    con.execute("UPDATE dead_letters SET attempts = greatest(attempts, ?) WHERE system = ? AND entity = ? "
                "AND global_id = ?", [attempts, system, entity, global_id])
