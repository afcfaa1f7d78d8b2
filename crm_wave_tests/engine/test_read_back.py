"""After a pass that wrote, `sync_once` reads back just what it wrote: the collects of the datasets
written to and what is downstream of them (`after_writes`), not the whole pass again. Given the
datasets a look found moved (`changed`), its first pass is limited the same way. Stages that follow
pushes only (the orders, which wait for customers and products to be linked) run only when one of
those pushes linked something."""

from __future__ import annotations

from crm_wave.sync.engine import after_writes
from crm_wave.sync.heads import NO_FEED, Look
from crm_wave.sync.stages import STAGES, downstream
from crm_wave_tests.rig import Rig

#: What follows the customer pushes only: skipped when they linked nothing.
ORDER_STAGES = {"global_order", "crm_order_share", "push_crm_order", "wave_invoice_share", "push_wave_invoice"}


def test_downstream_follows_deps_to_the_orders() -> None:
    got = downstream({"wave_customer"})
    assert {"wave_customer", "global_customer", "crm_customer_share", "push_crm_customer",
            "wave_customer_share", "push_wave_customer", "global_order", "push_wave_invoice"} <= got
    assert not got & {"crm_customer", "crm_product", "wave_product", "global_product", "crm_order", "wave_invoice"}
    assert downstream(s.name for s in STAGES) == {s.name for s in STAGES}


def test_the_read_back_pass_runs_only_what_the_writes_touch(rig: Rig) -> None:
    customer = rig.crm_create("customers", {"Type": "organization", "Name": "Fjord Supplies AS",
                                            "Email": "post@fjord.example", "Country": "NO", "Currency": "NOK"})
    first = rig.sync()
    assert len(first) >= 2, "the create in Wave must be read back"
    assert set(first[0].results) == {s.name for s in STAGES}
    assert "wave_customer" in first[1].results and "crm_product" not in first[1].results
    assert first[-1].writes == 0

    current = rig.crm.get("customers", customer["Id"])
    assert current is not None
    rig.crm.patch("customers", customer["Id"], {"Phone": "+47 22 33 44 55"}, if_match=current["Version"])
    passes = rig.sync()
    assert [p.writes for p in passes] == [1, 0]
    assert after_writes(passes[0]) == downstream({"wave_customer"})
    # An update links nothing: the orders' stages, downstream through the pushes only, are skipped.
    assert set(passes[1].results) == downstream({"wave_customer"}) - ORDER_STAGES
    (node,) = [c for c in rig.wave.list_customers() if c.get("email") == "post@fjord.example"]
    assert "22 33 44 55" in str(node.get("phone"))


def test_a_look_names_the_datasets_to_collect() -> None:
    found = Look(marks={"crm:customers": "7", "crm:products": "3", "crm:orders": NO_FEED, "wave:customers": "a",
                        "wave:products": "b", "wave:invoices": "c"}, changed=("crm:customers", "wave:invoices"),
                 first=False)
    # A CRM resource without a change feed cannot be told about: it is always collected.
    assert found.datasets == {"crm_customer", "wave_invoice", "crm_order"}
    assert Look(marks={"crm:customers": "7"}, changed=(), first=False).datasets == frozenset()


def test_a_sync_after_a_look_runs_only_what_moved(rig: Rig) -> None:
    customer = rig.crm_create("customers", {"Type": "organization", "Name": "Vik Tre AS",
                                            "Email": "post@viktre.example", "Country": "NO", "Currency": "NOK"})
    rig.sync()
    current = rig.crm.get("customers", customer["Id"])
    assert current is not None
    rig.crm.patch("customers", customer["Id"], {"Phone": "+47 22 00 11 22"}, if_match=current["Version"])
    passes = rig.sync(changed={"crm_customer"})
    assert [p.writes for p in passes] == [1, 0]
    assert set(passes[0].results) == downstream({"crm_customer"}) - ORDER_STAGES
    assert "wave_customer" not in passes[0].results and "crm_product" not in passes[0].results
    (node,) = [c for c in rig.wave.list_customers() if c.get("email") == "post@viktre.example"]
    assert "22 00 11 22" in str(node.get("phone"))

    # A new customer is linked by its push: then the orders' stages follow, as they wait for links.
    rig.crm_create("customers", {"Type": "organization", "Name": "Nes Fire AS", "Email": "post@nesfire.example",
                                 "Country": "NO", "Currency": "NOK"})
    passes = rig.sync(changed={"crm_customer"})
    assert passes[0].writes == 1 and passes[-1].writes == 0
    assert set(passes[0].results) == downstream({"crm_customer"})
    assert [c for c in rig.wave.list_customers() if c.get("email") == "post@nesfire.example"]

    # Nothing moved: nothing runs; `full` overrides what the look found.
    assert [set(p.results) for p in rig.sync(changed=set())] == [set()]
    assert set(rig.sync(changed=set(), full=True)[0].results) == {s.name for s in STAGES}


