"""The APIs on loopback: collect and push through the real clients against the simulators.

Both simulators run in this process (`serve_in_thread`, each with its own SQLite file),
so the figures include HTTP, JSON, the GraphQL server and SQLite on the same 2 cores
the sync uses: they are a floor for a real deployment, not a ceiling.

1. collect: the CRM simulator seeded with N customers (`seed`), collected by `collect`.
2. push: global + share of those customers (N creates for Wave), sent by `push` through a
   `WaveClient` with `batch_size` mutations per request and `max_workers` requests in
   flight. Requests are counted (`client.stats.requests`) against one per record.
3. collect again, from Wave: the customers just created.
4. with a rate limit: the Wave simulator answers 429 above R requests per minute and the
   client is configured with the same R; a push of products that needs more than R
   requests. Every request's start time is recorded; the largest number in any
   60-second window must stay at or under R, and no 429 may come back.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from dataclasses import replace
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

import httpx

from crm_wave.store.db import Store
from crm_wave.sync.collect import collect
from crm_wave.sync.global_step import build_global
from crm_wave.sync.push import push
from crm_wave.sync.share_step import build_share
from crm_wave.systems.crm.client import CrmClient
from crm_wave.systems.crm.simulator import create_app as crm_app
from crm_wave.systems.crm.simulator import seed as seed_crm
from crm_wave.systems.http import ApiError, HttpPolicy
from crm_wave.systems.serve import serve_in_thread
from crm_wave.systems.wave.client import WaveClient
from crm_wave.systems.wave.simulator import create_app as wave_app

__all__ = ["run_api", "max_in_window"]

CRM_TOKEN, WAVE_TOKEN = "bench-crm", "bench-wave"


def max_in_window(times: list[float], window: float = 60.0) -> int:
    """The largest number of `times` (sorted) inside any half-open window of `window` seconds."""
    best = 0
    for i, t in enumerate(times):
        best = max(best, i - bisect_left(times, t - window + 1e-9) + 1)
    return best


def _record_requests(client: WaveClient) -> list[float]:
    """Start times of every HTTP request the client sends (monotonic seconds)."""
    times: list[float] = []
    client._http.event_hooks["request"].append(lambda request: times.append(time.monotonic()))  # noqa: SLF001
    return times


def run_api(records: int, pushes: int, seed: int, workdir: Path, *, batch_size: int = 25, max_workers: int = 4,
            rate_limit: int | None = 60, rate_limited_products: int = 2000) -> dict[str, Any]:
    """Collect/push throughput against the simulators, and a rate-limited push (skipped when `rate_limit` is None)."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    crm_db, wave_db = workdir / "crm.sqlite3", workdir / "wave.sqlite3"
    seed_crm(crm_db, seed=seed, customers=records, products=rate_limited_products if rate_limit else 10, orders=0)
    out: dict[str, Any] = {"records": records, "batch_size": batch_size, "max_workers": max_workers}
    with serve_in_thread(crm_app(db_path=crm_db, token=CRM_TOKEN)) as crm_base, \
            serve_in_thread(wave_app(db_path=wave_db, token=WAVE_TOKEN)) as wave_base:
        wave_url = f"{wave_base}/graphql/public"
        with CrmClient(base_url=f"{crm_base}/api/v1", token=CRM_TOKEN) as crm, \
                WaveClient(url=wave_url, token=WAVE_TOKEN, batch_size=batch_size, max_workers=max_workers) as wave:
            store = Store(workdir / "api.duckdb")
            t = time.perf_counter()
            res = collect(store, "crm", "customer", crm, now, full=True)
            s = time.perf_counter() - t
            out["collect_crm"] = {"entities": res.read, "seconds": s, "per_s": res.read / s,
                                  "requests": crm.stats.requests}
            collect(store, "wave", "customer", wave, now, full=True)
            build_global(store, "customer", now)
            build_share(store, "wave", "customer")
            # Send `pushes` of them: the rest wait for another day (the share table is cut down).
            with store.connect() as con:
                con.execute("DELETE FROM wave_customer_share WHERE global_id NOT IN (SELECT global_id FROM "
                            "wave_customer_share WHERE op = 'insert' ORDER BY global_id LIMIT ?)", [pushes])
            before = wave.stats.requests
            t = time.perf_counter()
            result = push(store, "wave", "customer", wave, now)
            s = time.perf_counter() - t
            requests = wave.stats.requests - before
            out["push_wave"] = {"mutations": result.created + result.updated, "failed": result.failed, "seconds": s,
                                "per_s": (result.created + result.updated) / s, "requests": requests,
                                "requests_if_one_per_record": result.created + result.updated}
            wave2 = WaveClient(url=wave_url, token=WAVE_TOKEN, page_size=200)
            t = time.perf_counter()
            res = collect(Store(workdir / "api2.duckdb"), "wave", "customer", wave2, now, full=True)
            s = time.perf_counter() - t
            out["collect_wave"] = {"entities": res.read, "seconds": s, "per_s": res.read / s,
                                   "requests": wave2.stats.requests}
            wave2.close()
        if rate_limit:
            out["rate_limited"] = _rate_limited(crm_base, wave_base, wave_url, store, rate_limit, batch_size, max_workers,
                                                now)
    return out


