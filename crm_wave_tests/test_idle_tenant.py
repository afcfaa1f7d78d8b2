"""`crm-wave sync` (repeating) skips the pass of an idle tenant: a look at both systems' change
heads decides, and only a change (or the first look) costs a pass."""

from __future__ import annotations

from crm_wave.cli import _Looks, _settings
from crm_wave.sync.heads import Look
from crm_wave.sync.state import TenantState, decide


def test_an_idle_tenant_costs_a_look_not_a_pass(sim_env):
    from crm_wave.systems.crm.client import CrmClient

    crm_sim, _ = sim_env
    looks = _Looks("default", _settings("default"), 900.0, "policy")
    try:
        first = looks.decide()
        assert first.run and first.every_stage and looks.found.marks  # the first look always syncs, every stage
        looks.done(first, looks.found.marks, 1, [])
        assert not looks.decide().run  # nothing happened in either system
        with CrmClient(base_url=crm_sim.url, token=crm_sim.token) as crm:
            crm.create("customers", {"Type": "organization", "Name": "Idle No More", "Email": "i@x.example"},
                       idempotency_key="idle-1")
        moved = looks.decide()
        assert moved.run and moved.changed == {"crm_customer"}  # the sync collects what moved, and what follows
        looks.done(moved, looks.found.marks, 1, [])
        assert not looks.decide().run
    finally:
        looks.close()


def test_a_crm_without_change_feed_is_left_to_the_schedule_not_read_whole_every_look(wave_sim):
    """The offset-style CRM has no feed: a look does not read it (that would be a full read every
    10 s) and never reports it changed; Wave is still looked at."""
    from crm_wave.sync.heads import NO_FEED, look
    from crm_wave.systems.crm.client import CrmClient
    from crm_wave.systems.crm.profile import load_profile
    from crm_wave.systems.wave.client import WaveClient

    class Counting(CrmClient):
        reads = 0

        def read_changes(self, *a, **kw):
            Counting.reads += 1
            return super().read_changes(*a, **kw)

    with Counting(base_url="http://127.0.0.1:9/api/v1", token="t", profile=load_profile("offset")) as crm, \
            WaveClient(url=wave_sim.url, token=wave_sim.token) as wave:
        first = look(crm, wave, None)
        again = look(crm, wave, first.marks)
    assert {v for k, v in first.marks.items() if k.startswith("crm:")} == {NO_FEED}
    assert again.changed == () and Counting.reads == 0


def test_the_sync_loop_runs_every_stage_when_its_period_is_due_and_what_moved_otherwise():
    marks = {"crm:customers": "5", "wave:customers": "x|1|3"}
    moved = Look(marks=marks, changed=("crm:customers",), first=False)
    idle = Look(marks=marks, changed=(), first=False)
    st = TenantState(marks=marks, last_pass=1000.0)
    assert not decide(st, idle, every_s=900.0, now=1500.0).run
    assert decide(st, moved, every_s=900.0, now=1500.0).changed == {"crm_customer"}
    # Due: every stage, with or without a change (what moves no head: strict-mode payments, retries, decisions).
    assert decide(st, idle, every_s=900.0, now=1900.0).every_stage
    assert decide(st, moved, every_s=900.0, now=2500.0).every_stage
    # Asked for by an operator's command since the last pass of every stage; a system that did not answer.
    assert decide(TenantState(marks=marks, last_pass=1000.0, asked=1200.0, asked_by="deadletters retry"), idle,
                  every_s=900.0, now=1500.0).why.startswith("deadletters retry at ")
    assert not decide(TenantState(marks=marks, last_pass=1300.0, asked=1200.0), idle, every_s=900.0, now=1500.0).run
    assert decide(st, None, every_s=900.0, now=1500.0, unreachable="wave").why == "wave did not answer"
    assert decide(st, idle, every_s=900.0, now=1500.0, force=True).every_stage
