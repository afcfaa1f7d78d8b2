"""`fleet_job`: one Dagster run serving many tenants, against real simulators on loopback."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import dagster as dg
import pytest

from crm_wave.config.tenants import add_tenant
from crm_wave.defs.fleet import fleet_mode, load_state
from crm_wave.systems.crm.client import CrmClient
from crm_wave.systems.crm.simulator import create_app as crm_app
from crm_wave.systems.serve import serve_in_thread
from crm_wave.systems.wave.client import WaveClient
from crm_wave.systems.wave.simulator import create_app as wave_app

NAMES = ("acme", "globex")


@pytest.fixture
def fleet(tmp_path, monkeypatch):
    """Tenants acme and globex (a CRM and a Wave business each, 2 customers), and `broken`, whose
    Wave token is wrong; a Dagster instance with their partitions."""
    data = tmp_path / "data"
    urls = {}
    with ExitStack() as stack:
        for name in NAMES:
            t = add_tenant(data, name)
            crm = stack.enter_context(serve_in_thread(crm_app(db_path=tmp_path / f"{name}-crm.db", token=f"{name}-c")))
            wave = stack.enter_context(serve_in_thread(wave_app(db_path=tmp_path / f"{name}-wave.db", token=f"{name}-w")))
            urls[name] = (f"{crm}/api/v1", f"{wave}/graphql/public")
            for key, value in {"CRM_BASE_URL": urls[name][0], "CRM_API_TOKEN": f"{name}-c",
                               "WAVE_GRAPHQL_URL": urls[name][1], "WAVE_API_TOKEN": f"{name}-w",
                               "WAVE_REQUESTS_PER_MINUTE": "0"}.items():
                monkeypatch.setenv(t.var(key), value)
            with CrmClient(base_url=urls[name][0], token=f"{name}-c") as c:
                for i in range(2):
                    c.create("customers", {"Type": "organization", "Name": f"{name} customer {i}",
                                           "Email": f"c{i}@{name}.example"}, idempotency_key=f"{name}{i}")
        broken = add_tenant(data, "broken")  # acme's systems, a Wave token that is not valid
        for key, value in {"CRM_BASE_URL": urls["acme"][0], "CRM_API_TOKEN": "acme-c",
                           "WAVE_GRAPHQL_URL": urls["acme"][1], "WAVE_API_TOKEN": "not-the-token",
                           "WAVE_REQUESTS_PER_MINUTE": "0"}.items():
            monkeypatch.setenv(broken.var(key), value)
        monkeypatch.setenv("CRM_WAVE_DATA_DIR", str(data))
        instance = stack.enter_context(dg.instance_for_test())
        instance.add_dynamic_partitions("tenants", [*NAMES, "broken"])
        yield data, urls, instance


def _run(instance: dg.DagsterInstance, **config) -> dg.ExecuteInProcessResult:
    from crm_wave.definitions import defs

    job = defs().resolve_job_def("fleet_job")
    return job.execute_in_process(instance=instance, run_config={"ops": {"serve_fleet": {"config": config}}},
                                  raise_on_error=False)


def _wave_phones(urls: dict, name: str) -> dict[str, str | None]:
    with WaveClient(url=urls[name][1], token=f"{name}-w") as w:
        return {c["email"]: c.get("phone") for c in w.list_customers()}


def _materialized(result: dg.ExecuteInProcessResult) -> dict[str, set[str]]:
    """Partition -> asset keys materialized by the run."""
    out: dict[str, set[str]] = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        out.setdefault(mat.partition or "", set()).add(mat.asset_key.to_user_string())
    return out


def test_one_fleet_run_syncs_each_tenant_records_each_and_a_broken_one_stops_none(fleet):
    data, urls, instance = fleet
    first = _run(instance, snapshot=False)
    assert first.success  # the broken tenant does not fail the run
    for name in NAMES:
        assert set(_wave_phones(urls, name)) == {f"c0@{name}.example", f"c1@{name}.example"}
    assert set(_materialized(first)) == set(NAMES)

    # broken: logged, recorded on its partition with a one-line reason, no secret anywhere
    observations = [e.asset_observation_data.asset_observation for e in first.all_events
                    if e.event_type_value == "ASSET_OBSERVATION"]
    (broken,) = [o for o in observations if o.partition == "broken"]
    reason = broken.metadata["fleet_error"].value
    assert "wave" in reason.lower() and "not-the-token" not in reason
    state = load_state(data)
    assert state["broken"].failures == 1 and state["broken"].syncs == 0 and state["acme"].syncs == 1
    assert "not-the-token" not in (data / "fleet" / "state.json").read_text()

    # one edit per tenant: the next run looks, finds it, syncs, records the stages on that tenant's partition
    for name in NAMES:
        with CrmClient(base_url=urls[name][0], token=f"{name}-c") as c:
            customer = next(x for x in c.read_all("customers") if x["Email"] == f"c0@{name}.example")
            c.patch("customers", customer["Id"], {"Phone": f"+47 {len(name)} 00 00 01"}, if_match=customer["Version"])
    second = _run(instance)
    assert second.success
    for name in NAMES:
        assert _wave_phones(urls, name)[f"c0@{name}.example"] == f"+47 {len(name)} 00 00 01"
    stages = _materialized(second)
    assert set(stages) == set(NAMES)
    for name in NAMES:
        assert {"crm_customer", "global_customer", "wave_customer_share", "push_wave_customer",
                "snapshot"} <= stages[name]
        # A sync of what moved (the last pass of every stage is younger than `full_every_s`): the CRM
        # customers and what follows them, and the Wave customers read back; no product, no order.
        assert not stages[name] & {"crm_product", "wave_product", "global_product", "crm_order", "global_order"}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("push_wave_customer"), asset_partitions=["acme"]), limit=5).records
    assert records[0].run_id == second.run_id
    assert records[0].asset_materialization.metadata["updated"].value == 1

    # nothing changed: a run looks at each tenant and syncs none (an idle tenant costs no pass)
    idle = _run(instance)
    assert idle.success and not _materialized(idle)
    output = next(e for e in idle.all_events if e.event_type_value == "STEP_OUTPUT")
    assert output.event_specific_data.metadata["syncs"].value == 0
    assert output.event_specific_data.metadata["looks"].value == 3
    assert json.loads((data / "fleet" / "state.json").read_text())["acme"]["looks"] == 3

    # A pass of every stage that is due is not replaced by a sync of what moved.
    with CrmClient(base_url=urls["acme"][0], token="acme-c") as c:
        customer = next(x for x in c.read_all("customers") if x["Email"] == "c1@acme.example")
        c.patch("customers", customer["Id"], {"Phone": "+47 5 00 00 02"}, if_match=customer["Version"])
    due = _run(instance, full_every_s=0.0, snapshot=False)
    assert due.success and {"crm_product", "wave_product", "global_order"} <= _materialized(due)["acme"]
    assert _wave_phones(urls, "acme")["c1@acme.example"] == "+47 5 00 00 02"


def test_fleet_mode_reads_the_variable():
    assert fleet_mode({}) is None and fleet_mode({"CRM_WAVE_FLEET": "off"}) is None
    assert fleet_mode({"CRM_WAVE_FLEET": "Loop"}) == "loop"
    with pytest.raises(ValueError, match="CRM_WAVE_FLEET='sometimes': use loop, batch or off"):
        fleet_mode({"CRM_WAVE_FLEET": "sometimes"})


def test_no_state_before_the_first_fleet_run(tmp_path: Path):
    assert load_state(tmp_path) == {}


@pytest.fixture
def batch_tick(fleet, monkeypatch):
    """One evaluation of `fleet_sensor` in batch mode, with fresh look clients, against the fleet's instance."""
    from crm_wave.defs import fleet as fleet_defs
    from crm_wave.defs.resources import SyncResource

    data, _, instance = fleet
    monkeypatch.setattr(fleet_defs, "_MODE", "batch")
    monkeypatch.setattr(fleet_defs, "_SENSOR_PROBES", {})

    def tick():
        ctx = dg.build_sensor_context(instance=instance, resources={"sync": SyncResource(data_root=str(data))})
        return fleet_defs.fleet_sensor(ctx)

    return tick


