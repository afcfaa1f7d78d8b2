"""Edit-to-other-side latency under `make dev`'s default (the fleet loop): measured live; the per-run path modelled.

`measure_live` is the figure the benchmark reports: it starts `crm-wave dev` (both
simulators and `dagster dev` with its daemon, default settings, a fresh data directory),
waits until the first scheduled syncs have linked every CRM customer to Wave, then edits
the `Description` of 20 CRM customers one after another at random intervals and watches
Wave until each edit shows in the customer's `internalNotes`. Latency = first time seen
in Wave minus the time of the CRM write; the poll runs every second (so figures are late
by at most about one second).

Since session 9 `make dev`'s default is the fleet loop (`CRM_WAVE_FLEET=loop`: one long-lived run
looks every 10 s and syncs what moved, docs/deploy.md), so the live figure is the fleet's. The rest
of this module models the per-run path (`CRM_WAVE_FLEET=off`) from measured stage durations, to
show where its time goes:

With `CRM_WAVE_FLEET=off`, `make dev` runs Dagster's daemon with three automations per tenant:

- `changes_sensor` (every 10 s) asks both systems whether anything changed since its last
  look (`crm_wave/sync/heads.py`: the CRM change feeds after its cursor, Wave's newest
  `modifiedAt` and counts; four small requests, no DuckDB) and, on a change, launches one
  `sync_job` run: collect, global, share and push in one process. This is the fast path.
- the collect schedule (`collect_job`: collect, global, share) starts every minute on the
  minute, and the push sensor (every 15 s) pushes share assets whose latest
  materialization has work: the fallback cadence, which also covers changes the changes
  sensor could not see (its first look at a tenant, a system that did not answer).

An edit in the CRM reaches Wave at the earlier of:

1. fast path: the changes sensor's next tick after the edit (every 10 s at a fixed
   offset, drawn at random once per simulated session), plus a run launch, plus one
   sync run (collect of all six datasets, global and share of all three entities, and the
   push of that edit; measured here against the simulators, after one edit);
2. fallback: the next collect run (the next minute, plus a launch), then the push
   sensor's next tick after it has diffed (every 15 s), plus another launch and the push.

Our own pushes move the changes sensor's marks as well, so a run that wrote is followed by
one more that reads the writes back; while a tenant has a run queued or in progress the
sensor does not look at it. The model leaves both out (it assumes an idle tenant), so the
live figure is the one to trust; the model shows the floor set by the cadences.

The stage durations are measured in-process with the real engine and simulators at the
size of the dev data set; Dagster's own per-step overhead and the run-launch time are not
measured (no Dagster daemon here): the launch is a parameter (`launch_s`). The edits fall
at random times; the result is the median and 95th percentile over `edits` edits.
"""

from __future__ import annotations

import math
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from crm_wave.store.db import Store
from crm_wave.systems.protocols import Client
from crm_wave.sync.collect import collect
from crm_wave.sync.engine import sync_once
from crm_wave.sync.global_step import build_global
from crm_wave.sync.names import ENTITIES
from crm_wave.sync.push import push
from crm_wave.sync.share_step import build_share
from crm_wave.systems.crm.client import CrmClient
from crm_wave.systems.crm.simulator import create_app as crm_app
from crm_wave.systems.crm.simulator import seed as seed_crm
from crm_wave.systems.serve import free_port, serve_in_thread
from crm_wave.systems.wave.client import WaveClient
from crm_wave.systems.wave.simulator import create_app as wave_app

__all__ = ["measure_live", "measure_stages", "simulate", "percentile"]

