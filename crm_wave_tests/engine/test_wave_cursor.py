"""The Wave cursor after a read-back: the sync's own writes, answered before the read began, do not hold
the cursor back; a change by someone else near the read's start does (the stretch is read again)."""

from __future__ import annotations

from crm_wave.sync.collect import collect, utcnow
from crm_wave_tests.rig import Rig


def _cursor(rig: Rig) -> str | None:
    with rig.store.connect() as con:
        return rig.store.get_cursor(con, "wave_customer")[0]


def test_the_read_back_of_the_syncs_own_writes_moves_the_cursor(rig: Rig) -> None:
    customer = rig.crm_create("customers", {"Type": "organization", "Name": "Fjord Supplies AS",
                                            "Email": "post@fjord.example", "Country": "NO", "Currency": "NOK"})
    rig.sync()  # Wave was empty: the create is pushed, then read back seconds later
    (node,) = [c for c in rig.wave.list_customers() if c.get("email") == "post@fjord.example"]
    assert _cursor(rig) == node["modifiedAt"]  # not left at None, which would read all of Wave every time
    current = rig.crm.get("customers", customer["Id"])
    assert current is not None
    rig.crm.patch("customers", customer["Id"], {"Phone": "+47 22 33 44 55"}, if_match=current["Version"])
    passes = rig.sync()
    read_back = passes[1].results["wave_customer"]
    assert not read_back.full and read_back.read == 1  # only what the push changed
    (node,) = [c for c in rig.wave.list_customers() if c.get("email") == "post@fjord.example"]
    assert _cursor(rig) == node["modifiedAt"]


def test_a_change_by_someone_else_near_the_reads_start_keeps_the_old_cursor(rig: Rig) -> None:
    rig.crm_create("customers", {"Type": "organization", "Name": "Vik Tre AS", "Email": "post@viktre.example",
                                 "Country": "NO", "Currency": "NOK"})
    rig.sync()
    before = _cursor(rig)
    assert before is not None
    # A person edits the customer in Wave; a read right after sees it within the clock margin of its start,
    # and it is none of the sync's own writes: it may have moved records past the read's pages.
    (node,) = [c for c in rig.wave.list_customers() if c.get("email") == "post@viktre.example"]
    rig.wave_write("customerPatch", {"id": node["id"], "phone": "+47 99 88 77 66"})
    result = collect(rig.store, "wave", "customer", rig.wave, utcnow())
    assert result.read == 1
    assert _cursor(rig) == before
