"""Which golden orders a changed customer or product link touches (global_step.orders_touching): found by a
filtered scan and the candidates' lines decoded, the same orders as decoding every order's lines."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from crm_wave.store.connection import registered
from crm_wave.store.db import Store
from crm_wave.sync import global_step
from crm_wave.sync.cells import to_cell
from crm_wave.sync.global_step import orders_touching

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _line(product: str | None, description: str = "a line") -> dict[str, str | None]:
    return {"Description": description, "ProductId": product, "Quantity": "1", "UnitPrice": "2.00"}


ODD = 'P "1" (x)+.*\\'

ORDERS = {  # global id: (CustomerId, CustomerId__crm, Lines, Lines__wave)
    "o1": ("C2", "C2", [_line("P1")], None),
    "o2": ("C2", None, [_line("P2")], [_line("unlinked:wave:W1")]),  # the Wave copy names P1 by its Wave id
    "o3": ("C2", "C2", [_line("P2", description="P1")], None),  # P1's id as text, not as a product
    "o4": ("C2", "C2", [_line("P2"), _line("prodé")], None),  # an id the cell writes JSON-escaped
    "o5": ("C3", "C1", [_line("P2")], None),  # the CRM copy's customer is C1
    "o6": ("C2", "C2", [_line("P10"), _line(None)], None),  # P1 as a prefix only; a line with no product
    "o7": (None, None, None, None),
    "o8": ("C2", "C2", [_line(ODD)], None),  # quotes, a backslash and a regular expression's own characters
}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "sync.duckdb")
    rows = [(gid, *order) for gid, order in ORDERS.items()]
    with store.connect() as con:
        store.upsert_links(con, "product", [("P1", "11", "W1", "key"), ("P2", "12", "W2", "key"), ("P10", "13", None, "key"),
                                            ("prodé", "14", "W4", "key"), (ODD, "15", None, "key")], NOW)
        store.upsert_links(con, "customer", [("C1", "c1", "w1", "key"), ("C2", "c2", None, "key")], NOW)
        frame = pl.DataFrame({
            "global_id": [r[0] for r in rows],
            "CustomerId": [r[1] for r in rows], "CustomerId__crm": [r[2] for r in rows], "CustomerId__wave": [None] * len(rows),
            "Lines": [to_cell(r[3]) for r in rows], "Lines__crm": [to_cell(r[3]) for r in rows],
            "Lines__wave": [to_cell(r[4]) for r in rows]}, schema={c: pl.String for c in (
                "global_id", "CustomerId", "CustomerId__crm", "CustomerId__wave", "Lines", "Lines__crm", "Lines__wave")})
        with registered(con, "_orders", frame):
            con.execute("CREATE TABLE global_order AS SELECT * FROM _orders")
    return store


def _changes(*pairs: tuple[str, str]) -> pl.DataFrame:
    return pl.DataFrame([(e, g, "link") for e, g in pairs], schema={"entity": pl.String, "global_id": pl.String,
                                                                     "kind": pl.String}, orient="row")


@pytest.mark.parametrize("changed, want", [
    ([("product", "P1")], ["o1", "o2"]),
    ([("product", "prodé")], ["o4"]),
    ([("customer", "C1")], ["o5"]),
    ([("product", "P1"), ("product", "prodé"), ("customer", "C1")], ["o1", "o2", "o4", "o5"]),
    ([("product", "P10")], ["o6"]),
    ([("product", ODD)], ["o8"]),
    ([("customer", "C9")], []),  # a link not in the store: nothing to match
])
def test_the_orders_a_changed_link_touches(store, monkeypatch, changed, want):
    with store.connect() as con:
        found = sorted(orders_touching(con, _changes(*changed)).to_list())
        monkeypatch.setattr(global_step, "TOUCH_TEXT", -1)  # every order's lines decoded, as before the filter
        whole = sorted(orders_touching(con, _changes(*changed)).to_list())
    assert found == whole == want
