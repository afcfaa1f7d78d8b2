"""`crm-wave dev`: simulator ports are options, the operator commands work beside it through the
`.env` it writes, and it stops cleanly (with its `dagster dev`) on Ctrl-C or SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from crm_wave.config.envfile import apply_env_file, read_env_file
from crm_wave.systems.serve import free_port

ROOT = Path(__file__).parents[1]


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(p) for p in (task / "children").read_text().split()]
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_dev_ports_env_file_and_clean_stop(tmp_path, how):
    crm_port, wave_port, ui_port = free_port("127.0.0.1"), free_port("127.0.0.1"), free_port("127.0.0.1")
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRM_", "WAVE_"))}
    proc = subprocess.Popen([sys.executable, "-m", "crm_wave.cli", "dev", "--data-dir", str(data), "--port",
                             str(ui_port), "--crm-port", str(crm_port), "--wave-port", str(wave_port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (data / ".env").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else "slow"
            time.sleep(0.2)
        values = read_env_file(data / ".env")
        assert values["CRM_BASE_URL"] == f"http://127.0.0.1:{crm_port}/api/v1"
        assert values["WAVE_GRAPHQL_URL"] == f"http://127.0.0.1:{wave_port}/graphql/public"
        assert oct((data / ".env").stat().st_mode & 0o777) == "0o600"
        if how == "ctrl-c":  # the command does not depend on how dev is stopped: once (a process, ~5 CPU-s)
            # An operator command in another shell: only the data directory is known.
            done = subprocess.run([sys.executable, "-m", "crm_wave.cli", "plan"], cwd=ROOT, capture_output=True,
                                  text=True, env={**env, "CRM_WAVE_DATA_DIR": str(data)}, timeout=300)
            assert done.returncode == 2, done.stderr[-2000:]  # the seeded CRM has writes for Wave
            assert "write(s) planned" in done.stdout
        while True:  # the UI is up: dagster dev and its children are running
            try:
                if httpx.get(f"http://127.0.0.1:{ui_port}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline + 180, "dagster dev did not come up"
            time.sleep(1)
        children = _children(proc.pid)
        assert children
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what the terminal does
        else:
            proc.send_signal(signal.SIGTERM)  # what a supervisor does: only to crm-wave dev itself
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode == 0, out[-2000:]
        assert "Traceback" not in out
        assert not [c for c in children if _alive(c)]  # dagster dev did not outlive it
        assert not (data / ".env").exists()  # the simulators are gone, so are their variables
    finally:
        if proc.poll() is None:
            for pid in [proc.pid, *_children(proc.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
            proc.wait()


def test_env_file_fills_only_unset_variables(tmp_path):
    (tmp_path / ".env").write_text("# c\nCRM_BASE_URL='http://a b'\nWAVE_API_TOKEN=x\n")
    environ = {"WAVE_API_TOKEN": "mine"}
    assert apply_env_file(environ, tmp_path) == ["CRM_BASE_URL"]
    assert environ == {"WAVE_API_TOKEN": "mine", "CRM_BASE_URL": "http://a b"}
    (tmp_path / ".env").write_text("nonsense\n")
    with pytest.raises(ValueError, match=r"\.env:1: expected KEY=value"):
        apply_env_file({}, tmp_path)


def _processes_with(marker: bytes) -> list[int]:
    """Pids of live processes whose environment holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes() and _alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_stopping_dev_cancels_a_fleet_run_that_would_outlive_it(tmp_path):
    """With the fleet on, a long-lived fleet run is in progress; `dagster dev` keeps its code server and the
    run going while a run is in progress, so `crm-wave dev` cancels the runs before it stops it."""
    import dagster as dg

    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRM_", "WAVE_"))}
    env["CRM_WAVE_FLEET"] = "loop"
    proc = subprocess.Popen([sys.executable, "-m", "crm_wave.cli", "dev", "--data-dir", str(data), "--port",
                             str(free_port("127.0.0.1")), "--crm-port", "0", "--wave-port", "0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    home = (data / "dagster_home").resolve()
    marker = f"DAGSTER_HOME={home}".encode()
    try:
        deadline = time.monotonic() + 240
        started = []
        while not started:
            assert proc.poll() is None and time.monotonic() < deadline, "no fleet run started"
            time.sleep(2)
            if (home / "dagster.yaml").exists() and (home / "storage").exists():
                with dg.DagsterInstance.from_config(str(home)) as instance:
                    started = instance.get_runs(filters=dg.RunsFilter(job_name="fleet_job",
                                                                      statuses=[dg.DagsterRunStatus.STARTED]))
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out[-2000:]
        assert f"run {started[0].run_id} (fleet_job) cancelled" in out
        deadline = time.monotonic() + 30
        while _processes_with(marker) and time.monotonic() < deadline:
            time.sleep(1)
        assert not _processes_with(marker)  # no code server, gRPC server or run left behind
        with dg.DagsterInstance.from_config(str(home)) as instance:
            run = instance.get_run_by_id(started[0].run_id)
            assert run is not None and run.status in (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.CANCELING)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in _processes_with(marker):
            os.kill(pid, signal.SIGKILL)
