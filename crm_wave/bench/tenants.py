"""Figures for many tenants: N tenants x M records synced through Dagster's queue on Postgres.

`python -m crm_wave.bench.tenants` starts a CRM and a Wave simulator per tenant (each its
own process), registers the tenants, starts `dagster-daemon` with the Postgres instance of
`deploy/dagster.local-postgres.yaml` (the QueuedRunCoordinator with one run per tenant and
`--max-concurrent` runs at once) and lets the fleet run unattended, as in production: the
collect schedule starts a run per tenant every minute and the push sensor launches the
pushes. It waits until every tenant's Wave business holds all of its CRM customers and
orders, then prints the time to converge, the runs and their durations, and the peak memory
of every process involved. Needs PostgreSQL: `eval "$(bash .ci/postgres.sh)"`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
from collections import Counter
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from crm_wave.systems.serve import free_port
from crm_wave.config.tenants import add_tenant

ROOT = Path(__file__).resolve().parents[2]


def _rss_kb(pid: int) -> int:
    total = 0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    except OSError:
        return 0
    return total + sum(_rss_kb(int(c)) for c in children)


class _Sampler(threading.Thread):
    """Samples the summed RSS of a set of process trees: in all, and of the Dagster daemon's tree
    (daemon, code server, runs) alone."""

    def __init__(self, pids: list[int], daemon_pid: int) -> None:
        super().__init__(daemon=True)
        self.pids, self.daemon_pid, self.stop = pids, daemon_pid, threading.Event()
        self.peak_kb = self.peak_dagster_kb = 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak_kb = max(self.peak_kb, sum(_rss_kb(p) for p in self.pids) + _rss_kb(os.getpid()))
            self.peak_dagster_kb = max(self.peak_dagster_kb, _rss_kb(self.daemon_pid))
            time.sleep(0.5)


def _wait_http(url: str, headers: dict, body: dict | None = None) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            (httpx.post(url, json=body, headers=headers) if body else httpx.get(url, headers=headers)).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _count(url: str, token: str, field: str) -> int:
    query = f"{{ business {{ {field}(page: 1, pageSize: 1) {{ pageInfo {{ totalCount }} }} }} }}"
    r = httpx.post(url, json={"query": query}, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return r.json()["data"]["business"][field]["pageInfo"]["totalCount"]


def _converged(env: dict[str, str], name: str) -> bool:
    """The tenant's Wave business holds every CRM customer and every non-cancelled order."""
    prefix = name.upper() + "_"
    crm = env[prefix + "CRM_BASE_URL"]
    headers = {"Authorization": "Bearer c"}
    customers = len(httpx.get(f"{crm}/customers?limit=1000", headers=headers, timeout=30).json()["items"])
    orders = [o for o in httpx.get(f"{crm}/orders?limit=1000", headers=headers, timeout=30).json()["items"]
              if o.get("Status") != "cancelled"]
    url = env[prefix + "WAVE_GRAPHQL_URL"]
    return _count(url, "w", "customers") >= customers and _count(url, "w", "invoices") >= len(orders)


