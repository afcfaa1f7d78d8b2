"""Queries the global, share and push steps share: link rows by id, and what an order refers to.

An order's `Lines` cell is a JSON list of line objects (`cells.to_cell`); `line_products`
decodes it once with a typed schema instead of matching text (polars' `LINES_DTYPE` for a few cells,
DuckDB's `json_transform` for many).
"""

from __future__ import annotations

import contextlib

import duckdb
import polars as pl

from crm_wave.logic.link import LINK_SCHEMA
from crm_wave.store.connection import FEW_IDS, fetch_frame, ids_predicate, registered, scratch

__all__ = ["DUCKDB_LINES", "LINES_DTYPE", "line_products", "links_where", "order_links"]

#: An order's lines as stored in a cell (canonical field names; values as text).
LINES_DTYPE = pl.List(pl.Struct({"ProductId": pl.String, "Description": pl.String, "Quantity": pl.String,
                                 "UnitPrice": pl.String}))


#: From this many cells on, `line_products` has DuckDB read them: 0.11-0.15 s against polars' 0.67 s for
#: 220,000 orders of 3 lines (docs/benchmarks.md, "Session 15"); below it, polars has no statement to pay.
DUCKDB_LINES = 5_000


def line_products(lines: pl.Series) -> pl.Series:
    """Per order, the `ProductId` of each of its lines (null where a line names none)."""
    cells = lines.cast(pl.String)
    if cells.len() < DUCKDB_LINES:
        decoded = cells.str.json_decode(LINES_DTYPE)
        return decoded.list.eval(pl.element().struct.field("ProductId")).alias("_products")
    with scratch() as cur, registered(cur, "_lines_in", cells.alias("l").to_frame()):
        out = cur.execute("""SELECT list_transform(json_transform(l, '[{"ProductId": "VARCHAR"}]'), x -> x.ProductId) """
                          "AS _products FROM _lines_in").pl()["_products"]
    return out.cast(pl.List(pl.String))


def links_where(con: duckdb.DuckDBPyConnection, entity: str, crm_ids: pl.Series | None = None,
                wave_ids: pl.Series | None = None, gids: pl.Series | None = None) -> pl.DataFrame:
    """Link rows of `entity` touching any of the given CRM ids, Wave ids or global ids."""
    wanted = [(col, ids) for col, ids in (("crm_id", crm_ids), ("wave_id", wave_ids), ("global_id", gids))
              if ids is not None and ids.len()]
    if not wanted:
        return pl.DataFrame(schema=LINK_SCHEMA)
    with contextlib.ExitStack() as stack:
        among = [stack.enter_context(ids_predicate(con, f"_lk_{col}", ids, col)) for col, ids in wanted]
        frame = fetch_frame(
            con, "SELECT global_id, crm_id, wave_id, how FROM links WHERE entity = ? AND ("
            + " OR ".join(sql for sql, _ in among) + ") ORDER BY global_id",
            [entity, *(v for _, params in among for v in params)], small=sum(ids.len() for _, ids in wanted) <= FEW_IDS)
    return frame.cast(LINK_SCHEMA) if frame.height else pl.DataFrame(schema=LINK_SCHEMA)


def order_links(con: duckdb.DuckDBPyConnection, orders: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Customer and product links the golden orders in `orders` refer to (by `CustomerId` and `Lines`)."""
    customers = orders["CustomerId"].drop_nulls().unique()
    products = line_products(orders["Lines"]).explode().drop_nulls().unique()
    return {"customer": links_where(con, "customer", gids=customers),
            "product": links_where(con, "product", gids=products)}
