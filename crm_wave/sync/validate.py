"""Checks a record must pass before it is sent to a system; failures name the field."""

from __future__ import annotations

from typing import Any

from crm_wave.model.values import normalize_country, normalize_currency, normalize_email, parse_decimal

__all__ = ["problems"]

_CHECKS = {
    "Email": normalize_email,
    "Country": normalize_country,
    "Currency": normalize_currency,
    "UnitPrice": parse_decimal,
    "Quantity": parse_decimal,
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


def problems(target: str, entity: str, values: dict[str, Any], *, insert: bool) -> list[tuple[str, str]]:
    """`(field, message)` for every value `target` would refuse."""
    out: list[tuple[str, str]] = []
    if insert:
        for f in _REQUIRED[(target, entity)]:
            if values.get(f) in (None, ""):
                out.append((f, "is required"))
    for f, v in values.items():
        if v is None:
            continue
        if f == "Lines":
            for i, line in enumerate(v):
                for lf in ("Quantity", "UnitPrice"):
                    try:
                        d = parse_decimal(line.get(lf))
                        if d < 0 or (lf == "Quantity" and d == 0):
                            raise ValueError(f"must be {'> 0' if lf == 'Quantity' else '>= 0'}, got {d}")
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
