"""`crm-wave sync` (repeating) skips the pass of an idle tenant: a look at both systems' change
heads decides, and only a change (or the first look) costs a pass."""

from __future__ import annotations

from crm_wave.cli import _changed


def test_an_idle_tenant_costs_a_look_not_a_pass(sim_env):
    from crm_wave.systems.crm.client import CrmClient

    crm_sim, _ = sim_env
    changed, marks = _changed("default", None)
    assert changed and marks  # the first look always syncs
    changed, marks = _changed("default", marks)
    assert not changed  # nothing happened in either system
    with CrmClient(base_url=crm_sim.url, token=crm_sim.token) as crm:
        crm.create("customers", {"Type": "organization", "Name": "Idle No More", "Email": "i@x.example"},
                   idempotency_key="idle-1")
    changed, marks = _changed("default", marks)
    assert changed
    assert _changed("default", marks)[0] is False