def test_batch_sensor_launches_one_run_for_the_tenants_with_changes(fleet, batch_tick):
    data, urls, instance = fleet
    tick = batch_tick
    first = tick()  # never synced: every tenant that answers is due; the broken one is named, not launched
    assert isinstance(first, dg.RunRequest)
    assert first.run_config["ops"]["serve_fleet"]["config"]["tenants"] == ["acme", "globex"]
    assert first.tags["crm_wave/tenants"] == "acme,globex" and first.tags["crm_wave/fleet"] == "batch"
    assert _run(instance, tenants=["acme", "globex"], snapshot=False).success
    quiet = tick()
    assert isinstance(quiet, dg.SkipReason) and "broken: " in quiet.skip_message and "not-the-token" not in quiet.skip_message
    with CrmClient(base_url=urls["globex"][0], token="globex-c") as c:
        customer = c.read_all("customers")[0]
        c.patch("customers", customer["Id"], {"Phone": "+47 22 00 00 02"}, if_match=customer["Version"])
    edited = tick()
    assert isinstance(edited, dg.RunRequest)
    assert edited.run_config["ops"]["serve_fleet"]["config"]["tenants"] == ["globex"]
    instance.add_run(dg.DagsterRun(job_name="fleet_job", run_id="fleet-busy", status=dg.DagsterRunStatus.STARTED))
    busy = tick()
    assert isinstance(busy, dg.SkipReason) and busy.skip_message == "a fleet run is in progress"


