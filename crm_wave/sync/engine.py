"""One sync pass, in-process: the same stages the Dagster assets run, in dependency order.

`sync_once` repeats passes until one writes nothing (the sync reads its own writes back
and must find nothing left to do: no echo), at most `max_passes` times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from crm_wave.store.db import Store
from crm_wave.sync.collect import CollectResult, collect, utcnow
from crm_wave.sync.global_step import GlobalResult, build_global
from crm_wave.sync.push import PushResult, push
from crm_wave.sync.share_step import ShareResult, build_share

__all__ = ["PassResult", "run_pass", "sync_once"]

SYSTEMS = ("crm", "wave")


@dataclass
class PassResult:
    """Everything one pass did, stage by stage."""

    collects: list[CollectResult] = field(default_factory=list)
    globals: list[GlobalResult] = field(default_factory=list)
    shares: list[ShareResult] = field(default_factory=list)
    pushes: list[PushResult] = field(default_factory=list)

    @property
    def writes(self) -> int:
        """Records written to either system."""
        return sum(p.writes for p in self.pushes)


def _entity_stage(store: Store, entity: str, clients: dict[str, Any], now: datetime, out: PassResult,
                  run_id: str | None, business_id: str | None) -> None:
    out.globals.append(build_global(store, entity, now))
    for target in SYSTEMS:
        out.shares.append(build_share(store, target, entity))
        out.pushes.append(push(store, target, entity, clients[target], now, run_id=run_id,
                               business_id=business_id if target == "wave" else None))


def run_pass(store: Store, clients: dict[str, Any], *, now: datetime | None = None, full: bool | None = None,
             run_id: str | None = None, business_id: str | None = None) -> PassResult:
    """collect -> global -> share -> push for every entity; customers and products before orders."""
    now = now or utcnow()
    out = PassResult()
    for entity in ("customer", "product", "order"):
        for system in SYSTEMS:
            out.collects.append(collect(store, system, entity, clients[system], now, full=full))
    for entity in ("customer", "product", "order"):
        _entity_stage(store, entity, clients, now, out, run_id, business_id)
    return out


def sync_once(store: Store, clients: dict[str, Any], *, max_passes: int = 4, full: bool | None = None,
              clock: Callable[[], datetime] = utcnow, run_id: str | None = None,
              business_id: str | None = None) -> list[PassResult]:
    """Run passes until one writes nothing (or `max_passes`); return every pass's result."""
    passes = []
    for i in range(max_passes):
        result = run_pass(store, clients, now=clock(), full=full if i == 0 else None, run_id=run_id,
                          business_id=business_id)
        passes.append(result)
        if result.writes == 0:
            break
    return passes
