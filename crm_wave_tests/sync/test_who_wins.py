"""Who wins, end to end through both simulators: field policies, the first sync, the conflict queue."""

from __future__ import annotations

from decimal import Decimal

import pytest

from crm_wave.cli import build_parser
from crm_wave.store.queue import list_items
from crm_wave.sync.conflicts_cli import run_conflicts

FIELDS = {"Phone": "phone", "Mobile": "mobile", "Fax": "fax", "Website": "website", "Description": "internalNotes"}
POLICY = """
[fields.customer_organization]
Phone = "crm"
Mobile = "wave"
Fax = "crm->wave"
Website = "wave->crm"
Description = "review"
"""


def _policy(rig, text: str) -> None:
    (rig.store.path.parent / "policy.toml").write_text(text)


def _conflicts(rig, *argv: str) -> int:
    return run_conflicts(rig.store, build_parser().parse_args(["conflicts", *argv]))


def _open(rig) -> list[dict]:
    with rig.store.connect() as con:
        return list_items(con)


def _crm_patch(rig, cid: str, body: dict) -> None:
    rig.crm.patch("customers", cid, body, if_match=rig.crm.get("customers", cid)["Version"])


def _wave_customer(rig, email: str) -> dict:
    return next(c for c in rig.wave.list_customers() if c["email"] == email)


def _values(rig, cid: str, email: str, n: str | None = None) -> dict[str, tuple]:
    crm, wave = rig.crm.get("customers", cid), _wave_customer(rig, email)
    return {f: (crm[f], wave[w]) for f, w in FIELDS.items()}


def test_each_field_policy_with_edits_on_either_side_and_both(rig, capsys):
    _policy(rig, POLICY)
    start = {"Phone": "p0", "Mobile": "m0", "Fax": "f0", "Website": "https://w0.example", "Description": "d0"}
    ids = {k: rig.crm_create("customers", {"Type": "organization", "Name": f"Co {k}", "Email": f"{k}@co.example", **start})["Id"]
           for k in ("crm", "wave", "both")}
    rig.sync()
    edit1 = {"Phone": "p1", "Mobile": "m1", "Fax": "f1", "Website": "https://w1.example", "Description": "d1"}
    edit2 = {"phone": "p2", "mobile": "m2", "fax": "f2", "website": "https://w2.example", "internalNotes": "d2"}
    _crm_patch(rig, ids["crm"], edit1)
    rig.wave_write("customerPatch", {"id": _wave_customer(rig, "wave@co.example")["id"], **edit2})
    _crm_patch(rig, ids["both"], edit1)
    rig.wave_write("customerPatch", {"id": _wave_customer(rig, "both@co.example")["id"], **edit2})  # the newer edit
    rig.sync()

    crm_side, wave_side, both = (_values(rig, ids[k], f"{k}@co.example") for k in ("crm", "wave", "both"))
    w0, w1, w2 = "https://w0.example", "https://w1.example", "https://w2.example"
    # crm owns Phone: its edits reach Wave; Wave's are overwritten.
    assert (crm_side["Phone"], wave_side["Phone"], both["Phone"]) == (("p1", "p1"), ("p0", "p0"), ("p1", "p1"))
    # wave owns Mobile.
    assert (crm_side["Mobile"], wave_side["Mobile"], both["Mobile"]) == (("m0", "m0"), ("m2", "m2"), ("m2", "m2"))
    # crm->wave: CRM edits flow; a Wave edit stays in Wave only.
    assert (crm_side["Fax"], wave_side["Fax"], both["Fax"]) == (("f1", "f1"), ("f0", "f2"), ("f1", "f1"))
    # wave->crm: Wave edits flow; a CRM edit stays in the CRM only.
    assert (crm_side["Website"], wave_side["Website"], both["Website"]) == ((w1, w0), (w2, w2), (w2, w2))
    # review: one-sided edits flow; the two-sided one waits, nothing written.
    assert (crm_side["Description"], wave_side["Description"], both["Description"]) == (("d1", "d1"), ("d2", "d2"), ("d1", "d2"))
    with rig.store.connect() as con:
        recorded = set(con.execute("SELECT field, crm_value, wave_value, winner FROM conflicts").fetchall())
    assert {("Phone", "p0", "p2", "crm"), ("Mobile", "m1", "m0", "wave"), ("Phone", "p1", "p2", "crm"),
            ("Mobile", "m1", "m2", "wave")} <= recorded
    (item,) = _open(rig)
    assert (item["field"], item["crm_value"], item["wave_value"], item["base_value"], item["kind"]) == \
        ("Description", "d1", "d2", "d0", "review")

    # No echo and no duplicate: the next sync writes nothing and queues nothing new.
    assert [p.writes for p in rig.sync()] == [0]
    assert [i["id"] for i in _open(rig)] == [item["id"]]
    assert len(rig.crm.read_all("customers")) == len(rig.wave.list_customers()) == 3

    # A later edit supersedes the queued conflict; the new one is decided (take wave) and applied.
    rig.wave_write("customerPatch", {"id": _wave_customer(rig, "both@co.example")["id"], "internalNotes": "d3"})
    rig.sync()
    (newer,) = _open(rig)
    assert newer["id"] != item["id"] and (newer["crm_value"], newer["wave_value"]) == ("d1", "d3")
    assert _conflicts(rig, "resolve", str(item["id"]), "--take", "crm") == 2  # superseded: cannot be decided
    assert "superseded" in capsys.readouterr().err
    assert _conflicts(rig, "resolve", str(newer["id"]), "--take", "wave", "--by", "tester") == 0
    rig.sync()
    assert _values(rig, ids["both"], "both@co.example")["Description"] == ("d3", "d3")
    assert _open(rig) == []
    with rig.store.connect() as con:
        (done,) = list_items(con, ids=[newer["id"]])
    assert (done["status"], done["decision"], done["decided_by"]) == ("applied", "wave", "tester")
    assert done["decided_at"] is not None and done["closed_at"] is not None
    assert [p.writes for p in rig.sync()] == [0]


