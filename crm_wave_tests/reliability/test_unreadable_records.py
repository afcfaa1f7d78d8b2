"""A record whose body the mapping cannot read (an order's lines that are not a list of objects) does
not stop the sync of the others: the global step holds it at its newest readable version, or leaves it
out when it never had one, and names it in its result (`GlobalResult.unreadable`) and, until a
version of it reads again, in `unreadable_records` (the state table, the global asset's check).
A record listed without an id is left out by the collect, which names it (`CollectResult.skipped`).

End to end through both simulators (the dirty versions are written straight into the CRM
simulator's database, as a CRM with legacy data holds them), and at the read itself for both of
`read_canonical`'s paths (a few records mapped one by one, many through the fragments query).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

from crm_wave.analyst.snapshot import Layout, publish_snapshot
from crm_wave.defs.checks import CHECKS
from crm_wave.mapping.canonical import SMALL
from crm_wave.store.db import Store, Version
from crm_wave.store.unreadable import list_unreadable
from crm_wave.sync.engine import report_stage
from crm_wave.sync.global_step import read_canonical
from crm_wave.sync.names import dataset
from crm_wave.sync.stages import stage
from crm_wave.tools.report import state_summary


def _order(customer: str, product: str, number: str, quantity: str = "1") -> dict:
    return {"OrderNumber": number, "CustomerId": customer, "Title": f"Order {number}", "OrderDate": "2026-11-01",
            "DueDate": "2099-11-30", "Currency": "USD", "Status": "confirmed",
            "Lines": [{"ProductId": product, "Quantity": quantity, "UnitPrice": "100"}]}


def _unreadable(passes) -> list[str]:
    return [m for p in passes for g in p.globals for m in g.unreadable]


def test_an_unreadable_order_is_held_and_the_others_sync(rig, tmp_path: Path) -> None:
    cust = rig.crm_create("customers", {"Type": "organization", "Name": "Payer", "Email": "payer@x.example"})
    prod = rig.crm_create("products", {"Name": "Box", "UnitPrice": "100"})
    good = rig.crm_create("orders", _order(cust["Id"], prod["Id"], "8001"))
    broken = rig.crm_create("orders", _order(cust["Id"], prod["Id"], "8002", quantity="2"))
    rig.sync()
    invoices = {i["invoiceNumber"]: i for i in rig.wave.list_invoices()}
    assert set(invoices) == {"8001", "8002"}

    # One order's lines become unreadable (a line that is text), a new order never had readable ones, and
    # another order is edited as usual: the edit reaches Wave, the two bad ones stop there.
    bad_body = _order(cust["Id"], prod["Id"], "8002", quantity="5")
    bad_body["Lines"] = [*bad_body["Lines"], prod["Id"]]
    rig.crm_dirty("orders", bad_body, rid=broken["Id"])
    never = rig.crm_dirty("orders", {**_order(cust["Id"], prod["Id"], "8003"), "Lines": "one box"})
    rig.crm.patch("orders", good["Id"], {"Title": "Edited"}, if_match=rig.crm.get("orders", good["Id"])["Version"])
    passes = rig.sync()

    after = {i["invoiceNumber"]: i for i in rig.wave.list_invoices()}
    assert set(after) == {"8001", "8002"}  # 8003 is not created in Wave
    assert after["8001"]["title"] == "Edited"
    assert after["8002"]["modifiedAt"] == invoices["8002"]["modifiedAt"]  # nothing sent for the held order
    assert [Decimal(i["quantity"]) for i in after["8002"]["items"]] == [Decimal("2")]
    said = _unreadable(passes)
    assert len(said) == 2, said
    warned: list[str] = []  # what `crm-wave sync` and the assets' logs say of each stage
    for p in passes:
        for name, result in p.results.items():
            report_stage(stage(name), result, lambda m: None, warned.append)
    assert sorted(warned) == sorted(said)
    held = next(m for m in said if m.startswith(f"crm order {broken['Id']}: "))
    assert held.startswith(f'crm order {broken["Id"]}: Lines: line 2 is not an object but "{prod["Id"]}"; '
                           "fix the record in the CRM: until then the sync keeps its last readable version")
    left = next(m for m in said if m.startswith(f"crm order {never}: "))
    assert left == (f'crm order {never}: Lines: not a list but "one box"; fix the record in the CRM: '
                    "until then the sync leaves it out (no version of it can be read)")
    with rig.store.connect() as con:  # the golden record keeps the values last read
        (lines,) = con.execute("SELECT Lines__crm FROM global_order WHERE crm_id = ?", [broken["Id"]]).fetchone()
    assert [Decimal(x["Quantity"]) for x in json.loads(lines)] == [Decimal("2")]

    # Listed until fixed, also after passes that do not read them again: the state table, the check, the table.
    assert _listed(rig) == sorted(said)
    rig.crm.patch("orders", good["Id"], {"Title": "Edited again"}, if_match=rig.crm.get("orders", good["Id"])["Version"])
    passes = rig.sync()
    assert _unreadable(passes) == [] and _listed(rig) == sorted(said)
    assert state_summary(rig.store)["order"]["unreadable"] == 2 and state_summary(rig.store)["customer"]["unreadable"] == 0
    for mode in ("copy", "segments"):  # analysts see them in a snapshot, either layout
        snap = publish_snapshot(rig.store, tmp_path / f"snaps-{mode}", datetime.now(UTC), layout=Layout(mode=mode))
        with duckdb.connect(str(snap), read_only=True) as con:
            assert sorted(r[0] for r in con.execute("SELECT message FROM unreadable_records").fetchall()) == sorted(said)

    # Fixed in the CRM: the held order goes on from its new version, and no longer shows.
    fixed = rig.crm.get("orders", broken["Id"])
    rig.crm.patch("orders", broken["Id"], {"Lines": _order(cust["Id"], prod["Id"], "8002", quantity="3")["Lines"]},
                  if_match=fixed["Version"])
    rig.crm_dirty("orders", _order(cust["Id"], prod["Id"], "8003"), rid=never)
    passes = rig.sync()
    final = {i["invoiceNumber"]: i for i in rig.wave.list_invoices()}
    assert set(final) == {"8001", "8002", "8003"}
    assert [Decimal(i["quantity"]) for i in final["8002"]["items"]] == [Decimal("3")]
    assert _unreadable(passes) == [] and _listed(rig) == []
    assert state_summary(rig.store)["order"]["unreadable"] == 0


def _listed(rig) -> list[str]:
    """The records held, as the table, the state table and the global asset's check list them (the same)."""
    with rig.store.connect() as con:
        rows = sorted(u.message for u in list_unreadable(con))
    check = next(c for c in CHECKS if c.spec.name == "records_are_readable" and c.spec.asset_key.path == ["global_order"])
    result = check.result(rig.store)
    assert result.passed == (not rows) and result.metadata["unreadable"].value == len(rows)
    assert all(m in result.metadata["records"].value for m in rows)
    return rows