def test_loop_minutes_must_be_a_positive_number():
    from crm_wave.defs.fleet import _loop_minutes

    assert _loop_minutes({}) == 15 and _loop_minutes({"CRM_WAVE_FLEET_MINUTES": "2.5"}) == 2.5
    with pytest.raises(ValueError, match="CRM_WAVE_FLEET_MINUTES='soon': use a number of minutes above 0"):
        _loop_minutes({"CRM_WAVE_FLEET_MINUTES": "soon"})


def test_the_loops_snapshot_interval_is_a_number_of_seconds():
    from crm_wave.config.fleet import FleetSettings
    from crm_wave.config.settings import ConfigError

    assert FleetSettings.value("fleet_snapshot_seconds", {}) == 60
    assert FleetSettings.value("fleet_snapshot_seconds", {"CRM_WAVE_FLEET_SNAPSHOT_SECONDS": "0"}) == 0
    with pytest.raises(ConfigError, match=r"^CRM_WAVE_FLEET_SNAPSHOT_SECONDS='-5': use a number of seconds, 0 or more"):
        FleetSettings.value("fleet_snapshot_seconds", {"CRM_WAVE_FLEET_SNAPSHOT_SECONDS": "-5"})


def _loop_config(fleet, monkeypatch, **environ: str) -> dict:
    """The `serve_fleet` config of the run the loop sensor requests with these variables set."""
    from crm_wave.defs import fleet as fleet_defs
    from crm_wave.defs.resources import SyncResource

    data, _, instance = fleet
    monkeypatch.setattr(fleet_defs, "_MODE", "loop")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    ctx = dg.build_sensor_context(instance=instance, resources={"sync": SyncResource(data_root=str(data))})
    request = fleet_defs.fleet_sensor(ctx)
    assert isinstance(request, dg.RunRequest)
    return request.run_config["ops"]["serve_fleet"]["config"]


def test_the_loop_sensor_passes_the_snapshot_interval(fleet, monkeypatch):
    config = _loop_config(fleet, monkeypatch, CRM_WAVE_FLEET_SNAPSHOT_SECONDS="0")
    assert config["snapshot_every_s"] == 0
    assert config["full_every_s"] == 300  # the default


