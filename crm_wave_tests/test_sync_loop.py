"""The `crm-wave sync` loop (not `--once`) keeps the tenant's DuckDB file open between its syncs, publishes
the analyst snapshot at most every `CRM_WAVE_SYNC_SNAPSHOT_SECONDS`, and always publishes the last syncs'
snapshot when it stops (Ctrl-C or SIGTERM). A bad value of its variables stops it with one line."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from crm_wave.analyst.snapshot import list_snapshots
from crm_wave.cli import main
from crm_wave.sync.state import load_state


@pytest.fixture
def env(rig, sim_env):
    """The environment the commands read (`sim_env`), pointing at the rig's simulators and store."""
    return rig


def _root() -> Path:
    return Path(os.environ["CRM_WAVE_DATA_DIR"])


def _syncs() -> int:
    st = load_state(_root()).get("default")
    return st.syncs if st is not None else 0


def _wait(what, cond, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"the loop ended ({proc.returncode}) before {what}: {proc.stderr.read()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _file_free(path: Path) -> bool:
    """Whether no process holds the DuckDB file's lock (tried without waiting, so without asking for it)."""
    with open(path.with_name(path.name + ".lock"), "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(lock, fcntl.LOCK_UN)
        return True


def _logged(snapshot: Path, phone: str) -> int:
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM sync_log WHERE system = 'wave' AND op = 'update' AND outcome = 'ok' "
                           "AND changes::VARCHAR LIKE ?", [f"%{phone}%"]).fetchone()[0]
    finally:
        con.close()


def test_the_loop_keeps_its_file_spaces_its_snapshots_and_publishes_the_last_one_when_stopped(env):
    c = env.crm_create("customers", {"Type": "organization", "Name": "Loop AS", "Email": "loop@x.example",
                                     "Phone": "+47 1"})
    db = _root() / "crm_wave.duckdb"
    snapshots = _root() / "snapshots"
    proc = subprocess.Popen([sys.executable, "-m", "crm_wave.cli", "sync", "--every", "0.3", "--quiet"],
                            env={**os.environ, "CRM_WAVE_SYNC_SNAPSHOT_SECONDS": "3600"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait("the first sync's snapshot", lambda: _syncs() >= 1 and list_snapshots(snapshots), proc)
        assert len(list_snapshots(snapshots)) == 1  # the first sync's: no snapshot was published before
        env.crm.patch("customers", c["Id"], {"Phone": "+47 2"}, if_match=env.crm.get("customers", c["Id"])["Version"])
        _wait("the edit's sync and its snapshot, if any", lambda: _syncs() >= 2 and (
            load_state(_root())["default"].snapshot_behind or len(list_snapshots(snapshots)) > 1), proc)
        # After a sync that published no snapshot (that one closes the file to copy it), the file stays open
        # through the loop's idle turns (looks only: nothing moved): its lock stays taken.
        for _ in range(10):
            assert not _file_free(db), "the loop closed its DuckDB file between syncs"
            time.sleep(0.1)
        published = list_snapshots(snapshots)
        assert len(published) == 1, "the loop published a snapshot after every sync"
        assert _logged(published[-1], "+47 2") == 0
        # An operator's command still gets the file at once: the loop gives it back when asked.
        started = time.monotonic()
        assert main(["deadletters"]) == 0
        assert time.monotonic() - started < 30

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 130, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    published = list_snapshots(snapshots)
    assert len(published) == 2
    assert _logged(published[-1], "+47 2") == 1  # the edit the spaced snapshot left out
    assert not load_state(_root())["default"].snapshot_behind
    assert _file_free(db)


@pytest.mark.parametrize("var", ["CRM_WAVE_SYNC_SNAPSHOT_SECONDS", "CRM_WAVE_SYNC_KEEP_OPEN_SECONDS"])
def test_a_bad_loop_setting_stops_the_loop_in_one_line_and_once_ignores_it(env, var, monkeypatch):
    monkeypatch.setenv(var, "soon")
    done = subprocess.run([sys.executable, "-m", "crm_wave.cli", "sync", "--every", "1"], env=os.environ.copy(),
                          capture_output=True, text=True, timeout=120)  # a loop that ignored it would not stop
    err = done.stderr.strip()
    assert done.returncode == 4, err
    assert err.count("\n") == 0 and f"{var}='soon'" in err and "number of seconds" in err
    assert load_state(_root()) == {}  # stopped before any look
    assert main(["sync", "--once", "--quiet"]) == 0
