"""The end-to-end flows with the golden tables and the datasets stored as Parquet parts
(crm_wave/store/files.py), as a large store's are: every rebuild writes files here (`FILES_PAST` 0),
incremental steps their changed rows, and every append of versions a part (`FILES_FROM` 1)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import crm_wave.store.datasets as datasets
import crm_wave.sync.global_step as global_step
from crm_wave.store import files
from crm_wave.sync.plan import plan
from crm_wave_tests.sync import test_end_to_end as e2e


@pytest.fixture(autouse=True)
def _golden_as_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(global_step, "FILES_PAST", 0)
    monkeypatch.setattr(datasets, "FILES_FROM", 1)


def _backed(rig) -> set[str]:
    with rig.store.connect() as con:
        return {name for name, _ in files.generations(con)}


def test_every_flow_creates_in_wave(rig):
    e2e.test_crm_records_are_created_in_wave_with_every_flow(rig)
    assert _backed(rig) == {"global_customer", "global_product", "global_order", "crm_customer", "crm_product", "crm_order",
                            "wave_customer", "wave_product", "wave_invoice"}


def test_wave_records_are_created_in_the_crm(rig):
    e2e.test_wave_records_are_created_in_the_crm(rig)
    assert "global_customer" in _backed(rig)


def test_edits_reach_the_other_side_through_changed_rows_and_no_echo(rig):
    e2e.test_edits_on_each_side_reach_the_other_and_no_echo(rig)
    with rig.store.connect() as con:  # the edits' passes were incremental: rows over the rebuild's parts
        assert con.execute(f"SELECT count(*) FROM {files.changed_table('global_customer')}").fetchall()[0][0] >= 1


def test_deletes_are_held_then_approved(rig):
    e2e.test_deletes_on_either_side_are_held_then_approved(rig)


def test_a_dry_run_on_a_copy_shows_the_edit_and_leaves_the_files_alone(rig):
    c = rig.crm_create("customers", {"Type": "organization", "Name": "Plan Co", "Email": "plan@co.example"})
    rig.sync(full=True)
    with rig.store.connect() as con:
        before = sorted(p for _, paths in files.generations(con) for p in paths)
    rig.crm.patch("customers", c["Id"], {"Phone": "+47 555"}, if_match=rig.crm.get("customers", c["Id"])["Version"])
    planned = plan(rig.store, {"crm": rig.crm, "wave": rig.wave}, datetime.now(UTC))
    assert [(p.system, p.op, p.fields.get("Phone", (None, None))[1]) for p in planned] == [("wave", "update", "+47 555")]
    with rig.store.connect() as con:
        assert sorted(p for _, paths in files.generations(con) for p in paths) == before
    assert all(p.is_file() for p in before)
    (w,) = rig.wave.list_customers()
    assert w.get("phone") != "+47 555"  # a dry run writes nothing
    rig.sync()
    assert rig.wave.list_customers()[0]["phone"] == "+47 555"
