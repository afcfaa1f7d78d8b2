"""Edit-to-other-side latency under `make dev`'s default automation, by simulation.

`make dev` runs Dagster's daemon: the collect schedule (`collect_job`: collect, global,
share) starts every minute on the minute, and the push sensor looks every 15 s for share
assets whose latest materialization has work, then launches a run with their pushes.
An edit in the CRM reaches Wave when:

1. the next collect run reads the CRM (the run starts on the next minute, plus the time
   Dagster takes to launch a run),
2. that run has merged and diffed (measured here: collect of all six datasets,
   global and share of all three entities, against the simulators, after one edit),
3. the sensor's next tick after that (ticks every 15 s at a fixed offset from the
   minute, drawn at random once per simulated session),
4. plus another run launch, plus the push itself (measured here: pushing that edit).

Steps 2 and 4 are measured in-process with the real engine and simulators at the size of
the dev data set; the run-launch time is not measured (no Dagster daemon here) and is a
parameter (`launch_s`). The edits fall at random times; the result is the median and
95th percentile over `edits` edits.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from crm_wave.store.db import Store
from crm_wave.sync.collect import collect
from crm_wave.sync.engine import sync_once
from crm_wave.sync.global_step import build_global
from crm_wave.sync.names import ENTITIES
from crm_wave.sync.push import push
from crm_wave.sync.share_step import build_share
from crm_wave.systems.crm.client import CrmClient
from crm_wave.systems.crm.simulator import create_app as crm_app
from crm_wave.systems.crm.simulator import seed as seed_crm
from crm_wave.systems.serve import serve_in_thread
from crm_wave.systems.wave.client import WaveClient
from crm_wave.systems.wave.simulator import create_app as wave_app

__all__ = ["measure_stages", "simulate", "percentile"]

COLLECT_EVERY_S = 60.0  # crm_wave/defs/automation.py: cron "* * * * *"
SENSOR_EVERY_S = 15.0  # push_sensor: minimum_interval_seconds=15


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
        clients = {"crm": crm, "wave": wave}
        sync_once(store, clients)  # converged, as `make dev` is after its first minutes
        for i in range(repeats):
            customer = next(c for c in crm.read_all("customers") if c["Type"] == "organization")
            crm.patch("customers", customer["Id"], {"Phone": f"+47 99 00 00 {i:02d}"}, if_match=customer["Version"])
            now = datetime.now(timezone.utc)
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
        for _ in range(edits):
            edit = rng.uniform(0, 600)
            # The collect run that reads the edit: the first one whose read starts after it.
            k = math.floor((edit - launch_s) / COLLECT_EVERY_S) + 1
            read = k * COLLECT_EVERY_S + launch_s
            shared = read + stages["collect_run_s"]
            tick = sensor_offset + math.ceil((shared - sensor_offset) / SENSOR_EVERY_S) * SENSOR_EVERY_S
            done = tick + launch_s + stages["push_s"]
            latencies.append(done - edit)
    return {"edits": len(latencies), "median_s": statistics.median(latencies), "p95_s": percentile(latencies, 95),
            "min_s": min(latencies), "max_s": max(latencies), "launch_s": launch_s, **stages}