COLLECT_EVERY_S = 60.0  # crm_wave/defs/automation.py: cron "* * * * *"
SENSOR_EVERY_S = 15.0  # push_sensor: minimum_interval_seconds=15
CHANGES_EVERY_S = 10.0  # changes_sensor: minimum_interval_seconds=10


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks."""
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def measure_stages(workdir: Path, *, seed: int = 42, repeats: int = 5, customers: int = 20) -> dict[str, float]:
    """Median seconds of (collect run, push run) for one CRM edit, at dev size, against the simulators."""
    crm_db, wave_db = workdir / "crm.sqlite3", workdir / "wave.sqlite3"
    seed_crm(crm_db, seed=seed, customers=customers, products=max(1, customers // 2), orders=max(1, customers * 3 // 4))
    collect_runs, push_runs = [], []
    with serve_in_thread(crm_app(db_path=crm_db, token="t1")) as crm_base, \
            serve_in_thread(wave_app(db_path=wave_db, token="t2")) as wave_base, \
            CrmClient(base_url=f"{crm_base}/api/v1", token="t1") as crm, \
            WaveClient(url=f"{wave_base}/graphql/public", token="t2") as wave:
        store = Store(workdir / "dev.duckdb")
        clients: dict[str, Client] = {"crm": crm, "wave": wave}
        sync_once(store, clients)  # converged, as `make dev` is after its first minutes
        for i in range(repeats):
            customer = next(c for c in crm.read_all("customers") if c["Type"] == "organization")
            crm.patch("customers", customer["Id"], {"Phone": f"+47 99 00 00 {i:02d}"}, if_match=customer["Version"])
            now = datetime.now(UTC)
            t = time.perf_counter()
            for entity in ENTITIES:
                for system in ("crm", "wave"):
                    collect(store, system, entity, clients[system], now)
            for entity in ENTITIES:
                build_global(store, entity, now)
                for target in ("crm", "wave"):
                    build_share(store, target, entity)
            collect_runs.append(time.perf_counter() - t)
            t = time.perf_counter()
            result = push(store, "wave", "customer", wave, now)
            push_runs.append(time.perf_counter() - t)
            assert result.updated == 1, result
    return {"collect_run_s": statistics.median(collect_runs), "push_s": statistics.median(push_runs)}


def simulate(stages: dict[str, float], *, edits: int = 20, seed: int = 7, launch_s: float = 3.0,
             sessions: int = 1) -> dict[str, Any]:
    """Latencies (s) of `edits` CRM edits at random times, given the measured stage durations."""
    rng = random.Random(seed)
    latencies = []
    for _ in range(sessions):
        sensor_offset = rng.uniform(0, SENSOR_EVERY_S)
        changes_offset = rng.uniform(0, CHANGES_EVERY_S)
        for _ in range(edits):
            edit = rng.uniform(0, 600)
            # Fallback: the collect run that reads the edit (the first one whose read starts after
            # it), then the push sensor's next tick after that run has diffed, then the push run.
            k = math.floor((edit - launch_s) / COLLECT_EVERY_S) + 1
            read = k * COLLECT_EVERY_S + launch_s
            shared = read + stages["collect_run_s"]
            tick = sensor_offset + math.ceil((shared - sensor_offset) / SENSOR_EVERY_S) * SENSOR_EVERY_S
            scheduled = tick + launch_s + stages["push_s"]
            # Fast path: the changes sensor's next look after the edit starts one sync run.
            look = changes_offset + math.ceil((edit - changes_offset) / CHANGES_EVERY_S) * CHANGES_EVERY_S
            sensed = look + launch_s + stages["collect_run_s"] + stages["push_s"]
            latencies.append(min(scheduled, sensed) - edit)
    return {"edits": len(latencies), "median_s": statistics.median(latencies), "p95_s": percentile(latencies, 95),
            "min_s": min(latencies), "max_s": max(latencies), "launch_s": launch_s, **stages}


# ---- live, against `crm-wave dev` -------------------------------------------------------

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEV_CRM = "http://127.0.0.1:8701/api/v1"  # crm_wave/tools/dev.py: fixed ports
DEV_WAVE = "http://127.0.0.1:8702/graphql/public"


def _wait(what: str, check: Any, timeout_s: float, proc: subprocess.Popen, every_s: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"`crm-wave dev` exited (code {proc.returncode}) while waiting for {what}")
        try:
            value = check()
        except Exception:  # noqa: BLE001 - not up yet
            value = None
        if value:
            return value
        time.sleep(every_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def measure_live(workdir: Path, *, edits: int = 20, seed: int = 42, settle_timeout_s: float = 600,
                 edit_timeout_s: float = 300, log: Any = print) -> dict[str, Any]:
    """Edit-to-Wave latency of `edits` CRM edits with `crm-wave dev` running on default settings."""
    from crm_wave.tools.demo import CRM_TOKEN, WAVE_TOKEN

    rng = random.Random(seed)
    data_dir = workdir / "dev-data"
    out = open(workdir / "dev.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "crm_wave.cli", "dev", "--data-dir", str(data_dir), "--port", str(free_port())],
        cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        env={k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"},
    )
    started = time.monotonic()
    try:
        with CrmClient(base_url=DEV_CRM, token=CRM_TOKEN) as crm, WaveClient(url=DEV_WAVE, token=WAVE_TOKEN) as wave:
            customers = _wait("the CRM simulator", lambda: crm.read_all("customers"), 120, proc)

            def linked() -> list[dict[str, Any]]:
                emails = {(c.get("email") or "").lower() for c in wave.list_customers()}
                ok = [c for c in crm.read_all("customers") if (c.get("Email") or "").lower() in emails]
                return ok if len(ok) >= min(edits, len(customers)) else []

            targets = _wait("the first syncs to link the CRM customers to Wave", linked, settle_timeout_s, proc, 5.0)
            settled_s = time.monotonic() - started
            log(f"latency: dev up and first syncs done after {settled_s:.0f} s; {len(targets)} customers linked")
            nonce = uuid.uuid4().hex[:8]
            written: dict[str, float] = {}
            seen: dict[str, float] = {}
            stop = threading.Event()

            def watch() -> None:
                while not stop.is_set():
                    try:
                        notes = {c.get("internalNotes") for c in wave.list_customers()}
                    except Exception:  # noqa: BLE001 - keep watching through a hiccup
                        notes = set()
                    now = time.monotonic()
                    for marker in list(written):
                        if marker in notes and marker not in seen:
                            seen[marker] = now
                    stop.wait(1.0)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            for i in range(edits):
                customer = targets[i % len(targets)]
                if i >= len(targets):  # the same customer again: only after its last edit arrived
                    prev = [m for m in written if m.endswith(f"@{customer['Id']}")][-1]
                    _wait("the previous edit of the same customer", lambda: prev in seen, edit_timeout_s, proc, 0.5)
                current = crm.get("customers", customer["Id"])
                assert current is not None, customer["Id"]
                marker = f"latency {nonce} #{i:02d} @{customer['Id']}"
                crm.patch("customers", customer["Id"], {"Description": marker}, if_match=current["Version"])
                written[marker] = time.monotonic()
                time.sleep(rng.uniform(2.0, 14.0))  # edits at random points of the schedule's minute
            _wait("every edit to reach Wave", lambda: len(seen) == len(written), edit_timeout_s, proc, 1.0)
            stop.set()
            watcher.join(5)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.close()
    latencies = [seen[m] - written[m] for m in written]
    return {"edits": len(latencies), "median_s": statistics.median(latencies), "p95_s": percentile(latencies, 95),
            "min_s": min(latencies), "max_s": max(latencies), "settle_s": settled_s,
            "latencies_s": [round(x, 2) for x in latencies]}
