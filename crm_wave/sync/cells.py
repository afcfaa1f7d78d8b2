"""Canonical values as table cells: every field a string (or None), so frames stay uniform.

Booleans become "true"/"false", order lines a JSON list; `from_cell` turns them back.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["to_cell", "from_cell"]


def to_cell(value: Any) -> str | None:
    """Canonical value -> cell."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def from_cell(kind: str, cell: str | None) -> Any:
    """Cell -> canonical value of a field of `kind`."""
    if cell is None:
        return False if kind == "bool" else ([] if kind == "lines" else None)
    if kind == "bool":
        return cell == "true"
    if kind == "lines":
        return json.loads(cell)
    return cell
