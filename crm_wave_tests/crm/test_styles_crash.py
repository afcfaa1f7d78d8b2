"""A push to the CRM killed with SIGKILL mid-way, for every simulator style: the offset and paged styles
have no Idempotency-Key, so the intent + the next collect's lookup by key must keep creates single."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest

from crm_wave.systems.crm.simulator.styles import STYLES


def _crm_count(db) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT count(*) FROM entities WHERE resource = 'customers' AND deleted = 0").fetchone()[0]


@pytest.mark.parametrize("crm_style", STYLES, indirect=True)
def test_sigkill_mid_crm_push_then_restart_yields_no_duplicates(rig, crm_sim, wave_sim, tmp_path):
    n = 90
    for i in range(n):
        body = {"businessId": rig.wave.business_id, "name": f"Killed Co {i}"}
        if i % 3:
            body["email"] = f"killed{i}@x.example"  # a third have no email: found again by name
        rig.wave_write("customerCreate", body)
    httpx.put(f"{crm_sim.base}/_sim/faults", json={"latency_ms": 150}).raise_for_status()
    data_dir = tmp_path / "data"
    env = {**os.environ, "CRM_BASE_URL": crm_sim.url, "CRM_API_TOKEN": crm_sim.token, "CRM_PROFILE": crm_sim.style,
           "WAVE_GRAPHQL_URL": wave_sim.url, "WAVE_API_TOKEN": wave_sim.token, "WAVE_REQUESTS_PER_MINUTE": "0",
           "CRM_WAVE_DATA_DIR": str(data_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "crm_wave.cli", "sync", "--once"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and _crm_count(crm_sim.db_path) < 15:
        assert proc.poll() is None, "the sync finished before it could be killed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _crm_count(crm_sim.db_path)
    assert 0 < killed_at < n, killed_at

    httpx.put(f"{crm_sim.base}/_sim/faults", json={}).raise_for_status()
    from crm_wave.store import Store

    rig.store = Store(data_dir / "crm_wave.duckdb")
    passes = rig.sync()
    assert passes[-1].writes == 0
    names = [c["Name"] for c in rig.crm.read_all("customers")]
    assert len(names) == n and len(set(names)) == n
    links = rig.links("customer")
    assert links.height == n and links["crm_id"].null_count() == 0 and links["crm_id"].n_unique() == n