@pytest.mark.parametrize("many", [False, True], ids=["few", "many"])
def test_the_read_holds_unreadable_records_at_their_last_readable_version(tmp_path: Path, many: bool) -> None:
    """Both of `read_canonical`'s paths: a held record reads as its newest readable version (its
    `modified` that version's; a delete before it is not taken), one with none is left out, the
    others read as they are."""
    n = SMALL + 10 if many else 3
    line = {"ProductId": "P1", "Quantity": "1", "UnitPrice": "10"}

    def body(i: int, modified: str, lines: object) -> dict:
        return {"Id": f"O{i}", "OrderNumber": str(i), "CustomerId": "C1", "Title": f"t{i}", "UpdatedAt": modified,
                "Lines": lines}

    store = Store(tmp_path / "s.duckdb")
    name = dataset("crm", "order")
    def version(i: int, modified: str, lines: object, deleted: bool = False) -> Version:
        return Version(f"{name}:O{i}", f"O{i}", f"{i}@{modified}", deleted, modified, None,
                       None if deleted else body(i, modified, lines))

    versions = [version(i, "2026-01-01", [line]) for i in range(n)]
    versions += [version(1, "2026-01-02", [{**line, "Quantity": "2"}]), version(1, "2026-01-03", None, deleted=True),
                 version(1, "2026-01-04", [line, "P2"]), version(n, "2026-01-05", 7)]
    held: list[tuple[str, str, str]] = []
    with store.connect() as con:
        for v in versions:  # one at a time: each a version of its own
            store.append_versions(con, name, [v], datetime(2026, 1, 1))
        frame = read_canonical(store, con, "crm", "order", unreadable=held)
    assert sorted(frame["crm_id"].to_list()) == sorted(f"O{i}" for i in range(n))
    o1 = frame.filter(pl.col("crm_id") == "O1").row(0, named=True)
    assert o1["modified"] == "2026-01-02" and not o1["deleted"]
    assert [Decimal(x["Quantity"]) for x in o1["Lines"]] == [Decimal("2")]
    assert o1["Title"] == "t1"
    assert sorted(held) == sorted([
        ("crm", "O1", 'crm order O1: Lines: line 2 is not an object but "P2"; fix the record in the CRM: until then '
                      "the sync keeps its last readable version (modified 2026-01-02)"),
        ("crm", f"O{n}", f"crm order O{n}: Lines: not a list but 7; fix the record in the CRM: until then the sync "
                         "leaves it out (no version of it can be read)")])