def _rate_limited(crm_base: str, wave_base: str, wave_url: str, store: Store, rate: int, batch_size: int,
                  max_workers: int, now: datetime) -> dict[str, Any]:
    """The product push under a limit of `rate` a minute on both ends, while a second client (as the
    changes sensor in the daemon would) looks at Wave's heads every 5 s, counted in the same file."""
    httpx.put(f"{wave_base}/_sim/faults", json={"rate_limit_per_minute": rate}).raise_for_status()
    policy = HttpPolicy(requests_per_minute=rate, rate_file=str(store.path.with_name("wave-requests.sqlite")))
    looks = {"done": 0, "skipped": 0}
    stop = threading.Event()

    def sensor(client: WaveClient) -> None:
        while not stop.wait(5.0):
            try:
                client.change_heads()
                looks["done"] += 1
            except ApiError:
                looks["skipped"] += 1

    with CrmClient(base_url=f"{crm_base}/api/v1", token=CRM_TOKEN) as crm, \
            WaveClient(url=wave_url, token=WAVE_TOKEN, policy=policy, batch_size=batch_size,
                       max_workers=max_workers) as wave, \
            WaveClient(url=wave_url, token=WAVE_TOKEN,
                       policy=replace(policy, timeout_s=5.0, max_attempts=2, max_rate_wait_s=2.0)) as looker:
        collect(store, "crm", "product", crm, now, full=True)
        times = _record_requests(wave)
        look_times = _record_requests(looker)
        watcher = threading.Thread(target=sensor, args=(looker,), daemon=True)
        watcher.start()
        t = time.perf_counter()
        collect(store, "wave", "product", wave, now, full=True)
        build_global(store, "product", now)
        build_share(store, "wave", "product")
        result = push(store, "wave", "product", wave, now)
        s = time.perf_counter() - t
        stop.set()
        watcher.join()
        stats = wave.stats.as_dict()
        rejected = stats["rate_limited"] + looker.stats.rate_limited
    httpx.put(f"{wave_base}/_sim/faults", json={}).raise_for_status()
    every = sorted(times + look_times)
    return {"limit_per_minute": rate, "mutations": result.created + result.updated, "seconds": s,
            "requests": len(times), "looks": looks["done"], "looks_skipped": looks["skipped"],
            "look_requests": len(look_times), "max_in_any_60s": max_in_window(every), "rate_limited_429": rejected,
            "mean_per_minute": 60 * len(every) / max(every[-1] - every[0], 1e-9) if len(every) > 1 else 0.0}
