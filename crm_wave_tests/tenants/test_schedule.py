"""`collect_schedule` asks each tenant first (the fleet's rule, `look_tenant`): an idle tenant gets no
run; a head moved, never synced, a due pass, a failed last run or a failed look get one. Against
the real simulators on loopback and an in-process Dagster instance."""

from __future__ import annotations

import json
from datetime import UTC, datetime
import time

import dagster as dg
import pytest

from crm_wave.config.settings import ConfigError
from crm_wave.defs import automation
from crm_wave.defs.automation import changes_sensor, collect_schedule
from crm_wave.defs.fleet import load_state
from crm_wave.defs.resources import SyncResource
from crm_wave.systems.crm.client import CrmClient


@pytest.fixture
def setup(sim_env, tmp_path, monkeypatch):
    """The default tenant on both simulators (one CRM customer), an instance with its partition, fresh look clients."""
    crm_sim, wave_sim = sim_env
    monkeypatch.setattr(automation, "_SCHEDULE_PROBES", {}, raising=False)
    with CrmClient(base_url=crm_sim.url, token=crm_sim.token) as crm:
        crm.create("customers", {"Type": "organization", "Name": "Quiet", "Email": "q@x.example"}, idempotency_key="q")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tenants", ["default"])
        yield instance, crm_sim, wave_sim, tmp_path


def _synced(instance: dg.DagsterInstance, tenant: str = "default", datasets=None) -> None:
    """A collect of the tenant's datasets (default: all six, a pass of every stage), as every run that collects records it."""
    from crm_wave.defs.assets import COLLECT

    for key in datasets or COLLECT:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=tenant))


def test_the_last_pass_is_the_last_collect_of_every_dataset_not_a_run_of_what_moved(setup):
    from crm_wave.defs.assets import COLLECT

    instance, _, _, _ = setup
    _synced(instance, datasets=["crm_customer"])
    assert automation._last_collect(instance, "default") == 0.0  # five datasets never collected
    _synced(instance)
    assert automation._last_collect(instance, "default") > 0
    time.sleep(0.05)
    _synced(instance, datasets=["crm_customer"])  # a run of what moved: the CRM customers only
    newest = {k: automation._latest(instance, k, "default").timestamp for k in COLLECT}
    assert automation._last_collect(instance, "default") == min(t for k, t in newest.items() if k != "crm_customer")
    assert automation._last_collect(instance, "default") < newest["crm_customer"]


def _tick(instance: dg.DagsterInstance, data) -> list[dg.RunRequest] | str:
    """One evaluation: the run requests, or the skip message."""
    # In a `with`: the context enters an instance of its own for the resources, and only its exit resets
    # Dagster's current-instance context variable (left set, a later `defs()` in this worker fails).
    with dg.build_schedule_context(instance=instance, resources={"sync": SyncResource(data_root=str(data))},
                                   scheduled_execution_time=datetime.now(UTC)) as ctx:
        result = collect_schedule(ctx)
    return result.skip_message or "" if isinstance(result, dg.SkipReason) else list(result)


def _edit(crm_sim, phone: str) -> None:
    with CrmClient(base_url=crm_sim.url, token=crm_sim.token) as crm:
        customer = crm.read_all("customers")[0]
        crm.patch("customers", customer["Id"], {"Phone": phone}, if_match=customer["Version"])


def test_a_never_synced_tenant_gets_a_run(setup):
    instance, _, _, data = setup
    (request,) = _tick(instance, data)
    assert request.partition_key == "default" and request.tags["crm_wave/why"] == "first"
    assert load_state(data)["default"].marks  # its look is kept for the next tick


def test_an_idle_tenant_gets_no_run_and_a_crm_edit_gets_one(setup):
    instance, crm_sim, wave_sim, data = setup
    _synced(instance)
    first = _tick(instance, data)  # synced before, never looked at: the look only records its marks
    assert isinstance(first, str) and first.startswith("default: first look, marks recorded"), first
    idle = _tick(instance, data)
    assert isinstance(idle, str) and "default: nothing changed since" in idle and "full pass due at" in idle, idle

    _edit(crm_sim, "+47 11 00 00 01")
    (request,) = _tick(instance, data)
    assert request.tags["crm_wave/why"] == "changed" and request.tags["crm_wave/changed"] == "crm:customers"
    assert isinstance(_tick(instance, data), str)  # the change is not requested twice

    state = (data / "fleet" / "state.json").read_text()
    assert crm_sim.token not in state and wave_sim.token not in state


