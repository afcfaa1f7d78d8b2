"""A few diffed rows (one edit's share) written by `json.dumps` give the rows the vectorised share diff gives."""

from __future__ import annotations

import json

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crm_wave.logic.share as share
from crm_wave.logic.share import share_diff

FIELDS = ["A", "B", "Ünï"]
VALUES = st.one_of(st.none(), st.sampled_from(["x", "y", 'q"uote', "back\\slash", "København", "tab\there", "\x01"]),
                   st.text(max_size=4))
STATES = st.sampled_from(["present", "absent", "deleted"])


@st.composite
def _case(draw):
    rows = []
    for i in range(draw(st.integers(1, share.FEW_ROWS))):
        row = {"global_id": f"g{i}", "crm_id": f"c{i}", "wave_id": f"w{i}", "crm_state": draw(STATES),
               "wave_state": draw(STATES), "_wait": draw(st.one_of(st.none(), st.just("customer g9 is not linked")))}
        for f in FIELDS:
            row[f] = draw(VALUES)
            row[f"{f}__crm"] = draw(st.one_of(st.just(row[f]), VALUES))
            row[f"{f}__wave"] = draw(st.one_of(st.just(row[f]), VALUES))
        rows.append(row)
    schema = {c: pl.String for c in rows[0]}
    return (pl.DataFrame(rows, schema=schema), draw(st.sampled_from(["crm", "wave"])), draw(st.booleans()),
            draw(st.booleans()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_case())
def test_few_rows_equal_the_vectorised_diff(case):
    merged, target, waits, extra = case
    kwargs = {"wait_reason": "_wait" if waits else None,
              "insert_extra": {"Type": pl.coalesce(pl.col("A"), pl.lit("organization"))} if extra else None}
    few = share_diff(merged, target, FIELDS, **kwargs)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(share, "FEW_ROWS", 0)
        vectorised = share_diff(merged, target, FIELDS, **kwargs)
    assert few.schema == vectorised.schema
    assert few.sort("global_id").equals(vectorised.sort("global_id")), (few, vectorised)


def test_an_update_carries_just_what_differs_as_json_dumps_writes_it():
    merged = pl.DataFrame({"global_id": ["g"], "crm_id": ["c"], "wave_id": ["w"], "crm_state": ["present"],
                           "wave_state": ["present"], "A": ["København"], "A__wave": ["old"], "B": ["same"],
                           "B__wave": ["same"], "Ünï": [None], "Ünï__wave": [None]})
    row = share_diff(merged, "wave", FIELDS).row(0, named=True)
    assert (row["op"], row["target_id"], row["source_id"]) == ("update", "w", "c")
    assert row["changes"] == json.dumps({"A": "København"}, ensure_ascii=False)
    assert row["before"] == '{"A": "old"}'
