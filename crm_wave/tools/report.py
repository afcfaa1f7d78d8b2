"""The sync's state in numbers, for the demo, the CLI and tests."""

from __future__ import annotations

from typing import Any

from crm_wave.store.db import Store
from crm_wave.sync.names import ENTITIES, share_table

__all__ = ["state_summary", "format_summary"]


def state_summary(store: Store) -> dict[str, dict[str, Any]]:
    """Per entity: linked pairs, CRM-only, Wave-only, conflicts, waiting, pending deletes, dead letters, and records
    the sync cannot read (held: `crm_wave.store.unreadable`)."""
    out: dict[str, dict[str, Any]] = {}
    with store.connect() as con:
        for entity in ENTITIES:
            linked, crm_only, wave_only = con.execute(
                "SELECT count(*) FILTER (crm_id IS NOT NULL AND wave_id IS NOT NULL), "
                "count(*) FILTER (wave_id IS NULL), count(*) FILTER (crm_id IS NULL) FROM links WHERE entity = ?",
                [entity],
            ).fetchall()[0]
            row = {"linked": linked, "only_in_crm": crm_only, "only_in_wave": wave_only}
            row["conflicts"] = con.execute("SELECT count(*) FROM conflicts WHERE entity = ?", [entity]).fetchall()[0][0]
            row["dead_letters"] = con.execute("SELECT count(*) FROM dead_letters WHERE entity = ?", [entity]).fetchall()[0][0]
            row["unreadable"] = con.execute("SELECT count(*) FROM unreadable_records WHERE entity = ?",
                                            [entity]).fetchall()[0][0]
            waiting = deletes = 0
            for target in ("crm", "wave"):
                frame = store.read_table(con, share_table(target, entity))
                if frame is not None:
                    waiting += frame.filter(frame["op"] == "wait").height
                    deletes += frame.filter(frame["op"] == "delete").height
            row["waiting"] = waiting
            row["pending_deletes"] = deletes
            out[entity] = row
    return out


def format_summary(summary: dict[str, dict[str, Any]], writes: dict[str, int] | None = None) -> str:
    """A plain-text table of `state_summary` (plus created/updated counts when given)."""
    cols = ["linked", "only_in_crm", "only_in_wave", "conflicts", "waiting", "pending_deletes", "dead_letters", "unreadable"]
    head = f"{'entity':<10}" + "".join(f"{c:>16}" for c in cols)
    lines = [head, "-" * len(head)]
    for entity, row in summary.items():
        lines.append(f"{entity:<10}" + "".join(f"{row[c]:>16}" for c in cols))
    if writes:
        lines.append("")
        lines.append("written: " + ", ".join(f"{k} {v}" for k, v in writes.items()))
    return "\n".join(lines)
