"""Tokens never leave the environment; two syncs at once neither corrupt the file nor double-push."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from crm_wave.systems.crm.client import CrmClient
from crm_wave.systems.serve import serve_in_thread
from crm_wave.systems.wave.client import WaveClient

CRM_SECRET = "crm-SECRET-4f1d9a"
WAVE_SECRET = "wave-SECRET-77b0c2"


def test_tokens_never_reach_duckdb_snapshots_logs_or_the_ui(tmp_path, monkeypatch):
    from crm_wave.definitions import defs
    from crm_wave.defs.run import run_sync_job
    from crm_wave.systems.crm.simulator import create_app as crm_app
    from crm_wave.systems.wave.simulator import create_app as wave_app

    with serve_in_thread(crm_app(db_path=tmp_path / "c.db", token=CRM_SECRET)) as crm, \
            serve_in_thread(wave_app(db_path=tmp_path / "w.db", token=WAVE_SECRET)) as wave:
        for k, v in {"CRM_BASE_URL": f"{crm}/api/v1", "CRM_API_TOKEN": CRM_SECRET,
                     "WAVE_GRAPHQL_URL": f"{wave}/graphql/public", "WAVE_API_TOKEN": WAVE_SECRET,
                     "WAVE_REQUESTS_PER_MINUTE": "0", "CRM_WAVE_DATA_DIR": str(tmp_path / "data")}.items():
            monkeypatch.setenv(k, v)
        with CrmClient(base_url=f"{crm}/api/v1", token=CRM_SECRET) as c:
            c.create("customers", {"Type": "organization", "Name": "S", "Email": "s@x.example"}, idempotency_key="s")
            assert CRM_SECRET not in repr(c)
        with WaveClient(url=f"{wave}/graphql/public", token=WAVE_SECRET) as w:
            assert WAVE_SECRET not in repr(w)
        with dg.instance_for_test() as instance:
            run_sync_job(instance=instance)
            logs = "\n".join(str(e) for r in instance.get_runs() for e in instance.all_logs(r.run_id))
            configs = "\n".join(str(r.run_config) + str(r.tags) for r in instance.get_runs())
    assert "S" in logs or logs  # the run did log events
    for secret in (CRM_SECRET, WAVE_SECRET):
        assert secret not in logs and secret not in configs
        for path in Path(tmp_path / "data").rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    # What the UI shows of resources: their config (only the data root) and descriptions.
    snap = str(defs().get_repository_def().get_top_level_resources())
    assert CRM_SECRET not in snap and WAVE_SECRET not in snap


def test_two_syncs_started_at_once_do_not_corrupt_or_double_push(rig, crm_sim, wave_sim, tmp_path):
    for i in range(120):
        rig.crm_create("customers", {"Type": "organization", "Name": f"Twice {i}", "Email": f"t{i}@x.example"})
    env = {**os.environ, "CRM_BASE_URL": crm_sim.url, "CRM_API_TOKEN": crm_sim.token, "WAVE_GRAPHQL_URL": wave_sim.url,
           "WAVE_API_TOKEN": wave_sim.token, "WAVE_REQUESTS_PER_MINUTE": "0", "CRM_WAVE_DATA_DIR": str(tmp_path / "d")}
    procs = [subprocess.Popen([sys.executable, "-m", "crm_wave.cli", "sync", "--once"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs):  # whole, on a failure (an assertion message is cut short)
        print(f"---- sync --once exited {p.returncode}\n{out}")
    assert [p.returncode for p in procs] == [0, 0], outputs
    names = [c["name"] for c in rig.wave.list_customers()]
    assert len(names) == 120 and len(set(names)) == 120
    from crm_wave.store import Store

    store = Store(tmp_path / "d" / "crm_wave.duckdb")
    with store.connect() as con:
        links = con.execute("SELECT count(*), count(DISTINCT wave_id) FROM links WHERE entity = 'customer'").fetchall()[0]
        inserts = con.execute("SELECT count(*) FROM sync_log WHERE system = 'wave' AND op = 'insert' AND outcome = 'ok'"
                              ).fetchall()[0][0]
    assert links == (120, 120) and inserts == 120


def test_a_link_newer_than_the_collect_is_not_read_as_a_delete(rig, monkeypatch):
    """Two syncs at once: B collected Wave before A's push created and linked 60 customers; B's global step
    then meets links to Wave records its dataset has never held. Those records are not yet seen, not deleted:
    B shares no delete and no create for them (the breaker once held B's 60 'deletes' of CRM customers)."""
    import crm_wave.sync.collect as collect_module
    from crm_wave.sync.engine import run_pass
    from crm_wave.sync.global_step import build_global
    from crm_wave.sync.share_step import build_share

    clients = {"crm": rig.crm, "wave": rig.wave}
    for i in range(60):
        rig.crm_create("customers", {"Type": "organization", "Name": f"Raced {i}", "Email": f"r{i}@x.example"})
    customer_stages = ["crm_customer", "wave_customer", "global_customer", "crm_customer_share",
                       "wave_customer_share", "push_crm_customer", "push_wave_customer"]
    first = run_pass(rig.store, clients, only=customer_stages)  # A's pass, with no read-back
    assert sum(p.created for p in first.pushes) == 60
    assert len(rig.links("customer").drop_nulls("wave_id")) == 60
    # B's global step, as it ran before it read back another sync's writes (`build_global` without `read_back`,
    # and the state a read-back still meets when Wave's listing lags behind its writes).
    build_global(rig.store, "customer", datetime.now(UTC))
    for target in ("crm", "wave"):
        build_share(rig.store, target, "customer")
    with rig.store.connect() as con:
        ops = con.execute("SELECT op, count(*) FROM crm_customer_share GROUP BY op UNION ALL "
                          "SELECT 'wave ' || op, count(*) FROM wave_customer_share GROUP BY op").fetchall()
    assert ops == [], ops
    with rig.store.connect() as con:  # a full read begun before the links does not read them as deleted
        assert rig.store.linked_never_seen(con, "wave_customer", "wave", "customer", pl.Series([], dtype=pl.String),
                                           datetime(2026, 1, 1)) == []
    # One of them deleted in Wave before any collect saw it: a full read begun `LISTING_LAG` after its link
    # records the delete; one begun sooner does not (the create may not be listed yet).
    gone = sorted(rig.links("customer")["wave_id"].to_list())[0]
    rig.wave_write("customerDelete", {"id": gone})
    read_wave = ["wave_customer", "global_customer", "crm_customer_share"]
    run_pass(rig.store, clients, only=read_wave, full=True)
    with rig.store.connect() as con:
        assert con.execute("SELECT wave_state FROM global_customer WHERE wave_id = ?", [gone]).fetchall() == [("unseen",)]
    monkeypatch.setattr(collect_module, "LISTING_LAG", timedelta(0))
    run_pass(rig.store, clients, only=read_wave, full=True)
    with rig.store.connect() as con:
        ops = con.execute("SELECT op, target_id FROM crm_customer_share WHERE op <> 'update'").fetchall()
        crm_id = con.execute("SELECT crm_id FROM links WHERE wave_id = ?", [gone]).fetchall()[0][0]
        state = con.execute("SELECT wave_state FROM global_customer WHERE wave_id = ?", [gone]).fetchall()
    assert ops == [("delete", crm_id)] and state == [("deleted",)]
    rig.sync()  # the read-back: every link has both sides, nothing to do, no duplicate
    assert len(rig.wave.list_customers()) == 59
    assert len([c for c in rig.crm.read_all("customers") if not c.get("Deleted")]) == 60  # the delete is held
    assert len(rig.links("customer").drop_nulls(["crm_id", "wave_id"])) == 60


def test_a_pass_reads_back_another_syncs_push_before_merging(rig):
    """Sync A pushed a Wave edit to the CRM and has not read it back yet; a pass of sync B that collects only
    Wave (all a look saw move) must not merge the CRM's older copy in its dataset against the values A's
    push agreed: that would read as a CRM edit and send the old value back to Wave. B reads the CRM first."""
    from crm_wave.sync.engine import run_pass

    clients = {"crm": rig.crm, "wave": rig.wave}
    rig.crm_create("customers", {"Type": "organization", "Name": "Flap AS", "Email": "flap@x.example",
                                 "Phone": "+47 11 11 11 11"})
    rig.sync()
    (w,) = rig.wave.list_customers()
    rig.wave_write("customerPatch", {"id": w["id"], "phone": "+47 22 22 22 22"})
    customer_stages = ["crm_customer", "wave_customer", "global_customer", "crm_customer_share",
                       "wave_customer_share", "push_crm_customer", "push_wave_customer"]
    first = run_pass(rig.store, clients, only=customer_stages)  # A: the edit sent to the CRM, not read back
    assert sum(p.updated for p in first.pushes) == 1
    assert rig.crm.read_all("customers")[0]["Phone"] == "+47 22 22 22 22"
    run_pass(rig.store, clients, only=[s for s in customer_stages if s != "crm_customer"])  # B: Wave moved
    assert rig.wave.list_customers()[0]["phone"] == "+47 22 22 22 22"
    with rig.store.connect() as con:
        assert con.execute("SELECT count(*) FROM sync_log WHERE system = 'wave' AND op = 'update'").fetchall() == [(0,)]


@pytest.mark.parametrize("read_back", [["wave_customer"], ["wave_customer", "global_customer"]])
def test_a_push_does_not_resend_an_update_another_sync_sent_and_read_back(rig, read_back):
    """Sync B built its share row (Phone to Wave) from the Wave record as it was; sync A sent the same update
    and read Wave back before B's push ran. B's push must see that the record changed after the version its
    row was built from, not compare it with the dataset's newest version (which A's read-back moved); and
    where A's global step ran too, that the golden row now shows Wave holding the value."""
    from crm_wave.sync.engine import run_pass

    clients = {"crm": rig.crm, "wave": rig.wave}
    rig.crm_create("customers", {"Type": "organization", "Name": "Twice Sent AS", "Email": "twice@x.example",
                                 "Phone": "+47 11 11 11 11"})
    rig.sync()
    (c,) = rig.crm.read_all("customers")
    rig.crm.patch("customers", c["Id"], {"Phone": "+47 33 33 33 33"}, if_match=c["Version"])
    run_pass(rig.store, clients, only=["crm_customer", "global_customer", "wave_customer_share"])  # B's share
    (w,) = rig.wave.list_customers()
    rig.wave_write("customerPatch", {"id": w["id"], "phone": "+47 33 33 33 33"})  # A's push ...
    run_pass(rig.store, clients, only=read_back)  # ... and A's read-back
    result = run_pass(rig.store, clients, only=["push_wave_customer"])  # B's push
    (pushed,) = result.pushes
    assert (pushed.updated, pushed.skipped) == (0, 1)
    with rig.store.connect() as con:
        assert con.execute("SELECT count(*) FROM sync_log WHERE system = 'wave' AND op = 'update'").fetchall() == [(0,)]
    rig.sync()
    assert rig.wave.list_customers()[0]["phone"] == "+47 33 33 33 33"
