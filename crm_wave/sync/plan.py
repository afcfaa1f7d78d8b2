"""Dry run: what the next sync would write, field by field, without writing anything.

The plan runs the read-only stages of a pass (collect -> global -> share, `stages.READ_ONLY`)
on a scratch copy of the DuckDB file, so the
live file (its cursors, links and datasets) and both systems stay untouched; the APIs
are only read.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from crm_wave.store import files
from crm_wave.store.db import Store
from crm_wave.sync.engine import run_pass
from crm_wave.sync.plan_reviews import copy_policy, planned_reviews
from crm_wave.sync.stages import READ_ONLY, STAGES

__all__ = ["PlannedWrite", "plan"]


@dataclass(frozen=True)
class PlannedWrite:
    """One record the next sync would touch: `op` insert, update, delete (held) or wait."""

    system: str
    entity: str
    global_id: str
    target_id: str | None
    op: str
    fields: dict[str, tuple[Any, Any]]  # field -> (current value in the target, value to write)
    reason: str | None

    @property
    def writes(self) -> bool:
        """True for the ops a push would send now."""
        return self.op in ("insert", "update")

    def lines(self) -> list[str]:
        """Human-readable lines, one per field."""
        head = f"{self.system} {self.entity} {self.op} {self.target_id or self.global_id}"
        if self.reason:
            head += f"  ({self.reason})"
        return [head] + [f"    {f}: {json.dumps(old)} -> {json.dumps(new)}" for f, (old, new) in sorted(self.fields.items())]


def plan(store: Store, clients: dict[str, Any], now: datetime, *, reviews: list[dict] | None = None) -> list[PlannedWrite]:
    """Everything the next sync would do, computed on a scratch copy of `store`'s file.

    `reviews`, if given, receives the conflict-queue items that would wait for a person after
    the sync (items not recorded yet have no id)."""
    with tempfile.TemporaryDirectory(prefix="crm-wave-plan-") as tmp:
        scratch_path = Path(tmp) / store.path.name
        with store.locked():  # the file, and its golden tables' and datasets' Parquet parts linked beside the copy
            files.copy_store(store.path, scratch_path)
        copy_policy(store.path.parent, Path(tmp))
        scratch = Store(scratch_path)
        run_pass(scratch, clients, now=now, only={s.name for s in STAGES if s.kind in READ_ONLY})
        out: list[PlannedWrite] = []
        with scratch.connect() as con:
            for s in STAGES:
                if s.kind != "share":
                    continue
                frame = scratch.read_table(con, s.name)
                for r in (frame.sort("global_id") if frame is not None else pl.DataFrame()).iter_rows(named=True):
                    changes, before = json.loads(r["changes"]), json.loads(r["before"])
                    out.append(PlannedWrite(s.system or "", s.entity, r["global_id"], r["target_id"], r["op"],
                                            {f: (before.get(f), v) for f, v in changes.items()}, r["reason"]))
        if reviews is not None:
            reviews.extend(planned_reviews(store, scratch))
        return out
