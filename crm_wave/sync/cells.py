"""Canonical values as table cells: every field a string (or None), so frames stay uniform.

Booleans become "true"/"false", order lines a JSON list; `from_cell` turns them back.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from crm_wave.logic.share import json_literal_series

__all__ = ["to_cell", "from_cell", "json_literal_series", "lines_cell_series"]


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


# ---- vectorised ----------------------------------------------------------------------
_NOT_PRINTABLE_ASCII = r"[^\x20-\x7e]"


def _json_of(s: pl.Series, key: str) -> pl.Series:
    """`json.dumps(v)` of every value (default separators do not matter for scalars)."""
    wrapped = pl.DataFrame({key: s}).select(pl.struct(key).struct.json_encode()).to_series()
    return wrapped.str.slice(len(key) + 4, wrapped.str.len_bytes() - len(key) - 5)


def lines_cell_series(lines: pl.Series) -> pl.Series:
    """`to_cell(lines)` of every value of a list-of-struct series (keys already in sorted order)."""
    out = _json_of(lines, "v")
    out = pl.select(pl.when(lines.is_not_null()).then(out)).to_series()
    mask = out.str.contains(_NOT_PRINTABLE_ASCII)
    idx = mask.fill_null(False).arg_true()
    if idx.len():
        out = out.scatter(idx, pl.Series([to_cell(v) for v in lines.gather(idx).to_list()], dtype=pl.String))
    return out.alias(lines.name)
