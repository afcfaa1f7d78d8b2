"""`agreed`, the base of the three-way merge: a field both sides agreed is empty reads back empty, whether
the values come as a dict (a push's) or a frame (the global step's), and whether the row existed."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from crm_wave.store.db import Store

T0, T1 = datetime(2026, 1, 1), datetime(2026, 1, 2)
FIELDS = ["Name", "Phone", "City"]


def _frame(rows: dict[str, dict[str, str | None]]) -> pl.DataFrame:
    return pl.DataFrame([{"global_id": g, **{f: v.get(f) for f in FIELDS}} for g, v in rows.items()],
                        schema={"global_id": pl.String, **{f: pl.String for f in FIELDS}})


@pytest.mark.parametrize("as_frame", [False, True])
def test_a_field_agreed_empty_reads_back_empty_and_the_others_are_kept(tmp_path: Path, as_frame: bool):
    store = Store(tmp_path / "sync.duckdb")
    first = {"g1": {"Name": "Acme", "Phone": "+47 1", "City": "Oslo"}, "g2": {"Name": "Beta", "Phone": "+47 2"}}
    # g1's phone agreed empty, its name changed, its city not given (kept); g3 new, with an empty field.
    second = {"g1": {"Name": "Acme AS", "Phone": None}, "g3": {"Name": "Gamma", "Phone": None}}
    with store.connect() as con:
        store.upsert_agreed(con, "customer", first, T0)
        if as_frame:  # a frame carries every field: the ones not given are the old values, as the merge sends them
            store.upsert_agreed(con, "customer", _frame({"g1": {**second["g1"], "City": "Oslo"}, "g3": second["g3"]}),
                                T1, log=False)
        else:
            store.upsert_agreed(con, "customer", second, T1)
        frame = store.read_agreed_frame(con, "customer", FIELDS).sort("global_id")
        updated = dict(con.execute("SELECT global_id, updated_at FROM agreed WHERE entity = 'customer'").fetchall())
    assert frame.rows() == [("g1", "Acme AS", None, "Oslo"), ("g2", "Beta", "+47 2", None), ("g3", "Gamma", None, None)]
    assert updated == {"g1": T1, "g2": T0, "g3": T1}
