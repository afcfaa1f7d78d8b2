"""The cost of one edit, end to end, in a warm process: what a pass costs when almost nothing changed.

Both simulators run in processes of their own (so their CPU is not counted), seeded with a
small tenant (`customers` CRM customers, half as many products, three quarters as many
orders). This process syncs until converged, then, `repeats` times: edits one CRM customer's
phone and syncs until nothing is left to write (the edit is carried to Wave and read back),
measuring wall and CPU seconds of this process. Through the engine called as plain functions
(Store and clients kept) three times: as a warm worker runs it (the fleet's loop: a look at both
systems' heads, then a sync of what moved, `sync_once(changed=...)`, the file kept open between
syncs, `keep_open`), the same closing the file after each sync (the `crm-wave sync` loop), and with
every stage in the first pass (what a sync that did not look costs); once through the Dagster `sync_job` in-process (instance
kept), the same two with no edit at all (an idle pass), and `crm-wave sync --once` as a new
process after one edit (its CPU from the child's rusage), with crm_wave's bytecode precompiled first.

An idle tenant, the issue's way (#16: "an idle tenant costs no pass at all"): what one look at
both systems' heads costs when nothing changed (`crm_wave/sync/heads.py` `look`, the warm
clients; what `changes_sensor` and the `crm-wave sync` loop ask before they run a pass) and
whether it reports a change; and which of the Dagster definitions' running-by-default schedules
request a run for the converged, idle tenant (evaluated once against the instance).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

__all__ = ["run_edit"]


@contextmanager
def _sims(workdir: Path, customers: int, seed: int) -> Iterator[tuple[str, str]]:
    """Both simulators as subprocesses on free ports: (CRM API base, Wave GraphQL URL)."""
    from crm_wave.systems.crm.simulator import seed as seed_crm
    from crm_wave.systems.serve import free_port

    crm_db, wave_db = workdir / "crm.sqlite3", workdir / "wave.sqlite3"
    seed_crm(crm_db, seed=seed, customers=customers, products=max(1, customers // 2),
             orders=max(1, customers * 3 // 4))
    ports = free_port(), free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "crm_wave.cli", "sim", name, "--port", str(port), "--db", str(db),
                               "--token", "t"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for name, port, db in (("crm", ports[0], crm_db), ("wave", ports[1], wave_db))]
    try:
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        for base in bases:
            for _ in range(200):
                try:
                    httpx.get(base + "/_sim/faults", timeout=1.0)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
        yield f"{bases[0]}/api/v1", f"{bases[1]}/graphql/public"
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)


def _precompile() -> bool:
    """Compile crm_wave's own modules to bytecode where it is missing or stale, as `make` and the Dockerfile do
    at install (the goal's condition): an editable install under `PYTHONDONTWRITEBYTECODE` otherwise compiles
    ~70 modules from source in every new process (0.5-1 s here). Whether every module compiled."""
    import compileall

    import crm_wave

    return bool(compileall.compile_dir(Path(crm_wave.__file__).parent, quiet=1))


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def _medians(runs: list[tuple[float, float, int]]) -> dict[str, float]:
    return {"wall_s": round(statistics.median(r[0] for r in runs), 3),
            "cpu_s": round(statistics.median(r[1] for r in runs), 3),
            "passes": statistics.median(r[2] for r in runs)}


def _idle_looks(crm: Any, wave: Any, repeats: int) -> dict[str, float]:
    """Median wall/CPU seconds of a look at an idle tenant's heads, and how many of the looks saw a change."""
    from crm_wave.sync.heads import look

    marks = look(crm, wave, None).marks  # a first look only records the marks
    runs, changed = [], 0
    for _ in range(repeats):
        wall, cpu, found = _timed(lambda: look(crm, wave, marks))
        marks, changed = found.marks, changed + bool(found.changed)
        runs.append((wall, cpu, 0))
    res = _medians(runs)
    return {"wall_s": res["wall_s"], "cpu_s": res["cpu_s"], "looks": repeats, "changed": changed}


def _idle_schedules(instance: Any) -> dict[str, Any]:
    """Schedules running by default that request a run for the idle tenant now: name -> (cron, runs requested)."""
    import dagster as dg

    from crm_wave.definitions import defs

    try:
        d = defs()
        found = {}
        for unresolved in d.schedules or []:
            schedule = d.resolve_schedule_def(unresolved.name)
            if schedule.default_status != dg.DefaultScheduleStatus.RUNNING:
                continue
            with dg.build_schedule_context(instance=instance, repository_def=d.get_repository_def(),
                                           resources=getattr(d, "resources", None),
                                           scheduled_execution_time=datetime.now(UTC)) as context:
                data = schedule.evaluate_tick(context)
            found[schedule.name] = {"cron": schedule.cron_schedule, "runs": len(data.run_requests or [])}
        return {"schedules": found}
    except Exception as exc:  # noqa: BLE001 - reported, not fatal: the rest of the stage stands
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def run_edit(workdir: Path, *, customers: int = 250, repeats: int = 5, seed: int = 42) -> dict[str, Any]:
    """Median wall/CPU seconds and passes of one edit and of an idle sync: engine, Dagster, CLI."""
    from crm_wave.store import Store
    from crm_wave.systems.protocols import Client
    from crm_wave.sync.engine import sync_once
    from crm_wave.systems.crm.client import CrmClient
    from crm_wave.systems.wave.client import WaveClient

    out: dict[str, Any] = {"customers": customers, "repeats": repeats}
    with _sims(workdir, customers, seed) as (crm_url, wave_url), \
            CrmClient(base_url=crm_url, token="t") as crm, WaveClient(url=wave_url, token="t") as wave:
        store = Store(workdir / "engine.duckdb")
        clients: dict[str, Client] = {"crm": crm, "wave": wave}
        sync_once(store, clients, max_passes=6)
        people = [c for c in crm.read_all("customers") if c["Type"] == "organization"][:repeats * 5]

        def edit(i: int) -> None:
            c = crm.get("customers", people[i]["Id"])
            assert c is not None, people[i]["Id"]
            crm.patch("customers", c["Id"], {"Phone": f"+47 90 00 {i:04d}"}, if_match=c["Version"])

        def engine() -> int:
            return len(sync_once(store, clients))

        from crm_wave.sync.heads import look

        marks = look(crm, wave, None).marks

        def warm() -> int:
            """A look, then a sync of what it found moved; the marks kept are those of the look before
            the last pass (the fleet's `sync_tenant`), so the sync's own writes are not seen again."""
            nonlocal marks
            found = look(crm, wave, marks)
            marks = found.marks

            def before(_: int) -> frozenset[str]:
                nonlocal marks
                now = look(crm, wave, marks)
                marks = now.marks
                return now.moved

            return len(sync_once(store, clients, changed=found.datasets, before_pass=before)) if found.changed else 0

        from crm_wave.store.connection import keeping

        with keeping(60):  # as the fleet's loop runs it: the file stays open between syncs (no checkpoint per sync)
            with store.session():  # opened once, then kept from here on
                pass
            runs = []
            for i in range(repeats):
                edit(i)
                runs.append(_timed(warm))
            out["engine_edit"] = _medians(runs)
        runs = []
        for i in range(4 * repeats, 5 * repeats):  # the same, closing the file after each sync
            edit(i)
            runs.append(_timed(warm))
        out["engine_edit_closing"] = _medians(runs)
        runs = []
        for i in range(repeats, 2 * repeats):
            edit(i)
            runs.append(_timed(engine))
        out["engine_edit_all"] = _medians(runs)
        out["engine_idle"] = _medians([_timed(engine) for _ in range(repeats)])
        out["look_idle"] = _idle_looks(crm, wave, repeats)

        import dagster as dg

        from crm_wave.defs.run import run_sync_job

        env = {"CRM_BASE_URL": crm_url, "CRM_API_TOKEN": "t", "WAVE_GRAPHQL_URL": wave_url, "WAVE_API_TOKEN": "t",
               "CRM_WAVE_DATA_DIR": str(workdir / "dagster-data"), "WAVE_REQUESTS_PER_MINUTE": "0"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            with dg.instance_for_test() as instance:
                def dagster() -> int:
                    return len(run_sync_job(instance=instance))

                dagster()  # links the tenant's own DuckDB file
                runs = []
                for i in range(2 * repeats, 3 * repeats):
                    edit(i)
                    runs.append(_timed(dagster))
                out["dagster_edit"] = _medians(runs)
                out["dagster_idle"] = _medians([_timed(dagster) for _ in range(repeats)])
                out["idle_schedules"] = _idle_schedules(instance)

            def cli() -> int:  # a new process: imports, a look at both systems' heads, the sync it calls for, exit
                subprocess.run([sys.executable, "-m", "crm_wave.cli", "sync", "--once", "--quiet"], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                return 0

            # Not timed: this data directory's first `sync --once` has no marks of a last look, so it runs
            # every stage; each timed one then follows one edit, as an operator's would.
            out["cli_precompiled"] = _precompile()
            cli()
            import resource

            runs = []
            for i in range(3 * repeats, 4 * repeats):
                edit(i)
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                wall, _, _ = _timed(cli)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                runs.append((wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 0))
            out["cli_edit_wall_s"] = round(statistics.median(r[0] for r in runs), 3)
            out["cli_edit_cpu_s"] = round(statistics.median(r[1] for r in runs), 3)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return out


if __name__ == "__main__":
    import json
    import tempfile

    with tempfile.TemporaryDirectory(prefix="crm-wave-edit-") as tmp:
        print(json.dumps(run_edit(Path(tmp), repeats=int(sys.argv[1]) if len(sys.argv) > 1 else 5), indent=1))
