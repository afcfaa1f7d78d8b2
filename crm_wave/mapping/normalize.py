"""Lenient normalisers: turn a field's raw value into its canonical form for comparison.

They never raise on odd input (validation of what is sent to a system happens at the
share step, where a bad value becomes a dead letter naming the record and field);
they only remove differences that are formatting, not edits: surrounding blanks,
case of emails and codes, decimal scale, empty strings versus missing values.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

__all__ = ["canonical"]


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
        d = d.quantize(quantum, rounding=ROUND_HALF_UP).normalize()
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
