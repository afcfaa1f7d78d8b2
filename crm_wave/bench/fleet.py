"""Figures for the fleet: N small tenants served by `fleet_job` runs under dagster-daemon on Postgres.

`python -m crm_wave.bench.fleet --tenants 100` (needs PostgreSQL: `eval "$(bash .ci/postgres.sh)"`)
is the one command. It starts one process serving every tenant's CRM simulator and one serving
every tenant's Wave business (each tenant's app under its own path prefix, `/t000/api/v1`,
`/t000/graphql/public`: 200 simulator processes would not fit 2 cores), seeds each CRM with
`--records` customers (a fifth as many products and orders), registers the tenants, starts
`dagster code-server start` and `dagster-daemon` with `CRM_WAVE_FLEET=<mode>` (so `fleet_sensor` runs and
the per-tenant automations are stopped; `--code-server daemon`: the daemon starts its own code server, as
with the project's workspace.yaml), and reports, per mode of `--modes`:

- converged: seconds until every tenant's Wave business holds all its CRM customers and orders
  (first mode only);
- at rest (`--rest-minutes`, no edits): CPU of the machine (/proc/stat), of Dagster's process
  tree (daemon, code server, runs; each of them too), of the simulators and of the PostgreSQL server
  (when on this machine); looks and syncs per tenant-minute;
- under edits (`--edit-minutes`, `--edits-per-minute` CRM edits per tenant, at random times): the
  same, and the edit-to-Wave latency (median, p95) of the edits of the first `--watch` tenants,
  polled every second by email in Wave;
- peak RSS of everything and of Dagster's tree.

CPU is CPU-seconds read from /proc (utime + stime), not wall time: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from crm_wave.bench.latency import percentile
from crm_wave.bench.tenants import ROOT, _cpu_times, _rss_kb, postgres_home, start_daemon, stop_daemon, teardown
from crm_wave.config.tenants import add_tenant
from crm_wave.systems.serve import free_port

_CRM_TOKEN, _WAVE_TOKEN = "c", "w"
_TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the simulators, many tenants per process

def serve(system: str, port: int, directory: Path, names: list[str], records: int) -> None:
    """Serve `system`'s simulator of every tenant in `names` from this process, each under `/<name>`."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from crm_wave.systems.serve import serve_forever

    mounts = []
    for i, name in enumerate(names):
        db = directory / f"{name}-{system}.db"
        if system == "crm":
            from crm_wave.systems.crm.simulator import create_app, seed

            if not db.exists():
                seed(db, seed=i, customers=records, products=records // 5, orders=records // 5)
            app = create_app(db_path=db, token=_CRM_TOKEN)
        else:
            from crm_wave.systems.wave.simulator import create_app as wave_app

            app = wave_app(db_path=db, token=_WAVE_TOKEN)
        mounts.append(Mount(f"/{name}", app=app))
    serve_forever(Starlette(routes=mounts), "127.0.0.1", port)


def _start_sims(tmp: Path, names: list[str], records: int) -> tuple[list[subprocess.Popen], dict[str, str]]:
    """Both simulator processes; the tenants' environment variables."""
    procs, env, ports = [], {}, {}
    for system in ("crm", "wave"):
        ports[system] = free_port()
        procs.append(subprocess.Popen([sys.executable, "-m", "crm_wave.bench.fleet", "--serve", system,
                                       "--port", str(ports[system]), "--dir", str(tmp), "--names", ",".join(names),
                                       "--records", str(records)], stdout=subprocess.DEVNULL))
    for name in names:
        prefix = name.upper() + "_"
        env.update({prefix + "CRM_BASE_URL": f"http://127.0.0.1:{ports['crm']}/{name}/api/v1",
                    prefix + "CRM_API_TOKEN": _CRM_TOKEN,
                    prefix + "WAVE_GRAPHQL_URL": f"http://127.0.0.1:{ports['wave']}/{name}/graphql/public",
                    prefix + "WAVE_API_TOKEN": _WAVE_TOKEN, prefix + "WAVE_REQUESTS_PER_MINUTE": "0"})
    deadline = time.monotonic() + 60 + len(names) * 3  # seeding takes a while
    last = names[-1].upper() + "_"
    for url, body, token in ((env[last + "CRM_BASE_URL"] + "/customers?limit=1", None, _CRM_TOKEN),
                             (env[last + "WAVE_GRAPHQL_URL"], {"query": "{ user { id } }"}, _WAVE_TOKEN)):
        while True:
            try:
                headers = {"Authorization": f"Bearer {token}"}
                r = httpx.post(url, json=body, headers=headers) if body else httpx.get(url, headers=headers)
                r.raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError("the simulators did not start") from None
                time.sleep(0.5)
    return procs, env


# ---------------------------------------------------------------- measuring

def _stat(pid: int | str) -> list[int] | None:
    """The fields of `/proc/<pid>/stat` after the process's name (which may hold spaces and ")"), as numbers
    (its state, a letter, as 0): [1] its parent, [2] its process group, [11:15] utime, stime and those of its
    children that ended, in ticks. None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:15]
        return [0, *(int(x) for x in fields[1:])] if len(fields) == 15 else None
    except (OSError, ValueError):
        return None


def _proc_cpu(pid: int) -> float | None:
    """utime + stime of one process, in seconds (None once it is gone)."""
    f = _stat(pid)
    return None if f is None else (f[11] + f[12]) / _TICK


def _postgres_cpu() -> float | None:
    """CPU-seconds of the PostgreSQL server at DAGSTER_PG_PORT: the postmaster, its backends that ended (its
    children's time) and those alive. None when it is not a process of this machine. Other users of the
    same server count too.

    The postmaster's stat is read before and after its children's: a backend that ends in between moves its
    time into the postmaster's children's time, and was counted in neither (a window's figure once came out
    at -78 CPU-s), so the reading is taken again until no child ended while they were read (at most 5 times)."""
    port = os.environ.get("DAGSTER_PG_PORT", "5432").encode()
    master = None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"postgres") and b"-p" in cmd and port in cmd:
            master = int(entry.name)
            break
    if master is None:
        return None

    def own() -> tuple[int, int] | None:
        """(its utime and stime, those of its children that ended)"""
        f = _stat(master)
        return None if f is None else (f[11] + f[12], f[13] + f[14])

    total = None
    for _ in range(5):
        before = own()
        if before is None:
            return None
        children = 0
        for entry in Path("/proc").iterdir():
            f = _stat(entry.name) if entry.name.isdigit() else None
            if f is not None and f[1] == master:
                children += f[11] + f[12]
        total = (sum(before) + children) / _TICK
        after = own()
        if after is None or after[1] == before[1]:  # no child ended while its children were read
            break
    return total


def _kind(pid: int) -> str:
    """Which part of Dagster's tree a process is: `daemon`, `code server`, `run` (a run's process) or `other`."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    if "execute_run" in cmd or "api execute" in cmd or "spawn_main" in cmd:  # a code server spawns runs
        return "run"
    if "grpc" in cmd or "code-server" in cmd:
        return "code server"
    return "daemon" if "dagster-daemon" in cmd else "other"


def _group(pgids: set[int]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        f = _stat(entry.name) if entry.name.isdigit() else None
        if f is not None and f[2] in pgids:
            pids.append(int(entry.name))
    return pids


class _Meter(threading.Thread):
    """CPU-seconds of process groups (live processes plus the last seen of those gone: runs end) and
    of fixed processes, and the peak RSS of both; sampled every 0.25 s."""

    def __init__(self, pgids: list[int], others: list[int]) -> None:
        super().__init__(daemon=True)
        self.pgids, self.others, self.stop = set(pgids), others, threading.Event()
        self.seen: dict[int, float] = {}
        self.kinds: dict[int, str] = {}
        self.peak_kb = self.peak_group_kb = 0
        self.lock = threading.Lock()

    def sample(self) -> None:
        pids = _group(self.pgids)
        with self.lock:
            for pid in pids:
                cpu = _proc_cpu(pid)
                if cpu is not None:
                    self.seen[pid] = cpu
                    if pid not in self.kinds:
                        self.kinds[pid] = _kind(pid)
        group_kb = sum(_rss_kb(p) for p in pids if p in self.pgids)  # _rss_kb walks the children
        self.peak_group_kb = max(self.peak_group_kb, group_kb)
        self.peak_kb = max(self.peak_kb, group_kb + sum(_rss_kb(p) for p in self.others) + _rss_kb(os.getpid()))

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            time.sleep(0.25)

    def group_cpu(self) -> float:
        self.sample()
        with self.lock:
            return sum(self.seen.values())

    def by_kind(self) -> dict[str, float]:
        """CPU-seconds of the group so far per kind of process (`_kind`)."""
        self.sample()
        out: dict[str, float] = {}
        with self.lock:
            for pid, cpu in self.seen.items():
                kind = self.kinds.get(pid, "other")
                out[kind] = out.get(kind, 0.0) + cpu
        return out

    def others_cpu(self) -> float:
        return sum(_proc_cpu(p) or 0.0 for p in self.others)


@dataclass
class Window:
    """What one measured stretch of time cost and achieved."""

    name: str
    seconds: float = 0.0
    machine_pct: float = 0.0
    dagster_cpu_s: float = 0.0
    #: Dagster's CPU-s in the window per process: daemon, code server, run (the fleet's runs), other.
    dagster_parts: dict[str, float] = field(default_factory=dict)
    sims_cpu_s: float = 0.0
    #: The Dagster instance's PostgreSQL server (None: not on this machine): every event a run writes is a
    #: row there, and Dagster's storage opens a new connection (a new backend process) per write by default.
    postgres_cpu_s: float | None = None
    bench_cpu_s: float = 0.0
    looks_per_tenant_min: list[float] = field(default_factory=list)
    syncs_per_tenant_min: list[float] = field(default_factory=list)
    fleet_runs: int = 0
    failures: int = 0
    edits: int = 0
    latencies: list[float] = field(default_factory=list)
    unseen: int = 0

    def line(self, tenants: int) -> str:
        minutes = self.seconds / 60
        looks = statistics.median(self.looks_per_tenant_min) if self.looks_per_tenant_min else 0
        out = (f"{self.name}: {self.seconds:.0f} s; machine CPU {self.machine_pct:.0f} % of {os.cpu_count()} cores; "
               f"Dagster {self.dagster_cpu_s:.0f} CPU-s = {100 * self.dagster_cpu_s / self.seconds / (os.cpu_count() or 1):.0f} % "
               f"of the machine, {self.dagster_cpu_s / (tenants * minutes):.2f} CPU-s per tenant-minute; simulators "
               f"{self.sims_cpu_s:.0f} CPU-s; PostgreSQL "
               f"{'-' if self.postgres_cpu_s is None else f'{self.postgres_cpu_s:.0f}'} CPU-s; "
               f"fleet runs started {self.fleet_runs}; looks per tenant-minute median "
               f"{looks:.1f} (min {min(self.looks_per_tenant_min, default=0):.1f}); syncs per tenant-minute median "
               f"{statistics.median(self.syncs_per_tenant_min) if self.syncs_per_tenant_min else 0:.2f}; "
               f"tenant failures {self.failures}")
        if self.dagster_parts:
            out += "\n  Dagster's CPU-s by process: " + ", ".join(
                f"{k} {v:.1f} ({v / (tenants * minutes):.3f} per tenant-minute)" for k, v in sorted(self.dagster_parts.items()))
        if self.edits:
            lat = (f"median {statistics.median(self.latencies):.1f} s, p95 {percentile(self.latencies, 95):.1f} s, "
                   f"max {max(self.latencies):.1f} s" if self.latencies else "none seen")
            out += f"\n  edits {self.edits}; edit-to-Wave latency of {len(self.latencies)} watched: {lat}; unseen {self.unseen}"
        return out


def _state(data: Path) -> dict[str, dict[str, Any]]:
    path = data / "fleet" / "state.json"
    for _ in range(5):
        try:
            return json.loads(path.read_text()) if path.exists() else {}
        except json.JSONDecodeError:  # replaced while read
            time.sleep(0.1)
    return {}


class _Editor(threading.Thread):
    """CRM edits at random times (`per_minute` per tenant); watches the first `watch` tenants' edits in Wave."""

    def __init__(self, env: dict[str, str], names: list[str], per_minute: float, watch: int, seed: int = 1) -> None:
        super().__init__(daemon=True)
        self.env, self.names, self.per_minute, self.watch = env, names, per_minute, set(names[:watch])
        self.rng, self.stop = random.Random(seed), threading.Event()
        self.edits = 0
        self.pending: dict[tuple[str, str], tuple[str, float]] = {}  # (tenant, email) -> (phone, edited at)
        self.latencies: list[float] = []
        self.lock = threading.Lock()
        self.targets: dict[str, list[dict[str, Any]]] = {}
        self.business: dict[str, str] = {}

    def prepare(self) -> None:
        """Per tenant: a few organisation customers to edit; the Wave business of the watched ones."""
        from crm_wave.systems.crm.client import CrmClient
        from crm_wave.systems.wave.client import WaveClient

        for name in self.names:
            p = name.upper() + "_"
            with CrmClient(base_url=self.env[p + "CRM_BASE_URL"], token=_CRM_TOKEN) as crm:
                orgs = [c for c in crm.read_all("customers") if c.get("Type") == "organization" and c.get("Email")]
                self.targets[name] = orgs[:10]
            if name in self.watch:
                with WaveClient(url=self.env[p + "WAVE_GRAPHQL_URL"], token=_WAVE_TOKEN) as wave:
                    self.business[name] = wave.business_id

    def run(self) -> None:
        from crm_wave.systems.crm.client import CrmClient

        clients = {n: CrmClient(base_url=self.env[n.upper() + "_CRM_BASE_URL"], token=_CRM_TOKEN) for n in self.names}
        watcher = threading.Thread(target=self._watch, daemon=True)
        watcher.start()
        rate = len(self.names) * self.per_minute / 60  # edits per second, all tenants
        try:
            while not self.stop.wait(self.rng.expovariate(rate)):
                name = self.rng.choice(self.names)
                target = self.rng.choice(self.targets[name])
                phone = f"+47 {self.rng.randrange(10**7, 10**8)}"
                try:
                    current = clients[name].get("customers", target["Id"])
                    clients[name].patch("customers", target["Id"], {"Phone": phone},
                                        if_match=current["Version"] if current else None)
                except Exception as exc:  # noqa: BLE001 - a refused edit is reported, the load goes on
                    print(f"edit of {name} refused: {type(exc).__name__}: {exc}", file=sys.stderr)
                    continue
                self.edits += 1
                if name in self.watch:
                    with self.lock:
                        self.pending[(name, target["Email"].lower())] = (phone, time.monotonic())
        finally:
            for c in clients.values():
                c.close()

    def _watch(self) -> None:
        query = ("query($b: ID!, $e: String) { business(id: $b) { customers(email: $e, pageSize: 1) "
                 "{ edges { node { phone } } } } }")
        with httpx.Client(headers={"Authorization": f"Bearer {_WAVE_TOKEN}"}, timeout=10) as http:
            while not self.stop.is_set() or self.pending:
                with self.lock:
                    items = list(self.pending.items())
                for (name, email), (phone, at) in items:
                    url = self.env[name.upper() + "_WAVE_GRAPHQL_URL"]
                    try:
                        data = http.post(url, json={"query": query, "variables": {"b": self.business[name], "e": email}}).json()
                        edges = data["data"]["business"]["customers"]["edges"]
                    except (httpx.HTTPError, KeyError, TypeError, ValueError):
                        continue
                    seen = edges and (edges[0]["node"].get("phone") or "") == phone
                    with self.lock:
                        if seen and self.pending.get((name, email)) == (phone, at):
                            self.latencies.append(time.monotonic() - at)
                            del self.pending[(name, email)]
                if self.stop.is_set() and time.monotonic() > getattr(self, "give_up", float("inf")):
                    break
                time.sleep(1.0)

    def finish(self, grace_s: float) -> int:
        """Stop editing; wait up to `grace_s` for the watched edits to show; the number never seen."""
        self.give_up = time.monotonic() + grace_s
        self.stop.set()
        while self.pending and time.monotonic() < self.give_up:
            time.sleep(1.0)
        return len(self.pending)


def _measure(name: str, seconds: float, meter: _Meter, sims: list[int], data: Path, names: list[str],
             instance: Any, editor: _Editor | None = None) -> Window:
    import dagster as dg

    w = Window(name)
    k0 = meter.by_kind()
    s0, d0, o0, b0, (busy0, all0), t0 = _state(data), meter.group_cpu(), meter.others_cpu(), time.process_time(), \
        _cpu_times(), time.time()
    runs0 = len(instance.get_run_ids(filters=dg.RunsFilter(job_name="fleet_job")))
    pg0 = _postgres_cpu()
    if editor is not None:
        editor.start()
    time.sleep(seconds)
    s1, d1, o1, b1, (busy1, all1), t1 = _state(data), meter.group_cpu(), meter.others_cpu(), time.process_time(), \
        _cpu_times(), time.time()
    w.seconds, w.machine_pct = t1 - t0, 100 * (busy1 - busy0) / max(all1 - all0, 1)
    w.dagster_cpu_s, w.sims_cpu_s, w.bench_cpu_s = d1 - d0, o1 - o0, b1 - b0
    pg1 = _postgres_cpu()
    w.postgres_cpu_s = None if pg0 is None or pg1 is None else pg1 - pg0
    k1 = meter.by_kind()
    w.dagster_parts = {k: round(v - k0.get(k, 0.0), 2) for k, v in k1.items()}
    minutes = w.seconds / 60
    for n in names:
        a, b = s0.get(n, {}), s1.get(n, {})
        w.looks_per_tenant_min.append((b.get("looks", 0) - a.get("looks", 0)) / minutes)
        w.syncs_per_tenant_min.append((b.get("syncs", 0) - a.get("syncs", 0)) / minutes)
        w.failures += b.get("failures", 0) - a.get("failures", 0)
    w.fleet_runs = len(instance.get_run_ids(filters=dg.RunsFilter(job_name="fleet_job"))) - runs0
    if editor is not None:
        w.unseen = editor.finish(120)
        w.edits, w.latencies = editor.edits, list(editor.latencies)
    return w


def start_code_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, Path]:
    """`dagster code-server start` serving the definitions on a loopback port, as deploy/docker-compose.yaml and
    the Helm chart run it, in a process group of its own; and a workspace file pointing at it. Waits until
    it answers. (With the project's workspace.yaml, `dagster-daemon run` starts a code server of its own and
    replaces it every 60 s, each new one loading the definitions again: about 6 CPU-s a minute here.)"""
    port = free_port()
    workspace = log.with_name(f"workspace-{port}.yaml")
    workspace.write_text(f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {port}\n"
                         f"      location_name: crm_wave\n")
    out = open(log, "wb")  # the child process owns it
    dagster = str(Path(sys.executable).parent / "dagster")
    proc = subprocess.Popen([dagster, "code-server", "start", "-h", "127.0.0.1", "-p", str(port),
                             "-m", "crm_wave.definitions", "-a", "defs", "--location-name", "crm_wave"],
                            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while subprocess.run([dagster, "api", "grpc-health-check", "-p", str(port)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the code server did not start (see {log})")
        time.sleep(1)
    return proc, workspace


def _stop_group(proc: subprocess.Popen | None) -> None:
    """Stop a process and its whole group (started with `start_new_session`)."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def clone_converged(tmp: Path, data: Path, names: list[str], records: int) -> float:
    """Converge one template tenant in-process, then copy its files (CRM, Wave, DuckDB) to every tenant in
    `names`: each tenant starts converged, with its own copy. Returns the template's CPU-seconds."""
    from crm_wave.store import Store
    from crm_wave.sync.engine import sync_once
    from crm_wave.systems.crm.client import CrmClient
    from crm_wave.systems.crm.simulator import create_app, seed
    from crm_wave.systems.serve import serve_in_thread
    from crm_wave.systems.wave.client import WaveClient
    from crm_wave.systems.wave.simulator import create_app as wave_app

    template = tmp / "template"
    template.mkdir()
    crm_db, wave_db, duck = template / "crm.db", template / "wave.db", template / "crm_wave.duckdb"
    seed(crm_db, seed=0, customers=records, products=records // 5, orders=records // 5)
    cpu = time.process_time()
    with serve_in_thread(create_app(db_path=crm_db, token=_CRM_TOKEN)) as crm_base, \
            serve_in_thread(wave_app(db_path=wave_db, token=_WAVE_TOKEN)) as wave_base, \
            CrmClient(base_url=f"{crm_base}/api/v1", token=_CRM_TOKEN) as crm, \
            WaveClient(url=f"{wave_base}/graphql/public", token=_WAVE_TOKEN) as wave:
        for _ in range(3):  # until a pass writes nothing
            passes = sync_once(Store(duck), {"crm": crm, "wave": wave})
            if passes[-1].writes == 0:
                break
    cpu = time.process_time() - cpu
    for name in names:
        for src, dst in ((crm_db, tmp / f"{name}-crm.db"), (wave_db, tmp / f"{name}-wave.db"),
                         (duck, data / "tenants" / name / "crm_wave.duckdb")):
            dst.parent.mkdir(parents=True, exist_ok=True)
            for suffix in ("", "-wal", "-shm", ".wal"):
                if Path(str(src) + suffix).exists():
                    shutil.copyfile(str(src) + suffix, str(dst) + suffix)
    return cpu


def _converged(env: dict[str, str], name: str) -> bool:
    from crm_wave.bench.tenants import _converged as tenant_converged

    return tenant_converged(env, name)


# ---------------------------------------------------------------- the command

def main(argv: list[str] | None = None) -> int:
    """Run the fleet figures; print them."""
    p = argparse.ArgumentParser(prog="python -m crm_wave.bench.fleet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tenants", type=int, default=100)
    p.add_argument("--records", type=int, default=500, help="customers per tenant (plus a fifth as many products and orders)")
    p.add_argument("--modes", default="loop", help="comma-separated fleet modes to measure, in order: loop, batch")
    p.add_argument("--max-minutes", type=float, default=60, help="give up converging after this long")
    p.add_argument("--rest-minutes", type=float, default=3)
    p.add_argument("--edit-minutes", type=float, default=3)
    p.add_argument("--edits-per-minute", type=float, default=3, help="CRM edits per tenant per minute")
    p.add_argument("--watch", type=int, default=20, help="tenants whose edits are watched in Wave for the latency")
    p.add_argument("--loop-minutes", type=float, default=15, help="length of one loop-mode run")
    p.add_argument("--clone", action="store_true",
                   help="start every tenant as a copy of one tenant converged in-process (to measure a large fleet "
                        "at rest and under edits without waiting for it to converge; the converged time is then "
                        "that of the first round, every tenant's first look being a pass)")
    p.add_argument("--code-server", choices=["separate", "daemon"], default="separate",
                   help="separate (default): `dagster code-server start` serves the definitions and the daemon's "
                        "workspace points at it, as deploy/docker-compose.yaml and the Helm chart run them; daemon: "
                        "the daemon starts its own code server from workspace.yaml and replaces it every 60 s "
                        "(how sessions 1-11 measured)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--serve", choices=["crm", "wave"], help=argparse.SUPPRESS)  # the simulator processes
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--names", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.serve:
        serve(a.serve, a.port, a.dir, a.names.split(","), a.records)
        return 0
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    if not modes or set(modes) - {"loop", "batch"}:
        p.error("--modes: loop and/or batch")
    if not os.environ.get("DAGSTER_PG_HOST"):
        print('PostgreSQL is needed: eval "$(bash .ci/postgres.sh)"', file=sys.stderr)
        return 2
    import dagster as dg

    tmp, data, home, db, admin = postgres_home("crm-wave-fleet-", f"crm_wave_fleet_{os.getpid()}",
                                               (ROOT / "deploy" / "dagster.local-postgres.yaml").read_text())
    names = [f"t{i:03d}" for i in range(a.tenants)]
    sims: list[subprocess.Popen] = []
    daemon = code = None
    figures: dict[str, Any] = {"tenants": a.tenants, "records": a.records, "cores": os.cpu_count(), "windows": [],
                               "code_server": a.code_server}
    try:
        t_seed = time.monotonic()
        if a.clone:
            cpu = clone_converged(tmp, data, names, a.records)
            figures["template_cpu_s"] = cpu
            print(f"one tenant converged in-process in {cpu:.0f} CPU-s, copied to {len(names)} tenants", flush=True)
        sims, tenant_env = _start_sims(tmp, names, a.records)
        print(f"simulators up and seeded in {time.monotonic() - t_seed:.0f} s", flush=True)
        for name in names:
            add_tenant(data, name)
        env = {**os.environ, **tenant_env, "DAGSTER_HOME": str(home), "DAGSTER_PG_DB": db,
               "CRM_WAVE_DATA_DIR": str(data), "CRM_WAVE_FLEET_MINUTES": str(a.loop_minutes)}
        os.environ["DAGSTER_HOME"], os.environ["DAGSTER_PG_DB"] = str(home), db
        with dg.DagsterInstance.get() as instance:
            instance.add_dynamic_partitions("tenants", names)
            for i, mode in enumerate(modes):
                if daemon is not None:
                    stop_daemon(daemon)
                    _stop_group(code)
                    for run in instance.get_runs(filters=dg.RunsFilter(job_name="fleet_job", statuses=[
                            dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING])):
                        instance.report_run_canceled(run)  # its process died with the daemon's group
                mode_env = {**env, "CRM_WAVE_FLEET": mode}
                workspace = ROOT / "workspace.yaml"
                if a.code_server == "separate":
                    code, workspace = start_code_server(mode_env, tmp / f"code-{mode}.log")
                daemon = start_daemon(mode_env, tmp / f"daemon-{mode}.log", workspace)
                meter = _Meter([daemon.pid, *([code.pid] if code else [])], [s.pid for s in sims])
                meter.start()
                if i == 0:
                    started = time.monotonic()
                    pending = set(names)
                    while pending and time.monotonic() - started < a.max_minutes * 60:
                        time.sleep(10)
                        pending = {n for n in pending if not _converged(env, n)}
                    figures["converged_s"] = time.monotonic() - started
                    figures["converged"] = len(names) - len(pending)
                    figures["converge_dagster_cpu_s"] = meter.group_cpu()
                    print(f"converged ({mode}): {figures['converged']}/{len(names)} tenants after "
                          f"{figures['converged_s']:.0f} s; Dagster tree {figures['converge_dagster_cpu_s']:.0f} CPU-s",
                          flush=True)
                    if pending:
                        break
                    while time.monotonic() - started < a.max_minutes * 60:  # every tenant's first turn done
                        state = _state(data)
                        if all(state.get(n, {}).get("syncs", 0) >= 1 for n in names):
                            break
                        time.sleep(5)
                    figures["first_round_s"] = time.monotonic() - started
                    print(f"every tenant synced once by the fleet after {figures['first_round_s']:.0f} s; Dagster tree "
                          f"{meter.group_cpu():.0f} CPU-s", flush=True)
                else:
                    time.sleep(20)  # the first run starts and takes its first look
                for label, minutes, editor in (("at rest", a.rest_minutes, None),
                                               ("under edits", a.edit_minutes,
                                                _Editor(tenant_env, names, a.edits_per_minute, a.watch))):
                    if minutes <= 0:
                        continue
                    if editor is not None:
                        editor.prepare()
                    w = _measure(f"{mode}, {label}", minutes * 60, meter, [s.pid for s in sims], data, names,
                                 instance, editor)
                    print(w.line(len(names)), flush=True)
                    figures["windows"].append({**w.__dict__, "latency_median_s": statistics.median(w.latencies)
                                               if w.latencies else None,
                                               "latency_p95_s": percentile(w.latencies, 95) if w.latencies else None})
                meter.stop.set()
                figures.setdefault("peak_rss_mib", {})[mode] = {"all": meter.peak_kb / 1024,
                                                                "dagster": meter.peak_group_kb / 1024}
                print(f"peak RSS ({mode}): {meter.peak_kb / 1024:.0f} MiB in all (simulators, Dagster, this process); "
                      f"Dagster's tree {meter.peak_group_kb / 1024:.0f} MiB", flush=True)
        load = os.getloadavg()
        print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
        if a.json:
            a.json.write_text(json.dumps(figures, indent=1, default=str))
        return 0 if figures.get("converged") == len(names) else 1
    finally:
        _stop_group(code)
        teardown(sims, daemon, admin, db, tmp)


if __name__ == "__main__":
    raise SystemExit(main())
