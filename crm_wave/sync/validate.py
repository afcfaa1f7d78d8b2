"""Checks a record must pass before it is sent to a system; failures name the field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datetime import date
from decimal import Decimal

from crm_wave.model.values import (
    normalize_country,
    normalize_currency,
    normalize_email,
    normalize_subdivision,
    parse_decimal,
    show_value,
)

__all__ = ["problems"]

def _date(v: str) -> date:
    try:
        return date.fromisoformat(v)
    except ValueError:
        raise ValueError(f"{show_value(v)} is not a date (YYYY-MM-DD)") from None


#: The scales Wave keeps (flows.py: a product's price decimal5; a line's `Quantity` and `UnitPrice` decimal8).
PRICE_SCALE = 5
LINE_SCALE = 8


def _held_at(v: Any, scale: int) -> Decimal:
    """The decimal `v` (unrounded), refused when it has more digits than `scale` places can hold (1e308)."""
    parse_decimal(v, scale=scale)
    return parse_decimal(v)


def _unknown_ref(v: str) -> None:
    if v.startswith("unlinked:"):
        _, system, sid = v.split(":", 2)
        raise ValueError(f"refers to {sid}, which does not exist in {system}")


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "Email": normalize_email,
    "State": normalize_subdivision,
    "OrderDate": _date,
    "DueDate": _date,
    "Country": normalize_country,
    "Currency": normalize_currency,
    "UnitPrice": lambda v: _held_at(v, PRICE_SCALE),
}

_REQUIRED = {
    ("wave", "customer"): ("Name",),
    ("crm", "customer"): (),
    ("wave", "product"): ("Name", "UnitPrice"),
    ("crm", "product"): ("Name", "UnitPrice"),
    ("wave", "order"): ("OrderNumber", "CustomerId"),
    ("crm", "order"): ("OrderNumber", "CustomerId"),
}
MAX_TEXT = 1000


def problems(target: str, entity: str, values: dict[str, Any], *, insert: bool,
             golden: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """`(field, message)` for every value `target` would refuse.

    `golden` (references still as global ids) lets a reference to a record that does not
    exist at all be told apart from one not yet linked.
    """
    out: list[tuple[str, str]] = []
    for f, v in (golden or {}).items():
        if f == "CustomerId" and isinstance(v, str):
            try:
                _unknown_ref(v)
            except ValueError as exc:
                out.append((f, f"customer {exc}"))
        if f == "Lines" and v:
            out += [p for p in problems(target, entity, {"Lines": v}, insert=False) if p[0].endswith("ProductId")]
    if insert:
        for f in _REQUIRED[(target, entity)]:
            if values.get(f) in (None, ""):
                out.append((f, "is required"))
    for f, v in values.items():
        if v is None:
            continue
        if f == "Lines":
            for i, line in enumerate(v):
                pid = line.get("ProductId")
                if isinstance(pid, str) and pid.startswith("unlinked:"):
                    out.append((f"Lines[{i}].ProductId", f"refers to product {pid.split(':', 2)[2]}, which does not exist"))
                for lf in ("Quantity", "UnitPrice"):
                    try:
                        d = _held_at(line.get(lf), LINE_SCALE)
                        if d < 0 or (lf == "Quantity" and d == 0):
                            raise ValueError(f"must be {'> 0' if lf == 'Quantity' else '>= 0'}, got {line.get(lf)}")
                    except (ValueError, TypeError) as exc:
                        out.append((f"Lines[{i}].{lf}", str(exc)))
            continue
        if isinstance(v, str) and len(v) > MAX_TEXT:
            out.append((f, f"is {len(v)} characters long; at most {MAX_TEXT} are sent"))
            continue
        if isinstance(v, str) and any(ord(ch) < 32 and ch not in "\n\t" for ch in v):
            out.append((f, "contains control characters"))
            continue
        check = _CHECKS.get(f)
        if check is None:
            continue
        try:
            result = check(v)
            if f == "UnitPrice" and result < 0:
                raise ValueError(f"must be >= 0, got {v}")
        except (ValueError, TypeError) as exc:
            out.append((f, str(exc)))
    return out
