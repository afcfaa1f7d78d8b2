"""Circuit breaker: a push that would change or delete far more records than usual waits for a person.

A share table whose overwrites plus deletes exceed `share` of the target's live records
*and* `minimum` records (default: over 20% and over 50) is held until an operator
confirms exactly that content (`crm-wave confirm`). An overwrite is an update that
changes or clears a value the target holds; updates that only fill empty fields (Wave's
default currency flowing back to the CRM after a first load, say) and creates do not
count: they destroy nothing, and duplicates are prevented by links and intents.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from crm_wave.store.db import Store
from crm_wave.sync.names import dataset, share_table

__all__ = ["BreakerPolicy", "BreakerState", "CircuitOpen", "breaker_state", "confirm"]


@dataclass(frozen=True)
class BreakerPolicy:
    """When a push is held: over `share` of the target's records and over `minimum` records."""

    share: float = 0.2
    minimum: int = 50


@dataclass(frozen=True)
class BreakerState:
    """The breaker's view of one share table."""

    system: str
    entity: str
    changes: int
    target_size: int | None  # None: not counted (`breaker_state` given the share, too few changes to trip)
    work_hash: str
    tripped: bool
    confirmed: bool

    @property
    def open(self) -> bool:
        """True when the push must wait for a confirmation."""
        return self.tripped and not self.confirmed

    def describe(self) -> str:
        """One line for logs, checks and the CLI."""
        pct = 100.0 * self.changes / max(self.target_size or 0, 1)
        status = "OPEN (run `crm-wave confirm`)" if self.open else ("confirmed" if self.confirmed else "closed")
        return (f"{share_table(self.system, self.entity)}: {self.changes} overwrites/deletes against "
                f"{self.target_size} records ({pct:.0f}%): {status}")


class CircuitOpen(RuntimeError):
    """The push was held by the circuit breaker."""

    def __init__(self, state: BreakerState) -> None:
        super().__init__(state.describe())
        self.state = state


def _overwrites(before: str) -> bool:
    return any(v not in (None, "", "[]") for v in json.loads(before or "{}").values())


def breaker_state(store: Store, system: str, entity: str, policy: BreakerPolicy = BreakerPolicy(), *,
                  share: pl.DataFrame | None = None) -> BreakerState:
    """Evaluate the breaker for the current share table of (`system`, `entity`).

    Given the share table as the push read it (`share`), only what decides whether the push is held
    is read: the target's size (a count of every current record) and the confirmations only when the
    risky changes are over `policy.minimum` (else `target_size` is None: the breaker cannot trip).
    """
    full = share is None
    with store.connect() as con:
        if share is None:
            share = store.read_table(con, share_table(system, entity))
        risky = share.filter(
            (pl.col("op") == "delete")
            | ((pl.col("op") == "update") & pl.col("before").map_elements(_overwrites, return_dtype=pl.Boolean))
        ) if share is not None and share.height else pl.DataFrame(schema={"global_id": pl.String, "op": pl.String})
        size: int | None = None
        if full or risky.height > policy.minimum:
            store.ensure_dataset(con, dataset(system, entity))
            size = int(con.execute(f"SELECT count(*) FROM {dataset(system, entity)}_current WHERE NOT _deleted").fetchall()[0][0])
        work_hash = hashlib.sha1(
            "\n".join(sorted(f"{g}:{o}" for g, o in risky.select("global_id", "op").iter_rows())).encode()
        ).hexdigest() if risky.height else ""
        confirmed = bool(work_hash) and size is not None and bool(con.execute(
            "SELECT count(*) FROM confirmations WHERE system = ? AND entity = ? AND work_hash = ?",
            [system, entity, work_hash]).fetchall()[0][0])
    changes = risky.height
    tripped = size is not None and changes > policy.minimum and changes > policy.share * size
    return BreakerState(system, entity, changes, size, work_hash, tripped, confirmed)


def confirm(store: Store, system: str, entity: str, now: datetime) -> BreakerState:
    """Confirm the current content of a held share table; the next push sends it."""
    state = breaker_state(store, system, entity)
    if state.work_hash:
        with store.connect() as con:
            con.execute("INSERT INTO confirmations VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        [system, entity, state.work_hash, now.replace(tzinfo=None)])
    return breaker_state(store, system, entity)
