"""`changes_sensor` and the look it makes (`crm_wave/sync/heads.py`), against the real simulators on loopback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pytest

from crm_wave.definitions import defs
from crm_wave.defs.automation import changes_sensor, push_sensor
from crm_wave.defs.resources import SyncResource
from crm_wave.sync.heads import MAX_PAGES, look
from crm_wave.systems.crm.client import CrmClient, CrmPage
from crm_wave.systems.serve import free_port
from crm_wave.systems.wave.client import Mutation, WaveClient


@pytest.fixture
def env(sim_env):
    crm_sim, wave_sim = sim_env
    with CrmClient(base_url=crm_sim.url, token=crm_sim.token) as crm, \
            WaveClient(url=wave_sim.url, token=wave_sim.token) as wave:
        yield crm, wave


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions("tenants", ["default"])
        yield inst


def _tick(instance: dg.DagsterInstance, tmp_path: Path, cursor: str | None) -> dg.SensorResult:
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=defs().get_repository_def(),
                                  resources={"sync": SyncResource(data_root=str(tmp_path))})
    result = changes_sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    return result


def _org(crm: CrmClient, name: str) -> dict:
    return crm.create("customers", {"Type": "organization", "Name": name, "Email": f"{name.lower()}@x.example"},
                      idempotency_key=name)


def test_first_look_records_then_a_crm_edit_requests_one_sync_and_quiet_systems_none(env, instance, tmp_path,
                                                                                       crm_sim, wave_sim):
    crm, wave = env
    customer = _org(crm, "Alpha")
    first = _tick(instance, tmp_path, None)
    assert not first.run_requests and "default: first look" in first.skip_reason.skip_message
    marks = json.loads(first.cursor)["default"]
    assert set(marks) == {"crm:customers", "crm:products", "crm:orders",
                          "wave:customers", "wave:products", "wave:invoices"}

    quiet = _tick(instance, tmp_path, first.cursor)
    assert not quiet.run_requests and "default: no change" in quiet.skip_reason.skip_message
    assert quiet.cursor == first.cursor

    crm.patch("customers", customer["Id"], {"Phone": "+47 11 22 33 44"}, if_match=customer["Version"])
    edited = _tick(instance, tmp_path, quiet.cursor)
    (request,) = edited.run_requests
    assert request.partition_key == "default" and request.tags["tenant"] == "default"
    assert request.tags["crm_wave/changed"] == "crm:customers"
    assert request.job_name in (None, "sync_job") and changes_sensor.job_name == "sync_job"
    # The run is of what moved and what follows it, then the snapshot: not Wave's collects, not the products.
    from crm_wave.sync.stages import downstream

    assert {k.to_user_string() for k in request.asset_selection} == downstream({"crm_customer"}) | {"snapshot"}

    after = _tick(instance, tmp_path, edited.cursor)  # the same edit is not reported twice
    assert not after.run_requests and "no change" in after.skip_reason.skip_message

    # Nothing in the cursor or the reasons is a token; no DuckDB file was opened.
    for text in (edited.cursor, after.cursor, first.skip_reason.skip_message):
        assert crm_sim.token not in text and wave_sim.token not in text
    assert not list(tmp_path.rglob("*.duckdb"))


def test_wave_edits_and_deletes_request_a_sync(env, instance, tmp_path):
    crm, wave = env
    (created,) = wave.mutate([Mutation("customerCreate", {"businessId": wave.business_id, "name": "Beta"}, "b")])
    first = _tick(instance, tmp_path, None)
    (patched,) = wave.mutate([Mutation("customerPatch", {"id": created.entity["id"], "phone": "+1 555 0100"}, "p")])
    assert patched.ok
    edited = _tick(instance, tmp_path, first.cursor)
    assert [r.tags["crm_wave/changed"] for r in edited.run_requests] == ["wave:customers"]
    (deleted,) = wave.mutate([Mutation("customerDelete", {"id": created.entity["id"]}, "d")])
    assert deleted.ok
    gone = _tick(instance, tmp_path, edited.cursor)
    assert [r.tags["crm_wave/changed"] for r in gone.run_requests] == ["wave:customers"]
    assert json.loads(gone.cursor)["default"]["wave:customers"].endswith("|0")


@pytest.mark.parametrize("down", ["crm", "wave"])
def test_a_system_that_is_down_skips_the_tenant_with_a_reason_and_keeps_its_marks(env, instance, tmp_path,
                                                                                   monkeypatch, down):
    crm, wave = env
    first = _tick(instance, tmp_path, None)
    customer = _org(crm, "Gamma")  # a change made while the other system is down is not lost
    var = "CRM_BASE_URL" if down == "crm" else "WAVE_GRAPHQL_URL"
    up = os.environ[var]
    monkeypatch.setenv(var, f"http://127.0.0.1:{free_port()}/nothing-listens-here")
    result = _tick(instance, tmp_path, first.cursor)
    assert not result.run_requests
    assert f"default: {down} did not answer" in result.skip_reason.skip_message
    assert result.cursor == first.cursor
    monkeypatch.setenv(var, up)  # back up: the change made meanwhile is seen
    back = _tick(instance, tmp_path, result.cursor)
    assert [r.tags["crm_wave/changed"] for r in back.run_requests] == ["crm:customers"], customer


def test_a_busy_tenant_is_not_looked_at_and_its_change_is_seen_after_the_run(env, instance, tmp_path):
    crm, _ = env
    first = _tick(instance, tmp_path, None)
    instance.add_run(dg.DagsterRun(job_name="collect_job", run_id="busy-default", tags={"tenant": "default"},
                                   status=dg.DagsterRunStatus.STARTED))
    _org(crm, "Delta")
    busy = _tick(instance, tmp_path, first.cursor)
    assert not busy.run_requests and "default: a run is queued or in progress" in busy.skip_reason.skip_message
    assert busy.cursor == first.cursor
    instance.delete_run("busy-default")
    (request,) = _tick(instance, tmp_path, busy.cursor).run_requests
    assert request.partition_key == "default"


def test_the_requested_run_carries_a_crm_edit_to_wave_and_one_quiet_run_follows_our_push(env, instance, tmp_path):
    from crm_wave.defs.run import QUIET, run_sync_job

    crm, wave = env
    customer = _org(crm, "Epsilon")
    run_sync_job(instance=instance)  # linked and converged
    first = _tick(instance, tmp_path, None)
    current = crm.get("customers", customer["Id"])
    crm.patch("customers", customer["Id"], {"Phone": "+47 99 88 77 66"}, if_match=current["Version"])

    job = defs().resolve_job_def("sync_job")
    push_tick = dg.build_sensor_context(instance=instance, repository_def=defs().get_repository_def())
    assert isinstance(push_sensor(push_tick), dg.SkipReason)  # its first tick: the newest share materialization
    cursor, runs = first.cursor, 0
    for _ in range(4):
        result = _tick(instance, tmp_path, cursor)
        cursor = result.cursor
        if not result.run_requests:
            break
        (request,) = result.run_requests
        outcome = job.execute_in_process(instance=instance, partition_key=request.partition_key, tags=request.tags,
                                         run_config=QUIET, asset_selection=request.asset_selection)
        assert outcome.success
        runs += 1
        if runs == 1:  # one run took the edit to Wave
            (in_wave,) = [c for c in wave.list_customers() if c["email"] == "epsilon@x.example"]
            assert in_wave["phone"] == "+47 99 88 77 66"
            # That run's share had work, and the run pushed it itself: the push sensor adds no push run.
            share = instance.fetch_materializations(dg.AssetKey("wave_customer_share"), limit=1).records[0]
            assert share.asset_materialization.metadata["work"].value == 1
            pushed = push_sensor(push_tick)
            assert isinstance(pushed, dg.SkipReason), pushed
    # The run that pushed moved Wave's marks: one more run reads that write back, then all is quiet.
    assert runs == 2


def test_push_sensor_pushes_what_a_collect_left_once_and_never_echoes_a_run_that_pushed(env, instance):
    """Real runs: a collect that leaves work gets one push run of that tenant; neither that push run
    (which re-diffs and pushes the orders itself) nor a `sync_job` run gets another."""
    from crm_wave.defs.run import QUIET

    crm, wave = env
    repo = defs().get_repository_def()
    tick = dg.build_sensor_context(instance=instance, repository_def=repo)

    def run(job: str, selection: list[dg.AssetKey] | None = None) -> None:
        outcome = defs().resolve_job_def(job).execute_in_process(instance=instance, partition_key="default",
                                                                  tags={"tenant": "default"}, run_config=QUIET,
                                                                  asset_selection=selection)
        assert outcome.success

    assert isinstance(push_sensor(tick), dg.SkipReason)
    zeta = _org(crm, "Zeta")
    product = crm.create("products", {"Name": "Widget", "UnitPrice": "12.50"}, idempotency_key="widget")
    crm.create("orders", {"OrderNumber": "SO-1", "CustomerId": zeta["Id"], "OrderDate": "2026-01-02",
                          "DueDate": "2026-01-16", "Currency": "NOK",
                          "Lines": [{"ProductId": product["Id"], "Quantity": "2", "UnitPrice": "12.50"}]},
               idempotency_key="so-1")
    run("collect_job")  # diffs, writes nothing; the order waits for its customer and product
    (request,) = push_sensor(tick)
    keys = {k.to_user_string() for k in request.asset_selection}
    assert request.partition_key == "default" and request.tags == {"tenant": "default"}
    assert {"push_wave_customer", "push_wave_product", "global_order", "push_wave_invoice", "snapshot"} <= keys
    assert "push_crm_customer" not in keys  # its share had nothing to write
    assert isinstance(push_sensor(tick), dg.SkipReason)  # the same materialization is not pushed twice

    run("push_job", sorted(request.asset_selection))
    assert [c["name"] for c in wave.list_customers()] == ["Zeta"]
    invoices = instance.fetch_materializations(dg.AssetKey("wave_invoice_share"), limit=1).records[0]
    assert invoices.asset_materialization.metadata["work"].value == 1  # re-diffed in the push run, and pushed there
    assert isinstance(push_sensor(tick), dg.SkipReason)

    customer = _org(crm, "Eta")
    run("sync_job")  # a full pass pushes every share it diffs
    share = instance.fetch_materializations(dg.AssetKey("wave_customer_share"), limit=1).records[0]
    assert share.asset_materialization.metadata["work"].value == 1, customer
    assert isinstance(push_sensor(tick), dg.SkipReason)


class _FakeCrm:
    """A change feed of `n` changes on customers only, served 1000 per page."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.requests = 0

    def always_full(self, resource):
        return False

    def read_changes(self, resource, since, *, limit):
        start = int(since or 0) if resource == "customers" else 0
        end = self.n if resource == "customers" else 0
        while True:
            self.requests += 1
            stop = min(end, start + limit)
            items = [{"Id": str(i)} for i in range(start, stop)]
            yield CrmPage(items=items, next_cursor=str(stop), has_more=stop < end)
            if stop >= end:
                return
            start = stop