def test_a_change_changes_sensor_synced_is_not_seen_again_by_the_schedule(setup):
    instance, crm_sim, _, data = setup
    _synced(instance)
    assert isinstance(_tick(instance, data), str)  # marks recorded
    sensor = lambda cursor: changes_sensor(dg.build_sensor_context(  # noqa: E731
        instance=instance, cursor=cursor, resources={"sync": SyncResource(data_root=str(data))}))
    cursor = sensor(None).cursor  # the sensor's first look
    _edit(crm_sim, "+47 11 00 00 02")
    launched = sensor(cursor)
    assert len(launched.run_requests) == 1
    assert load_state(data)["default"].marks == json.loads(launched.cursor)["default"]
    quiet = _tick(instance, data)
    assert isinstance(quiet, str) and "nothing changed since" in quiet, quiet


def test_a_due_full_pass_gets_a_run(setup, monkeypatch):
    instance, _, _, data = setup
    _synced(instance)
    assert isinstance(_tick(instance, data), str)
    monkeypatch.setenv("CRM_WAVE_SCHEDULE_MINUTES", "0.001")  # 60 ms
    time.sleep(0.1)
    (request,) = _tick(instance, data)
    assert request.tags["crm_wave/why"] == "due"


def test_a_tenant_whose_last_run_failed_gets_a_run(setup):
    instance, _, _, data = setup
    _synced(instance)
    assert isinstance(_tick(instance, data), str)
    instance.add_run(dg.DagsterRun(job_name="sync_job", run_id="failed-default", tags={"tenant": "default"},
                                   status=dg.DagsterRunStatus.FAILURE))
    (request,) = _tick(instance, data)
    assert request.tags["crm_wave/why"] == "retry"


def test_a_failed_look_gets_a_run_that_fails_visibly(setup, monkeypatch):
    instance, _, wave_sim, data = setup
    _synced(instance)
    monkeypatch.setenv("WAVE_API_TOKEN", "not-the-token")
    with dg.build_schedule_context(instance=instance, resources={"sync": SyncResource(data_root=str(data))},
                                   scheduled_execution_time=datetime.now(UTC)) as ctx:
        (request,) = collect_schedule(ctx)
    assert request.partition_key == "default" and request.tags["crm_wave/why"] == "look-failed"
    state = load_state(data)["default"]
    assert state.failures == 1 and "wave" in (state.last_error or "").lower()
    assert "not-the-token" not in (data / "fleet" / "state.json").read_text()


def test_a_bad_period_fails_the_tick_naming_the_variable(setup, monkeypatch):
    instance, _, _, data = setup
    monkeypatch.setenv("CRM_WAVE_SCHEDULE_MINUTES", "often")
    with dg.build_schedule_context(instance=instance, resources={"sync": SyncResource(data_root=str(data))}) as ctx, \
            pytest.raises(ConfigError, match="CRM_WAVE_SCHEDULE_MINUTES='often': use a number of minutes above 0"):
        list(collect_schedule(ctx))


@pytest.mark.parametrize("crm_style", ["offset"], indirect=True)
def test_a_crm_without_change_feed_still_gets_a_run_every_tick(sim_env, tmp_path, monkeypatch):
    """A look cannot see an offset-style CRM's changes, so its tenant keeps the old once-a-minute collect."""
    monkeypatch.setattr(automation, "_SCHEDULE_PROBES", {}, raising=False)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tenants", ["default"])
        _synced(instance)
        assert "first look, marks recorded" in _tick(instance, tmp_path)
        (request,) = _tick(instance, tmp_path)
        assert request.tags["crm_wave/why"] == "due"


def test_a_bad_fleet_mode_does_not_stop_the_schedule(setup, monkeypatch):
    """With CRM_WAVE_FLEET unreadable the per-tenant automations run as with the fleet off (defs/fleet.py):
    the schedule reads its own variable only."""
    instance, _, _, data = setup
    monkeypatch.setenv("CRM_WAVE_FLEET", "sometimes")
    (request,) = _tick(instance, data)
    assert request.tags["crm_wave/why"] == "first"
