"""Held deletes: a record deleted on one side is listed here and deleted on the other only on approval.

Products are archived in Wave (Wave has no product delete); customers and invoices are
deleted; in the CRM the record is deleted. Links stay, so a deleted pair is never
re-created from the side that still had it before the approval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import polars as pl

from crm_wave.store.db import Store
from crm_wave.sync.collect import deleted_versions
from crm_wave.sync.names import CRM_RESOURCE, ENTITIES, dataset, share_table
from crm_wave.systems.wave.client import Mutation

__all__ = ["PendingDelete", "pending_deletes", "approve_deletes", "drop_pending_delete"]


@dataclass(frozen=True)
class PendingDelete:
    """A delete waiting for approval: remove `target_id` from `system`."""

    system: str
    entity: str
    global_id: str
    target_id: str
    deleted_in: str

    @property
    def archives(self) -> bool:
        """Wave has no product delete: approving archives the product instead."""
        return (self.system, self.entity) == ("wave", "product")

    def describe(self) -> str:
        """One line for the CLI."""
        action = "archive" if self.archives else "delete"
        return f"{self.global_id}: deleted in {self.deleted_in}; approve to {action} {self.system} {self.entity} {self.target_id}"


def pending_deletes(store: Store) -> list[PendingDelete]:
    """Every delete the share tables hold."""
    out = []
    with store.connect() as con:
        for entity in ENTITIES:
            for system in ("crm", "wave"):
                frame = store.read_table(con, share_table(system, entity))
                if frame is None:
                    continue
                for gid, target_id in frame.filter(pl.col("op") == "delete").sort("global_id").select("global_id", "target_id").iter_rows():
                    out.append(PendingDelete(system, entity, gid, target_id, "wave" if system == "crm" else "crm"))
    return out


def drop_pending_delete(store: Store, con: duckdb.DuckDBPyConnection, table: str, global_id: str) -> None:
    """Remove the delete of `global_id` from share table `table`, in the caller's transaction (through
    `replace_rows`, which writes a large share table's Parquet parts' changed rows: crm_wave/store/files.py)."""
    gid = pl.Series([global_id], dtype=pl.String)
    rows = store.read_rows(con, table, "global_id", gid)
    store.replace_rows(con, table, "global_id", gid, rows.filter(pl.col("op") != "delete"))


def approve_deletes(store: Store, clients: dict[str, Any], global_ids: set[str] | None, now: datetime,
                    *, run_id: str | None = None) -> list[str]:
    """Carry out the pending deletes of `global_ids` (all when None); return one line per delete done."""
    done = []
    for d in pending_deletes(store):
        if global_ids is not None and d.global_id not in global_ids:
            continue
        if d.system == "wave":
            name = {"customer": "customerDelete", "product": "productArchive", "order": "invoiceDelete"}[d.entity]
            data = {"invoiceId": d.target_id} if d.entity == "order" else {"id": d.target_id}
            (res,) = clients["wave"].mutate([Mutation(name, data, d.global_id)])
            outcome = "ok" if res.ok or res.not_found else f"failed: {json.dumps([e.message for e in res.errors])}"
        else:
            clients["crm"].delete(CRM_RESOURCE[d.entity], d.target_id, if_match=None)
            outcome = "ok"
        with store.connect() as con:
            store.log(con, [(now.replace(tzinfo=None), run_id, d.system, d.entity, d.global_id, d.target_id,
                             "delete", {}, {}, f"approved: {outcome}")])
            if outcome == "ok" and not d.archives:
                # Gone now: the dataset says so (Wave's incremental reads never show a delete, so
                # only the next full read would), and the delete is no longer pending.
                store.append_frame(con, dataset(d.system, d.entity), deleted_versions(d.system, d.entity, [d.target_id]),
                                   now.replace(tzinfo=None))
                drop_pending_delete(store, con, share_table(d.system, d.entity), d.global_id)
        done.append(f"{d.describe()} -> {outcome}")
    return done