def test_the_fleets_full_pass_interval_is_a_variable_of_at_least_ten_seconds(fleet, monkeypatch):
    from crm_wave.config.fleet import FleetSettings
    from crm_wave.config.settings import ConfigError

    assert FleetSettings.value("fleet_full_seconds", {}) == 300
    with pytest.raises(ConfigError, match=r"^CRM_WAVE_FLEET_FULL_SECONDS='5': use a number of seconds, 10 or more"):
        FleetSettings.value("fleet_full_seconds", {"CRM_WAVE_FLEET_FULL_SECONDS": "5"})
    assert _loop_config(fleet, monkeypatch, CRM_WAVE_FLEET_FULL_SECONDS="900")["full_every_s"] == 900


def test_fleet_variables_are_a_settings_section_that_no_sync_reads():
    from crm_wave.config.fleet import FleetSettings
    from crm_wave.config.settings import AppSettings, ConfigError

    bad = {"CRM_WAVE_FLEET": "sometimes", "CRM_WAVE_FLEET_MINUTES": "soon", "CRM_WAVE_SCHEDULE_MINUTES": "-1"}
    assert AppSettings.load(bad).debug is False  # what every sync loads does not read them
    with pytest.raises(ConfigError, match=r"^CRM_WAVE_FLEET='sometimes': use loop, batch or off$"):
        FleetSettings.load(bad)
    with pytest.raises(ConfigError, match=r"^CRM_WAVE_SCHEDULE_MINUTES='-1': use a number of minutes above 0, e.g. 15$"):
        FleetSettings.load({"CRM_WAVE_SCHEDULE_MINUTES": "-1"})
    # each variable alone: a bad one does not stop another from being read
    assert FleetSettings.value("fleet", {**bad, "CRM_WAVE_FLEET": "batch"}) == "batch"
    assert FleetSettings.load({"CRM_WAVE_SCHEDULE_MINUTES": "2", "CRM_WAVE_FLEET": ""}).schedule_every_s == 120


