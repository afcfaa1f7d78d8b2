"""An update is never applied over a change the sync has not collected yet."""

from __future__ import annotations

from crm_wave.sync.collect import collect, utcnow
from crm_wave.sync.engine import SYSTEMS
from crm_wave.sync.global_step import build_global
from crm_wave.sync.push import push
from crm_wave.sync.share_step import build_share


def test_wave_edit_between_collect_and_push_is_not_overwritten(rig):
    c = rig.crm_create("customers", {"Type": "organization", "Name": "Race", "Email": "race@x.example", "Phone": "1"})
    rig.sync()
    (w,) = rig.wave.list_customers()
    rig.crm.patch("customers", c["Id"], {"Phone": "2"}, if_match=rig.crm.get("customers", c["Id"])["Version"])
    clients = {"crm": rig.crm, "wave": rig.wave}
    now = utcnow()
    for system in SYSTEMS:
        collect(rig.store, system, "customer", clients[system], now)
    build_global(rig.store, "customer", now)
    build_share(rig.store, "wave", "customer")
    rig.wave_write("customerPatch", {"id": w["id"], "phone": "3"})  # lands after the collect
    result = push(rig.store, "wave", "customer", rig.wave, now)
    assert result.updated == 0 and result.skipped == 1
    assert rig.wave.list_customers()[0]["phone"] == "3"
    rig.sync()  # the next pass collects Wave's edit and merges it by the rules (Wave's is newer)
    assert rig.wave.list_customers()[0]["phone"] == "3"
    assert rig.crm.get("customers", c["Id"])["Phone"] == "3"
