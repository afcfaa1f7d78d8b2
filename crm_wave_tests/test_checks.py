"""Asset checks and asset previews read only what they need from DuckDB, and still find what is wrong."""

from pathlib import Path

from crm_wave.defs.assets import _preview
from crm_wave.defs.checks import order_total_mismatches
from crm_wave.defs.resources import SyncResource


def _golden_orders(sync: SyncResource, rows: list[tuple]) -> None:
    store = sync.store("default")
    with store.connect() as con:
        con.execute("CREATE TABLE global_order (global_id VARCHAR, crm_state VARCHAR, wave_state VARCHAR, "
                    "Total__crm VARCHAR, Total__wave VARCHAR, OrderNumber VARCHAR)")
        con.executemany("INSERT INTO global_order VALUES (?, ?, ?, ?, ?, ?)", rows)


def test_order_totals_check_compares_linked_pairs_as_decimals(tmp_path: Path):
    sync = SyncResource(data_root=str(tmp_path))
    _golden_orders(sync, [
        ("g1", "present", "present", "10", "10.00", None),   # equal as decimals
        ("g2", "present", "present", "12.50", "12.5", None),
        ("g3", "present", "present", "99", "98.99", None),   # mismatch
        ("g4", "present", "absent", "5", None, None),        # not linked: not compared
        ("g5", "present", "present", "7", "7", None),
        ("g6", "present", "present", "x", "1", None),        # unreadable: a mismatch
    ])
    compared, mismatched = order_total_mismatches(sync.store("default"))
    assert compared == 5
    assert mismatched == ["g3: CRM 99 vs Wave 98.99", "g6: CRM x vs Wave 1"]


def test_preview_reads_the_first_rows_of_the_merged_columns(tmp_path: Path):
    sync = SyncResource(data_root=str(tmp_path))
    _golden_orders(sync, [(f"g{i}", "present", "present", "1", "1", f"SO-{i}") for i in range(25)])
    text = _preview(sync.store("default"), "global_order", n=3).value
    lines = text.splitlines()
    assert lines[0] == "| global_id | crm_state | wave_state | OrderNumber |"
    assert len(lines) == 2 + 3
    assert _preview(sync.store("default"), "missing_table").value == "_empty_"


def test_open_conflicts_check_lists_waiting_fields(tmp_path: Path):
    from datetime import datetime

    import polars as pl

    from crm_wave.defs.checks import open_conflicts
    from crm_wave.store.queue import reconcile

    store = SyncResource(data_root=str(tmp_path)).store("default")
    assert open_conflicts(store, "product") == []
    waits = pl.DataFrame([{"global_id": "g1", "field": "Name", "crm_value": "Nordic", "wave_value": "nordic",
                           "base_value": None, "kind": "first_sync", "crm_modified": None, "wave_modified": None}])
    empty = pl.DataFrame(schema={"global_id": pl.String, "field": pl.String, "status": pl.String})
    with store.connect() as con:
        assert reconcile(con, "product", waits, empty, datetime(2026, 1, 1)) == 1
        assert reconcile(con, "product", waits, empty, datetime(2026, 1, 2)) == 0  # recorded once
    (line,) = open_conflicts(store, "product")
    assert 'product g1 Name: CRM "Nordic" vs Wave "nordic"' in line and "first sync" in line
    assert open_conflicts(store, "customer") == []


def test_order_totals_check_says_what_the_lines_add_up_to(tmp_path: Path):
    sync = SyncResource(data_root=str(tmp_path))
    lines = '[{"Quantity":"0.50","UnitPrice":"3580.99"},{"Quantity":"2.50","UnitPrice":"839.65"}]'
    with sync.store("default").connect() as con:
        con.execute("CREATE TABLE global_order (global_id VARCHAR, crm_state VARCHAR, wave_state VARCHAR, "
                    "Total__crm VARCHAR, Total__wave VARCHAR, Lines VARCHAR, Currency VARCHAR)")
        con.execute("INSERT INTO global_order VALUES ('g1', 'present', 'present', '3889.62', '3889.63', ?, 'NOK')",
                    [lines])
    _, mismatched = order_total_mismatches(sync.store("default"))
    assert mismatched == ["g1: CRM 3889.62 vs Wave 3889.63; its lines add up to 3889.63"]