def test_a_bad_fleet_mode_fails_the_fleet_sensor_not_the_definitions(tmp_path):
    """Every run of every tenant loads the definitions: a typo in CRM_WAVE_FLEET stops the fleet only."""
    import subprocess
    import sys

    code = ("import dagster as dg\n"
            "from crm_wave.definitions import defs\n"
            "from crm_wave.defs import automation, fleet\n"
            "from crm_wave.defs.resources import SyncResource\n"
            "defs().resolve_job_def('sync_job')\n"
            "assert automation.collect_schedule.default_status == dg.DefaultScheduleStatus.RUNNING\n"
            "assert fleet.fleet_sensor.default_status == dg.DefaultSensorStatus.RUNNING\n"
            "with dg.instance_for_test() as instance:\n"
            "    ctx = dg.build_sensor_context(instance=instance, resources={'sync': SyncResource(data_root='.')})\n"
            "    try:\n"
            "        fleet.fleet_sensor(ctx)\n"
            "    except ValueError as exc:\n"
            "        print(exc)\n")
    env = {**__import__("os").environ, "CRM_WAVE_FLEET": "sometimes", "CRM_WAVE_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "CRM_WAVE_FLEET='sometimes': use loop, batch or off"


def test_an_operator_command_gets_a_pass_of_every_stage_at_the_fleets_next_look(fleet, batch_tick):
    """`crm-wave conflicts resolve` (and the other commands that leave work no head shows) mark the
    tenant's state (`state.ask_every_stage`): the batch sensor's next tick launches that tenant, whose
    sync runs every stage, instead of waiting up to `full_every_s`; then it is quiet again."""
    from crm_wave.sync.state import ask_every_stage

    data, _, instance = fleet
    tick = batch_tick
    assert isinstance(tick(), dg.RunRequest)
    assert _run(instance, tenants=["acme", "globex"], snapshot=False).success
    assert isinstance(tick(), dg.SkipReason)  # nothing moved, nothing due
    synced = load_state(data)["acme"].last_pass
    ask_every_stage(data, "acme", "conflicts resolve")
    asked = tick()
    assert isinstance(asked, dg.RunRequest)
    assert asked.run_config["ops"]["serve_fleet"]["config"]["tenants"] == ["acme"]
    result = _run(instance, tenants=["acme"], snapshot=False)
    assert result.success
    assert {"crm_product", "wave_invoice", "global_order"} <= _materialized(result)["acme"]  # every stage, not what moved
    state = load_state(data)["acme"]
    assert state.last_pass > synced and state.last_pass >= state.asked
    assert isinstance(tick(), dg.SkipReason)


def test_a_loop_keeps_files_open_and_publishes_a_snapshot_at_most_every_snapshot_every_s(fleet):
    """A loop's second sync of a tenant within `snapshot_every_s` leaves its snapshot behind; the run's last
    round publishes it. The files kept open between syncs are closed (checkpointed) when the run ends."""
    import threading
    import time

    import duckdb

    from crm_wave.analyst.snapshot import list_snapshots
    from crm_wave.store.connection import kept

    data, urls, instance = fleet
    assert _run(instance, snapshot=False).success  # converged, no snapshot yet
    syncs = load_state(data)["acme"].syncs
    behind: list[bool] = []

    def edit(phone: str) -> None:
        with CrmClient(base_url=urls["acme"][0], token="acme-c") as c:
            customer = next(x for x in c.read_all("customers") if x["Email"] == "c0@acme.example")
            c.patch("customers", customer["Id"], {"Phone": phone}, if_match=customer["Version"])

    def second_edit() -> None:  # once the loop has synced the first edit
        deadline = time.monotonic() + 60
        while load_state(data)["acme"].syncs <= syncs and time.monotonic() < deadline:
            time.sleep(0.1)
        edit("+47 4 00 00 09")
        while time.monotonic() < deadline and not behind:  # the second sync, within the hour: no snapshot yet
            st = load_state(data)["acme"]
            if st.syncs >= syncs + 2 and st.snapshot_behind:
                behind.append(True)
            time.sleep(0.05)

    edit("+47 4 00 00 08")
    editor = threading.Thread(target=second_edit)
    editor.start()
    loop = _run(instance, minutes=0.3, look_every_s=0.5, snapshot_every_s=3600.0, keep_open_s=60.0)
    editor.join(60)
    assert loop.success
    assert _wave_phones(urls, "acme")["c0@acme.example"] == "+47 4 00 00 09"
    snapshots = [e for e in loop.get_asset_materialization_events()
                 if e.materialization.partition == "acme" and e.materialization.asset_key.to_user_string() == "snapshot"]
    assert load_state(data)["acme"].syncs >= syncs + 2
    assert behind == [True]  # the second sync published none
    assert len(snapshots) == 2  # after the first sync, and the one left behind, at the run's end
    state = load_state(data)["acme"]
    assert not state.snapshot_behind and state.snapshot_at > 0
    from crm_wave.defs.resources import SyncResource

    store = SyncResource(data_root=str(data)).store("acme")
    db = store.path
    assert not kept(db)  # closed when the run ended
    assert not db.with_name(db.name + ".wal").exists()
    newest = list_snapshots(db.parent / "snapshots")[-1]
    with duckdb.connect(str(newest), read_only=True) as con:
        phones = {r[0] for r in con.execute("SELECT Phone FROM global_customer").fetchall()}
    assert "+47 4 00 00 09" in phones  # the last sync is in the last snapshot


_COLLECTS = {"crm_customer", "wave_customer", "crm_product", "wave_product", "crm_order", "wave_invoice"}


def test_a_due_pass_that_finds_nothing_records_its_collects_only_and_publishes_no_snapshot(fleet):
    """A pass of every stage that is due (`full_every_s`) and finds nothing new is quiet: it is recorded on the
    six collect assets (when each tenant was read, and that nothing was new), with no snapshot and no stage
    lines in the run's log. It still runs every stage, so the same pass with an edit that moved no head is
    a sync like any other: every stage recorded, and the snapshot published."""
    from crm_wave.analyst.snapshot import list_snapshots
    from crm_wave.defs.resources import SyncResource

    data, urls, instance = fleet
    assert _run(instance).success  # the first sync of each tenant: every stage and a snapshot
    before = load_state(data)["acme"]
    snapshots = SyncResource(data_root=str(data)).store("acme").path.parent / "snapshots"
    published = list_snapshots(snapshots)
    assert published and before.snapshot_at > 0

    quiet = _run(instance, full_every_s=0.0)  # due at once, nothing changed
    assert quiet.success
    assert _materialized(quiet) == {name: _COLLECTS for name in NAMES}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("crm_customer"), asset_partitions=["acme"]), limit=1).records
    assert records[0].run_id == quiet.run_id and records[0].asset_materialization.metadata["quiet"].value is True
    after = load_state(data)["acme"]
    assert after.syncs == before.syncs + 1 and after.last_pass > before.last_pass  # a pass of every stage, counted
    assert after.snapshot_at == before.snapshot_at and not after.snapshot_behind
    assert list_snapshots(snapshots) == published
    def lines(result: dg.ExecuteInProcessResult) -> list[str]:  # the run's log lines about acme
        return [e.user_message for e in instance.all_logs(result.run_id) if e.user_message.startswith("acme:")]

    assert not lines(quiet)

    # An edit the heads do not show (a CRM without a change feed for it, Wave payments in strict mode) is
    # found by the due pass of every stage; simulated here by forgetting the marks of the last look.
    from crm_wave.sync.state import save_state

    with CrmClient(base_url=urls["acme"][0], token="acme-c") as c:
        customer = next(x for x in c.read_all("customers") if x["Email"] == "c0@acme.example")
        c.patch("customers", customer["Id"], {"Phone": "+47 6 00 00 03"}, if_match=customer["Version"])
    state = load_state(data)
    state["acme"].marks = look_marks_now(urls)
    save_state(data, state)
    due = _run(instance, full_every_s=0.0)
    assert due.success and _wave_phones(urls, "acme")["c0@acme.example"] == "+47 6 00 00 03"
    stages = _materialized(due)
    assert {"global_customer", "push_wave_customer", "snapshot"} <= stages["acme"]
    assert stages["globex"] == _COLLECTS  # nothing new there
    assert load_state(data)["acme"].snapshot_at > before.snapshot_at
    assert any("synced" in line for line in lines(due)) and any("wrote 1 versions" in line for line in lines(due))


