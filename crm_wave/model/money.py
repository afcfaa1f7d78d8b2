"""The one money rule of an order and its invoice: how lines add up to a total.

Both simulators and the sync use it, so a CRM order's `Total` and its Wave invoice's
`total` are equal by construction. The rule is Wave's (wave-api.md, and what Wave's
own invoice shows):

- an item's quantity and unit price keep 8 decimals, ties away from zero;
- a line amount is quantity x unit price rounded to the currency's minor unit
  (2 decimals for NOK/USD/EUR, 0 for JPY, 3 for KWD), ties away from zero;
- the total is the sum of the rounded line amounts (taxes aside: the CRM has none).

Rounding the exact sum once instead (what the CRM simulator did before) differs by a cent
as soon as lines end in half cents: 0.5 x 3580.99 + 2.5 x 839.65 is 1790.495 + 2099.125 =
3889.62 exactly, but 1790.50 + 2099.13 = 3889.63 line by line.

Pure: no dagster, httpx or duckdb imports.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal, localcontext

__all__ = ["ITEM_PLACES", "currency_exponent", "line_amount", "lines_total", "round_half_away"]

#: Decimals Wave keeps on an invoice item's quantity and unit price.
ITEM_PLACES = 8

#: ISO 4217 currencies whose minor unit is not the cent.
_ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
                           "VND", "VUV", "XAF", "XOF", "XPF"})
_THREE_DECIMAL = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})

# Wide enough for 15 integer digits times 15 integer digits at 8 decimals each, exactly.
_PRECISION = 80


def currency_exponent(code: str | None) -> int:
    """Decimals of the currency's minor unit (2 when unknown or missing)."""
    code = (code or "").strip().upper()
    if code in _ZERO_DECIMAL:
        return 0
    if code in _THREE_DECIMAL:
        return 3
    return 2


def round_half_away(value: Decimal, places: int) -> Decimal:
    """`value` rounded to `places` decimals, ties away from zero (Decimal's ROUND_HALF_UP)."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def line_amount(quantity: Decimal | str, unit_price: Decimal | str, exponent: int = 2) -> Decimal:
    """Quantity x unit price (each kept to 8 decimals) rounded to the minor unit, ties away from zero."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        q = round_half_away(Decimal(quantity), ITEM_PLACES)
        p = round_half_away(Decimal(unit_price), ITEM_PLACES)
        return round_half_away(q * p, exponent)


def lines_total(lines: Iterable[tuple[Decimal | str, Decimal | str]], exponent: int = 2) -> Decimal:
    """The sum of the rounded line amounts of (quantity, unit price) pairs, at the minor unit's scale."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        total = sum((line_amount(q, p, exponent) for q, p in lines), Decimal(0))
        return round_half_away(total, exponent)  # only sets the scale: the sum is already exact
