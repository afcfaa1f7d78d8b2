"""What an operator must review is in the snapshot whenever they query it: a push held by the
circuit breaker, a collect run without pushes, and an approval all publish one."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from crm_wave.cli import main


@pytest.fixture
def env(rig, sim_env):
    """The environment the commands read (`sim_env`), pointing at the rig's simulators and store."""
    return rig


def _sql(capsys, query: str) -> list[dict]:
    capsys.readouterr()
    assert main(["sql", query, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_held_push_is_reviewable_in_the_snapshot(env, capsys):
    ids = [env.crm_create("customers", {"Type": "organization", "Name": f"R{i}", "Email": f"r{i}@x.example",
                                        "Phone": "old"})["Id"] for i in range(55)]
    assert main(["sync", "--once", "--quiet"]) == 0
    for cid in ids:
        env.crm.patch("customers", cid, {"Phone": "new"}, if_match=env.crm.get("customers", cid)["Version"])
    assert main(["sync", "--once", "--quiet"]) == 3  # held by the breaker
    rows = _sql(capsys, "SELECT global_id, changes FROM planned_writes WHERE share_table = 'wave_customer_share'")
    assert len(rows) == 55 and all("new" in json.dumps(r["changes"]) for r in rows)
    assert main(["plan", "--format", "json"]) == 2
    planned = [p for p in json.loads(capsys.readouterr().out) if p["system"] == "wave" and p["op"] == "update"]
    assert sorted(p["global_id"] for p in planned) == sorted(r["global_id"] for r in rows)


def test_a_collect_run_publishes_held_deletes_and_an_approval_clears_them(env, capsys):
    from crm_wave.defs.assets import TENANTS
    from crm_wave.definitions import defs

    c = env.crm_create("customers", {"Type": "organization", "Name": "Gone", "Email": "gone@x.example"})
    assert main(["sync", "--once", "--quiet"]) == 0
    env.crm.delete("customers", c["Id"], if_match=None)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(TENANTS.name, ["default"])
    result = defs().resolve_job_def("collect_job").execute_in_process(instance=instance, partition_key="default")
    assert result.success
    capsys.readouterr()
    assert main(["deletes"]) == 0
    assert "1 delete(s) waiting" in capsys.readouterr().out
    rows = _sql(capsys, "SELECT global_id FROM pending_deletes")
    assert rows == [{"global_id": f"crm-customer:{c['Id']}"}]
    assert main(["deletes", "approve", f"crm-customer:{c['Id']}"]) == 0
    assert _sql(capsys, "SELECT global_id FROM pending_deletes") == []  # no sync needed to see it