def look_marks_now(urls: dict) -> dict[str, str]:
    """acme's marks as a look now would record them: its edits so far are behind them."""
    from crm_wave.sync.heads import look

    with CrmClient(base_url=urls["acme"][0], token="acme-c") as crm, \
            WaveClient(url=urls["acme"][1], token="acme-w") as wave:
        return look(crm, wave, None).marks


def test_look_settings_are_read_again_only_when_the_tenants_variables_or_registry_entry_change(tmp_path, monkeypatch):
    """`Probes.settings`: reading a tenant's settings parses the whole environment (3-10 ms a look, more with
    more tenants), so the fleet keeps them while the tenant's variables, its registry entry and its CRM
    profile file stay the same; a change to any of them is read at the next look."""
    from crm_wave.config.tenants import remove_tenant
    from crm_wave.defs.fleet import Probes
    from crm_wave.defs.resources import SyncResource

    data = tmp_path / "data"
    t = add_tenant(data, "acme")
    for key, value in {"CRM_BASE_URL": "http://127.0.0.1:9/api/v1", "CRM_API_TOKEN": "c",
                       "WAVE_GRAPHQL_URL": "http://127.0.0.1:9/graphql/public", "WAVE_API_TOKEN": "w"}.items():
        monkeypatch.setenv(t.var(key), value)
    probes = Probes(SyncResource(data_root=str(data)))
    first = probes.settings("acme")
    assert probes.settings("acme") is first  # nothing changed: not read again
    monkeypatch.setenv("GLOBEX_WAVE_API_TOKEN", "another tenant's")  # not acme's
    assert probes.settings("acme") is first
    monkeypatch.setenv(t.var("WAVE_API_TOKEN"), "w2")
    assert probes.settings("acme").wave.api_token.get_secret_value() == "w2"
    profile = tmp_path / "crm.toml"
    from crm_wave.systems.crm.profile import PROFILE_DIR

    profile.write_text((PROFILE_DIR / "contract.toml").read_text())
    monkeypatch.setenv(t.var("CRM_PROFILE"), str(profile))
    kept = probes.settings("acme")
    assert probes.settings("acme") is kept
    profile.write_text(profile.read_text() + "\n# edited\n")
    assert probes.settings("acme") is not kept  # the profile file changed
    remove_tenant(data, "acme")
    add_tenant(data, "acme", env_prefix="ACME2_")  # the same name, other variables: none set
    with pytest.raises(Exception, match="ACME2_CRM_BASE_URL"):
        probes.settings("acme")
    with pytest.raises(Exception, match="no tenant 'nobody'"):
        probes.settings("nobody")


