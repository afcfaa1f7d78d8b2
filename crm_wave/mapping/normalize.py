"""Lenient normalisers: turn a field's raw value into its canonical form for comparison.

They never raise on odd input (validation of what is sent to a system happens at the
share step, where a bad value becomes a dead letter naming the record and field);
they only remove differences that are formatting, not edits: surrounding blanks,
case of emails and codes, decimal scale, empty strings versus missing values.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import polars as pl

__all__ = ["canonical", "canonical_series", "PY_WHITESPACE"]


def _text(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def _lower(v: Any) -> str | None:
    s = _text(v)
    return s.lower() if s else None


def _upper(v: Any) -> str | None:
    s = _text(v)
    return s.upper() if s else None


def _decimal(scale: int):
    quantum = Decimal(1).scaleb(-scale)

    def norm(v: Any) -> str | None:
        s = _text(v)
        if s is None:
            return None
        try:
            d = Decimal(s)
        except InvalidOperation:
            return s  # left as is: validation names it later
        if not d.is_finite():
            return s
        try:
            d = d.quantize(quantum, rounding=ROUND_HALF_UP).normalize()
        except InvalidOperation:  # more digits than the context holds (1e308): left as is, validation names it
            return s
        if d == 0:
            d = Decimal(0)
        # at least two decimals, no needless trailing zeros beyond that
        exp = d.as_tuple().exponent
        return f"{d:.{max(2, -exp if isinstance(exp, int) and exp < 0 else 0)}f}"

    return norm


def _date(v: Any) -> str | None:
    s = _text(v)
    return s[:10] if s else None


def _bool(v: Any) -> bool:
    return bool(v)


_NORMALISERS = {
    "text": _text,
    "email": _lower,
    "casefold": _lower,
    "code": _upper,
    "decimal2": _decimal(2),
    "decimal5": _decimal(5),
    "decimal8": _decimal(8),
    "date": _date,
    "bool": _bool,
}


def canonical(kind: str, value: Any) -> Any:
    """Normalise `value` as a field of `kind` (text, email, code, decimalN, date, bool)."""
    return _NORMALISERS[kind](value)


# ---- vectorised: the same normalisers over a polars column ----------------------------
#
# `canonical_series(kind, s)` returns, for every value v of the String series `s`, exactly
# `canonical(kind, v)` (booleans aside, see `canonical_bool_series`). The common case runs
# as polars expressions; values the expressions cannot reproduce exactly (non-ASCII text
# whose case changes, decimals outside the plain `[+-]digits[.digits]` form) go through
# `canonical` itself, one value at a time, so the two paths never disagree.

#: Every character `str.strip()` removes (`str.isspace()`), so that polars strips the same.
PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_NON_ASCII = r"[^\x00-\x7f]"
#: Series up to this length are normalised value by value with `canonical` (the vectorised path's
#: ~0.1-0.5 ms per polars call outweighs a few Python calls); longer ones as polars expressions.
SMALL_SERIES = 8


def _patch(out: pl.Series, mask: pl.Series, source: pl.Series, fn: Callable[[Any], Any]) -> pl.Series:
    """`out` with the rows where `mask` holds replaced by `fn(source value)` (the exact slow path)."""
    idx = mask.fill_null(False).arg_true()
    if idx.len() == 0:
        return out
    values = [fn(v) for v in source.gather(idx).to_list()]
    return out.scatter(idx, pl.Series(values, dtype=out.dtype))


def _text_series(s: pl.Series) -> pl.Series:
    t = s.str.strip_chars(PY_WHITESPACE)
    return pl.select(pl.when(t.str.len_bytes() > 0).then(t).otherwise(None)).to_series().alias(s.name)


def _case_series(s: pl.Series, upper: bool) -> pl.Series:
    t = _text_series(s)
    out = t.str.to_uppercase() if upper else t.str.to_lowercase()
    return _patch(out, t.str.contains(_NON_ASCII), s, _upper if upper else _lower)


def _decimal_series(s: pl.Series, scale: int) -> pl.Series:
    t = _text_series(s)
    max_int = 18 - scale  # keeps every value inside Int64
    parts = pl.select(
        t.str.extract_groups(rf"^([+-]?)([0-9]{{1,{max_int}}})(?:\.([0-9]*))?$").alias("p")
    ).to_series().struct.unnest()
    sign, whole, frac = parts.get_column("1"), parts.get_column("2"), parts.get_column("3").fill_null("")
    ok = whole.is_not_null()
    padded = frac.str.pad_end(scale + 1, "0")
    unit = 10 ** scale
    units = (
        whole.str.to_integer(strict=False) * unit
        + padded.str.slice(0, scale).str.to_integer(strict=False).fill_null(0)
        + (padded.str.slice(scale, 1) >= "5").cast(pl.Int64)
    )
    negative = (sign == "-") & (units != 0)
    int_part = (units // unit).cast(pl.String)
    frac_part = (units % unit).cast(pl.String).str.pad_start(scale, "0").str.strip_chars_end("0").str.pad_end(2, "0")
    out = pl.select(
        pl.when(ok).then(pl.when(negative).then(pl.lit("-")).otherwise(pl.lit("")) + int_part + pl.lit(".") + frac_part)
    ).to_series().alias(s.name)
    norm = _NORMALISERS[f"decimal{scale}"]
    return _patch(out, ok.not_() & t.is_not_null(), s, norm)


def canonical_series(kind: str, s: pl.Series) -> pl.Series:
    """`canonical(kind, v)` for every value of a String series (not for kind "bool").

    Columns with few distinct values (codes, prices, quantities, dates) are normalised
    once per distinct value."""
    if s.dtype != pl.String:
        s = s.cast(pl.String)
    if s.len() <= SMALL_SERIES:  # a few values (an edit's records): one at a time costs less than the expressions
        return pl.Series(s.name, [canonical(kind, v) for v in s.to_list()], dtype=pl.String)
    if s.len() > 1000:
        distinct = s.drop_nulls().unique()
        if distinct.len() * 4 < s.len():
            return s.replace_strict(distinct, _canonical_series(kind, distinct), default=None,
                                    return_dtype=pl.String).alias(s.name)
    return _canonical_series(kind, s)


def _canonical_series(kind: str, s: pl.Series) -> pl.Series:
    if kind == "text":
        return _text_series(s)
    if kind in ("email", "casefold"):
        return _case_series(s, upper=False)
    if kind == "code":
        return _case_series(s, upper=True)
    if kind.startswith("decimal"):
        return _decimal_series(s, int(kind[len("decimal"):]))
    if kind == "date":
        return _text_series(s).str.slice(0, 10)
    raise ValueError(f"no vectorised normaliser for kind {kind!r}")
