"""Three-way merge of linked records into golden records (mappings.md, "Rules for every flow").

Per field, against the last value both sides agreed on (the base), under the field's policy
(`crm_wave.mapping.policy`; `newest` when none is given):
- equal on both sides: that value (and it becomes the new base);
- changed on one side only: that side's value; except that an owner (`crm`, `wave`) overwrites
  the other side's edit (recorded), and a one-way field (`crm->wave`, `wave->crm`) keeps the
  edit made on its target side where it was made (`held__<side>`);
- changed on both sides: the owner's, or the one-way source's value; `review` waits for a
  person (`waits`, the conflict queue); `newest`: the side with the newer modification time
  wins, except that an empty value never overwrites a non-empty one. Recorded.
- differing when first linked (no agreed value yet, both non-empty): the owner's value, or
  the first-sync policy (`review` waits; `crm`, `wave`, `newest` decide at once, recorded).
  An empty side is filled in from the other without asking.
A decision from the queue (`queue` with `decided`) gives the decided value while each side
still holds its queued value or the decided one.
One-way fields of the mapping (Wave -> CRM) always take Wave's value when the Wave record exists.

Every field column is a string (None for empty); see `cells.py`.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl
from polars.expr.whenthen import ChainedThen, Then

__all__ = ["MergeResult", "merge_records", "side_state", "QUEUE_SCHEMA", "WAIT_SCHEMA", "FATE_SCHEMA", "HELD"]

CRM, WAVE, BASE = "__crm", "__wave", "__base"
#: Golden columns listing the fields whose target value a share keeps (comma-separated).
HELD = {"crm": "held__crm", "wave": "held__wave"}

#: Open and decided conflict-queue items the merge reads.
QUEUE_SCHEMA = pl.Schema({"global_id": pl.String, "field": pl.String, "kind": pl.String, "crm_value": pl.String,
                "wave_value": pl.String, "decided": pl.Boolean, "value": pl.String})
#: Fields that wait for a person, found by this merge.
WAIT_SCHEMA = pl.Schema({"global_id": pl.String, "field": pl.String, "crm_value": pl.String, "wave_value": pl.String,
               "base_value": pl.String, "kind": pl.String, "crm_modified": pl.String, "wave_modified": pl.String})
#: What became of each queue item given: open (still waiting), decided (not applied yet), applied, superseded.
FATE_SCHEMA = pl.Schema({"global_id": pl.String, "field": pl.String, "status": pl.String})
_CONFLICT_SCHEMA = pl.Schema({"global_id": pl.String, "field": pl.String, "crm_value": pl.String, "wave_value": pl.String,
                    "base_value": pl.String, "winner": pl.String, "reason": pl.String})


@dataclass(frozen=True)
class MergeResult:
    """The merged frame (golden values plus each side's), the conflicts, the new agreed values,
    the fields that wait for a person and what became of the queue items given."""

    merged: pl.DataFrame
    conflicts: pl.DataFrame
    agreed: pl.DataFrame
    waits: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=WAIT_SCHEMA))
    fates: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=FATE_SCHEMA))


def side_state(side: str) -> pl.Expr:
    """"present", "deleted", "absent" (no record linked) or "unseen" for one side of a merged row.

    "unseen": a record is linked but its dataset has never held it. Another sync of the same file
    created and linked it after this one's collect read that system (or a collect has yet to read it
    back). It is not a delete: nothing is shared to or from that side until a collect sees the record
    (a full read begun well after the link, `collect.LISTING_LAG`, that does not find it records its delete).
    """
    return (
        pl.when(pl.col(f"{side}_id").is_null()).then(pl.lit("absent"))
        .when(pl.col(f"{side}_deleted").is_null()).then(pl.lit("unseen"))
        .when(pl.col(f"{side}_deleted")).then(pl.lit("deleted"))
        .otherwise(pl.lit("present"))
        .alias(f"{side}_state")
    )


def _suffix(frame: pl.DataFrame, id_col: str, fields: list[str], suffix: str, side: str) -> pl.DataFrame:
    extra = [pl.col("Type").alias(f"_type{suffix}")] if "Type" in frame.columns and "Type" not in fields else []
    return frame.select(
        pl.col(id_col),
        pl.col("deleted").alias(f"{side}_deleted"),
        pl.col("modified").alias(f"{side}_modified"),
        *[pl.col(f).alias(f + suffix) for f in fields],
        *extra,
    )


def _with_queue(df: pl.DataFrame, queue: pl.DataFrame, fields: list[str]) -> tuple[pl.DataFrame, list[str]]:
    """Join the queue items per field as `<f>__qk` (kind), `__qc`, `__qw`, `__qd` (decided), `__qv`."""
    queue = queue.cast(QUEUE_SCHEMA)
    added: list[str] = []
    for f in sorted(set(queue["field"].to_list()) & set(fields)):
        part = queue.filter(pl.col("field") == f).unique("global_id", keep="last").select(
            "global_id", pl.col("kind").alias(f + "__qk"), pl.col("crm_value").alias(f + "__qc"),
            pl.col("wave_value").alias(f + "__qw"), pl.col("decided").alias(f + "__qd"), pl.col("value").alias(f + "__qv"))
        df = df.join(part, on="global_id", how="left", maintain_order="left")
        added += [f + s for s in ("__qk", "__qc", "__qw", "__qd", "__qv")]
    return df, added


_POLICIES = ("newest", "crm", "wave", "crm->wave", "wave->crm", "review", "derived")
_NONE = pl.lit(None, pl.String)


def _branches(pol: str, first_sync: str, newest: pl.Expr) -> tuple[pl.Expr, ...]:
    """For one field policy: the outcome at the first sync, after a Wave-only edit, after a CRM-only
    edit, after edits on both sides; then why each of the last three is recorded (null: not recorded)."""
    lit = pl.lit
    owner = {"crm": "crm", "crm->wave": "crm", "wave": "wave", "wave->crm": "wave"}.get(pol)
    if owner:
        first = lit(owner)
    elif pol == "review":
        first = lit("wait")
    elif pol == "derived" or first_sync == "newest":
        first = newest
    else:
        first = lit("wait" if first_sync == "review" else first_sync)
    wave_only = lit({"crm": "crm", "crm->wave": "keep_wave"}.get(pol, "wave"))
    crm_only = lit({"wave": "wave", "wave->crm": "keep_crm"}.get(pol, "crm"))
    both = lit(owner) if owner else (lit("wait") if pol == "review" else newest)
    why_wave = lit("edited in Wave; the CRM owns the field") if pol == "crm" else _NONE
    why_crm = lit("edited in the CRM; Wave owns the field") if pol == "wave" else _NONE
    why_both = lit({"crm": "changed on both sides; crm owns the field", "wave": "changed on both sides; wave owns the field",
                    "crm->wave": "changed on both sides; one-way crm->wave",
                    "wave->crm": "changed on both sides; one-way wave->crm"}.get(pol, "changed on both sides"))
    return first, wave_only, crm_only, both, why_wave, why_crm, why_both


def merge_records(
    links: pl.DataFrame,
    crm: pl.DataFrame,
    wave: pl.DataFrame,
    agreed: pl.DataFrame,
    fields: list[str],
    one_way: frozenset[str] = frozenset(),
    *,
    policy: Mapping[str, str | pl.Expr] | None = None,
    first_sync: str = "newest",
    queue: pl.DataFrame | None = None,
) -> MergeResult:
    """Merge per field; `crm`/`wave` carry `crm_id`/`wave_id`, `deleted`, `modified` and the fields.

    `policy`: per field, the field policy, or a String expression of it per row (it may read
    `_type`, the customer type); fields not named are `newest`. `first_sync`: review, crm, wave or newest.
    `queue`: the open and decided conflict-queue items of these global ids (`QUEUE_SCHEMA`).
    """
    policy = policy or {}
    base = agreed.select("global_id", pl.lit(True).alias("has_base"), *[pl.col(f).alias(f + BASE) for f in fields])
    df = (
        links.join(_suffix(crm, "crm_id", fields, CRM, "crm"), on="crm_id", how="left")
        .join(_suffix(wave, "wave_id", fields, WAVE, "wave"), on="wave_id", how="left")
        .join(base, on="global_id", how="left")
        .with_columns(side_state("crm"), side_state("wave"), pl.col("has_base").fill_null(False))
    )
    type_cols = [c for c in ("_type" + CRM, "_type" + WAVE) if c in df.columns]
    df = df.with_columns((pl.coalesce(type_cols) if type_cols else pl.lit(None, pl.String)).alias("_type"))
    df, queue_cols = _with_queue(df, queue if queue is not None else pl.DataFrame(schema=QUEUE_SCHEMA), fields)
    queued = frozenset(c[:-4] for c in queue_cols if c.endswith("__qk"))
    plan = _plan(fields, one_way, policy, first_sync, queued, _settled(df, fields, one_way, queued))
    df = df.with_columns(plan.per_row).with_columns(plan.outcomes).with_columns(plan.values)

    conflict_rows, wait_rows, fate_rows = [], [], []
    # Which fields have any conflict or wait at all (one pass), so that only those are filtered.
    flags = df.select(plan.flags).row(0, named=True) if plan.flags and df.height else {}
    for f, (conflict_filter, conflict_select, wait_filter, wait_select, fate) in plan.records.items():
        if fate is None and not flags.get(f + "|c") and not flags.get(f + "|w"):
            continue
        conflict_rows.append(df.filter(conflict_filter).select(conflict_select))
        wait_rows.append(df.filter(wait_filter).select(wait_select))
        if fate is not None:
            fate_rows.append(df.filter(pl.col(f + "__qk").is_not_null()).select(fate))
    conflict_frame = pl.concat(conflict_rows).cast(_CONFLICT_SCHEMA) if conflict_rows else pl.DataFrame(schema=_CONFLICT_SCHEMA)
    waits = pl.concat(wait_rows).cast(WAIT_SCHEMA) if wait_rows else pl.DataFrame(schema=WAIT_SCHEMA)
    fates = pl.concat(fate_rows).cast(FATE_SCHEMA) if fate_rows else pl.DataFrame(schema=FATE_SCHEMA)
    agreed_frame = df.filter(plan.moved).select(plan.agreed)
    df = df.drop([c for c in df.columns if c.endswith(("__agreed", "__moved", BASE, "__o", "__first"))]
                 + queue_cols + type_cols + ["_type", "_both", "_crm_only", "_crm_newer", "_wave_present"])
    return MergeResult(merged=df, conflicts=conflict_frame, agreed=agreed_frame, waits=waits, fates=fates)


def _settled(df: pl.DataFrame, fields: list[str], one_way: frozenset[str], queued: frozenset[str]) -> frozenset[str]:
    """The two-way fields equal on both sides in every row, with both sides present and no queue item: their
    outcome is "same" whatever the policy, so the plan gives them the plain value (a one-edit merge evaluates
    the policy of the one or two fields that differ, not of every field)."""
    candidates = tuple(f for f in fields if f not in one_way and f not in queued)
    if not df.height or not candidates:
        return frozenset()
    row = df.select(_settled_exprs(candidates)).row(0)
    return frozenset(f for f, equal in zip(candidates, row) if equal)


@functools.lru_cache(maxsize=64)
def _settled_exprs(fields: tuple[str, ...]) -> list[pl.Expr]:
    both = (pl.col("crm_state") == "present") & (pl.col("wave_state") == "present")
    return [(both & pl.col(f + CRM).eq_missing(pl.col(f + WAVE))).all().alias(f) for f in fields]


@dataclass(frozen=True)
class _Plan:
    """The expressions of one merge: they depend on the fields, their policies and which fields have
    queue items, not on the rows, so they are built once per such shape (`_plan`)."""

    per_row: list[pl.Expr]
    outcomes: list[pl.Expr]
    values: list[pl.Expr]
    flags: list[pl.Expr]
    #: per two-way field: conflict filter and columns, wait filter and columns, queue fate (None: no queue column)
    records: dict[str, tuple[pl.Expr, list[pl.Expr], pl.Expr, list[pl.Expr], list[pl.Expr] | None]]
    moved: pl.Expr
    agreed: list[pl.Expr]


#: Plans built, by shape, least recently used first: building the ~600 expressions of a customer merge
#: cost ~40 ms, more than merging a few records with them. The shapes of a process: entity, policy, queued
#: fields, and which fields are settled (a plan for one or two unsettled fields builds in a few ms).
_PLANS: OrderedDict[tuple, _Plan] = OrderedDict()
_PLANS_KEPT = 256


def _plan(fields: list[str], one_way: frozenset[str], policy: Mapping[str, str | pl.Expr], first_sync: str,
          queued: frozenset[str], settled: frozenset[str] = frozenset()) -> _Plan:
    """The merge's expressions for this shape, built once (policy expressions compare by their serialized form)."""
    key = (tuple(fields), one_way, first_sync, queued, settled,
           tuple(sorted((f, v if isinstance(v, str) else v.meta.serialize(format="json")) for f, v in policy.items())))
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = _build_plan(fields, one_way, policy, first_sync, queued, settled)
        if len(_PLANS) > _PLANS_KEPT:
            _PLANS.popitem(last=False)
    else:
        _PLANS.move_to_end(key)
    return plan


