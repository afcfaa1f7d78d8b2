"""Share diffs: what must change in one target so it holds the golden values.

Desired state (the golden record) against the target's current state, both already
normalised: an update carries only the fields that differ, so the sync's own write,
read back by the next collect, differs in nothing and never echoes.
"""

from __future__ import annotations

import json

import polars as pl

__all__ = ["share_diff", "SHARE_SCHEMA"]

SHARE_SCHEMA = {
    "global_id": pl.String,
    "op": pl.String,  # insert | update | delete | wait
    "target_id": pl.String,
    "source_id": pl.String,
    "changes": pl.String,  # JSON {field: desired value}
    "before": pl.String,  # JSON {field: target's current value}
    "reason": pl.String,
}


def share_diff(merged: pl.DataFrame, target: str, fields: list[str], *, wait_reason: str | None = None) -> pl.DataFrame:
    """The share frame for `target` ("crm" or "wave") over `fields`.

    `merged` comes from `merge_records` (golden columns, `<f>__crm`, `<f>__wave`,
    `<side>_state`, `<side>_id`). `wait_reason`, if given, names a string column that,
    when not null, turns an insert or update into a visible wait with that reason.
    """
    source = "wave" if target == "crm" else "crm"
    t_state, s_state = pl.col(f"{target}_state"), pl.col(f"{source}_state")
    cur = lambda f: pl.col(f"{f}__{target}")  # noqa: E731
    differs = [(~pl.col(f).eq_missing(cur(f))).alias(f"_d_{f}") for f in fields]
    df = merged.with_columns(*differs)
    any_diff = pl.any_horizontal([pl.col(f"_d_{f}") for f in fields]) if fields else pl.lit(False)
    op = (
        pl.when((t_state == "absent") & (s_state == "present")).then(pl.lit("insert"))
        .when((t_state == "present") & (s_state == "present") & any_diff).then(pl.lit("update"))
        .when((t_state == "present") & (s_state == "deleted")).then(pl.lit("delete"))
        .otherwise(pl.lit(None, pl.String))
    )
    df = df.with_columns(op.alias("op")).filter(pl.col("op").is_not_null())
    reason = pl.lit(None, pl.String)
    if wait_reason is not None:
        reason = pl.when(pl.col("op").is_in(["insert", "update"])).then(pl.col(wait_reason)).otherwise(None)
        df = df.with_columns(reason.alias("reason")).with_columns(
            pl.when(pl.col("reason").is_not_null()).then(pl.lit("wait")).otherwise(pl.col("op")).alias("op")
        )
    else:
        df = df.with_columns(reason.alias("reason"))
    rows = []
    for r in df.iter_rows(named=True):
        if r["op"] == "delete":
            changes, before = {}, {}
        elif r["op"] == "insert" or (r["op"] == "wait" and r[f"{target}_state"] == "absent"):
            changes = {f: r[f] for f in fields if r[f] is not None}
            before = {}
        else:
            changed = [f for f in fields if r[f"_d_{f}"]]
            changes = {f: r[f] for f in changed}
            before = {f: r[f"{f}__{target}"] for f in changed}
        rows.append((r["global_id"], r["op"], r[f"{target}_id"], r[f"{source}_id"],
                     json.dumps(changes, sort_keys=True), json.dumps(before, sort_keys=True), r["reason"]))
    return pl.DataFrame(rows, schema=SHARE_SCHEMA, orient="row")
