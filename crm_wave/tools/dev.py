"""`make dev`: the simulators (seeded once) and `dg dev` with a persistent Dagster instance, the fleet loop
serving the tenant unless `CRM_WAVE_FLEET` says otherwise; stopping it cancels the runs in progress."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from crm_wave.tools.demo import CRM_TOKEN, WAVE_TOKEN
from crm_wave.config.envfile import ENV_FILE, write_env_file
from crm_wave.systems.crm.simulator import create_app as crm_app
from crm_wave.systems.crm.simulator import seed as seed_crm
from crm_wave.systems.serve import serve_in_thread
from crm_wave.systems.wave.simulator import create_app as wave_app

DAGSTER_YAML = """\
# Written by `crm-wave dev`: one run per tenant at a time (runs carry the tag `tenant`), tenants in parallel.
run_queue:
  max_concurrent_runs: 4
  tag_concurrency_limits:
    - key: "tenant"
      value:
        applyLimitPerUniqueValue: true
      limit: 1
telemetry:
  enabled: false
"""


def run_dev(data_dir: Path, *, port: int = 3000, crm_port: int = 8701, wave_port: int = 8702,
            stop_timeout_s: float = 20.0) -> int:
    """Serve both simulators (port 0: any free port) and run `dagster dev` until Ctrl-C or SIGTERM.

    The variables the operator commands need are printed and written to `<data_dir>/.env` (read by
    `crm-wave` when they are not set), which is removed again when this stops.
    """
    sim_dir = data_dir / "sim"
    sim_dir.mkdir(parents=True, exist_ok=True)
    crm_db = sim_dir / "crm.sqlite3"
    if not crm_db.exists():
        seed_crm(crm_db, seed=42, customers=20, products=10, orders=15)
    home = (data_dir / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    env_file = data_dir / ENV_FILE
    with ExitStack() as stack:
        crm = stack.enter_context(serve_in_thread(crm_app(db_path=crm_db, token=CRM_TOKEN), port=crm_port or None))
        wave = stack.enter_context(serve_in_thread(wave_app(db_path=sim_dir / "wave.sqlite3", token=WAVE_TOKEN),
                                                   port=wave_port or None))
        variables = {"CRM_BASE_URL": f"{crm}/api/v1", "CRM_API_TOKEN": CRM_TOKEN,
                     "WAVE_GRAPHQL_URL": f"{wave}/graphql/public", "WAVE_API_TOKEN": WAVE_TOKEN,
                     "WAVE_REQUESTS_PER_MINUTE": "0", "CRM_WAVE_DATA_DIR": str(data_dir.resolve())}
        write_env_file(env_file, variables)
        stack.callback(lambda: env_file.unlink(missing_ok=True))
        print(f"CRM simulator {crm}/api/v1, Wave simulator {wave}/graphql/public; Dagster UI on http://127.0.0.1:{port}")
        print(f"Operator commands beside it read {env_file} (or export these in another shell):")
        print("  export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in variables.items()))
        print("  .venv/bin/crm-wave plan    # or: uv run crm-wave plan", flush=True)
        # The fleet loop by default: an edit reaches the other side in ~8 s (p95 11-12 s) against 16-26 s
        # (p95 31-50 s) with one Dagster run per change, whose launch bounds it (docs/deploy.md).
        fleet = os.environ.get("CRM_WAVE_FLEET") or "loop"
        print(f"CRM_WAVE_FLEET={fleet}" + (": one long-lived fleet run serves the tenant (CRM_WAVE_FLEET=off for one "
                                           "Dagster run per change)" if fleet == "loop" else ""), flush=True)
        # Its own process group: the terminal's Ctrl-C reaches only this process, which cancels the runs and
        # then stops `dagster dev` (it stops its children over pipes). In the terminal's group, a run process
        # still starting got the SIGINT too and printed a KeyboardInterrupt traceback.
        child = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(port)],
                                 env={**os.environ, **variables, "DAGSTER_HOME": str(home), "CRM_WAVE_FLEET": fleet},
                                 process_group=0)
        return _wait(child, stop_timeout_s, before_stop=lambda: _cancel_runs(home))


def _cancel_runs(home: Path) -> None:
    """Ask Dagster to end the runs still queued or in progress: `dagster dev`'s code server stays up, and
    its run goes on, while a run it launched is in progress (a fleet loop run: up to its 15 minutes,
    against simulators that are gone)."""
    try:
        import dagster as dg

        active = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
                  dg.DagsterRunStatus.STARTED]
        with dg.DagsterInstance.from_config(str(home)) as instance:
            for run in instance.get_runs(filters=dg.RunsFilter(statuses=active)):
                instance.run_coordinator.cancel_run(run.run_id)
                print(f"run {run.run_id} ({run.job_name}) cancelled", flush=True)
    except Exception as exc:  # noqa: BLE001 - stopping goes on; the run ends when its loop does
        print(f"could not cancel the runs in progress ({type(exc).__name__}: {exc}); they end on their own",
              flush=True)


def _wait(child: subprocess.Popen, stop_timeout_s: float, before_stop=None) -> int:
    """Wait for `dagster dev`; on Ctrl-C, SIGTERM or SIGHUP (the terminal closed: `dagster dev` is in its own
    process group, so only this process hears it) cancel its runs in progress (`before_stop`), stop it
    (SIGINT, then SIGTERM, then SIGKILL) and return."""
    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_term) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:  # not a blocking wait: the signal may land on a simulator's thread, which leaves the main
            try:     # thread in waitpid, and Python runs the handler only when the main thread runs again
                return child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
    except KeyboardInterrupt:
        print("stopping dagster dev ...", flush=True)
        if before_stop is not None:
            before_stop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(sig)  # neither Ctrl-C nor a signal to us reached it: its own process group
            try:
                child.wait(timeout=stop_timeout_s)
                break
            except subprocess.TimeoutExpired:
                continue
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting for a clean exit
                continue
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
