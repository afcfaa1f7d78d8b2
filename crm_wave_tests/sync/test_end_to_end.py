"""End to end over HTTP: both simulators, the real clients, every stage of the sync."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from crm_wave.systems.crm.simulator.styles import STYLES
from datetime import UTC

#: Every test runs against each shape of the CRM simulator (through the profile of that name) and
#: each mode of the Wave simulator: every style and every mode at least once, strict Wave with the
#: contract CRM and with a CRM without change feed, not the whole cross product (test time).
_PAIRS = [("contract", "default"), ("contract", "strict")] + [
    (style, "strict" if i % 2 == 0 else "default") for i, style in enumerate(s for s in STYLES if s != "contract")]
#: Every style: the tests that read everything, write to the CRM, and read an edit incrementally.
EVERY_STYLE = pytest.mark.parametrize(("crm_style", "wave_sim"), _PAIRS, indirect=True)
#: The other tests: each change detection and write shape once (contract, offset, paged); the styles
#: that differ from `paged` only in paging and auth (paged-number, paged-next) run in EVERY_STYLE's
#: tests and in crm/test_auth_paging_styles.py (test time).
PAIRS = pytest.mark.parametrize(("crm_style", "wave_sim"), [p for p in _PAIRS if p[0] in ("contract", "offset", "paged")],
                                indirect=True)
#: Tests whose CRM side is one read and one patch of a customer, which every style already does in
#: test_edits_on_each_side_reach_the_other_and_no_echo: each Wave mode with the contract CRM.
WAVE_MODES = pytest.mark.parametrize(("crm_style", "wave_sim"), [p for p in _PAIRS if p[0] == "contract"],
                                     indirect=True)


def _by(items, key):
    return {i[key]: i for i in items}


def _order_body(customer_id: str, product_ids: list[str], number: str = "5001", status: str = "confirmed") -> dict:
    return {
        "OrderNumber": number, "CustomerId": customer_id, "Title": "Spring order", "OrderDate": "2026-11-01",
        "DueDate": "2026-11-30", "Currency": "USD", "PoNumber": "PO-7", "Memo": "thanks", "Status": status,
        "Lines": [{"ProductId": p, "Description": f"line {i}", "Quantity": str(i + 1), "UnitPrice": "19.95"}
                  for i, p in enumerate(product_ids)],
    }


@EVERY_STYLE
def test_crm_records_are_created_in_wave_with_every_flow(rig):
    org = rig.crm_create("customers", {"Type": "organization", "Name": "Acme AS", "Email": "post@acme.no",
                                       "CustomerNumber": "K-1", "Phone": "+47 1", "StreetAddress1": "Gate 1",
                                       "City": "Oslo", "ZipCode": "0150", "Country": "NO", "Currency": "NOK",
                                       "FirstName": "Per", "LastName": "Kontakt", "Description": "VIP"})
    rig.crm_create("customers", {"Type": "person", "FirstName": "Kari", "LastName": "Nordmann",
                                          "Email": "kari@example.no", "State": "US-CA", "Country": "US"})
    p1 = rig.crm_create("products", {"Name": "Widget", "UnitPrice": "149.90", "Description": "A widget"})
    p2 = rig.crm_create("products", {"Name": "Gizmo", "UnitPrice": "10.123456"})
    order = rig.crm_create("orders", _order_body(org["Id"], [p1["Id"], p2["Id"]]))
    rig.sync()

    customers = _by(rig.wave.list_customers(), "email")
    acme = customers["post@acme.no"]
    assert acme["name"] == "Acme AS" and acme["displayId"] == "K-1" and acme["internalNotes"] == "VIP"
    assert acme["address"]["city"] == "Oslo" and acme["address"]["country"]["code"] == "NO"
    assert acme["shippingDetails"]["address"]["city"] == "Oslo"
    assert acme["currency"]["code"] == "NOK" and (acme["firstName"], acme["lastName"]) == ("Per", "Kontakt")
    kari = customers["kari@example.no"]
    assert (kari["firstName"], kari["lastName"], kari["name"]) == ("Kari", "Nordmann", "Kari Nordmann")
    assert kari["address"]["province"]["code"] == "US-CA"

    products = _by(rig.wave.list_products(), "name")
    assert Decimal(products["Widget"]["unitPrice"]) == Decimal("149.90")
    assert Decimal(products["Gizmo"]["unitPrice"]) == Decimal("10.12346")  # Wave keeps 5 decimals

    (invoice,) = rig.wave.list_invoices()
    assert invoice["invoiceNumber"] == "5001" and invoice["customer"]["id"] == acme["id"]
    assert invoice["status"] != "DRAFT" and invoice["poNumber"] == "PO-7" and invoice["memo"] == "thanks"
    assert [i["product"]["id"] for i in invoice["items"]] == [products["Widget"]["id"], products["Gizmo"]["id"]]
    crm_order = rig.crm.get("orders", order["Id"])
    assert Decimal(invoice["total"]["value"]) == Decimal(crm_order["Total"])
    assert crm_order["PaymentStatus"] in ("unpaid", "overdue", "sent")
    assert Decimal(crm_order["AmountDue"]) == Decimal(crm_order["Total"])


@EVERY_STYLE
def test_wave_records_are_created_in_the_crm(rig):
    biz = rig.wave.business_id
    org = rig.wave_write("customerCreate", {"businessId": biz, "name": "Wave Org", "email": "org@wave.example",
                                            "address": {"city": "Bergen", "countryCode": "NO"}}).entity
    rig.wave_write("customerCreate", {"businessId": biz, "name": "Ola Hansen", "firstName": "Ola",
                                      "lastName": "Hansen", "email": "ola@wave.example"})
    prod = rig.wave_write("productCreate", {"businessId": biz, "name": "Service", "unitPrice": "99.5"}).entity
    rig.wave_write("invoiceCreate", {"businessId": biz, "customerId": org["id"], "invoiceNumber": "77",
                                     "invoiceDate": "2026-11-02", "dueDate": "2026-11-20", "status": "SAVED",
                                     "items": [{"productId": prod["id"], "quantity": "3", "unitPrice": "99.5"}]})
    rig.sync()

    customers = _by(rig.crm.read_all("customers"), "Email")
    assert customers["org@wave.example"]["Type"] == "organization"
    assert customers["org@wave.example"]["City"] == "Bergen"
    ola = customers["ola@wave.example"]
    assert (ola["Type"], ola["FirstName"], ola["LastName"], ola["Name"]) == ("person", "Ola", "Hansen", "Ola Hansen")
    (product,) = rig.crm.read_all("products")
    assert product["Name"] == "Service" and Decimal(product["UnitPrice"]) == Decimal("99.5")
    (order,) = rig.crm.read_all("orders")
    assert order["OrderNumber"] == "77" and order["CustomerId"] == customers["org@wave.example"]["Id"]
    assert order["Status"] == "confirmed" and Decimal(order["Total"]) == Decimal("298.50")
    assert [line["ProductId"] for line in order["Lines"]] == [product["Id"]]


@PAIRS
def test_pre_existing_pair_is_merged_not_duplicated(rig):
    rig.crm_create("customers", {"Type": "organization", "Name": "Same Co", "Email": "same@co.example", "Phone": "1"})
    rig.crm_create("products", {"Name": "Shared Thing", "UnitPrice": "5"})
    rig.wave_write("customerCreate", {"businessId": rig.wave.business_id, "name": "Same Co",
                                      "email": "  SAME@co.example ", "mobile": "2"})
    rig.wave_write("productCreate", {"businessId": rig.wave.business_id, "name": "shared thing", "unitPrice": "5"})
    rig.sync()
    assert len(rig.wave.list_customers()) == 1 and len(rig.crm.read_all("customers")) == 1
    assert len(rig.wave.list_products()) == 1 and len(rig.crm.read_all("products")) == 1
    links = rig.links("customer")
    assert links["how"].to_list() == ["merge:Email=Email"]
    (wave_customer,) = rig.wave.list_customers()
    (crm_customer,) = rig.crm.read_all("customers")
    assert wave_customer["phone"] == "1" and crm_customer["Mobile"] == "2"  # empty sides filled both ways


@EVERY_STYLE
def test_edits_on_each_side_reach_the_other_and_no_echo(rig):
    c = rig.crm_create("customers", {"Type": "organization", "Name": "Edit Me", "Email": "edit@me.example"})
    rig.sync()
    (w,) = rig.wave.list_customers()
    current = rig.crm.get("customers", c["Id"])
    rig.crm.patch("customers", c["Id"], {"Phone": "+1 555"}, if_match=current["Version"])
    rig.wave_write("customerPatch", {"id": w["id"], "website": "https://edited.example"})
    rig.sync()
    (w,) = rig.wave.list_customers()
    assert w["phone"] == "+1 555"
    assert rig.crm.get("customers", c["Id"])["Website"] == "https://edited.example"
    before_crm = rig.crm.get("customers", c["Id"])["Version"]
    before_wave = w["modifiedAt"]
    passes = rig.sync()
    assert [p.writes for p in passes] == [0]
    assert rig.crm.get("customers", c["Id"])["Version"] == before_crm
    assert rig.wave.list_customers()[0]["modifiedAt"] == before_wave


@WAVE_MODES
def test_a_field_cleared_then_set_back_reaches_the_other_side(rig):
    # Cleared in the CRM, the phone is agreed empty once both sides have it so; set back to its old value,
    # that is an edit, not "unchanged": it reaches Wave and is not undone by Wave's empty phone (until
    # 2026-12-02 an empty agreed value kept the old one, and this edit was reverted in the CRM).
    c = rig.crm_create("customers", {"Type": "organization", "Name": "Cleared", "Email": "clear@x.example",
                                     "Phone": "+47 1"})
    rig.sync()
    for phone in (None, "+47 1"):
        current = rig.crm.get("customers", c["Id"])
        rig.crm.patch("customers", c["Id"], {"Phone": phone}, if_match=current["Version"])
        rig.sync()
        (w,) = rig.wave.list_customers()
        assert (w["phone"] or None, rig.crm.get("customers", c["Id"])["Phone"] or None) == (phone, phone)
        rig.sync()  # a pass after the push: both sides stay as they are
        assert rig.crm.get("customers", c["Id"])["Phone"] == phone
    with rig.store.connect() as con:
        assert con.execute("SELECT count(*) FROM conflicts").fetchone() == (0,)


@WAVE_MODES
def test_same_field_edited_on_both_sides_newer_wins_and_is_recorded(rig):
    c = rig.crm_create("customers", {"Type": "organization", "Name": "Clash", "Email": "clash@x.example", "City": "Oslo"})
    rig.sync()
    (w,) = rig.wave.list_customers()
    current = rig.crm.get("customers", c["Id"])
    rig.crm.patch("customers", c["Id"], {"City": "Bergen"}, if_match=current["Version"])
    if w["modifiedAt"].endswith(".000Z"):  # strict mode: Wave's modifiedAt has whole seconds, so
        time.sleep(1.01 - time.time() % 1)  # "newer" needs the next second (docs/wave-behaviour.md)
    address = {"city": "Trondheim", "countryCode": None}
    rig.wave_write("customerPatch", {"id": w["id"], "address": address})  # Wave's edit is the newer one
    rig.sync()
    assert rig.crm.get("customers", c["Id"])["City"] == "Trondheim"
    assert rig.wave.list_customers()[0]["address"]["city"] == "Trondheim"
    with rig.store.connect() as con:
        rows = con.execute("SELECT field, crm_value, wave_value, base_value, winner FROM conflicts").fetchall()
    assert ("City", "Bergen", "Trondheim", "Oslo", "wave") in rows


@PAIRS
def test_wave_payment_reaches_the_order(rig):
    cust = rig.crm_create("customers", {"Type": "organization", "Name": "Payer", "Email": "pay@x.example"})
    prod = rig.crm_create("products", {"Name": "Box", "UnitPrice": "100"})
    order = rig.crm_create("orders", _order_body(cust["Id"], [prod["Id"]], number="9001"))
    rig.sync()
    (invoice,) = rig.wave.list_invoices()
    accounts = rig.wave.execute(
        "query($id: ID!) { business(id: $id) { accounts(page: 1, pageSize: 50) { edges { node { id subtype { value } } } } } }",
        {"id": rig.wave.business_id})
    cash = next(e["node"]["id"] for e in accounts["business"]["accounts"]["edges"]
                if e["node"]["subtype"]["value"] == "CASH_AND_BANK")
    rig.wave_write("invoicePaymentCreateManual", {"invoiceId": invoice["id"], "amount": "7.95", "exchangeRate": "1",
                                                  "paymentAccountId": cash, "paymentDate": "2026-11-05",
                                                  "paymentMethod": "BANK_TRANSFER"})
    rig.sync()
    got = rig.crm.get("orders", order["Id"])
    assert Decimal(got["AmountPaid"]) == Decimal("7.95")
    assert Decimal(got["AmountDue"]) == Decimal(got["Total"]) - Decimal("7.95")
    assert got["PaymentStatus"] == "partial"


@PAIRS
def test_bad_record_is_dead_lettered_and_its_invoice_waits_visibly(rig):
    biz = rig.wave.business_id
    # Wave allows two customers with one displayId; the CRM's CustomerNumber is unique (409 for the second).
    good = rig.wave_write("customerCreate", {"businessId": biz, "name": "Good", "email": "a@x.example", "displayId": "K-9"}).entity
    bad = rig.wave_write("customerCreate", {"businessId": biz, "name": "Twin", "email": "b@x.example", "displayId": "K-9"}).entity
    prod = rig.wave_write("productCreate", {"businessId": biz, "name": "Thing", "unitPrice": "1"}).entity
    for number, cust in (("42", bad), ("43", good)):
        rig.wave_write("invoiceCreate", {"businessId": biz, "customerId": cust["id"], "invoiceNumber": number,
                                         "items": [{"productId": prod["id"], "quantity": "1"}]})
    rig.sync()
    assert [c["Name"] for c in rig.crm.read_all("customers")] == ["Good"]
    assert [o["OrderNumber"] for o in rig.crm.read_all("orders")] == ["43"]
    with rig.store.connect() as con:
        (reason,) = con.execute("SELECT reason FROM crm_order_share WHERE op = 'wait'").fetchall()[0]
        letters = con.execute("SELECT system, entity, record_id, field, message FROM dead_letters").fetchall()
    assert f"customer wave-customer:{bad['id']} is not linked in crm yet" in reason
    ((system, entity, record_id, field, message),) = letters
    assert (system, entity, record_id, field) == ("crm", "customer", bad["id"], "CustomerNumber")
    assert "K-9" in message


@PAIRS
def test_deletes_on_either_side_are_held_then_approved(rig):
    from datetime import datetime

    from crm_wave.sync.deletes import approve_deletes, pending_deletes

    gone_in_crm = rig.crm_create("customers", {"Type": "organization", "Name": "Gone Co", "Email": "gone@x.example"})
    kept = rig.crm_create("customers", {"Type": "organization", "Name": "Kept Co", "Email": "kept@x.example"})
    rig.sync()
    by_email = _by(rig.wave.list_customers(), "email")
    rig.crm.delete("customers", gone_in_crm["Id"], if_match=None)  # hard, tombstone or soft, per style
    rig.wave_write("customerDelete", {"id": by_email["kept@x.example"]["id"]})
    rig.sync(full=True)  # a full read is what shows a delete in Wave (and in a CRM without tombstones)
    held = {(d.system, d.target_id) for d in pending_deletes(rig.store)}
    assert held == {("wave", by_email["gone@x.example"]["id"]), ("crm", kept["Id"])}
    assert "gone@x.example" in _by(rig.wave.list_customers(), "email")  # held, not carried out
    assert rig.crm.get("customers", kept["Id"]) is not None
    done = approve_deletes(rig.store, {"crm": rig.crm, "wave": rig.wave}, None, datetime.now(UTC))
    assert len(done) == 2 and all(line.endswith("-> ok") for line in done), done
    assert rig.crm.get("customers", kept["Id"]) is None
    assert [c["email"] for c in rig.wave.list_customers()] == []
    rig.sync()
    assert rig.crm.read_all("customers") == [] and rig.wave.list_customers() == []  # nothing re-created
