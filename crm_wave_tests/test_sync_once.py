"""`crm-wave sync --once` looks at both systems' heads first and runs what the shared rule calls for
(`crm_wave.sync.state.decide`): no pass when nothing moved, a sync of what moved after an edit, every
stage on a first look, when one is due, after an operator's command, or with `--every-stage`. The marks
and the last pass of every stage live in `<data>/fleet/state.json`, shared with the fleet and the schedule."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crm_wave.cli import main
from crm_wave.sync.state import TenantState, load_state, update_state


@pytest.fixture
def env(rig, sim_env):
    """The environment the commands read (`sim_env`), pointing at the rig's simulators and store."""
    return rig


def _once(capsys, *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["sync", "--once", "--quiet", *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def _root() -> Path:
    return Path(os.environ["CRM_WAVE_DATA_DIR"])


def test_nothing_moved_runs_no_pass_and_says_when_every_stage_is_due(env, capsys):
    env.crm_create("customers", {"Type": "organization", "Name": "Still AS", "Email": "still@x.example"})
    code, out, _ = _once(capsys)
    assert code == 0 and "pass(es) (every stage: first look)" in out
    st = load_state(_root())["default"]
    assert st.marks and st.last_pass > 0 and st.unfinished == 0
    with env.store.connect() as con:
        versions = con.execute("SELECT count(*) FROM crm_customer").fetchone()
    code, out, _ = _once(capsys)
    assert code == 0 and "pass(es)" not in out
    assert out.startswith("no pass: nothing moved since the last look; every stage is due at ")
    with env.store.connect() as con:
        assert con.execute("SELECT count(*) FROM crm_customer").fetchone() == versions


def test_an_edit_syncs_what_moved_and_the_flag_forces_every_stage(env, capsys):
    c = env.crm_create("customers", {"Type": "organization", "Name": "Moved AS", "Email": "moved@x.example",
                                     "Phone": "1"})
    assert _once(capsys)[0] == 0
    env.crm.patch("customers", c["Id"], {"Phone": "2"}, if_match=env.crm.get("customers", c["Id"])["Version"])
    code, out, _ = _once(capsys)
    assert code == 0 and "(what moved: changed: crm:customers)" in out
    with env.store.connect() as con:
        assert con.execute("SELECT count(*) FROM sync_log WHERE system = 'wave' AND op = 'update' "
                           "AND changes::VARCHAR = '{\"Phone\": \"2\"}' AND outcome = 'ok'").fetchone()[0] == 1
    code, out, _ = _once(capsys)
    assert "no pass: nothing moved" in out  # the sync's own write to Wave is not seen as a change
    code, out, _ = _once(capsys, "--every-stage")
    assert code == 0 and "pass(es) (every stage: forced)" in out


def test_a_due_pass_of_every_stage_runs_although_nothing_moved(env, capsys):
    assert _once(capsys)[0] == 0
    st = load_state(_root())["default"]
    st.last_pass = time.time() - 16 * 60  # CRM_WAVE_SCHEDULE_MINUTES defaults to 15
    update_state(_root(), {"default": st})
    code, out, _ = _once(capsys)
    assert code == 0 and "pass(es) (every stage: no pass of every stage since " in out
    assert "no pass: nothing moved" in _once(capsys)[1]


def test_a_confirmed_push_runs_every_stage_where_nothing_moved(env, capsys):
    """The breaker holds 55 updates; `--once` then repeats the hold without a pass (exit 3), and after
    `confirm` it runs every stage, which sends them (a sync of what moved would find nothing)."""
    ids = [env.crm_create("customers", {"Type": "organization", "Name": f"H{i}", "Email": f"h{i}@x.example",
                                        "Phone": "old"})["Id"] for i in range(55)]
    assert _once(capsys)[0] == 0
    for cid in ids:
        env.crm.patch("customers", cid, {"Phone": "new"}, if_match=env.crm.get("customers", cid)["Version"])
    code, out, err = _once(capsys)
    assert code == 3 and "sync held:" in err
    code, out, err = _once(capsys)
    assert code == 3 and out.startswith("no pass: nothing moved") and "sync held:" in err
    assert main(["confirm", "--all"]) == 0
    assert load_state(_root())["default"].asked_by == "confirm"
    code, out, err = _once(capsys)
    assert code == 0 and "(every stage: confirm at " in out, (out, err)
    assert load_state(_root())["default"].held == []
    with env.store.connect() as con:
        sent = con.execute("SELECT count(*) FROM sync_log WHERE system = 'wave' AND op = 'update' "
                           "AND outcome = 'ok'").fetchone()[0]
    assert sent == 55


def test_a_sync_that_did_not_finish_leaves_the_next_look_every_stage(env, capsys):
    assert _once(capsys)[0] == 0
    st = load_state(_root())["default"]
    st.unfinished = time.time()  # what a killed `sync --once` leaves (`_Looks.begin`)
    update_state(_root(), {"default": st})
    code, out, _ = _once(capsys)
    assert code == 0 and "did not finish)" in out
    assert load_state(_root())["default"].unfinished == 0


def test_a_policy_change_runs_every_stage(env, capsys):
    assert _once(capsys)[0] == 0
    (_root() / "policy.toml").write_text('first_sync = "crm"\n')
    code, out, _ = _once(capsys)
    assert code == 0 and "(every stage: the policy changed)" in out
    assert "no pass: nothing moved" in _once(capsys)[1]


def test_an_operator_command_written_meanwhile_survives_a_runner_that_loaded_the_state_before(tmp_path):
    from crm_wave.sync.state import ask_every_stage, save_state

    held = {"default": TenantState(marks={"crm:customers": "1"})}  # a fleet run's copy, loaded at its start
    ask_every_stage(tmp_path, "default", "conflicts resolve", now=1000.0)
    save_state(tmp_path, held)
    st = load_state(tmp_path)["default"]
    assert (st.asked, st.asked_by, st.marks) == (1000.0, "conflicts resolve", {"crm:customers": "1"})


def test_the_marks_persist_across_processes(env):
    """Two `crm-wave sync --once` processes: the second finds the first one's marks and runs no pass."""
    cmd = [sys.executable, "-m", "crm_wave.cli", "sync", "--once", "--quiet"]
    first = subprocess.run(cmd, env=os.environ.copy(), capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "every stage: first look" in first.stdout
    second = subprocess.run(cmd, env=os.environ.copy(), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("no pass: nothing moved")
