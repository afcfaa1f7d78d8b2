"""What the UI shows: table sizes as row counts (per-run numbers under their own names), recorded
conflicts, column schemas, DuckDB table names and owners."""

from __future__ import annotations

import dagster as dg

from crm_wave.defs.assets import TENANTS
from crm_wave.definitions import defs


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        out[mat.asset_key.to_user_string()] = mat.metadata
    return out


def test_materializations_report_table_sizes_conflicts_and_schemas(sim_env, rig):
    for i in range(3):
        rig.crm_create("customers", {"Type": "organization", "Name": f"Meta {i}", "Email": f"m{i}@x.example",
                                     "City": "Oslo"})
    d = defs()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(TENANTS.name, ["default"])
    job = d.resolve_job_def("sync_job")
    assert job.execute_in_process(instance=instance, partition_key="default").success
    # A conflict: the same field changed on both sides before the next run.
    c = next(x for x in rig.crm.read_all("customers") if x["Name"] == "Meta 0")
    rig.crm.patch("customers", c["Id"], {"City": "Bergen"}, if_match=c["Version"])
    w = next(x for x in rig.wave.list_customers() if x["name"] == "Meta 0")
    from crm_wave.systems.wave.client import Mutation
    [ok] = rig.wave.mutate([Mutation("customerPatch", {"id": w["id"], "address": {"city": "Trondheim"}}, "w")])
    assert ok.ok, ok.errors
    assert job.execute_in_process(instance=instance, partition_key="default").success
    third = job.execute_in_process(instance=instance, partition_key="default")  # nothing new anywhere
    meta = _metadata(third)

    wave = meta["wave_customer"]
    assert wave["written"].value == 0  # this run's versions, under their own name
    assert wave["dagster/row_count"].value == 3  # the records the table holds
    assert wave["dagster/table_name"].value == "wave_customer"
    columns = [c.name for c in wave["dagster/column_schema"].schema.columns]
    assert {"_id", "_seq", "_deleted", "body"} <= set(columns)

    golden = meta["global_customer"]
    with rig.store.connect() as con:
        (recorded,) = con.execute("SELECT count(*) FROM conflicts WHERE entity = 'customer'").fetchall()[0]
    assert recorded >= 1
    assert golden["conflicts"].value == recorded and golden["conflicts_this_run"].value == 0
    assert golden["dagster/row_count"].value == 3
    assert "Name" in [c.name for c in golden["dagster/column_schema"].schema.columns]
    assert meta["wave_customer_share"]["dagster/table_name"].value == "wave_customer_share"
    assert "dagster/row_count" not in meta["push_wave_customer"] and meta["push_wave_customer"]["writes"].value == 0


def test_every_asset_has_owners():
    graph = defs().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        assert graph.get(key).owners == ["team:operations"], key