def _build_plan(fields: list[str], one_way: frozenset[str], policy: Mapping[str, str | pl.Expr], first_sync: str,
                queued_fields: frozenset[str], settled: frozenset[str] = frozenset()) -> _Plan:
    ts = lambda side: pl.col(f"{side}_modified").str.to_datetime(time_zone="UTC", strict=False)  # noqa: E731
    # Computed once per row (not once per field).
    per_row = [
        ((pl.col("crm_state") == "present") & (pl.col("wave_state") == "present")).alias("_both"),
        (pl.col("crm_state") == "present").alias("_crm_only"),
        (ts("crm") >= ts("wave")).fill_null(True).alias("_crm_newer"),
        (pl.col("wave_state") == "present").alias("_wave_present"),
    ]
    both, crm_only, crm_newer = pl.col("_both"), pl.col("_crm_only"), pl.col("_crm_newer")

    two_way = [f for f in fields if f not in one_way and f not in settled]  # settled: "same" (see `_settled`)
    outcome_cols: list[pl.Expr] = []
    whys: dict[str, pl.Expr] = {}  # evaluated only where a field may have something to record
    for f in two_way:
        c, w, b = pl.col(f + CRM), pl.col(f + WAVE), pl.col(f + BASE)
        pol = policy.get(f, "newest")
        queued = f in queued_fields
        if queued:
            q_first = (pl.col(f + "__qk") == "first_sync").fill_null(False)
            first_state = ~pl.col("has_base") | (q_first & b.is_null())
            qc, qw, qv = pl.col(f + "__qc"), pl.col(f + "__qw"), pl.col(f + "__qv")
            dec_ok = (pl.col(f + "__qd").fill_null(False) & (c.eq_missing(qc) | c.eq_missing(qv))
                      & (w.eq_missing(qw) | w.eq_missing(qv)))
        else:
            first_state, dec_ok = ~pl.col("has_base"), pl.lit(False)
        newest = (pl.when(crm_newer & c.is_not_null()).then(pl.lit("crm")).when(crm_newer).then(pl.lit("wave"))
                  .when(w.is_not_null()).then(pl.lit("wave")).otherwise(pl.lit("crm")))
        branches = {v: _branches(v, first_sync, newest) for v in ([pol] if isinstance(pol, str) else _POLICIES)}

        def per_policy(i: int) -> pl.Expr:
            """Branch `i` of `_branches`, for this field's policy (a literal, or chosen per row)."""
            if isinstance(pol, str):
                return branches[pol][i]
            expr: Then | ChainedThen = pl.when(pl.lit(False)).then(pl.lit(None, pl.String))
            for v, b_ in branches.items():
                expr = expr.when(pol == v).then(b_[i])
            return expr.otherwise(pl.lit(None, pl.String))

        # outcome: same | crm | wave | dec | wait | keep_crm / keep_wave (one-way: the edit stays where it was made)
        # and why (for the conflicts record; null: nothing to record).
        outcome = (
            pl.when(~both).then(pl.when(crm_only).then(pl.lit("crm")).otherwise(pl.lit("wave")))
            .when(c.eq_missing(w)).then(pl.lit("same"))
            .when(dec_ok).then(pl.lit("dec"))
            .when(first_state & c.is_null()).then(pl.lit("wave"))
            .when(first_state & w.is_null()).then(pl.lit("crm"))
            .when(first_state).then(per_policy(0))
            .when(c.eq_missing(b)).then(per_policy(1))  # changed in Wave only
            .when(w.eq_missing(b)).then(per_policy(2))  # changed in the CRM only
            .otherwise(per_policy(3))
        )
        why = (
            pl.when(~both | c.eq_missing(w) | dec_ok).then(None)
            .when(first_state & (c.is_null() | w.is_null())).then(None)
            .when(first_state).then(pl.lit("differed when first linked"))
            .when(c.eq_missing(b)).then(per_policy(4))
            .when(w.eq_missing(b)).then(per_policy(5))
            .otherwise(per_policy(6))
        )
        whys[f] = why
        outcome_cols += [outcome.alias(f + "__o"), first_state.alias(f + "__first")]

    desired, agreed_cols = [], []
    for f in fields:
        c, w, b = pl.col(f + CRM), pl.col(f + WAVE), pl.col(f + BASE)
        if f in one_way:
            desired.append(pl.when(pl.col("_wave_present")).then(w).otherwise(c).alias(f))
            continue
        if f in settled:  # both present and equal in every row: the value, agreed from now on
            desired.append(c.alias(f))
            agreed_cols += [c.alias(f + "__agreed"), (~c.eq_missing(b)).alias(f + "__moved")]
            continue
        o = pl.col(f + "__o")
        value: Then | ChainedThen = pl.when(o.is_in(["wave", "keep_crm"])).then(w)
        if f in queued_fields:
            value = value.when(o == "dec").then(pl.col(f + "__qv"))
        desired.append(value.otherwise(c).alias(f))
        agreed_cols.append(pl.when(both & c.eq_missing(w)).then(c).otherwise(b).alias(f + "__agreed"))
        agreed_cols.append((both & c.eq_missing(w) & ~c.eq_missing(b)).alias(f + "__moved"))
    held = []
    for side, keeps in (("crm", ["keep_crm", "wait"]), ("wave", ["keep_wave", "wait"])):
        parts = [pl.when(pl.col(f + "__o").is_in(keeps)).then(pl.lit(f)) for f in two_way]
        joined = pl.concat_str(parts, separator=",", ignore_nulls=True) if parts else pl.lit("")
        held.append(pl.when(joined.str.len_bytes() > 0).then(joined).otherwise(pl.lit(None, pl.String)).alias(HELD[side]))

    flags = ([(pl.col(f + "__o").is_in(["crm", "wave"]) & both
               & ~pl.col(f + CRM).eq_missing(pl.col(f + WAVE))).any().alias(f + "|c") for f in two_way]
             + [(pl.col(f + "__o") == "wait").any().alias(f + "|w") for f in two_way])
    records = {}
    for f in two_way:
        o = pl.col(f + "__o")
        conflict = [
            pl.col("global_id"),
            pl.lit(f).alias("field"),
            pl.col(f + CRM).alias("crm_value"),
            pl.col(f + WAVE).alias("wave_value"),
            pl.col(f + BASE).alias("base_value"),
            pl.when(pl.col(f).eq_missing(pl.col(f + CRM))).then(pl.lit("crm")).otherwise(pl.lit("wave")).alias("winner"),
            whys[f].alias("reason"),
        ]
        wait = [pl.col("global_id"), pl.lit(f).alias("field"), pl.col(f + CRM).alias("crm_value"),
                pl.col(f + WAVE).alias("wave_value"), pl.col(f + BASE).alias("base_value"),
                pl.when(pl.col(f + "__first")).then(pl.lit("first_sync")).otherwise(pl.lit("review")).alias("kind"),
                pl.col("crm_modified").cast(pl.String), pl.col("wave_modified").cast(pl.String)]
        fate = None
        if f in queued_fields:
            c, w = pl.col(f + CRM), pl.col(f + WAVE)
            qc, qw, qv, qd = (pl.col(f + s) for s in ("__qc", "__qw", "__qv", "__qd"))
            status = (
                pl.when(qd.fill_null(False) & c.eq_missing(qv) & w.eq_missing(qv)).then(pl.lit("applied"))
                .when(qd.fill_null(False) & (o == "dec")).then(pl.lit("decided"))
                .when(~qd.fill_null(False) & (o == "wait") & c.eq_missing(qc) & w.eq_missing(qw)).then(pl.lit("open"))
                .otherwise(pl.lit("superseded"))
            )
            fate = [pl.col("global_id"), pl.lit(f).alias("field"), status.alias("status")]
        records[f] = (whys[f].is_not_null() & (o != "wait"), conflict, o == "wait", wait, fate)
    agreeing = [f for f in fields if f not in one_way]  # the two-way fields, settled or not
    moved = pl.any_horizontal([pl.col(f + "__moved") for f in agreeing]) if agreeing else pl.lit(False)
    return _Plan(per_row=per_row, outcomes=outcome_cols, values=[*desired, *agreed_cols, *held], flags=flags,
                 records=records, moved=moved,
                 agreed=[pl.col("global_id"), *[pl.col(f + "__agreed").alias(f) for f in agreeing]])
