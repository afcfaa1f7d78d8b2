"""Match keys for creates whose outcome is unknown (the safe-create pattern).

Before every create the sync records an intent with the values it sends. If the
response is lost, the created record shows up in the next collect without a link; it is
recognised by this key (email, else name and customer number; product name; order
number) and linked to the intent's global entity instead of being created again.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CREATE_KEY_FIELD", "intent_key"]

#: Where a collected CRM record carries the key the sync wrote into it on create (a CRM profile's
#: `writes.create_key`): the intent's own key, for a CRM that assigns the natural key itself.
CREATE_KEY_FIELD = "_CreateKey"


def _fold(v: Any) -> str:
    return str(v).strip().casefold() if v is not None else ""


def intent_key(entity: str, values: dict[str, Any]) -> tuple[str, ...] | None:
    """The key a created record is recognised by, from canonical values (None: no usable key)."""
    if entity == "customer":
        if values.get("Email"):
            return ("email", _fold(values["Email"]))
        if values.get("Name"):
            return ("name", _fold(values["Name"]), _fold(values.get("CustomerNumber")))
        return None
    if entity == "product":
        return ("name", _fold(values.get("Name"))) if values.get("Name") else None
    if entity == "order":
        return ("number", str(values["OrderNumber"]).strip()) if values.get("OrderNumber") else None
    raise ValueError(f"unknown entity {entity!r}")
