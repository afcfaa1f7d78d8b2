"""Share diffs: what must change in one target so it holds the golden values.

Desired state (the golden record) against the target's current state, both already
normalised: an update carries only the fields that differ, so the sync's own write,
read back by the next collect, differs in nothing and never echoes.

`changes` and `before` are JSON objects written exactly as
`json.dumps(..., sort_keys=True, ensure_ascii=False)` writes them (so "København" reads as
such in SQL), built with polars string expressions (no Python per row).
"""

from __future__ import annotations

import json

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

#: Frames up to this many rows are JSON-encoded value by value (`json_literal_columns`).
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
    polars pass over all of them (in parallel), `json.dumps` only for the odd values. A few rows (an
    edit's) go through `json.dumps` alone: the expressions cost more than the values."""
    if df.height <= FEW_ROWS:
        return df.with_columns([pl.Series(name, [json.dumps(v, ensure_ascii=ensure_ascii)
                                                 for v in df[src].cast(pl.String).to_list()], dtype=pl.String)
                                for name, src in columns.items()])
    fast = df.select([_json_literal_fast(pl.col(src), ensure_ascii).alias(name) for name, src in columns.items()])
    return df.with_columns([_json_literal_rest(fast[name], df[src], ensure_ascii).alias(name)
                            for name, src in columns.items()])


def _object(pieces: list[tuple[str, pl.Expr, pl.Expr]]) -> pl.Expr:
    """A JSON object of the pieces `(key, JSON value, included)` whose condition holds, keys sorted."""
    parts = [pl.when(cond).then(pl.lit(json.dumps(key) + ": ") + value) for key, value, cond in sorted(pieces, key=lambda p: p[0])]
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
    if wait_reason is not None:
        reason = pl.when(pl.col("op").is_in(["insert", "update"])).then(pl.col(wait_reason)).otherwise(None)
        df = df.with_columns(reason.alias("reason")).with_columns(
            pl.when(pl.col("reason").is_not_null()).then(pl.lit("wait")).otherwise(pl.col("op")).alias("op")
        )
    else:
        df = df.with_columns(pl.lit(None, pl.String).alias("reason"))
    if df.height == 0:
        return pl.DataFrame(schema=SHARE_SCHEMA)
    df = json_literal_columns(df, {**{f"_j_{f}": f for f in fields}, **{f"_b_{f}": f"{f}__{target}" for f in fields}},
                              ensure_ascii=False)
    whole = (pl.col("op") == "insert") | ((pl.col("op") == "wait") & (t_state == "absent"))
    partial = (pl.col("op") == "update") | ((pl.col("op") == "wait") & (t_state != "absent"))
    changes_pieces = [(f, pl.col(f"_j_{f}"), (whole & pl.col(f).is_not_null()) | (partial & pl.col(f"_d_{f}")))
                      for f in fields]
    for name, expr in (insert_extra or {}).items():
        df = df.with_columns(json_literal_series(df.select(expr.cast(pl.String)).to_series(), ensure_ascii=False)
                             .alias(f"_x_{name}"))
        changes_pieces.append((name, pl.col(f"_x_{name}"), pl.col("op") == "insert"))
    before_pieces = [(f, pl.col(f"_b_{f}"), partial & pl.col(f"_d_{f}")) for f in fields]
    out = df.select(
        pl.col("global_id").cast(pl.String),
        "op",
        pl.col(f"{target}_id").cast(pl.String).alias("target_id"),
        pl.col(f"{source}_id").cast(pl.String).alias("source_id"),
        _object(changes_pieces).alias("changes"),
        _object(before_pieces).alias("before"),
        pl.col("reason").cast(pl.String),
    )
    return out.cast(SHARE_SCHEMA)
