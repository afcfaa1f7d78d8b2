"""The merge's settled fields (equal on both sides in every row) give what the full plan gives, row for row."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crm_wave.logic.merge as merge
from crm_wave.logic.merge import QUEUE_SCHEMA, merge_records

FIELDS = ["A", "B", "C", "D"]
VALUES = st.sampled_from([None, "x", "y"])
STAMPS = st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", None])


@st.composite
def _case(draw):
    n = draw(st.integers(1, 4))
    links, crm, wave, agreed = [], [], [], []
    for i in range(n):
        has_c, has_w = draw(st.sampled_from([(True, True), (True, True), (True, False), (False, True)]))
        links.append({"global_id": f"g{i}", "crm_id": f"c{i}" if has_c else None, "wave_id": f"w{i}" if has_w else None,
                      "how": "merge"})
        same = draw(st.booleans())  # most rows of a real merge are equal on both sides but for a field or two
        values_c = {f: draw(VALUES) for f in FIELDS}
        values_w = dict(values_c) if same else {f: draw(VALUES) for f in FIELDS}
        if has_c:
            crm.append({"crm_id": f"c{i}", "deleted": draw(st.booleans()) and not same, "modified": draw(STAMPS), **values_c})
        if has_w:
            wave.append({"wave_id": f"w{i}", "deleted": False, "modified": draw(STAMPS), **values_w})
        if draw(st.booleans()):
            agreed.append({"global_id": f"g{i}", **{f: draw(VALUES) for f in FIELDS}})
    queue = []
    if draw(st.booleans()):
        queue.append({"global_id": "g0", "field": draw(st.sampled_from(FIELDS)), "kind": "review", "crm_value": "x",
                      "wave_value": "y", "decided": draw(st.booleans()), "value": "y"})
    side = {"deleted": pl.Boolean, "modified": pl.String, **{f: pl.String for f in FIELDS}}
    return (pl.DataFrame(links, schema={"global_id": pl.String, "crm_id": pl.String, "wave_id": pl.String, "how": pl.String}),
            pl.DataFrame(crm, schema={"crm_id": pl.String, **side}), pl.DataFrame(wave, schema={"wave_id": pl.String, **side}),
            pl.DataFrame(agreed, schema={"global_id": pl.String, **{f: pl.String for f in FIELDS}}),
            pl.DataFrame(queue, schema=QUEUE_SCHEMA),
            {f: draw(st.sampled_from(["newest", "crm", "wave", "crm->wave", "wave->crm", "review"])) for f in FIELDS},
            draw(st.sampled_from(["newest", "review", "crm", "wave"])))


def _frames(r: merge.MergeResult) -> list[pl.DataFrame]:
    return [r.merged, r.conflicts, r.agreed, r.waits, r.fates]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_case())
def test_settled_fields_merge_as_the_full_plan(case):
    links, crm, wave, agreed, queue, policy, first_sync = case
    fast = merge_records(links, crm, wave, agreed, FIELDS, frozenset({"D"}), policy=policy, first_sync=first_sync,
                         queue=queue)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(merge, "_settled", lambda *a: frozenset())
        full = merge_records(links, crm, wave, agreed, FIELDS, frozenset({"D"}), policy=policy, first_sync=first_sync,
                             queue=queue)
    for a, b in zip(_frames(fast), _frames(full)):
        assert a.columns == b.columns
        assert a.sort(a.columns[0]).equals(b.sort(b.columns[0])), (a, b)


def test_a_one_edit_merge_plans_just_the_field_that_differs():
    """The fields equal on both sides are settled: the plan evaluates the policy of the edited field only."""
    links = pl.DataFrame({"global_id": ["g"], "crm_id": ["c"], "wave_id": ["w"], "how": ["merge"]})
    side = {"deleted": [False], "modified": ["2026-01-01T00:00:00Z"], "A": ["x"], "B": ["y"], "C": ["z"], "D": ["d"]}
    crm = pl.DataFrame({"crm_id": ["c"], **side, "B": ["edited"]})
    wave = pl.DataFrame({"wave_id": ["w"], **side})
    agreed = pl.DataFrame({"global_id": ["g"], "A": ["x"], "B": ["y"], "C": ["old"], "D": ["d"]})
    seen: list[frozenset[str]] = []
    real = merge._settled

    def spy(*a):
        seen.append(real(*a))
        return seen[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(merge, "_settled", spy)
        r = merge_records(links, crm, wave, agreed, FIELDS, frozenset({"D"}))
    assert seen == [frozenset({"A", "C"})]
    row = r.merged.row(0, named=True)
    assert (row["A"], row["B"], row["C"]) == ("x", "edited", "z")
    assert r.agreed.row(0, named=True)["C"] == "z"  # settled and changed from the base: agreed from now on
