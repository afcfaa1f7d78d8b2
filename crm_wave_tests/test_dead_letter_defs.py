"""Dead letters in Dagster: a failing WARN check on the push that lists the refused records, and a
job with config that retries them (what the UI's Launchpad runs)."""

from __future__ import annotations

import dagster as dg

from crm_wave.defs.assets import TENANTS
from crm_wave.definitions import defs


def _evaluations(result: dg.ExecuteInProcessResult, name: str) -> dict[str, object]:
    out = {}
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if evaluation.check_name == name:
                out[evaluation.asset_key.to_user_string()] = evaluation
    return out


def test_dead_letters_fail_a_warning_check_and_are_retried_by_a_job(sim_env, rig):
    biz = rig.wave.business_id
    rig.wave_write("customerCreate", {"businessId": biz, "name": "A", "email": "a@x.example", "displayId": "SAME"})
    rig.wave_write("customerCreate", {"businessId": biz, "name": "B", "email": "b@x.example", "displayId": "SAME"})
    rig.crm_create("customers", {"Type": "organization", "Name": "Fine AS", "Email": "fine@x.example"})
    d = defs()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(TENANTS.name, ["default"])
    result = d.resolve_job_def("sync_job").execute_in_process(instance=instance, partition_key="default",
                                                              raise_on_error=False)
    checks = _evaluations(result, "no_dead_letters")
    assert set(checks) == {"push_crm_customer", "push_wave_customer", "push_crm_product", "push_wave_product",
                           "push_crm_order", "push_wave_invoice"}
    failing = {k: v for k, v in checks.items() if not v.passed}
    assert list(failing) == ["push_crm_customer"]  # the CRM refused the second customer with the same number
    check = failing["push_crm_customer"]
    assert check.severity == dg.AssetCheckSeverity.WARN
    with rig.store.connect() as con:
        (gid, attempts), = con.execute("SELECT global_id, attempts FROM dead_letters").fetchall()
    assert attempts == 1
    assert check.metadata["dead_letters"].value == 1
    assert gid in check.metadata["records"].value and "CustomerNumber" in check.metadata["records"].value
    assert checks["push_wave_customer"].passed

    job = d.resolve_job_def("retry_dead_letters_job")
    bad = job.execute_in_process(instance=instance, raise_on_error=False, run_config={
        "ops": {"retry_dead_letters": {"config": {"global_ids": ["wave-customer:nope"]}}}})
    assert not bad.success
    with rig.store.connect() as con:
        con.execute("UPDATE dead_letters SET attempts = 3")  # parked
    done = job.execute_in_process(instance=instance, run_config={
        "ops": {"retry_dead_letters": {"config": {"tenant": "default", "global_ids": [gid]}}}})
    assert done.success and done.output_for_node("retry_dead_letters") == 1
    with rig.store.connect() as con:
        assert con.execute("SELECT attempts FROM dead_letters").fetchall() == [(0,)]
