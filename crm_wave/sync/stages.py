"""The sync pass as one table of stages: the engine runs it, Dagster builds its assets from it,
and `plan` runs its read-only part. Nothing else defines the order of a pass.

A pass is collect (all six datasets), then per entity (customers, products, then orders):
global, and per target its share and its push. Orders come last because an order is pushed
only once its customer and products are linked: `global_order` depends on the four
customer/product pushes. Each stage's `name` is its asset key and its table in DuckDB.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from crm_wave.sync.names import ENTITIES, dataset, global_table, share_table

__all__ = ["SYSTEMS", "STAGES", "Stage", "Kind", "stage", "push_name", "READ_ONLY", "downstream"]

SYSTEMS = ("crm", "wave")
Kind = Literal["collect", "global", "share", "push"]
#: The kinds of stage that write nothing to either system (what `plan` and `collect_job` run).
READ_ONLY: frozenset[str] = frozenset({"collect", "global", "share"})


def push_name(target: str, entity: str) -> str:
    """The push of a share table: push_wave_customer, push_crm_order, ..."""
    return f"push_{dataset(target, entity)}"


@dataclass(frozen=True)
class Stage:
    """One step of a pass. `system` is the source of a collect, the target of a share or push."""

    name: str
    kind: Kind
    entity: str
    system: str | None
    deps: tuple[str, ...]


def _stages() -> tuple[Stage, ...]:
    out = [Stage(dataset(s, e), "collect", e, s, ()) for e in ENTITIES for s in SYSTEMS]
    for e in ENTITIES:
        deps: tuple[str, ...] = (dataset("crm", e), dataset("wave", e))
        if e == "order":  # an order waits for its customer and products to be linked
            deps += tuple(push_name(s, x) for x in ("customer", "product") for s in SYSTEMS)
        out.append(Stage(global_table(e), "global", e, None, deps))
        for t in SYSTEMS:
            out.append(Stage(share_table(t, e), "share", e, t, (global_table(e),)))
            out.append(Stage(push_name(t, e), "push", e, t, (share_table(t, e),)))
    return tuple(out)


#: Every stage of a pass, in the order a pass runs them (a topological order of `deps`).
STAGES: tuple[Stage, ...] = _stages()
_BY_NAME = {s.name: s for s in STAGES}


def stage(name: str) -> Stage:
    """The stage called `name` (its asset key)."""
    return _BY_NAME[name]


def downstream(names: Iterable[str]) -> frozenset[str]:
    """These stages and every stage that depends on one of them, directly or through others."""
    out = set(names)
    for s in STAGES:  # a topological order: a stage's dependencies come before it
        if any(d in out for d in s.deps):
            out.add(s.name)
    return frozenset(out)
