"""Deciding a conflict-queue item: which value `--take crm|wave|newest|value` means (pure)."""

from __future__ import annotations

from datetime import datetime

from crm_wave.mapping.canonical import canonical_fields
from crm_wave.mapping.normalize import canonical

__all__ = ["TAKES", "DecisionError", "decided_value"]

TAKES = ("crm", "wave", "newest", "value")


class DecisionError(ValueError):
    """A decision that cannot be applied; one line naming the item and what to do."""


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def decided_value(item: dict, take: str, value: str | None = None) -> tuple[str, str | None]:
    """(decision, value as a canonical cell) for queue `item` (entity, field, crm/wave values and modified times).

    `newest` becomes `crm` or `wave` by the modification times (the CRM on a tie or when unknown)."""
    label = f"conflict {item.get('id')} ({item['entity']} {item['global_id']} {item['field']})"
    if take not in TAKES:
        raise DecisionError(f"{label}: --take {take!r} is not one of {', '.join(TAKES)}")
    if take == "newest":
        c, w = _when(item.get("crm_modified")), _when(item.get("wave_modified"))
        take = "wave" if c is not None and w is not None and w > c else "crm"
    if take == "crm":
        return "crm", item["crm_value"]
    if take == "wave":
        return "wave", item["wave_value"]
    fm = canonical_fields(item["entity"]).get(item["field"])
    if fm is None:
        raise DecisionError(f"{label}: the mapping has no such field any more; take crm or wave")
    if fm.kind == "lines" or fm.kind.startswith("ref:"):
        raise DecisionError(f"{label}: a {fm.kind} value cannot be typed; use --take crm or --take wave")
    text = (value or "").strip()
    if fm.kind == "bool":
        if text.lower() not in ("true", "false"):
            raise DecisionError(f"{label}: {value!r} is not true or false")
        return "value", text.lower()
    if fm.kind == "order_status":
        if text.lower() not in ("draft", "confirmed", "cancelled"):
            raise DecisionError(f"{label}: {value!r} is not draft, confirmed or cancelled")
        return "value", text.lower()
    try:
        cell = canonical(fm.kind, text)
    except (KeyError, ValueError, ArithmeticError) as exc:
        raise DecisionError(f"{label}: {value!r} is not a valid {fm.kind} value ({exc})") from None
    return "value", None if cell is None else str(cell)
