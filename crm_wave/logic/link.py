"""Link records of the two systems into global entities (Sesam's `global-<type>` merge).

A link, once made, is kept. Records without a link are matched by the flow's merge
keys, in order, one-to-one (records sharing a key value pair up in id order); what stays unmatched gets a global id of its own, named
after its origin (`crm-customer:C1`, `wave-customer:<id>`), and waits for the share
step to create its counterpart.
"""

from __future__ import annotations

import polars as pl

__all__ = ["link_records", "LINK_SCHEMA"]

LINK_SCHEMA = pl.Schema({"global_id": pl.String, "crm_id": pl.String, "wave_id": pl.String, "how": pl.String})


def link_records(
    entity: str,
    links: pl.DataFrame,
    crm: pl.DataFrame,
    wave: pl.DataFrame,
    keys: list[tuple[str, str]],
) -> tuple[pl.DataFrame, list[str]]:
    """Return (link rows to upsert, global ids to drop) after matching unlinked records.

    `links`: global_id, crm_id, wave_id, how. `crm` / `wave`: `crm_id` / `wave_id`,
    `deleted`, and one column per merge key (already normalised). `keys`: pairs of
    (crm column, wave column), tried in order.
    """
    links = links.select(LINK_SCHEMA.keys()).cast(LINK_SCHEMA)
    known_crm = links.filter(pl.col("crm_id").is_not_null())
    known_wave = links.filter(pl.col("wave_id").is_not_null())
    # Candidates: live records that lack a counterpart (no link row, or a half link). Just the columns linking
    # reads: the joins and filters below move every column they carry. Only the records sharing a key value are
    # sorted by id (`_ranked`).
    crm = crm.select("crm_id", "deleted", *dict.fromkeys(c for c, _ in keys))
    wave = wave.select("wave_id", "deleted", *dict.fromkeys(w for _, w in keys))
    crm_c = (
        crm.filter(~pl.col("deleted"))
        .join(known_crm.select("crm_id", "global_id", "wave_id"), on="crm_id", how="left")
        .filter(pl.col("wave_id").is_null())
        .drop("wave_id")
    )
    wave_c = (
        wave.filter(~pl.col("deleted"))
        .join(known_wave.select("wave_id", "global_id", "crm_id"), on="wave_id", how="left")
        .filter(pl.col("crm_id").is_null())
        .drop("crm_id")
    )
    if crm_c.height == 0 and wave_c.height == 0:  # every record linked already (an edit's usual case)
        return pl.DataFrame(schema=LINK_SCHEMA), []
    out: list[pl.DataFrame] = []
    dropped: list[str] = []
    for crm_key, wave_key in keys:
        # Records sharing a key value pair up in id order: the first CRM record with the first
        # Wave record, the second with the second, ... (all in one pass, so duplicates on both
        # sides are linked, never created again on the other side).
        left = _ranked(crm_c.filter(pl.col(crm_key).is_not_null()), crm_key, "crm_id")
        right = _ranked(wave_c.filter(pl.col(wave_key).is_not_null()), wave_key, "wave_id")
        pairs = left.select("crm_id", pl.col("global_id").alias("g_crm"), pl.col(crm_key).alias("_k"), "_rank").join(
            right.select("wave_id", pl.col("global_id").alias("g_wave"), pl.col(wave_key).alias("_k"), "_rank"),
            on=["_k", "_rank"],
        ).sort("crm_id")
        if pairs.height == 0:
            continue
        pairs = pairs.with_columns(
            global_id=pl.coalesce("g_crm", "g_wave", pl.lit(f"crm-{entity}:") + pl.col("crm_id")),
            how=pl.lit(f"merge:{crm_key}={wave_key}"),
        )
        out.append(pairs.select("global_id", "crm_id", "wave_id", "how"))
        # A wave-origin half link absorbed into a CRM one disappears.
        dropped += pairs.filter(pl.col("g_crm").is_not_null() & pl.col("g_wave").is_not_null())["g_wave"].to_list()
        crm_c = crm_c.join(pairs.select("crm_id"), on="crm_id", how="anti")
        wave_c = wave_c.join(pairs.select("wave_id"), on="wave_id", how="anti")
    out.append(
        crm_c.filter(pl.col("global_id").is_null()).select(
            (pl.lit(f"crm-{entity}:") + pl.col("crm_id")).alias("global_id"), "crm_id",
            pl.lit(None, pl.String).alias("wave_id"), pl.lit("origin:crm").alias("how"))
    )
    out.append(
        wave_c.filter(pl.col("global_id").is_null()).select(
            (pl.lit(f"wave-{entity}:") + pl.col("wave_id")).alias("global_id"),
            pl.lit(None, pl.String).alias("crm_id"), "wave_id", pl.lit("origin:wave").alias("how"))
    )
    return pl.concat([o.cast(LINK_SCHEMA) for o in out]), dropped


def _ranked(frame: pl.DataFrame, key: str, id_col: str) -> pl.DataFrame:
    """`frame` with `_rank`: each record's place, in id order, among the records sharing its `key` value. Most
    values are held by one record (rank 0): only the rows of shared values are sorted and numbered (a window
    over every row took 4x as long: 1.0 against 0.23 s for a million, docs/benchmarks.md, "Session 32")."""
    shared = frame[key].is_duplicated()
    alone = frame.filter(~shared).with_columns(pl.lit(0, pl.Int64).alias("_rank"))
    if alone.height == frame.height:
        return alone
    return pl.concat([alone, frame.filter(shared).sort(id_col).with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).over(key).alias("_rank"))])