def test_an_edit_made_during_the_sync_is_read_by_its_next_pass(rig: Rig) -> None:
    """The look before a later pass records marks past an edit someone made while the sync ran: that pass
    must read it (before, it read only what the sync wrote, and the edit waited for a pass of every stage)."""
    from crm_wave.sync.heads import look

    first = rig.crm_create("customers", {"Type": "organization", "Name": "Nord Ved AS", "Email": "post@nordved.example",
                                         "Country": "NO", "Currency": "NOK"})
    second = rig.crm_create("customers", {"Type": "organization", "Name": "Sør Ved AS", "Email": "post@sorved.example",
                                          "Country": "NO", "Currency": "NOK"})
    rig.sync()
    marks = look(rig.crm, rig.wave, None).marks
    current = rig.crm.get("customers", first["Id"])
    assert current is not None
    rig.crm.patch("customers", first["Id"], {"Phone": "+47 22 00 00 01"}, if_match=current["Version"])
    found = look(rig.crm, rig.wave, marks)

    def before(i: int) -> frozenset[str]:
        nonlocal marks
        if i == 1:  # someone edits another customer while the first pass's push is on its way
            other = rig.crm.get("customers", second["Id"])
            assert other is not None
            rig.crm.patch("customers", second["Id"], {"Phone": "+47 22 00 00 02"}, if_match=other["Version"])
        now = look(rig.crm, rig.wave, marks)
        marks = now.marks
        return now.moved

    passes = rig.sync(changed=found.datasets, before_pass=before)
    assert "crm_customer" in passes[1].results  # the edit made during the sync is read at once
    phones = {c.get("email"): str(c.get("phone")) for c in rig.wave.list_customers()}
    assert "22 00 00 01" in phones["post@nordved.example"] and "22 00 00 02" in phones["post@sorved.example"]
    assert not look(rig.crm, rig.wave, marks).changed  # nothing is left behind the marks


def test_a_write_is_unread_until_a_collect_begun_after_it_ends(tmp_path) -> None:
    """`unread_writes`: a push marks the dataset it wrote to; only a collect begun after the write clears it
    (one begun before may have missed the write), and a sync's own read-back pass leaves no mark behind."""
    from datetime import datetime, timedelta

    from crm_wave.store import Store

    store = Store(tmp_path / "db.duckdb")
    t = datetime(2026, 11, 30, 12, 0, 0)
    with store.connect() as con:
        store.mark_unread(con, "crm_customer", t)
        store.mark_unread(con, "crm_customer", t - timedelta(seconds=5))  # an older write keeps the newer time
        store.read_back(con, "crm_customer", t - timedelta(seconds=1))  # begun before the write
        assert store.unread(con, ["crm_customer", "wave_customer"]) == ["crm_customer"]
        store.read_back(con, "crm_customer", t + timedelta(seconds=1))
        assert store.unread(con, ["crm_customer", "wave_customer"]) == []


def test_a_sync_reads_back_every_dataset_it_wrote_to(rig: Rig) -> None:
    rig.crm_create("customers", {"Type": "organization", "Name": "Marked AS", "Email": "m@x.example"})
    rig.sync()
    with rig.store.connect() as con:
        assert con.execute("SELECT count(*) FROM sync_log WHERE op = 'insert'").fetchall() == [(1,)]
        assert rig.store.unread(con, ["crm_customer", "wave_customer"]) == []