def test_fleet_shards_is_a_whole_number_of_loop_runs():
    from crm_wave.config.fleet import FleetSettings
    from crm_wave.config.settings import ConfigError

    assert FleetSettings.value("fleet_shards", {}) == 1
    assert FleetSettings.value("fleet_shards", {"CRM_WAVE_FLEET_SHARDS": "3"}) == 3
    for bad in ("0", "1.5", "many", "65"):
        with pytest.raises(ConfigError, match=rf"^CRM_WAVE_FLEET_SHARDS='{bad}': use a whole number from 1 to 64"):
            FleetSettings.value("fleet_shards", {"CRM_WAVE_FLEET_SHARDS": bad})


def test_sharded_loop_runs_serve_disjoint_tenants_and_write_only_their_own_state(fleet):
    from crm_wave.defs.fleet import _save, shard_of

    data, urls, instance = fleet
    assert (shard_of("acme", 3), shard_of("globex", 3), shard_of("broken", 3)) == (2, 1, 1)
    first = _run(instance, shards=3, shard=2, snapshot=False)
    assert first.success and set(_materialized(first)) == {"acme"}
    assert set(_wave_phones(urls, "acme")) == {"c0@acme.example", "c1@acme.example"}
    assert not _wave_phones(urls, "globex")  # another shard's tenant: not this run's
    second = _run(instance, shards=3, shard=1, snapshot=False)
    assert second.success and set(_materialized(second)) == {"globex"}
    state = load_state(data)
    assert state["acme"].syncs == 1 and state["globex"].syncs == 1 and state["broken"].failures == 1

    # Runs of two shards at once: each writes its own tenants over the file, never a stale copy of the others'.
    stale = load_state(data)
    stale["acme"].syncs, stale["globex"].syncs = 0, 7
    _save(data, stale, ["globex", "broken"], ["acme", "globex", "broken"], 3)
    assert load_state(data)["acme"].syncs == 1 and load_state(data)["globex"].syncs == 7