class _FakeWave:
    def change_heads(self):
        return {k: {"id": None, "modifiedAt": None, "totalCount": 0} for k in ("customers", "products", "invoices")}


def test_a_long_crm_feed_is_caught_up_a_few_pages_per_look_without_reporting_the_backlog():
    crm = _FakeCrm(1000 * (MAX_PAGES + 2) + 5)
    first = look(crm, _FakeWave(), None)
    assert first.first and first.marks["crm:customers"] == f"~{1000 * MAX_PAGES}"
    second = look(crm, _FakeWave(), first.marks)  # still the backlog: no change reported
    assert not second.changed and second.marks["crm:customers"] == str(crm.n)
    crm.n += 3
    third = look(crm, _FakeWave(), second.marks)
    assert third.changed == ("crm:customers",) and third.marks["crm:customers"] == str(crm.n)
    crm.requests = 0
    assert not look(crm, _FakeWave(), third.marks).changed and crm.requests == 3  # one empty page per feed


def test_a_tenant_never_looked_at_starts_at_its_last_collect_not_at_the_start_of_the_feed(instance):
    from crm_wave.defs.automation import _seed

    instance.report_runless_asset_event(dg.AssetMaterialization("crm_customer", partition="default",
                                                                metadata={"cursor": "6990"}))
    seed = _seed(instance, "default")
    assert seed == {"crm:customers": "~6990"}  # products and orders: never collected, no seed
    crm = _FakeCrm(7000)
    found = look(crm, _FakeWave(), seed)
    assert found.first and not found.changed and found.marks["crm:customers"] == "7000"
    assert crm.requests == 3  # one page per feed: the 10 changes after the collect, not 7,000 from the start


def test_look_clients_are_kept_between_ticks_and_rebuilt_when_the_settings_change(env, instance, tmp_path,
                                                                                 monkeypatch):
    """A fresh pair of look clients every tick cost 0.16 CPU-s a tenant; the kept pair is rebuilt as soon
    as the tenant's settings differ, so a new token takes effect at the next tick, without a failed look."""
    from crm_wave.defs.automation import _CHANGES_PROBES

    first = _tick(instance, tmp_path, None)
    pair = _CHANGES_PROBES[str(tmp_path)]._pairs["default"]
    quiet = _tick(instance, tmp_path, first.cursor)
    assert "default: no change" in quiet.skip_reason.skip_message
    assert _CHANGES_PROBES[str(tmp_path)]._pairs["default"] is pair  # the same clients, still open
    monkeypatch.setenv("WAVE_API_TOKEN", "not-the-token")
    refused = _tick(instance, tmp_path, quiet.cursor)
    assert not refused.run_requests and "default: wave" in refused.skip_reason.skip_message
    assert refused.cursor == quiet.cursor
    assert pair[1]._http.is_closed  # the old Wave client was closed when the token changed