def _pairs(rig, names: list[str]) -> None:
    for n in names:
        rig.crm_create("products", {"Name": n, "UnitPrice": "10"})
        rig.wave_write("productCreate", {"businessId": rig.wave.business_id, "name": n.lower(), "unitPrice": "10"})


def _product_names(rig) -> tuple[list[str], list[str]]:
    return sorted(p["Name"] for p in rig.crm.read_all("products")), sorted(p["name"] for p in rig.wave.list_products())


def test_first_sync_asks_before_overwriting_then_applies_decisions(rig, capsys):
    _pairs(rig, ["Alpha One", "Beta Two", "Gamma Three", "Delta Four", "Eps Five"])
    rig.crm_create("customers", {"Type": "organization", "Name": "Cur Co", "Email": "cur@co.example", "Currency": "GBP"})
    rig.wave_write("customerCreate", {"businessId": rig.wave.business_id, "name": "Cur Co", "email": "cur@co.example",
                                      "currency": "USD"})
    rig.sync()
    crm_names, wave_names = _product_names(rig)
    assert crm_names == ["Alpha One", "Beta Two", "Delta Four", "Eps Five", "Gamma Three"]  # nothing overwritten
    assert wave_names == ["alpha one", "beta two", "delta four", "eps five", "gamma three"]
    (crm_customer,) = rig.crm.read_all("customers")
    assert crm_customer["Currency"] == "GBP" and rig.wave.list_customers()[0]["currency"]["code"] == "USD"
    items = {i["crm_value"]: i for i in _open(rig)}
    assert set(items) == {"Alpha One", "Beta Two", "Gamma Three", "Delta Four", "Eps Five", "GBP"}
    assert {i["kind"] for i in items.values()} == {"first_sync"}

    # Waiting records never block the others: a new product and an edit of a waiting one's price go through.
    rig.crm_create("products", {"Name": "Zeta New", "UnitPrice": "3"})
    alpha = next(p for p in rig.crm.read_all("products") if p["Name"] == "Alpha One")
    rig.crm.patch("products", alpha["Id"], {"UnitPrice": "12"}, if_match=alpha["Version"])
    rig.sync()
    assert {p["name"]: Decimal(p["unitPrice"]) for p in rig.wave.list_products()}["Zeta New"] == 3
    assert {p["name"]: Decimal(p["unitPrice"]) for p in rig.wave.list_products()}["alpha one"] == 12
    assert {i["id"] for i in _open(rig)} == {i["id"] for i in items.values()}  # still waiting, not duplicated

    # Listing shows entity, field, both values, the base and when.
    assert _conflicts(rig) == 0
    out = capsys.readouterr().out
    assert f"#{items['GBP']['id']} customer" in out and 'CRM "GBP" vs Wave "USD"' in out and "6 open conflict(s)" in out

    # Decide each way: crm, wave, a typed value; then all the rest.
    assert _conflicts(rig, "resolve", str(items["Alpha One"]["id"]), "--take", "crm") == 0
    assert _conflicts(rig, "resolve", str(items["Beta Two"]["id"]), "--take", "wave") == 0
    assert _conflicts(rig, "resolve", str(items["Gamma Three"]["id"]), "--value", "Gamma 3") == 0
    assert _conflicts(rig, "resolve", "--all", "--take", "crm", "--entity", "product") == 0
    assert len(_open(rig)) == 1  # the customer's currency
    assert _conflicts(rig, "resolve", "--all", "--value", "eur") == 0
    rig.sync()
    crm_names, wave_names = _product_names(rig)
    assert crm_names == wave_names == ["Alpha One", "Delta Four", "Eps Five", "Gamma 3", "Zeta New", "beta two"]
    assert rig.crm.read_all("customers")[0]["Currency"] == "EUR" == rig.wave.list_customers()[0]["currency"]["code"]
    assert _open(rig) == []
    assert [p.writes for p in rig.sync()] == [0]
    assert len(rig.crm.read_all("products")) == len(rig.wave.list_products()) == 6


@pytest.mark.parametrize(("first_sync", "want"), [("crm", "Nordic Headphones"), ("wave", "nordic headphones"),
                                                  ("newest", "nordic headphones")])
def test_first_sync_with_a_configured_winner(rig, first_sync, want):
    _policy(rig, f'first_sync = "{first_sync}"\n')
    _pairs(rig, ["Nordic Headphones"])  # Wave's copy is written second: the newer one
    rig.sync()
    assert _product_names(rig) == ([want], [want])
    assert _open(rig) == []
    with rig.store.connect() as con:
        (row,) = con.execute("SELECT field, winner, reason FROM conflicts").fetchall()
    assert row == ("Name", "crm" if want == "Nordic Headphones" else "wave", "differed when first linked")
    assert [p.writes for p in rig.sync()] == [0]
    assert len(rig.crm.read_all("products")) == len(rig.wave.list_products()) == 1
