"""After a pass that wrote, `sync_once` reads back just what it wrote: the collects of the datasets
written to and what is downstream of them (`after_writes`), not the whole pass again."""

from __future__ import annotations

from crm_wave.sync.engine import after_writes
from crm_wave.sync.stages import STAGES, downstream
from crm_wave_tests.rig import Rig


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
    assert set(passes[1].results) == after_writes(passes[0]) == downstream({"wave_customer"})
    (node,) = [c for c in rig.wave.list_customers() if c.get("email") == "post@fjord.example"]
    assert "22 33 44 55" in str(node.get("phone"))
