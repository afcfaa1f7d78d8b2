"""Analyst ergonomics: typed golden views, one record's history across both systems under canonical
names, and snapshot retention by count, age and size."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

from crm_wave.analyst.snapshot import Retention, list_snapshots, publish_now, publish_snapshot
from crm_wave.config.settings import ConfigError
from crm_wave.store.db import Store
from crm_wave.systems.wave.client import Mutation

T0 = dt.datetime(2026, 3, 1, 9, 0, 0)


def _rows(path: Path, sql: str) -> list[dict]:
    with duckdb.connect(str(path), read_only=True) as con:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


def test_golden_views_are_typed(tmp_path: Path) -> None:
    store = Store(tmp_path / "crm_wave.duckdb")
    with store.connect() as con:
        store.replace_table(con, "global_order", pl.DataFrame({
            "global_id": ["crm-order:O1"], "crm_id": ["O1"], "wave_id": ["W1"], "how": ["merge"],
            "crm_state": ["present"], "wave_state": ["present"], "OrderNumber": ["SO-1"], "OrderDate": ["2026-02-27"],
            "Total": ["9664.28"], "Lines": ['[{"Quantity":"2.00","UnitPrice":"1.50"}]'], "Total__crm": ["9664.28"]}))
        store.replace_table(con, "global_product", pl.DataFrame({
            "global_id": ["crm-product:P1"], "crm_state": ["present"], "wave_state": ["present"], "Name": ["Widget"],
            "UnitPrice": ["12.34567"], "IsArchived": ["true"]}))
    snap = publish_snapshot(store, tmp_path / "snaps", T0)
    (order,) = _rows(snap, "SELECT OrderNumber, OrderDate, Total, Lines->>'$[0].Quantity' AS q FROM golden_orders")
    assert order == {"OrderNumber": "SO-1", "OrderDate": dt.date(2026, 2, 27), "Total": Decimal("9664.28"), "q": "2.00"}
    (product,) = _rows(snap, "SELECT UnitPrice, IsArchived FROM golden_products")
    assert product == {"UnitPrice": Decimal("12.34567"), "IsArchived": True}
    with duckdb.connect(str(snap), read_only=True) as con:
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'golden_orders'").fetchall())
    assert types["Total"] == "DECIMAL(18,2)" and types["OrderDate"] == "DATE" and types["Lines"] == "JSON"
    assert types["OrderNumber"] == "VARCHAR"
    with duckdb.connect(str(snap), read_only=True) as con:  # typed even before the first pass wrote the table
        assert con.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'golden_customers' "
                           "AND column_name = 'Name'").fetchall() == [("VARCHAR",)]


def test_record_history_follows_one_record_through_both_systems(rig) -> None:
    c = rig.crm_create("customers", {"Type": "organization", "Name": "History AS", "Email": "hist@x.example",
                                     "Phone": "+47 1"})
    rig.sync()
    wave_id = next(w["id"] for w in rig.wave.list_customers() if w["name"] == "History AS")
    [done] = rig.wave.mutate([Mutation("customerPatch", {"id": wave_id, "phone": "+47 2"}, "p")])
    assert done.ok, done.errors
    rig.sync()
    snap = publish_now(rig.store)
    rows = _rows(snap, "SELECT system, source_id, fields->>'Phone' AS phone, fields->>'Name' AS name "
                       f"FROM record_history WHERE global_id = 'crm-customer:{c['Id']}' ORDER BY valid_from, system")
    seen = [(r["system"], r["phone"]) for r in rows]
    assert seen[0] == ("crm", "+47 1")  # created in the CRM
    assert [p for s, p in seen if s == "wave"] == ["+47 1", "+47 2"]  # sent to Wave, then edited there
    assert seen[-1] == ("crm", "+47 2")  # and carried back to the CRM
    assert {r["source_id"] for r in rows} == {c["Id"], wave_id} and {r["name"] for r in rows} == {"History AS"}


def _publish_many(store: Store, snaps: Path, minutes: list[int], retention: Retention) -> list[str]:
    for m in minutes:
        publish_snapshot(store, snaps, T0 + dt.timedelta(minutes=m), retention=retention)
    return [p.name[len("crm_wave-20260301T"):][:4] for p in list_snapshots(snaps)]


def test_retention_by_age_and_size(tmp_path: Path) -> None:
    store = Store(tmp_path / "data" / "crm_wave.duckdb")
    kept = _publish_many(store, tmp_path / "a", [0, 10, 20, 30, 40],
                         Retention(keep=100, max_age=dt.timedelta(minutes=15), max_bytes=2**40))
    assert kept == ["0930", "0940"]  # 09:40 and the one 10 minutes before; 20 minutes is too old
    size = next(iter(list_snapshots(tmp_path / "a"))).stat().st_size
    kept = _publish_many(store, tmp_path / "b", [0, 1, 2, 3, 4],
                         Retention(keep=100, max_age=dt.timedelta(days=1), max_bytes=int(size * 2.5)))
    assert kept == ["0903", "0904"]
    kept = _publish_many(store, tmp_path / "c", [0, 60], Retention(keep=5, max_age=dt.timedelta(minutes=1),
                                                                   max_bytes=1))
    assert kept == ["1000"]  # the newest stays whatever its age or size


def test_retention_defaults_and_variables() -> None:
    assert Retention.from_env({}) == Retention(keep=48, max_age=dt.timedelta(hours=24), max_bytes=256 * 2**20)
    assert Retention.from_env({"CRM_WAVE_SNAPSHOT_MAX_AGE_HOURS": "0.5", "CRM_WAVE_SNAPSHOT_MAX_MB": "10",
                               "CRM_WAVE_SNAPSHOT_KEEP": "3"}) == Retention(3, dt.timedelta(minutes=30), 10 * 2**20)
    with pytest.raises(ConfigError, match="CRM_WAVE_SNAPSHOT_MAX_MB='lots'"):
        Retention.from_env({"CRM_WAVE_SNAPSHOT_MAX_MB": "lots"})
