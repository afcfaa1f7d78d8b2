"""A lost create batch leaves intents for exactly its records; batches never sent leave none."""

from __future__ import annotations

import httpx

from crm_wave.sync.collect import collect, utcnow
from crm_wave.sync.global_step import build_global
from crm_wave.sync.push import push
from crm_wave.sync.share_step import build_share


def test_lost_batch_is_recovered_without_duplicates(rig, wave_sim):
    for i in range(60):
        body = {"Type": "organization", "Name": f"Lost {i}", "CustomerNumber": f"L{i}"}
        if i % 2:
            body["Email"] = f"lost{i}@x.example"
        rig.crm_create("customers", body)
    now = utcnow()
    clients = {"crm": rig.crm, "wave": rig.wave}
    for system in ("crm", "wave"):
        collect(rig.store, system, "customer", clients[system], now)
    build_global(rig.store, "customer", now)
    build_share(rig.store, "wave", "customer")
    httpx.put(f"{wave_sim.base}/_sim/faults", json={"lost_response_rate": 1.0}).raise_for_status()
    result = push(rig.store, "wave", "customer", rig.wave, now)
    httpx.put(f"{wave_sim.base}/_sim/faults", json={}).raise_for_status()
    batch = rig.wave.batch_size
    assert (result.created, result.unknown, result.skipped) == (0, batch, 60 - batch)
    with rig.store.connect() as con:
        assert con.execute("SELECT count(*) FROM intents").fetchall()[0][0] == batch
    assert len(rig.wave.list_customers()) == batch  # the lost batch was carried out
    # The push runs again before any collect: the lost records are found, not created twice.
    again = push(rig.store, "wave", "customer", rig.wave, utcnow())
    assert again.recovered == batch and again.created == 60 - batch
    rig.sync()
    names = [c["name"] for c in rig.wave.list_customers()]
    assert len(names) == 60 and len(set(names)) == 60
    with rig.store.connect() as con:
        assert con.execute("SELECT count(*) FROM intents").fetchall()[0][0] == 0
