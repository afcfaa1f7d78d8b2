"""The sync survives Wave's harsher behaviour (docs/wave-behaviour.md): records gone from Wave,
locked invoices, payments that keep modifiedAt, shared modifiedAt, rate limits in both forms
and spurious NOT_FOUND on creates. Real simulators over HTTP."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, UTC
from decimal import Decimal
from pathlib import Path

import pytest

from crm_wave.store import Store
from crm_wave.sync.collect import WAVE_SKEW, collect
from crm_wave.sync.deletes import approve_deletes, pending_deletes
from crm_wave.sync.engine import sync_once
from crm_wave.systems.crm.client import CrmClient
from crm_wave.systems.faults import WaveFaultSettings
from crm_wave.systems.http import HttpPolicy
from crm_wave.systems.serve import serve_in_thread
from crm_wave.systems.wave.client import WaveClient
from crm_wave.systems.wave.simulator import create_app
from crm_wave_tests import wave_reads

STRICT = pytest.mark.parametrize("wave_sim", ["strict"], indirect=True)


def _order(customer: str, product: str, quantity: str = "1", number: str = "5001") -> dict:
    return {"OrderNumber": number, "CustomerId": customer, "OrderDate": "2026-11-01", "DueDate": "2099-11-30",
            "Currency": "USD", "Status": "confirmed",
            "Lines": [{"ProductId": product, "Quantity": quantity, "UnitPrice": "100"}]}


def _cash(rig) -> str:
    accounts = rig.wave.execute("query($id: ID!) { business(id: $id) { accounts(subtypes: [CASH_AND_BANK]) "
                                "{ edges { node { id } } } } }", {"id": rig.wave.business_id})
    return accounts["business"]["accounts"]["edges"][0]["node"]["id"]


def _pay(rig, invoice_id: str, amount: str) -> None:
    rig.wave_write("invoicePaymentCreateManual", {"invoiceId": invoice_id, "amount": amount, "exchangeRate": "1",
                                                  "paymentAccountId": _cash(rig), "paymentDate": "2026-11-05",
                                                  "paymentMethod": "CASH"})


def test_wave_record_gone_breaks_its_link_visibly_and_the_batch_goes_on(rig):
    kept = rig.crm_create("customers", {"Type": "organization", "Name": "Kept", "Email": "kept@x.example"})
    lost = rig.crm_create("customers", {"Type": "organization", "Name": "Lost", "Email": "lost@x.example"})
    rig.sync()
    # Wave's reads become incremental once the newest change is WAVE_SKEW old (until then the
    # stretch is read whole again, which would see the delete below): wait, and sync once more.
    time.sleep(WAVE_SKEW.total_seconds() + 0.5)
    rig.sync()
    wave_ids = {c["email"]: c["id"] for c in rig.wave.list_customers()}
    rig.wave_write("customerDelete", {"id": wave_ids["lost@x.example"]})  # an incremental read never sees it
    for c in (kept, lost):
        rig.crm.patch("customers", c["Id"], {"Phone": "+47 9"}, if_match=rig.crm.get("customers", c["Id"])["Version"])
    passes = rig.sync()
    (survivor,) = rig.wave.list_customers()  # never re-created
    assert survivor["email"] == "kept@x.example" and survivor["phone"] == "+47 9"  # the other of the batch went on
    messages = [m for p in passes for push in p.pushes for m in push.messages]
    assert any("no longer exists in Wave" in m for m in messages), messages
    held = [d for d in pending_deletes(rig.store) if d.system == "crm" and d.entity == "customer"]
    assert [d.target_id for d in held] == [lost["Id"]]  # the CRM side waits for approval (crm-wave deletes)
    assert rig.crm.get("customers", lost["Id"]) is not None
    before = rig.wave.stats.requests
    again = rig.sync()
    assert [p.writes for p in again] == [0] and not any(push.failed for p in again for push in p.pushes)
    assert len(rig.wave.list_customers()) == 1
    assert rig.wave.stats.requests - before <= 12  # reads only: no patch sent again
    with rig.store.connect() as con:
        (gone,) = con.execute("SELECT count(*) FROM sync_log WHERE outcome LIKE 'gone:%'").fetchone()
    assert gone == 1
    done = approve_deletes(rig.store, {"crm": rig.crm, "wave": rig.wave}, {held[0].global_id},
                           datetime.now(UTC))
    assert len(done) == 1 and done[0].endswith("-> ok") and rig.crm.get("customers", lost["Id"]) is None
    # The other way: a CRM delete held for Wave, whose Wave record is gone by the time it is approved.
    rig.crm.delete("customers", kept["Id"], if_match=None)
    rig.sync()
    (held_wave,) = [d for d in pending_deletes(rig.store) if d.system == "wave"]
    rig.wave_write("customerDelete", {"id": held_wave.target_id})
    done = approve_deletes(rig.store, {"crm": rig.crm, "wave": rig.wave}, None, datetime.now(UTC))
    assert len(done) == 1 and done[0].endswith("-> ok") and pending_deletes(rig.store) == []


@STRICT
def test_locked_invoice_edit_is_dead_lettered_once_with_the_reason_in_words(rig):
    cust = rig.crm_create("customers", {"Type": "organization", "Name": "Payer", "Email": "payer@x.example"})
    prod = rig.crm_create("products", {"Name": "Box", "UnitPrice": "100"})
    order = rig.crm_create("orders", _order(cust["Id"], prod["Id"]))
    rig.sync()
    (invoice,) = rig.wave.list_invoices()
    _pay(rig, invoice["id"], "40")  # PARTIAL: locked in strict mode, and modifiedAt does not move
    assert rig.wave.get_invoice(invoice["id"])["modifiedAt"] == invoice["modifiedAt"]
    rig.sync()
    got = rig.crm.get("orders", order["Id"])
    assert Decimal(got["AmountPaid"]) == Decimal("40") and got["PaymentStatus"] == "partial"
    lines = [{**line, "Quantity": "2"} for line in got["Lines"]]
    rig.crm.patch("orders", order["Id"], {"Lines": lines}, if_match=got["Version"])
    rig.sync()
    with rig.store.connect() as con:
        letters = con.execute("SELECT entity, field, message, attempts FROM dead_letters").fetchall()
    assert letters == [("order", "Lines", "Wave invoice 5001 is PARTIAL; its lines can no longer be changed", 3)]
    passes = rig.sync()
    order_push = next(p for p in passes[0].pushes if p.table == "wave_invoice_share")
    assert order_push.parked == 1 and order_push.failed == 0  # once, not every pass
    with rig.store.connect() as con:
        assert con.execute("SELECT attempts FROM dead_letters").fetchall() == [(3,)]


@STRICT
def test_payments_that_keep_modified_at_reach_the_crm_for_few_requests(rig, wave_sim):
    cust = rig.crm_create("customers", {"Type": "organization", "Name": "Payer", "Email": "p@x.example"})
    prod = rig.crm_create("products", {"Name": "Box", "UnitPrice": "100"})
    orders = [rig.crm_create("orders", _order(cust["Id"], prod["Id"], number=str(7000 + i))) for i in range(3)]
    rig.sync()
    invoices = {i["invoiceNumber"]: i for i in rig.wave.list_invoices()}
    con = sqlite3.connect(wave_sim.db_path)  # an hour old, 10 s apart: only 7000 is within the re-read overlap
    with con:
        for i in range(3):
            con.execute("UPDATE entities SET modified_ms = modified_ms - ? WHERE type = 'Invoice' AND lookup = ?",
                        ((3600 + 10 * i) * 1000, str(7000 + i)))
    con.close()
    now = datetime.now(UTC)
    collect(rig.store, "wave", "order", rig.wave, now, full=True)

    def collect_requests() -> int:
        before = rig.wave.stats.requests
        collect(rig.store, "wave", "order", rig.wave, now, full=False)
        return rig.wave.stats.requests - before

    assert collect_requests() == 2  # the incremental read, and one listing of the open invoices
    _pay(rig, invoices["7001"]["id"], "100")  # PAID: leaves the open listing; looked up by id
    _pay(rig, invoices["7002"]["id"], "50")  # PARTIAL: still listed
    assert collect_requests() == 3
    assert collect_requests() == 2  # 7001 is no longer known open
    rig.sync()
    status = {o["OrderNumber"]: rig.crm.get("orders", o["Id"])["PaymentStatus"] for o in orders}
    assert status == {"7000": "unpaid", "7001": "paid", "7002": "partial"}


@STRICT
def test_incremental_read_loses_nothing_when_records_share_a_modified_at(rig, wave_sim):
    biz = rig.wave.business_id
    first = rig.wave_write("customerCreate", {"businessId": biz, "name": "First"}).entity
    now = datetime.now(UTC)
    collect(rig.store, "wave", "customer", rig.wave, now, full=True)
    second = rig.wave_write("customerCreate", {"businessId": biz, "name": "Second"}).entity
    con = sqlite3.connect(wave_sim.db_path)  # same second as the first: the harsh case, made certain
    with con:
        con.execute("UPDATE entities SET modified_ms = (SELECT modified_ms FROM entities WHERE type='Customer' AND n=1)"
                    " WHERE type='Customer' AND n=2")
    con.close()
    assert wave_reads.get_customer(rig.wave, second["id"])["modifiedAt"] == first["modifiedAt"]
    collect(rig.store, "wave", "customer", rig.wave, now, full=False)
    with rig.store.connect() as con:
        ids = {r[0] for r in con.execute("SELECT _source_id FROM wave_customer_current").fetchall()}
    assert ids == {first["id"], second["id"]}


def test_sync_converges_through_rate_limits_in_both_forms_and_spurious_not_found(crm_sim, tmp_path: Path):
    faults = WaveFaultSettings(rate_limit_per_minute=2, rate_limit_window_s=1.0, rate_limit_form="both",
                               max_in_flight=2, not_found_rate=0.3, seed=11)
    app = create_app(db_path=tmp_path / "wave.sqlite3", token="t", strict=True, faults=faults)
    policy = HttpPolicy(backoff_initial_s=0.01, backoff_max_s=0.2, max_attempts=12)
    with serve_in_thread(app) as base, \
            CrmClient(base_url=crm_sim.url, token=crm_sim.token) as crm, \
            WaveClient(url=f"{base}/graphql/public", token="t", policy=policy, batch_size=3, max_workers=3) as wave:
        import uuid

        for i in range(7):
            crm.create("customers", {"Type": "organization", "Name": f"Co {i}", "Email": f"co{i}@x.example"},
                       idempotency_key=str(uuid.uuid4()))
        store = Store(tmp_path / "sync.duckdb")
        for _ in range(3):
            if sync_once(store, {"crm": crm, "wave": wave})[-1].writes == 0:
                break
        emails = sorted(c["email"] for c in wave.list_customers())
        assert emails == sorted(f"co{i}@x.example" for i in range(7))  # each exactly once
        assert wave.stats.rate_limited > 0 and wave.stats.retries > 0
        with store.connect() as con:
            assert con.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)


@STRICT
def test_many_open_invoices_are_re_read_at_most_every_spacing_not_every_pass(rig, wave_sim, monkeypatch):
    """Past `OPEN_EVERY_PASS` open invoices (1 here), a pass within `OPEN_SPACING` of the last re-read (a full
    read counts) does not list them again, so a payment that keeps `modifiedAt` waits; the first pass after it
    does."""
    from datetime import timedelta

    from crm_wave.sync import wave_survival

    monkeypatch.setattr(wave_survival, "OPEN_EVERY_PASS", 1)
    cust = rig.crm_create("customers", {"Type": "organization", "Name": "Payer", "Email": "p@x.example"})
    prod = rig.crm_create("products", {"Name": "Box", "UnitPrice": "100"})
    orders = [rig.crm_create("orders", _order(cust["Id"], prod["Id"], number=str(7100 + i))) for i in range(2)]
    rig.sync()
    con = sqlite3.connect(wave_sim.db_path)  # an hour old, 7100 beyond the incremental read's 2 s overlap
    with con:
        for i in range(2):
            con.execute("UPDATE entities SET modified_ms = modified_ms - ? WHERE type = 'Invoice' AND lookup = ?",
                        ((3600 + 10 * (1 - i)) * 1000, str(7100 + i)))
    con.close()
    t0 = datetime.now(UTC)
    collect(rig.store, "wave", "order", rig.wave, t0, full=True)  # reads every invoice: a re-read at t0
    invoices = {i["invoiceNumber"]: i for i in rig.wave.list_invoices()}
    _pay(rig, invoices["7100"]["id"], "40")  # PARTIAL, modifiedAt unchanged (strict)

    rig.sync(clock=lambda: t0 + timedelta(minutes=1))
    assert rig.crm.get("orders", orders[0]["Id"]).get("PaymentStatus") != "partial"  # not re-read yet
    rig.sync(clock=lambda: t0 + wave_survival.OPEN_SPACING + timedelta(minutes=1))
    got = rig.crm.get("orders", orders[0]["Id"])
    assert got["PaymentStatus"] == "partial" and Decimal(got["AmountPaid"]) == Decimal("40")
