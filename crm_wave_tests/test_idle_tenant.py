"""`crm-wave sync` (repeating) skips the pass of an idle tenant: a look at both systems' change
heads decides, and only a change (or the first look) costs a pass."""

from __future__ import annotations

from crm_wave.cli import _changed, _loop_turn


def test_an_idle_tenant_costs_a_look_not_a_pass(sim_env):
    from crm_wave.systems.crm.client import CrmClient

    crm_sim, _ = sim_env
    changed, marks, moved = _changed("default", None)
    assert changed and marks and moved is None  # the first look always syncs, every stage
    changed, marks, _ = _changed("default", marks)
    assert not changed  # nothing happened in either system
    with CrmClient(base_url=crm_sim.url, token=crm_sim.token) as crm:
        crm.create("customers", {"Type": "organization", "Name": "Idle No More", "Email": "i@x.example"},
                   idempotency_key="idle-1")
    changed, marks, moved = _changed("default", marks)
    assert changed and moved == {"crm_customer"}  # the sync collects what moved, and what follows
    assert _changed("default", marks)[0] is False


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
    moved = frozenset({"crm_customer"})
    assert _loop_turn(False, frozenset(), last_every_stage=1000.0, every_stage_s=900.0, now=1500.0) == (False, frozenset())
    assert _loop_turn(True, moved, last_every_stage=1000.0, every_stage_s=900.0, now=1500.0) == (True, moved)
    # Due: every stage, with or without a change (what moves no head: strict-mode payments, retries, decisions).
    assert _loop_turn(False, frozenset(), last_every_stage=1000.0, every_stage_s=900.0, now=1900.0) == (True, None)
    assert _loop_turn(True, moved, last_every_stage=1000.0, every_stage_s=900.0, now=2500.0) == (True, None)
