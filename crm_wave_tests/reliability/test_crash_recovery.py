"""The push process killed with SIGKILL mid-push, then started again: no duplicate anywhere, and it converges."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx


def _env(crm_sim, wave_sim, data_dir) -> dict[str, str]:
    return {**os.environ, "CRM_BASE_URL": crm_sim.url, "CRM_API_TOKEN": crm_sim.token,
            "WAVE_GRAPHQL_URL": wave_sim.url, "WAVE_API_TOKEN": wave_sim.token, "WAVE_REQUESTS_PER_MINUTE": "0",
            "CRM_WAVE_DATA_DIR": str(data_dir)}


def _wave_count(wave_sim) -> int:
    query = "{ business { customers(page: 1, pageSize: 1) { pageInfo { totalCount } } } }"
    r = httpx.post(wave_sim.url, json={"query": query}, headers={"Authorization": f"Bearer {wave_sim.token}"}, timeout=30)
    return r.json()["data"]["business"]["customers"]["pageInfo"]["totalCount"]


def test_sigkill_mid_push_then_restart_yields_no_duplicates(rig, crm_sim, wave_sim, tmp_path):
    n = 120  # five push batches of 25: killed after two, so three are left to redo
    for i in range(n):
        body = {"Type": "organization", "Name": f"Crash Co {i}", "CustomerNumber": f"K{i}"}
        if i % 4:
            body["Email"] = f"crash{i}@x.example"  # a quarter have no email: found again by name and number
        rig.crm_create("customers", body)
    # Slow Wave down so the push takes a few seconds, and kill it part-way.
    httpx.put(f"{wave_sim.base}/_sim/faults", json={"latency_ms": 500}).raise_for_status()
    data_dir = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-m", "crm_wave.cli", "sync", "--once"],
                            env=_env(crm_sim, wave_sim, data_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300  # the loop ends at 40 pushed; the deadline only guards a hang
    while time.monotonic() < deadline and _wave_count(wave_sim) < 40:
        assert proc.poll() is None, "the sync finished before it could be killed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _wave_count(wave_sim)
    assert 0 < killed_at < n, killed_at

    httpx.put(f"{wave_sim.base}/_sim/faults", json={}).raise_for_status()
    from crm_wave.store import Store

    rig.store = Store(data_dir / "crm_wave.duckdb")
    passes = rig.sync()
    assert passes[-1].writes == 0
    wave_names = [c["name"] for c in rig.wave.list_customers()]
    crm_names = [c["Name"] for c in rig.crm.read_all("customers")]
    assert len(wave_names) == n and len(set(wave_names)) == n
    assert len(crm_names) == n and len(set(crm_names)) == n
    links = rig.links("customer")
    assert links.height == n and links["wave_id"].null_count() == 0 and links["wave_id"].n_unique() == n
