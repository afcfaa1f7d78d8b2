"""Share diffs: what must change in one target so it holds the golden values.

Desired state (the golden record) against the target's current state, both already
normalised: an update carries only the fields that differ, so the sync's own write,
read back by the next collect, differs in nothing and never echoes.

`changes` and `before` are JSON objects written exactly as
`json.dumps(..., sort_keys=True, ensure_ascii=False)` writes them (so "København" reads as
such in SQL), built with polars string expressions (no Python per row).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import polars as pl

__all__ = ["share_diff", "SHARE_SCHEMA", "json_literal_series", "json_literal_columns"]

SHARE_SCHEMA = pl.Schema({
    "global_id": pl.String,
    "op": pl.String,  # insert | update | delete | wait
    "target_id": pl.String,
    "source_id": pl.String,
    "changes": pl.String,  # JSON {field: desired value}
    "before": pl.String,  # JSON {field: target's current value}
    "reason": pl.String,
})

#: Share diffs of up to this many rows are written by `json.dumps` itself (`_few_rows`).
FEW_ROWS = 8


def _json_literal_fast(col: pl.Expr, ensure_ascii: bool) -> pl.Expr:
    """`json.dumps` of a String expression where polars can write it ("null" for None); None
    where the value needs `json.dumps` itself (control characters; with `ensure_ascii`, anything
    outside printable ASCII)."""
    col = col.cast(pl.String)
    plain = col.str.contains(r"^[\x20-\x7e]*$") if ensure_ascii else ~col.str.contains(r"[\x00-\x1f]")
    escaped = col.str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True)
    return pl.when(col.is_null()).then(pl.lit("null")).when(plain).then(pl.lit('"') + escaped + pl.lit('"'))


def _json_literal_rest(out: pl.Series, s: pl.Series, ensure_ascii: bool) -> pl.Series:
    """Fill in the values `_json_literal_fast` left to `json.dumps`."""
    if out.null_count() == 0:
        return out
    idx = out.is_null().arg_true()
    values = [json.dumps(v, ensure_ascii=ensure_ascii) for v in s.cast(pl.String).gather(idx).to_list()]
    return out.scatter(idx, pl.Series(values, dtype=pl.String))


def json_literal_series(s: pl.Series, *, ensure_ascii: bool = True) -> pl.Series:
    """`json.dumps(v, ensure_ascii=...)` of every value of a String series ("null" for None), as the
    standard library writes it.

    Most values need only `\\` and `"` escaped, done in polars; the rest (control characters,
    and with `ensure_ascii` anything outside printable ASCII) goes through `json.dumps`."""
    out = pl.select(_json_literal_fast(pl.lit(s), ensure_ascii)).to_series()
    return _json_literal_rest(out, s, ensure_ascii).alias(s.name)


def json_literal_columns(df: pl.DataFrame, columns: dict[str, str], *, ensure_ascii: bool = True) -> pl.DataFrame:
    """`df` with `json_literal_series` of several columns at once (`{new name: column}`): one
    polars pass over all of them (in parallel), `json.dumps` only for the odd values."""
    fast = df.select([_json_literal_fast(pl.col(src), ensure_ascii).alias(name) for name, src in columns.items()])
    return df.with_columns([_json_literal_rest(fast[name], df[src], ensure_ascii).alias(name)
                            for name, src in columns.items()])


def _object(pieces: list[tuple[str, pl.Expr, pl.Expr]]) -> pl.Expr:
    """A JSON object of the pieces `(key, JSON value, included)` whose condition holds, keys sorted."""
    parts = [pl.when(cond).then(pl.lit(json.dumps(key, ensure_ascii=False) + ": ") + value) for key, value, cond in sorted(pieces, key=lambda p: p[0])]
    if not parts:
        return pl.lit("{}")
    return pl.lit("{") + pl.concat_str(parts, separator=", ", ignore_nulls=True) + pl.lit("}")


def share_diff(merged: pl.DataFrame, target: str, fields: list[str], *, wait_reason: str | None = None,
               insert_extra: dict[str, pl.Expr] | None = None) -> pl.DataFrame:
    """The share frame for `target` ("crm" or "wave") over `fields`.

    `merged` comes from `merge_records` (golden columns, `<f>__crm`, `<f>__wave`,
    `<side>_state`, `<side>_id`). `wait_reason`, if given, names a string column that,
    when not null, turns an insert or update into a visible wait with that reason.
    `insert_extra`: more `changes` keys of inserts only (name -> String expression).
    """
    plan = _diff_plan(target, tuple(fields), wait_reason, tuple(insert_extra or {}))
    df = merged.with_columns(plan.differs).with_columns(plan.op).filter(pl.col("op").is_not_null())
    df = df.with_columns(plan.reason)
    if wait_reason is not None:
        df = df.with_columns(plan.wait_op)
    if df.height == 0:
        return pl.DataFrame(schema=SHARE_SCHEMA)
    if df.height <= FEW_ROWS:
        return _few_rows(df, target, fields, insert_extra or {})
    # The JSON of just the values an object writes: most rows of an update write a few of their fields.
    df = json_literal_columns(df.with_columns(plan.masked),
                              {**{f"_j_{f}": f"_m_j_{f}" for f in fields}, **{f"_b_{f}": f"_m_b_{f}" for f in fields}},
                              ensure_ascii=False)
    for name, expr in (insert_extra or {}).items():
        df = df.with_columns(json_literal_series(df.select(expr.cast(pl.String)).to_series(), ensure_ascii=False)
                             .alias(f"_x_{name}"))
    return df.select(plan.out).cast(SHARE_SCHEMA)


def _few_rows(df: pl.DataFrame, target: str, fields: list[str], extra: dict[str, pl.Expr]) -> pl.DataFrame:
    """The share rows of a few diffed rows (`op` and `reason` set), their objects written by `json.dumps` itself:
    the polars expressions of `_object` cost ~5 ms whatever the rows (one edit's share is one row)."""
    source = "wave" if target == "crm" else "crm"
    rows = df.select(pl.col("global_id").cast(pl.String), "op", pl.col(f"{target}_id").cast(pl.String),
                     pl.col(f"{source}_id").cast(pl.String), pl.col("reason").cast(pl.String), f"{target}_state",
                     *[pl.col(f).cast(pl.String) for f in fields],
                     *[pl.col(f"{f}__{target}").cast(pl.String) for f in fields],
                     *[expr.cast(pl.String).alias(f"_x_{name}") for name, expr in extra.items()]).rows()
    n = len(fields)
    out = []
    for global_id, op, target_id, source_id, reason, t_state, *values in rows:
        desired, current, extras = values[:n], values[n:2 * n], values[2 * n:]
        whole = op == "insert" or (op == "wait" and t_state == "absent")
        partial = op == "update" or (op == "wait" and t_state != "absent")
        changes = {f: v for f, v, c in zip(fields, desired, current)
                   if (whole and v is not None) or (partial and v != c)}
        if op == "insert":
            changes.update(zip(extra, extras))
        before = {f: c for f, v, c in zip(fields, desired, current) if partial and v != c}
        out.append((global_id, op, target_id, source_id, json.dumps(changes, sort_keys=True, ensure_ascii=False),
                    json.dumps(before, sort_keys=True, ensure_ascii=False), reason))
    return pl.DataFrame(out, schema=SHARE_SCHEMA, orient="row")


@dataclass(frozen=True)
class _DiffPlan:
    """The expressions of one share diff: they depend on the target, the fields, whether a wait reason is
    given and the names of the insert extras, not on the rows (`_diff_plan` builds them once per shape)."""

    differs: list[pl.Expr]
    op: pl.Expr
    reason: pl.Expr
    wait_op: pl.Expr
    #: Each field's desired and current value where `changes` or `before` writes it, null elsewhere
    #: (`_m_j_<f>`, `_m_b_<f>`): only those are written as JSON.
    masked: list[pl.Expr]
    out: list[pl.Expr]


@functools.lru_cache(maxsize=64)
def _diff_plan(target: str, fields: tuple[str, ...], wait_reason: str | None, extra: tuple[str, ...]) -> _DiffPlan:
    source = "wave" if target == "crm" else "crm"
    t_state, s_state = pl.col(f"{target}_state"), pl.col(f"{source}_state")
    cur = lambda f: pl.col(f"{f}__{target}")  # noqa: E731
    differs = [(~pl.col(f).eq_missing(cur(f))).alias(f"_d_{f}") for f in fields]
    any_diff = pl.any_horizontal([pl.col(f"_d_{f}") for f in fields]) if fields else pl.lit(False)
    op = (
        pl.when((t_state == "absent") & (s_state == "present")).then(pl.lit("insert"))
        .when((t_state == "present") & (s_state == "present") & any_diff).then(pl.lit("update"))
        .when((t_state == "present") & (s_state == "deleted")).then(pl.lit("delete"))
        .otherwise(pl.lit(None, pl.String))
    )
    reason = (pl.when(pl.col("op").is_in(["insert", "update"])).then(pl.col(wait_reason)).otherwise(None)
              if wait_reason is not None else pl.lit(None, pl.String))
    wait_op = pl.when(pl.col("reason").is_not_null()).then(pl.lit("wait")).otherwise(pl.col("op")).alias("op")
    whole = (pl.col("op") == "insert") | ((pl.col("op") == "wait") & (t_state == "absent"))
    partial = (pl.col("op") == "update") | ((pl.col("op") == "wait") & (t_state != "absent"))
    in_changes = {f: (whole & pl.col(f).is_not_null()) | (partial & pl.col(f"_d_{f}")) for f in fields}
    in_before = {f: partial & pl.col(f"_d_{f}") for f in fields}
    masked = [*(pl.when(in_changes[f]).then(pl.col(f)).alias(f"_m_j_{f}") for f in fields),
              *(pl.when(in_before[f]).then(cur(f)).alias(f"_m_b_{f}") for f in fields)]
    changes_pieces = [(f, pl.col(f"_j_{f}"), in_changes[f]) for f in fields]
    changes_pieces += [(name, pl.col(f"_x_{name}"), pl.col("op") == "insert") for name in extra]
    before_pieces = [(f, pl.col(f"_b_{f}"), in_before[f]) for f in fields]
    out = [
        pl.col("global_id").cast(pl.String),
        pl.col("op"),
        pl.col(f"{target}_id").cast(pl.String).alias("target_id"),
        pl.col(f"{source}_id").cast(pl.String).alias("source_id"),
        _object(changes_pieces).alias("changes"),
        _object(before_pieces).alias("before"),
        pl.col("reason").cast(pl.String),
    ]
    return _DiffPlan(differs=differs, op=op.alias("op"), reason=reason.alias("reason"), wait_op=wait_op,
                     masked=masked, out=out)
