"""Many syncs in a row over both simulators, each followed by a segments snapshot, as a large tenant's
(`auto` above 64 MB) are: the chains the publishes grow are compacted along the way (their limits made small
here), every publish succeeds, the snapshot answers as the store does, and edits on both sides converge. Until
2026-12-02 the 17th publish that found new versions of a dataset failed, and every one after it
(docs/benchmarks.md, "Session 27")."""

from __future__ import annotations

import json

import pytest

from crm_wave.analyst import run_sql, segments
from crm_wave.analyst.snapshot import publish_now


def test_syncs_each_followed_by_a_segments_snapshot_converge_and_the_snapshots_answer(rig, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CRM_WAVE_SNAPSHOT_MODE", "segments")
    monkeypatch.setattr(segments, "MAX_SEQ_CHAIN", 4)
    monkeypatch.setattr(segments, "MAX_DELTAS", 3)
    cs = [rig.crm_create("customers", {"Type": "organization", "Name": f"Soak {i}", "Email": f"s{i}@x.example",
                                       "Phone": "+47 1"}) for i in range(4)]
    rig.sync()
    publish_now(rig.store)
    seq_chains = set()
    for n in range(12):
        c = cs[n % len(cs)]
        current = rig.crm.get("customers", c["Id"])
        rig.crm.patch("customers", c["Id"], {"Phone": None if n % 4 == 0 else f"+47 {n}", "City": f"City {n}"},
                      if_match=current["Version"])
        if n % 3 == 0:
            w = rig.wave.list_customers()[n % len(cs)]
            rig.wave_write("customerPatch", {"id": w["id"], "website": f"https://w{n}.example"})
        if n % 5 == 0:
            rig.crm_create("customers", {"Type": "person", "FirstName": f"New{n}", "LastName": "P", "Email": f"n{n}@x.example"})
        rig.sync()
        path = publish_now(rig.store)
        seq_chains.add(len([s for s in segments.read_manifest(path) if s.table == "crm_customer"]))
        with rig.store.connect() as con:
            live = con.execute("SELECT global_id, Phone__crm, City__crm FROM global_customer ORDER BY ALL").fetchall()
        got = json.loads(run_sql(path, "SELECT global_id, Phone__crm, City__crm FROM global_customer ORDER BY ALL", fmt="json"))
        assert [tuple(r.values()) for r in got] == [tuple(r) for r in live]
    assert max(seq_chains) <= 4 and 1 in seq_chains  # the CRM customers' chain was compacted
    wave = {w["email"]: w for w in rig.wave.list_customers()}
    for c in cs:
        crm = rig.crm.get("customers", c["Id"])
        w = wave[crm["Email"]]
        assert (w["phone"] or None, w["address"]["city"], w["website"]) == (crm["Phone"] or None, crm["City"], crm["Website"])