def start_daemon(env: dict[str, str], log: Path | None = None, workspace: Path = ROOT / "workspace.yaml") -> subprocess.Popen:
    """`dagster-daemon run` on `workspace` (default the project's), in a process group of its own (see `stop_daemon`).

    Its output goes to `log` when given (a test prints it when runs do not finish), else nowhere."""
    out = open(log, "wb") if log else subprocess.DEVNULL  # the child process owns it
    return subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace)],
                            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_daemon(daemon: subprocess.Popen) -> None:
    """Stop the daemon, then its whole group: the code server it starts outlives a SIGTERM of the daemon."""
    daemon.terminate()
    try:
        daemon.wait(timeout=30)
    finally:
        try:
            os.killpg(daemon.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _steady(instance, dg, names: list[str], window_s: float) -> dict:
    """Keep the converged fleet running `window_s`; runs started in the window, cadence per tenant, CPU use."""
    t0, (busy0, all0) = time.time(), _cpu_times()
    time.sleep(window_s)
    t1, (busy1, all1) = time.time(), _cpu_times()
    runs = instance.get_runs(filters=dg.RunsFilter(tags={}))
    per_tenant: Counter[str] = Counter()
    by_job: Counter[str] = Counter()
    durations = []
    for r in runs:
        rec = instance.get_run_record_by_id(r.run_id)
        if rec.start_time and t0 <= rec.start_time < t1:
            by_job[r.job_name] += 1
            if r.job_name != "collect_job":
                continue
            per_tenant[r.tags.get("tenant")] += 1
            if rec.end_time:
                durations.append(rec.end_time - rec.start_time)
    counts = [per_tenant.get(n, 0) for n in names]
    n = sum(counts)
    return {"window_s": t1 - t0, "collect_runs": n, "per_tenant_min": min(counts), "per_tenant_max": max(counts),
            "runs_by_job": dict(by_job),
            "cadence_s": (t1 - t0) * len(names) / n if n else float("inf"),
            "run_median_s": statistics.median(durations) if durations else float("nan"),
            "cpu_busy_pct": 100 * (busy1 - busy0) / max(all1 - all0, 1)}


def main(argv: list[str] | None = None) -> int:
    """Run the figures; print a table."""
    p = argparse.ArgumentParser(prog="python -m crm_wave.bench.tenants", description=__doc__)
    p.add_argument("--tenants", type=int, default=20)
    p.add_argument("--records", type=int, default=500, help="customers per tenant (plus a fifth as many products and orders)")
    p.add_argument("--max-concurrent", type=int, default=4, help="max_concurrent_runs of the run queue")
    p.add_argument("--max-minutes", type=float, default=30)
    p.add_argument("--steady-minutes", type=float, default=3,
                   help="after every tenant converged, keep the fleet running this long and measure it at rest")
    a = p.parse_args(argv)
    if not os.environ.get("DAGSTER_PG_HOST"):
        print('PostgreSQL is needed: eval "$(bash .ci/postgres.sh)"', file=sys.stderr)
        return 2
    import dagster as dg

    config = (ROOT / "deploy" / "dagster.local-postgres.yaml").read_text()
    tmp, data, home, db, admin = postgres_home(
        "crm-wave-tenants-", f"crm_wave_bench_{os.getpid()}",
        config.replace("max_concurrent_runs: 8", f"max_concurrent_runs: {a.max_concurrent}"))
    env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_PG_DB": db, "CRM_WAVE_DATA_DIR": str(data)}
    procs: list[subprocess.Popen] = []
    daemon = None
    names = [f"t{i:02d}" for i in range(a.tenants)]
    try:
        for name in names:
            t = add_tenant(data, name)
            cport, wport = free_port(), free_port()
            procs.append(subprocess.Popen([sys.executable, "-m", "crm_wave.cli", "sim", "crm", "--port", str(cport),
                                           "--db", str(tmp / f"{name}-crm.db"), "--token", "c", "--seed", str(len(procs)),
                                           "--customers", str(a.records), "--products", str(a.records // 5),
                                           "--orders", str(a.records // 5)], stdout=subprocess.DEVNULL))
            procs.append(subprocess.Popen([sys.executable, "-m", "crm_wave.cli", "sim", "wave", "--port", str(wport),
                                           "--db", str(tmp / f"{name}-wave.db"), "--token", "w"], stdout=subprocess.DEVNULL))
            env.update({t.var("CRM_BASE_URL"): f"http://127.0.0.1:{cport}/api/v1", t.var("CRM_API_TOKEN"): "c",
                        t.var("WAVE_GRAPHQL_URL"): f"http://127.0.0.1:{wport}/graphql/public",
                        t.var("WAVE_API_TOKEN"): "w", t.var("WAVE_REQUESTS_PER_MINUTE"): "0"})
            _wait_http(f"http://127.0.0.1:{cport}/api/v1/customers?limit=1", {"Authorization": "Bearer c"})
            _wait_http(f"http://127.0.0.1:{wport}/graphql/public", {"Authorization": "Bearer w"}, {"query": "{ user { id } }"})
        daemon = start_daemon(env)
        procs.append(daemon)
        sampler = _Sampler([p.pid for p in procs], daemon.pid)
        sampler.start()
        os.environ["DAGSTER_HOME"], os.environ["DAGSTER_PG_DB"] = str(home), db
        with dg.DagsterInstance.get() as instance:
            instance.add_dynamic_partitions("tenants", names)
            started = time.monotonic()
            pending = set(names)
            while pending and time.monotonic() - started < a.max_minutes * 60:
                time.sleep(5)
                pending = {n for n in pending if not _converged(env, n)}
            total = time.monotonic() - started
            steady = _steady(instance, dg, names, a.steady_minutes * 60) if not pending and a.steady_minutes else None
            runs = instance.get_runs(filters=dg.RunsFilter(tags={}))
            records = [instance.get_run_record_by_id(r.run_id) for r in runs]
            durations = [rec.end_time - rec.start_time for rec in records if rec and rec.start_time and rec.end_time]
            failures: Counter[str] = Counter()
            for r in runs:
                if r.status == dg.DagsterRunStatus.FAILURE:
                    for e in instance.all_logs(r.run_id):
                        ev = e.dagster_event
                        if ev is not None and (ev.is_step_failure or ev.event_type_value == "PIPELINE_FAILURE"):
                            err = getattr(ev.event_specific_data, "error", None)
                            while err is not None and err.cause is not None:
                                err = err.cause
                            failures[(err.message if err else e.message or "")[:200].strip()] += 1
        sampler.stop.set()
        ok = sum(1 for r in runs if r.status == dg.DagsterRunStatus.SUCCESS)
        failed = sum(1 for r in runs if r.status == dg.DagsterRunStatus.FAILURE)
        print(f"tenants {a.tenants} x {a.records} customers (+{a.records // 5} products, +{a.records // 5} orders of "
              f"1-4 lines), max_concurrent_runs {a.max_concurrent}, one run per tenant at a time")
        print(f"converged: {len(names) - len(pending)}/{len(names)} tenants after {total:.0f} s "
              f"(schedule every 60 s, push sensor every 15 s, changes sensor every 10 s)")
        print(f"runs {len(runs)}: {ok} succeeded, {failed} failed; run duration median "
              f"{statistics.median(durations):.1f} s, max {max(durations):.1f} s, sum {sum(durations):.0f} s")
        print(f"peak memory (all simulators, daemon, runs, this process): {sampler.peak_kb / 1024:.0f} MiB; "
              f"of the daemon, its code server and runs alone: {sampler.peak_dagster_kb / 1024:.0f} MiB")
        busy = sum(durations)
        print(f"run-seconds per tenant {busy / len(names):.0f} s; busy share of the run slots "
              f"{100 * busy / (a.max_concurrent * total):.0f} % ({a.max_concurrent} slots x {total:.0f} s)")
        if steady:
            print(f"at rest, over {steady['window_s']:.0f} s after converging: {steady['collect_runs']} collect runs "
                  f"({steady['per_tenant_min']}-{steady['per_tenant_max']} per tenant), so each tenant was re-read every "
                  f"{steady['cadence_s']:.0f} s on average (the schedule asks for 60 s); run duration median "
                  f"{steady['run_median_s']:.1f} s; machine CPU busy {steady['cpu_busy_pct']:.0f} % of {os.cpu_count()} cores")
            print("  runs started at rest, by job: " + (", ".join(f"{j} {k}" for j, k in sorted(steady["runs_by_job"].items()))
                                                      or "none"))
        for message, n in failures.most_common(5):
            print(f"failure x{n}: {message}")
        return 0 if not pending else 1
    finally:
        teardown(procs, daemon, admin, db, tmp)


def postgres_home(prefix: str, db: str, dagster_yaml: str) -> tuple[Path, Path, Path, str, Any]:
    """A temporary directory with `data/` and a Dagster home holding `dagster_yaml`, and a new Postgres
    database `db` for the instance: (directory, data, home, db, an admin connection for `teardown`)."""
    import psycopg2

    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    data, home = tmp / "data", tmp / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(dagster_yaml)
    admin = psycopg2.connect(host=os.environ["DAGSTER_PG_HOST"], port=os.environ["DAGSTER_PG_PORT"],
                             user=os.environ["DAGSTER_PG_USERNAME"], password=os.environ["DAGSTER_PG_PASSWORD"],
                             dbname=os.environ["DAGSTER_PG_DB"])
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{db}"')
    return tmp, data, home, db, admin


def teardown(procs: list[subprocess.Popen], daemon: subprocess.Popen | None, admin: Any, db: str, tmp: Path) -> None:
    """Stop the simulators and the daemon, drop the benchmark's Postgres database, remove its files."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=30)
    if daemon is not None:
        stop_daemon(daemon)
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
