"""Who wins, decided by the pure merge: each field policy, the first sync, queue decisions; and the policy file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from crm_wave.logic.decide import DecisionError, decided_value
from crm_wave.logic.merge import QUEUE_SCHEMA, merge_records
from crm_wave.mapping.policy import Policy, PolicyError, field_policy_exprs, load_policy, parse_policy

OLD, NEW = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"


def _merge(crm_value, wave_value, base, pol="newest", *, first_sync="newest", crm_mod=OLD, wave_mod=NEW,
           queue=None, has_base=True):
    """One linked pair, one field `F`; returns (golden, held crm, held wave, conflicts, waits, fates)."""
    links = pl.DataFrame({"global_id": ["g"], "crm_id": ["c"], "wave_id": ["w"], "how": ["merge:F=F"]})
    crm = pl.DataFrame({"crm_id": ["c"], "deleted": [False], "modified": [crm_mod], "F": [crm_value]},
                       schema={"crm_id": pl.String, "deleted": pl.Boolean, "modified": pl.String, "F": pl.String})
    wave = pl.DataFrame({"wave_id": ["w"], "deleted": [False], "modified": [wave_mod], "F": [wave_value]},
                        schema={"wave_id": pl.String, "deleted": pl.Boolean, "modified": pl.String, "F": pl.String})
    agreed = pl.DataFrame({"global_id": ["g"] if has_base else [], "F": [base] if has_base else []},
                          schema={"global_id": pl.String, "F": pl.String})
    r = merge_records(links, crm, wave, agreed, ["F"], policy={"F": pol}, first_sync=first_sync,
                      queue=None if queue is None else pl.DataFrame([queue], schema=QUEUE_SCHEMA, orient="row"))
    row = r.merged.row(0, named=True)
    return (row["F"], row["held__crm"], row["held__wave"], r.conflicts.select("winner", "reason").rows(),
            r.waits.select("kind", "crm_value", "wave_value", "base_value").rows(), r.fates["status"].to_list())


# ---- field policies: an edit on the CRM side, the Wave side, both ---------------------------

@pytest.mark.parametrize(("pol", "crm_only", "wave_only", "both"), [
    # (golden, held crm, held wave, recorded winner or None, waits)
    ("newest", ("c1", None, None, None, False), ("w1", None, None, None, False), ("w1", None, None, "wave", False)),
    ("crm", ("c1", None, None, None, False), ("b", None, None, "crm", False), ("c1", None, None, "crm", False)),
    ("wave", ("b", None, None, "wave", False), ("w1", None, None, None, False), ("w1", None, None, "wave", False)),
    ("crm->wave", ("c1", None, None, None, False), ("b", None, "F", None, False), ("c1", None, None, "crm", False)),
    ("wave->crm", ("b", "F", None, None, False), ("w1", None, None, None, False),
     ("w1", None, None, "wave", False)),
    ("review", ("c1", None, None, None, False), ("w1", None, None, None, False), ("c1", "F", "F", None, True)),
])
def test_each_policy_on_each_side(pol, crm_only, wave_only, both):
    for (c, w), want in (((("c1", "b")), crm_only), ((("b", "w1")), wave_only), ((("c1", "w1")), both)):
        golden, held_c, held_w, conflicts, waits, _ = _merge(c, w, "b", pol)
        assert (golden, held_c, held_w) == want[:3], (pol, c, w)
        assert [winner for winner, _ in conflicts] == ([want[3]] if want[3] else []), (pol, c, w, conflicts)
        assert bool(waits) == want[4], (pol, c, w)
        if waits:
            assert waits == [("review", c, w, "b")]


def test_owner_overwrite_is_recorded_with_why():
    *_, conflicts, _, _ = _merge("b", "w1", "b", "crm")
    assert conflicts == [("crm", "edited in Wave; the CRM owns the field")]


def test_newest_keeps_a_non_empty_value_over_an_empty_newer_one():
    assert _merge("c1", None, "b", "newest")[0] == "c1"


# ---- the first sync (no agreed value yet) -------------------------------------------------

@pytest.mark.parametrize(("first_sync", "golden", "waits"), [
    ("review", "Nordic", True), ("crm", "Nordic", False), ("wave", "nordic", False), ("newest", "nordic", False)])
def test_first_sync_policies(first_sync, golden, waits):
    got, held_c, held_w, conflicts, wait_rows, _ = _merge("Nordic", "nordic", None, first_sync=first_sync, has_base=False)
    assert got == golden
    assert (held_c, held_w) == (("F", "F") if waits else (None, None))
    assert wait_rows == ([("first_sync", "Nordic", "nordic", None)] if waits else [])
    assert conflicts == ([] if waits else [(("crm" if golden == "Nordic" else "wave"), "differed when first linked")])


def test_first_sync_fills_an_empty_side_without_asking():
    assert _merge(None, "x", None, first_sync="review", has_base=False)[:2] == ("x", None)
    assert _merge("y", None, None, "wave", first_sync="review", has_base=False)[:2] == ("y", None)


def test_owner_decides_the_first_sync_and_review_always_waits():
    assert _merge("A", "a", None, "wave", first_sync="review", has_base=False)[0] == "a"
    assert _merge("A", "a", None, "review", first_sync="crm", has_base=False)[4] == [("first_sync", "A", "a", None)]


def test_a_first_sync_wait_keeps_waiting_after_other_fields_were_agreed():
    # The record now has agreed values (other fields), this field none: still the first sync.
    item = {"global_id": "g", "field": "F", "kind": "first_sync", "crm_value": "A", "wave_value": "a",
            "decided": False, "value": None}
    golden, held_c, held_w, _, waits, fates = _merge("A", "a", None, first_sync="review", queue=item)
    assert (held_c, held_w, fates) == ("F", "F", ["open"])
    assert waits == [("first_sync", "A", "a", None)]


# ---- decisions from the queue ---------------------------------------------------------

def _item(value, decided=True, kind="review"):
    return {"global_id": "g", "field": "F", "kind": kind, "crm_value": "c1", "wave_value": "w1", "decided": decided,
            "value": value}


@pytest.mark.parametrize("value", ["c1", "w1", "typed"])
def test_a_decision_is_applied_then_closes(value):
    golden, held_c, held_w, conflicts, waits, fates = _merge("c1", "w1", "b", "review", queue=_item(value))
    assert (golden, held_c, held_w, conflicts, waits, fates) == (value, None, None, [], [], ["decided"])
    # One side written already (the other push failed): still applied, not re-decided.
    assert _merge(value, "w1", "b", "review", queue=_item(value))[0] == value
    assert _merge(value, value, value, "review", queue=_item(value))[5] == ["applied"]


def test_a_later_edit_supersedes_the_queue_item():
    # Waiting on (c1, w1); Wave changed again to w2: the old item is superseded, a new one waits.
    _, held_c, _, _, waits, fates = _merge("c1", "w2", "b", "review", queue=_item(None, decided=False))
    assert fates == ["superseded"] and waits == [("review", "c1", "w2", "b")] and held_c == "F"
    # A decision made before the later edit no longer applies either.
    golden, _, _, _, waits, fates = _merge("c1", "w2", "b", "review", queue=_item("c1"))
    assert fates == ["superseded"] and waits == [("review", "c1", "w2", "b")]


def test_customer_policy_follows_the_flow_of_each_row():
    policy = parse_policy({"fields": {"customer_person": {"Phone": "crm"}, "customer_organization": {"Phone": "wave"}}})
    exprs = field_policy_exprs(policy, "customer")
    df = pl.DataFrame({"_type": ["person", "organization"]})
    assert df.select(exprs["Phone"]).to_series().to_list() == ["crm", "wave"]
    assert df.select(exprs["Name"]).to_series().to_list() == ["derived", "newest"]
    assert field_policy_exprs(policy, "product")["Name"] == "newest"


def test_policy_chosen_per_row_decides_like_the_literal():
    # A customer field whose flows differ: the policy is an expression; each row decides as its own policy.
    for pol in ("newest", "crm", "wave", "crm->wave", "wave->crm", "review"):
        for c, w in (("c1", "b"), ("b", "w1"), ("c1", "w1")):
            assert _merge(c, w, "b", pl.lit(pol))[:5] == _merge(c, w, "b", pol)[:5], (pol, c, w)
        assert _merge("A", "a", None, pl.lit(pol), first_sync="review", has_base=False)[:5] == \
            _merge("A", "a", None, pol, first_sync="review", has_base=False)[:5]


# ---- the policy file --------------------------------------------------------------------

def test_policy_file_is_read_and_validated(tmp_path: Path):
    assert load_policy(tmp_path) == Policy()  # no file: defaults (first sync review, every field newest)
    (tmp_path / "policy.toml").write_text('first_sync = "crm"\n[fields.product]\nName = "crm"\n[fields.customer]\nCurrency = "wave->crm"\n')
    policy = load_policy(tmp_path)
    assert policy.first_sync == "crm" and policy.field("product", "Name") == "crm"
    assert policy.field("customer_person", "Currency") == policy.field("customer_organization", "Currency") == "wave->crm"
    other = tmp_path / "elsewhere.toml"
    other.write_text('first_sync = "wave"\n')
    assert load_policy(tmp_path, other).first_sync == "wave"


@pytest.mark.parametrize(("doc", "message"), [
    ({"first_sync": "always"}, "first_sync = 'always' is not one of"),
    ({"fields": {"invoice": {"Title": "crm"}}}, "[fields.invoice]: unknown flow"),
    ({"fields": {"product": {"Price": "crm"}}}, "[fields.product] Price: no such field in flow product"),
    ({"fields": {"product": {"Name": "mine"}}}, "[fields.product] Name = 'mine' is not one of"),
    ({"fields": {"order": {"Total": "crm"}}}, "[fields.order] Total = 'crm': the field is one-way Wave -> CRM"),
    ({"fields": {"customer_person": {"Name": "crm"}}}, "a person's Name is derived"),
    ({"winner": "crm"}, "unknown key 'winner'"),
])
def test_bad_policies_get_one_line_errors(doc, message):
    with pytest.raises(PolicyError) as err:
        parse_policy(doc, "policy.toml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_toml_and_missing_named_file(tmp_path: Path):
    (tmp_path / "policy.toml").write_text("first_sync = \n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(tmp_path)
    with pytest.raises(PolicyError, match="no such file"):
        load_policy(tmp_path, tmp_path / "nope.toml")


# ---- what a decision means ----------------------------------------------------------------

def test_decided_values():
    item = {"id": 1, "entity": "customer", "global_id": "g", "field": "Currency", "crm_value": "GBP",
            "wave_value": "USD", "crm_modified": OLD, "wave_modified": NEW}
    assert decided_value(item, "crm") == ("crm", "GBP")
    assert decided_value(item, "wave") == ("wave", "USD")
    assert decided_value(item, "newest") == ("wave", "USD")
    assert decided_value(item, "value", " nok ") == ("value", "NOK")  # normalised like a collected value
    with pytest.raises(DecisionError, match="conflict 1 .*Lines.*cannot be typed"):
        decided_value({**item, "entity": "order", "field": "Lines"}, "value", "[]")
    with pytest.raises(DecisionError, match="is not true or false"):
        decided_value({**item, "entity": "product", "field": "IsArchived"}, "value", "maybe")