def test_a_crm_record_without_an_id_is_left_out_and_named_and_the_others_sync(rig):
    """A record the CRM lists without an `Id` can be neither stored nor linked: the collect leaves it out
    with one line that shows it (`CollectResult.skipped`), and every other record syncs."""
    good = rig.crm_create("customers", {"Type": "organization", "Name": "Good", "Email": "good@x.example"})
    rig.crm_raw("customers", "C-LEGACY", {"Type": "organization", "Name": "No Id Ltd", "Email": "noid@x.example",
                                          "Version": 1, "UpdatedAt": "2026-11-30T10:00:00Z"})  # listed, no Id in it
    passes = rig.sync(full=True)
    assert [c["email"] for c in rig.wave.list_customers()] == [good["Email"]]
    skipped = [m for p in passes for c in p.collects for m in c.skipped]
    assert skipped and all(m.startswith("crm customer: a record without an Id was left out (") for m in skipped)
    assert "No Id Ltd" in skipped[0] and skipped[0].endswith("give it an Id in the CRM: until then it is not synced")
    warned: list[str] = []
    for p in passes:
        for name, result in p.results.items():
            report_stage(stage(name), result, lambda m: None, warned.append)
    assert sorted(warned) == sorted(skipped)


def test_a_listed_item_that_is_not_a_record_is_left_out_and_named(rig) -> None:
    good = rig.crm_create("products", {"Name": "Good", "UnitPrice": "10"})
    rig.crm_raw("products", "P-ODD", ["not", "a", "record"])  # a listing that holds a bare value where a record belongs
    passes = rig.sync()
    assert [p["name"] for p in rig.wave.list_products()] == [good["Name"]]
    skipped = [m for p in passes for c in p.collects for m in c.skipped]
    assert skipped and skipped[0].startswith("crm product: a listed item that is not a record was left out (['not'")


def test_a_wave_node_without_an_id_is_left_out_and_named(tmp_path: Path) -> None:
    """Wave's schema says every node has an `id`; where its docs are silent the sync assumes the harsh case.
    A listed node without one (missing, null, empty) is left out with one line that shows it, and the others
    are stored. (Wave's simulator cannot list such a node, so Wave's client answers from a MockTransport.)"""
    from crm_wave.sync.collect import collect
    from crm_wave_tests.wave_client.test_client_unit import Recorder, client_for, gql, page

    nodes = [{"id": "QnVzaW5lc3M6Q3VzdG9tZXI6MQ==", "name": "Good", "modifiedAt": "2026-11-30T10:00:00.000Z"},
             {"name": "No Id Inc", "modifiedAt": "2026-11-30T10:00:01.000Z"},
             {"id": None, "name": "Null Id Inc", "modifiedAt": "2026-11-30T10:00:02.000Z"},
             {"id": "", "name": "Empty Id Inc", "modifiedAt": "2026-11-30T10:00:03.000Z"}]
    store = Store(tmp_path / "crm_wave.duckdb")
    with client_for(Recorder(lambda r, b: gql(page("customers", nodes, 1, 1)))) as wave:
        result = collect(store, "wave", "customer", wave, datetime(2026, 11, 30, 11, tzinfo=UTC), full=True)
    assert (result.read, result.written) == (1, 1)
    assert len(result.skipped) == 3 and all(
        m.startswith("wave customer: a record without an id was left out (")
        and m.endswith("give it an id in Wave: until then it is not synced") for m in result.skipped)
    assert [n for n in ("No Id Inc", "Null Id Inc", "Empty Id Inc") if any(n in m for m in result.skipped)] == [
        "No Id Inc", "Null Id Inc", "Empty Id Inc"]
    with store.connect() as con:
        assert con.execute(f"SELECT _source_id FROM {dataset('wave', 'customer')}").fetchall() == [
            ("QnVzaW5lc3M6Q3VzdG9tZXI6MQ==",)]
