"""Three-way merge of linked records into golden records (mappings.md, "Rules for every flow").

Per field, against the last value both sides agreed on (the base):
- equal on both sides: that value (and it becomes the new base);
- changed on one side only: that side's value;
- changed on both sides: the side with the newer modification time wins, except that an
  empty value never overwrites a non-empty one; the conflict is recorded.
One-way fields (Wave -> CRM) always take Wave's value when the Wave record exists.

Every field column is a string (None for empty); see `cells.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

__all__ = ["MergeResult", "merge_records", "side_state"]

CRM, WAVE, BASE = "__crm", "__wave", "__base"


@dataclass(frozen=True)
class MergeResult:
    """The merged frame (golden values plus each side's), the conflicts, the new agreed values."""

    merged: pl.DataFrame
    conflicts: pl.DataFrame
    agreed: pl.DataFrame


def side_state(side: str) -> pl.Expr:
    """"present", "deleted" or "absent" for one side of a merged row."""
    return (
        pl.when(pl.col(f"{side}_id").is_null()).then(pl.lit("absent"))
        .when(pl.col(f"{side}_deleted").fill_null(True)).then(pl.lit("deleted"))
        .otherwise(pl.lit("present"))
        .alias(f"{side}_state")
    )


def _suffix(frame: pl.DataFrame, id_col: str, fields: list[str], suffix: str, side: str) -> pl.DataFrame:
    return frame.select(
        pl.col(id_col),
        pl.col("deleted").alias(f"{side}_deleted"),
        pl.col("modified").alias(f"{side}_modified"),
        *[pl.col(f).alias(f + suffix) for f in fields],
    )


def merge_records(
    links: pl.DataFrame,
    crm: pl.DataFrame,
    wave: pl.DataFrame,
    agreed: pl.DataFrame,
    fields: list[str],
    one_way: frozenset[str] = frozenset(),
) -> MergeResult:
    """Merge per field; `crm`/`wave` carry `crm_id`/`wave_id`, `deleted`, `modified` and the fields."""
    base = agreed.select("global_id", pl.lit(True).alias("has_base"), *[pl.col(f).alias(f + BASE) for f in fields])
    df = (
        links.join(_suffix(crm, "crm_id", fields, CRM, "crm"), on="crm_id", how="left")
        .join(_suffix(wave, "wave_id", fields, WAVE, "wave"), on="wave_id", how="left")
        .join(base, on="global_id", how="left")
        .with_columns(side_state("crm"), side_state("wave"), pl.col("has_base").fill_null(False))
    )
    ts = lambda side: pl.col(f"{side}_modified").str.to_datetime(time_zone="UTC", strict=False)  # noqa: E731
    # Computed once per row (not once per field).
    df = df.with_columns(
        ((pl.col("crm_state") == "present") & (pl.col("wave_state") == "present")).alias("_both"),
        (pl.col("crm_state") == "present").alias("_crm_only"),
        (ts("crm") >= ts("wave")).fill_null(True).alias("_crm_newer"),
        (pl.col("wave_state") == "present").alias("_wave_present"),
    )
    both, crm_only, crm_newer = pl.col("_both"), pl.col("_crm_only"), pl.col("_crm_newer")

    desired, conflicts, agreed_cols = [], [], []
    for f in fields:
        c, w, b = pl.col(f + CRM), pl.col(f + WAVE), pl.col(f + BASE)
        if f in one_way:
            desired.append(pl.when(pl.col("_wave_present")).then(w).otherwise(c).alias(f))
            continue
        desired.append(
            pl.when(~both).then(pl.when(crm_only).then(c).otherwise(w))
            .when(c.eq_missing(w)).then(c)
            .when(c.eq_missing(b)).then(w)
            .when(w.eq_missing(b)).then(c)
            .when(crm_newer & c.is_not_null()).then(c)
            .when(crm_newer).then(w)
            .when(w.is_not_null()).then(w)
            .otherwise(c)
            .alias(f)
        )
        conflicts.append(
            (both & ~c.eq_missing(w) & ~c.eq_missing(b) & ~w.eq_missing(b)).alias(f + "__conflict")
        )
        agreed_cols.append(pl.when(both & c.eq_missing(w)).then(c).otherwise(b).alias(f + "__agreed"))
        agreed_cols.append((both & c.eq_missing(w) & ~c.eq_missing(b)).alias(f + "__moved"))
    df = df.with_columns(*desired, *conflicts, *agreed_cols)

    conflict_rows = []
    for f in fields:
        if f in one_way:
            continue
        conflict_rows.append(
            df.filter(pl.col(f + "__conflict")).select(
                "global_id",
                pl.lit(f).alias("field"),
                pl.col(f + CRM).alias("crm_value"),
                pl.col(f + WAVE).alias("wave_value"),
                pl.col(f + BASE).alias("base_value"),
                pl.when(pl.col(f).eq_missing(pl.col(f + CRM))).then(pl.lit("crm")).otherwise(pl.lit("wave")).alias("winner"),
                pl.when(pl.col("has_base")).then(pl.lit("changed on both sides")).otherwise(pl.lit("differed when first linked")).alias("reason"),
            )
        )
    conflict_frame = pl.concat(conflict_rows) if conflict_rows else pl.DataFrame(
        schema={"global_id": pl.String, "field": pl.String, "crm_value": pl.String, "wave_value": pl.String,
                "base_value": pl.String, "winner": pl.String, "reason": pl.String})
    two_way = [f for f in fields if f not in one_way]
    moved = pl.any_horizontal([pl.col(f + "__moved") for f in two_way]) if two_way else pl.lit(False)
    agreed_frame = df.filter(moved).select("global_id", *[pl.col(f + "__agreed").alias(f) for f in two_way])
    df = df.drop([c for c in df.columns if c.endswith(("__conflict", "__agreed", "__moved", BASE))]
                 + ["_both", "_crm_only", "_crm_newer", "_wave_present"])
    return MergeResult(merged=df, conflicts=conflict_frame, agreed=agreed_frame)
