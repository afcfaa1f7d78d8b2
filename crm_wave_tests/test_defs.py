"""The Dagster definitions load, read as the dataflow, and run end to end against the simulators."""

from __future__ import annotations

import dagster as dg

from crm_wave.defs.automation import push_sensor
from crm_wave.defs.run import run_sync_job
from crm_wave.definitions import defs


def test_definitions_load_and_validate():
    d = defs()
    dg.Definitions.validate_loadable(d)
    graph = d.resolve_asset_graph()
    # One group, so the UI's lineage opens on the assets (it collapses groups when there are several);
    # the stage is a kind (shown on each node) and the tag `stage`.
    assert {graph.get(k).group_name for k in graph.get_all_asset_keys()} == {"sync"}
    stages = {k.to_user_string(): graph.get(k).tags["stage"] for k in graph.get_all_asset_keys()}
    assert stages["crm_customer"] == "collect" and stages["global_order"] == "global"
    assert stages["wave_invoice_share"] == "share" and stages["push_wave_invoice"] == "push"
    assert stages["snapshot"] == "analyst"
    assert all(stage in graph.get(dg.AssetKey(key)).kinds for key, stage in stages.items())
    # Lineage reads collect -> global -> share -> push.
    parents = lambda key: {p.to_user_string() for p in graph.get(dg.AssetKey(key)).parent_keys}  # noqa: E731
    assert parents("global_customer") == {"crm_customer", "wave_customer"}
    assert parents("wave_customer_share") == {"global_customer"}
    assert parents("push_wave_customer") == {"wave_customer_share"}
    assert {"push_wave_customer", "push_wave_product"} <= parents("global_order")


def test_sync_job_runs_in_process_and_converges(sim_env, tmp_path):
    from crm_wave.systems.crm.client import CrmClient

    crm_sim, wave_sim = sim_env
    with CrmClient(base_url=crm_sim.url, token=crm_sim.token) as crm:
        crm.create("customers", {"Type": "organization", "Name": "Via Dagster", "Email": "d@x.example"},
                   idempotency_key="k")
    with dg.instance_for_test() as instance:
        passes = run_sync_job(max_passes=4, instance=instance)
        # Collects publish their cursor: changes_sensor starts a new tenant's feeds there (`_seed`).
        from crm_wave.defs.automation import _seed

        assert set(_seed(instance, "default")) == {"crm:customers", "crm:products", "crm:orders"}
    assert passes[0]["push_wave_customer"]["created"] == 1
    assert passes[-1]["push_wave_customer"]["created"] == 0 and passes[-1]["push_crm_customer"]["updated"] == 0
    assert (tmp_path / "crm_wave.duckdb").exists()


def _share_event(instance: dg.DagsterInstance, key: str, tenant: str, work: int) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=tenant, metadata={"work": work}))


def test_push_sensor_requests_push_per_tenant_only_for_share_assets_with_work():
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tenants", ["default", "acme"])
        d = defs()
        ctx = lambda cursor=None: dg.build_sensor_context(  # noqa: E731
            instance=instance, cursor=cursor, repository_def=d.get_repository_def())
        first = ctx()
        assert isinstance(push_sensor(first), dg.SkipReason)
        _share_event(instance, "wave_customer_share", "acme", 3)
        _share_event(instance, "crm_customer_share", "acme", 0)
        _share_event(instance, "crm_customer_share", "default", 0)
        second = ctx(first.cursor)
        (request,) = push_sensor(second)
        assert request.partition_key == "acme" and request.tags["tenant"] == "acme"
        keys = {k.to_user_string() for k in request.asset_selection}
        assert "push_wave_customer" in keys and "push_crm_customer" not in keys
        assert "push_wave_invoice" in keys  # orders follow their customers
        # Nothing new since: the same materialization does not push twice.
        assert isinstance(push_sensor(ctx(second.cursor)), dg.SkipReason)


def test_scheduled_and_sensor_runs_execute_in_one_process():
    """Every step in its own process (Dagster's default) costs seconds of imports per step."""
    d = defs()
    assert push_sensor.job_name == "push_job"
    from crm_wave.defs.automation import changes_sensor

    assert changes_sensor.job_name == "sync_job"
    for name in ("sync_job", "collect_job", "push_job"):
        assert d.resolve_job_def(name).executor_def.name == "in_process", name


def test_tenants_sensor_matches_partitions_to_the_registry(tmp_path, monkeypatch):
    from crm_wave.defs.automation import tenants_sensor
    from crm_wave.defs.resources import SyncResource
    from crm_wave.config.tenants import add_tenant

    add_tenant(tmp_path, "acme")
    monkeypatch.setenv("CRM_BASE_URL", "http://crm")  # the default tenant is configured too
    monkeypatch.setenv("WAVE_GRAPHQL_URL", "http://wave")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tenants", ["stale"])
        result = tenants_sensor(dg.build_sensor_context(instance=instance, resources={"sync": SyncResource(data_root=str(tmp_path))}))
        adds = [r for r in result.dynamic_partitions_requests if isinstance(r, dg.AddDynamicPartitionsRequest)]
        deletes = [r for r in result.dynamic_partitions_requests if isinstance(r, dg.DeleteDynamicPartitionsRequest)]
        assert sorted(adds[0].partition_keys) == ["acme", "default"] and deletes[0].partition_keys == ["stale"]
    monkeypatch.delenv("CRM_BASE_URL")
    with dg.instance_for_test() as instance:  # without its variables, the default tenant is not part of the fleet
        result = tenants_sensor(dg.build_sensor_context(instance=instance, resources={"sync": SyncResource(data_root=str(tmp_path))}))
        assert result.dynamic_partitions_requests[0].partition_keys == ["acme"]


def test_collect_schedule_skips_tenants_with_a_run_in_progress(tmp_path):
    import datetime as dt

    from crm_wave.defs.automation import collect_schedule
    from crm_wave.defs.resources import SyncResource

    when = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tenants", ["default", "acme"])
        # Neither tenant is configured: each look fails, so each gets a run that fails visibly.
        ctx = lambda: dg.build_schedule_context(instance=instance, scheduled_execution_time=when,  # noqa: E731
                                                resources={"sync": SyncResource(data_root=str(tmp_path))})
        with ctx() as first:  # each in a `with`, which resets Dagster's current instance when it ends
            assert sorted(r.partition_key for r in collect_schedule(first)) == ["acme", "default"]
        instance.add_run(dg.DagsterRun(job_name="collect_job", run_id="running-acme", tags={"tenant": "acme"},
                                       status=dg.DagsterRunStatus.STARTED))
        with ctx() as second:
            assert [r.partition_key for r in collect_schedule(second)] == ["default"]
