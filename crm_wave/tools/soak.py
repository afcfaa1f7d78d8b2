"""Soak: both simulators with faults and rate limits, repeated syncs until both systems agree.

`crm-wave soak` seeds N records per type on each side (some customers and products on
both sides already), switches on `error_rate`, `lost_response_rate` and a rate limit on
both simulators, runs sync passes until one writes nothing and nothing is left unknown,
then checks: both systems equal under the mapping, zero duplicates, zero records lost.
It prints the figures (requests, retries, 429s, time to converge). Bounded in time.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import httpx

from crm_wave.store import Store
from crm_wave.sync.engine import run_pass
from crm_wave.systems.crm.client import CrmClient
from crm_wave.systems.crm.simulator import create_app as crm_app
from crm_wave.systems.crm.simulator import seed as seed_crm
from crm_wave.systems.http import HttpPolicy
from crm_wave.systems.serve import serve_in_thread
from crm_wave.systems.wave.client import Mutation, WaveClient
from crm_wave.systems.wave.simulator import create_app as wave_app


def seed_wave(wave: WaveClient, crm: CrmClient, n: int, rng: random.Random) -> None:
    """n customers (10% with a CRM customer's email), n products (10% named like CRM's), n invoices."""
    biz = wave.business_id
    crm_emails = [c["Email"] for c in crm.read_all("customers") if c.get("Email")]
    crm_products = [p["Name"] for p in crm.read_all("products")]
    ops = [Mutation("customerCreate", {"businessId": biz, "name": f"Wave Customer {i}",
                                       "email": crm_emails[i] if i < n // 10 else f"wave{i}@soak.example"}, f"c{i}")
           for i in range(n)]
    ops += [Mutation("productCreate", {"businessId": biz, "name": crm_products[i] if i < n // 10 else f"Wave Product {i}",
                                       "unitPrice": f"{rng.randint(100, 99999) / 100:.2f}"}, f"p{i}") for i in range(n)]
    created = wave.mutate(ops)
    customers = [r.entity["id"] for r in created if r.ok and r.entity and r.name == "customerCreate"]
    products = [r.entity["id"] for r in created if r.ok and r.entity and r.name == "productCreate"]
    wave.mutate([Mutation("invoiceCreate", {
        "businessId": biz, "customerId": rng.choice(customers), "invoiceNumber": f"W-{i}", "status": "SAVED",
        "invoiceDate": "2026-11-01", "dueDate": "2026-12-01",
        "items": [{"productId": rng.choice(products), "quantity": str(rng.randint(1, 5))} for _ in range(rng.randint(1, 3))],
    }, f"i{i}") for i in range(n)])


def _faults(base: str, body: dict) -> None:
    httpx.put(f"{base}/_sim/faults", json=body, timeout=30).raise_for_status()


def check(crm: CrmClient, wave: WaveClient, store: Store) -> dict[str, dict[str, int]]:
    """Compare both systems: counts, duplicates, links."""
    out: dict[str, dict[str, int]] = {}
    # A cancelled CRM order is never created in Wave (mappings: held in the CRM).
    crm_orders = [o for o in crm.read_all("orders") if o.get("Status") != "cancelled"]
    pairs = {"customer": (crm.read_all("customers"), wave.list_customers(), "Email", "email"),
             "product": (crm.read_all("products"), wave.list_products(), "Name", "name"),
             "order": (crm_orders, wave.list_invoices(), "OrderNumber", "invoiceNumber")}
    for entity, (crm_rows, wave_rows, ck, wk) in pairs.items():
        # Records without the key (customers without email) are compared by name.
        crm_keys = Counter((r.get(ck) or r.get("Name") or "").strip().lower() for r in crm_rows)
        wave_keys = Counter((r.get(wk) or r.get("name") or "").strip().lower() for r in wave_rows)
        with store.connect() as con:
            linked = con.execute("SELECT count(*) FROM links WHERE entity = ? AND crm_id IS NOT NULL "
                                 "AND wave_id IS NOT NULL", [entity]).fetchall()[0][0]
        # Two different seeded records may share a key (two persons of one name, no email): a
        # duplicate made by the sync shows as a key more often on one side than on the other.
        out[entity] = {"crm": len(crm_rows), "wave": len(wave_rows), "linked": linked,
                       "same_key_in_seed": sum(v - 1 for v in crm_keys.values() if v > 1),
                       "extra_in_crm": sum((crm_keys - wave_keys).values()),
                       "extra_in_wave": sum((wave_keys - crm_keys).values())}
    return out


def soak(n: int, *, error_rate: float, lost_rate: float, crm_rpm: int, wave_rpm: int, max_minutes: float,
         seed: int = 7, strict: bool = False, not_found_rate: float = 0.1, wave_sim_rpm: int | None = None) -> int:
    """Run the soak; print figures; return 0 when both systems converged with no duplicate and no loss."""
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="crm-wave-soak-"))
    seed_crm(tmp / "crm.db", seed=seed, customers=n, products=n, orders=n)
    with ExitStack() as stack:
        crm_base = stack.enter_context(serve_in_thread(crm_app(db_path=tmp / "crm.db", token="c")))
        wave_base = stack.enter_context(serve_in_thread(_wave_sim(tmp / "wave.db", strict)))
        crm = stack.enter_context(CrmClient(base_url=f"{crm_base}/api/v1", token="c",
                                            policy=HttpPolicy(requests_per_minute=crm_rpm, max_attempts=12)))
        wave = stack.enter_context(WaveClient(url=f"{wave_base}/graphql/public", token="w",
                                              policy=HttpPolicy(requests_per_minute=wave_rpm, max_attempts=12)))
        seed_wave(wave, crm, n, rng)
        seeded = {"crm": n, "wave": n}
        for base, rpm in ((crm_base, crm_rpm), (wave_base, wave_rpm)):
            limit = wave_sim_rpm if base == wave_base and wave_sim_rpm else rpm + rpm // 10
            _faults(base, {"error_rate": error_rate, "lost_response_rate": lost_rate, "seed": seed,
                           "rate_limit_per_minute": limit,
                           **(_strict_faults(not_found_rate) if strict and base == wave_base else {})})
        before = {"crm": dict(crm.stats.as_dict()), "wave": dict(wave.stats.as_dict())}
        store = Store(tmp / "crm_wave.duckdb")
        started, passes, quiet = time.monotonic(), 0, False
        while time.monotonic() - started < max_minutes * 60:
            passes += 1
            try:
                result = run_pass(store, {"crm": crm, "wave": wave})
            except Exception as exc:  # a pass that gave up (retries exhausted) is simply run again
                print(f"pass {passes}: {type(exc).__name__}: {str(exc)[:160]}")
                continue
            unknown = sum(p.unknown for p in result.pushes)
            failed = sum(p.failed for p in result.pushes)
            print(f"pass {passes}: writes {result.writes}, unknown outcome {unknown}, refused {failed}, "
                  f"{time.monotonic() - started:.0f} s", flush=True)
            if result.writes == 0 and unknown == 0:
                quiet = True
                break
        elapsed = time.monotonic() - started
        for base in (crm_base, wave_base):
            _faults(base, {})
        summary = check(crm, wave, store)
    stats = {"crm": crm.stats.as_dict(), "wave": wave.stats.as_dict()}
    if strict:
        print(f"\nWave simulator in strict mode: rate limits answered in both forms, 2 in flight, "
              f"spurious NOT_FOUND on {not_found_rate:.0%} of creates")
    print(f"\nseeded {seeded['crm']} per type in the CRM and {seeded['wave']} per type in Wave; faults: "
          f"error_rate {error_rate}, lost_response_rate {lost_rate}, rate limits CRM {crm_rpm}/min, Wave {wave_rpm}/min")
    print(f"converged: {quiet} after {passes} passes in {elapsed:.0f} s")
    for system in ("crm", "wave"):
        s = {k: stats[system][k] - before[system][k] for k in stats[system]}
        print(f"{system:5} requests {s['requests']}, retries {s['retries']}, 429s {s['rate_limited']}, "
              f"5xx {s['server_errors']}, network errors {s['network_errors']}")
    ok = quiet
    for entity, row in summary.items():
        print(f"{entity:9} {row}")
        ok = ok and row["extra_in_crm"] == 0 and row["extra_in_wave"] == 0 and row["crm"] == row["wave"] == row["linked"]
    print("RESULT:", "both systems equal, zero duplicates, zero lost" if ok else "NOT CONVERGED")
    return 0 if ok else 1


def _wave_sim(db: Path, strict: bool):
    """The Wave simulator; in strict mode its per-minute limit is lifted while seeding (the soak's own
    limit is set with the faults)."""
    from crm_wave.systems.faults import WaveFaultSettings

    return wave_app(db_path=db, token="w", strict=strict, faults=WaveFaultSettings(max_in_flight=2) if strict else None)


def _strict_faults(not_found_rate: float) -> dict:
    return {"rate_limit_form": "both", "max_in_flight": 2, "not_found_rate": not_found_rate}


def main(argv: list[str] | None = None) -> int:
    """`crm-wave soak` / `python -m crm_wave.tools.soak`."""
    p = argparse.ArgumentParser(prog="crm-wave soak", description=__doc__)
    p.add_argument("--records", type=int, default=1000, help="records per type on each side")
    p.add_argument("--error-rate", type=float, default=0.2)
    p.add_argument("--lost-response-rate", type=float, default=0.2)
    p.add_argument("--crm-rpm", type=int, default=6000)
    p.add_argument("--wave-rpm", type=int, default=1200)
    p.add_argument("--max-minutes", type=float, default=30)
    p.add_argument("--strict", action="store_true",
                   help="the Wave simulator in strict mode (docs/wave-behaviour.md), with spurious NOT_FOUND on creates")
    p.add_argument("--wave-sim-rpm", type=int, default=None,
                   help="the Wave simulator's own limit (default: --wave-rpm + 10%%); below --wave-rpm it answers 429s")
    p.add_argument("--not-found-rate", type=float, default=0.1, help="with --strict: share of creates answered NOT_FOUND")
    a = p.parse_args(argv)
    return soak(a.records, error_rate=a.error_rate, lost_rate=a.lost_response_rate, crm_rpm=a.crm_rpm,
                wave_rpm=a.wave_rpm, max_minutes=a.max_minutes, strict=a.strict, not_found_rate=a.not_found_rate,
                wave_sim_rpm=a.wave_sim_rpm)


if __name__ == "__main__":
    raise SystemExit(main())