def test_the_loop_sensor_starts_one_run_per_shard_that_has_none(fleet, monkeypatch):
    from dagster._core.utils import make_new_run_id

    from crm_wave.defs import fleet as fleet_defs
    from crm_wave.defs.resources import SyncResource

    data, _, instance = fleet
    monkeypatch.setattr(fleet_defs, "_MODE", "loop")
    monkeypatch.setenv("CRM_WAVE_FLEET_SHARDS", "3")

    def tick():
        ctx = dg.build_sensor_context(instance=instance, resources={"sync": SyncResource(data_root=str(data))})
        return fleet_defs.fleet_sensor(ctx)

    def active(tags: dict[str, str]) -> None:
        instance.add_run(dg.DagsterRun(job_name="fleet_job", run_id=make_new_run_id(), tags=tags,
                                       status=dg.DagsterRunStatus.STARTED))

    requests = tick()
    assert [r.run_config["ops"]["serve_fleet"]["config"]["shard"] for r in requests] == [0, 1, 2]
    assert {r.tags[fleet_defs.SHARD_TAG] for r in requests} == {"0/3", "1/3", "2/3"}
    active({fleet_defs.FLEET_TAG: "loop", fleet_defs.SHARD_TAG: "0/3"})
    assert [r.run_config["ops"]["serve_fleet"]["config"]["shard"] for r in tick()] == [1, 2]
    active({fleet_defs.FLEET_TAG: "loop", fleet_defs.SHARD_TAG: "1/2"})  # a run of another split: none starts
    assert isinstance(tick(), dg.SkipReason)


@pytest.mark.timeout(300)
def test_a_fleet_run_on_postgres_writes_its_events_over_kept_connections_not_one_per_event(fleet, tmp_path, monkeypatch):
    """Dagster's Postgres storage opens a connection per event it writes (a new Postgres backend each: about
    25 ms of the server's CPU per materialization); the fleet's run keeps its event-log connections open
    (`_pool_events`), as the webserver does. Counted by Postgres itself (`pg_stat_database.sessions`)."""
    import shutil
    import time

    from crm_wave.bench.tenants import ROOT
    from crm_wave_tests.tenants.test_tenants import postgres_db

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.local-postgres.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    def sessions() -> int:
        time.sleep(1.5)  # backends report their counters within a second or so
        cur = admin.cursor()
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (db,))
        return int(cur.fetchone()[0])

    from crm_wave.definitions import defs

    with postgres_db(monkeypatch) as (admin, db):
        job = defs().resolve_job_def("fleet_job")  # loading the definitions asks the instance too: not counted
        with dg.DagsterInstance.get() as instance:
            instance.add_dynamic_partitions("tenants", [*NAMES, "broken"])
            before = sessions()
            result = job.execute_in_process(instance=instance, raise_on_error=False,
                                            run_config={"ops": {"serve_fleet": {"config": {"snapshot": False}}}})
            opened = sessions() - before
            assert result.success and set(_materialized(result)) == set(NAMES)
            events = instance.all_logs(result.run_id)
            written = len([e for e in events if e.dagster_event is None or e.dagster_event.event_type_value in
                           ("ASSET_MATERIALIZATION", "ASSET_OBSERVATION")])
            assert written >= 40  # every stage of two tenants, the broken one's observation and lines
            assert opened < written / 2, (opened, written)  # before: 136 for 62 events (two a materialization)


def test_a_round_writes_the_state_file_at_most_every_save_interval_and_always_at_its_end(fleet, monkeypatch):
    """The state file was written after every tenant's sync (10-20 ms each at 100 tenants); now at most every
    `_SAVE_EVERY_S` within a round, and at the round's end, so what the run did is still on file."""
    from crm_wave.defs import fleet as fleet_defs

    data, _, instance = fleet
    writes: list[dict[str, int]] = []
    real = fleet_defs._save

    def counted(root, state, *args):
        writes.append({t: st.syncs for t, st in state.items()})
        real(root, state, *args)

    monkeypatch.setattr(fleet_defs, "_save", counted)
    monkeypatch.setattr(fleet_defs, "_SAVE_EVERY_S", 3600.0)
    assert _run(instance, snapshot=False).success
    assert writes == [{"acme": 1, "globex": 1, "broken": 0}]  # once, at the round's end (three times before)
    assert {t: st.syncs for t, st in load_state(data).items()} == writes[0]

    writes.clear()
    monkeypatch.setattr(fleet_defs, "_SAVE_EVERY_S", 0.0)  # due after every sync: each is on file at once
    assert _run(instance, snapshot=False, full_every_s=0.0).success
    assert len(writes) == 3 and writes[-1] == {"acme": 2, "globex": 2, "broken": 0}  # after each sync and at the end
