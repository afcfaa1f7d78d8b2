"""Share: per target, the diff between golden and current state (`<system>-<type>-share`).

Orders wait, visibly and with the reason, until their customer and every line's
product exist in the target. Values a target cannot take are held at the target's
value here (Wave has no un-archive and no un-approve; a cancelled order is not created
in Wave), so they never loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import polars as pl

from crm_wave.logic.share import share_diff
from crm_wave.store.db import Store
from crm_wave.sync.global_step import merge_fields, one_way_fields
from crm_wave.sync.names import global_table, share_table

__all__ = ["ShareResult", "build_share", "target_fields"]


@dataclass(frozen=True)
class ShareResult:
    """Counts of one share step, by op."""

    table: str
    inserts: int
    updates: int
    deletes: int
    waiting: int

    @property
    def work(self) -> int:
        """Writes the push would do now."""
        return self.inserts + self.updates


def target_fields(entity: str, target: str) -> list[str]:
    """Fields the sync writes to `target` for an entity stem."""
    one_way = one_way_fields(entity)
    fields = merge_fields(entity)
    if target == "wave":
        return [f for f in fields if f not in one_way]
    return [f for f in fields if f != "Total"]


def _order_waits(merged: pl.DataFrame, target: str, links: dict[str, dict[str, str | None]]) -> pl.Series:
    reasons = []
    for gid, cust, lines, status, t_state in merged.select(
        "global_id", "CustomerId", "Lines", "Status", f"{target}_state"
    ).iter_rows():
        why = []
        if target == "wave" and status == "cancelled" and t_state == "absent":
            why.append("cancelled in the CRM: not created in Wave")
        # A reference to a record that exists nowhere is an error for the push to report, not a wait.
        if cust is not None and not cust.startswith("unlinked:") and links["customer"].get(cust) is None:
            why.append(f"customer {cust} is not linked in {target} yet")
        missing = sorted({line.get("ProductId") for line in json.loads(lines or "[]")
                          if not str(line.get("ProductId")).startswith("unlinked:")
                          and links["product"].get(line.get("ProductId")) is None})
        if missing:
            why.append(f"product(s) {', '.join(str(m) for m in missing)} not linked in {target} yet")
        reasons.append("; ".join(why) or None)
    return pl.Series("_wait", reasons, dtype=pl.String)


def _hold(merged: pl.DataFrame, field: str, cond: pl.Expr, target: str) -> pl.DataFrame:
    """Keep the target's value where it cannot take the golden one."""
    return merged.with_columns(
        pl.when(cond & (pl.col(f"{target}_state") == "present")).then(pl.col(f"{field}__{target}")).otherwise(pl.col(field)).alias(field)
    )


def build_share(store: Store, target: str, entity: str) -> ShareResult:
    """Compute and store the share table of (`target`, `entity`)."""
    with store.connect() as con:
        merged = store.read_table(con, global_table(entity))
        links = {e: store.read_links(con, e) for e in ("customer", "product")} if entity == "order" else {}
    if merged is None:
        raise RuntimeError(f"{global_table(entity)} does not exist yet: run the global step first")
    wait_col = None
    if entity == "order":
        ref = {e: dict(zip(df["global_id"].to_list(), df[f"{target}_id"].to_list())) for e, df in links.items()}
        merged = merged.with_columns(_order_waits(merged, target, ref))
        wait_col = "_wait"
        if target == "wave":
            merged = _hold(merged, "Status", pl.col("Status").is_in(["cancelled", "draft"]) & (pl.col("Status__wave") != "draft"), target)
    if entity == "product" and target == "wave":
        merged = _hold(merged, "IsArchived", (pl.col("IsArchived") == "false") & (pl.col("IsArchived__wave") == "true"), target)
    if entity == "customer" and target == "crm":
        # A person's Name is derived; it is written to the CRM only when the customer is created there.
        merged = _hold(merged, "Name", pl.col("Type") == "person", target)
    frame = share_diff(merged, target, target_fields(entity, target), wait_reason=wait_col)
    if entity == "customer" and target == "crm":
        types = dict(zip(merged["global_id"].to_list(), merged["Type"].to_list()))
        frame = frame.with_columns(
            pl.struct("global_id", "op", "changes").map_elements(
                lambda r: json.dumps({**json.loads(r["changes"]), "Type": types.get(r["global_id"]) or "organization"}, sort_keys=True)
                if r["op"] == "insert" else r["changes"], return_dtype=pl.String).alias("changes")
        )
    table = share_table(target, entity)
    with store.connect() as con:
        store.replace_table(con, table, frame)
    counts = frame["op"].value_counts()
    get = dict(zip(counts["op"].to_list(), counts["count"].to_list())) if frame.height else {}
    return ShareResult(table, get.get("insert", 0), get.get("update", 0), get.get("delete", 0), get.get("wait", 0))
