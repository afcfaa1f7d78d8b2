"""The analyst views of a snapshot, over a store filled through the real `Store`."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from crm_wave.analyst import VIEW_NAMES, create_views, publish_snapshot
from crm_wave.store.db import Store, Version

T0 = datetime(2026, 3, 1, 9, 0, 0)


def _v(system: str, kind: str, sid: str, body: dict | None, *, deleted: bool = False, modified: str | None = None) -> Version:
    digest = hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return Version(f"{system}-{kind}:{sid}", sid, digest, deleted, modified, None, body)


def _rows(path: Path, sql: str, params: list | None = None) -> list[dict]:
    with duckdb.connect(str(path), read_only=True) as con:
        cur = con.execute(sql, params or [])
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


def _columns(path: Path, view: str) -> list[str]:
    with duckdb.connect(str(path), read_only=True) as con:
        return [d[0] for d in con.execute(f"SELECT * FROM {view} LIMIT 0").description]


def test_now_views_unpack_the_body_and_leave_out_deleted_records(tmp_path: Path) -> None:
    store = Store(tmp_path / "crm_wave.duckdb")
    with store.connect() as con:
        store.append_versions(con, "crm_customer", [
            _v("crm", "customer", "C1", {"Id": "C1", "Name": "Acme AS", "Email": "post@acme.no", "CustomerNumber": "K-1",
                                         "Type": "organization", "City": "Oslo"}, modified="2026-03-01T08:00:00.000Z"),
            _v("crm", "customer", "C2", {"Id": "C2", "Name": "Gone Ltd", "Email": "gone@x.io"}),
        ], T0)
        store.append_versions(con, "crm_customer", [_v("crm", "customer", "C2", None, deleted=True)], T0 + timedelta(minutes=1))
        store.append_versions(con, "wave_customer", [
            _v("wave", "customer", "W1", {"id": "W1", "name": "Acme AS", "email": "post@acme.no", "displayId": "K-1",
                                          "currency": {"code": "NOK"}, "address": {"city": "Oslo", "country": {"code": "NO"}}},
               modified="2026-03-01T08:30:00.000Z"),
        ], T0)
        store.append_versions(con, "crm_order", [
            _v("crm", "order", "O1", {"Id": "O1", "OrderNumber": "SO-1", "CustomerId": "C1", "OrderDate": "2026-02-27",
                                      "Total": "30.50", "Lines": [{"ProductId": "P1"}, {"ProductId": "P2"}]}),
        ], T0)
        store.append_versions(con, "wave_invoice", [
            _v("wave", "invoice", "I1", {"id": "I1", "invoiceNumber": "SO-1", "total": {"value": "30.50"},
                                         "customer": {"id": "W1"}, "items": [{"quantity": "1"}]}),
        ], T0)
    snap = publish_snapshot(store, tmp_path / "snaps", T0 + timedelta(hours=1))

    crm = _rows(snap, "SELECT * FROM crm_customers_now")
    assert [r["crm_id"] for r in crm] == ["C1"]  # C2's newest version is a tombstone
    c1 = crm[0]
    assert (c1["name"], c1["email"], c1["customer_number"], c1["type"], c1["city"]) == ("Acme AS", "post@acme.no", "K-1", "organization", "Oslo")
    assert c1["modified_at"] == datetime(2026, 3, 1, 8, 0)
    assert c1["id"] == "crm-customer:C1" and json.loads(c1["body"])["Name"] == "Acme AS"

    (w1,) = _rows(snap, "SELECT * FROM wave_customers_now")
    assert (w1["wave_id"], w1["name"], w1["email"], w1["currency"], w1["city"], w1["country"]) == ("W1", "Acme AS", "post@acme.no", "NOK", "Oslo", "NO")
    assert w1["modified_at"] == datetime(2026, 3, 1, 8, 30)

    (o1,) = _rows(snap, "SELECT order_number, customer_crm_id, order_date, total::VARCHAR AS total, line_count FROM crm_orders_now")
    assert o1 == {"order_number": "SO-1", "customer_crm_id": "C1", "order_date": datetime(2026, 2, 27).date(), "total": "30.50", "line_count": 2}
    (i1,) = _rows(snap, "SELECT invoice_number, customer_wave_id, total::VARCHAR AS total, item_count FROM wave_invoices_now")
    assert i1 == {"invoice_number": "SO-1", "customer_wave_id": "W1", "total": "30.50", "item_count": 1}
    for view in ("crm_products_now", "wave_products_now"):
        assert {"name", "modified_at", "body"} <= set(_columns(snap, view))


def test_golden_views_show_golden_columns_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "crm_wave.duckdb")
    frame = pl.DataFrame({
        "global_id": ["crm-customer:C1"], "crm_id": ["C1"], "wave_id": ["W1"], "how": ["merge:Email"],
        "crm_deleted": [False], "crm_modified": ["2026-03-01T08:00:00Z"], "Name__crm": ["Acme"], "Email__crm": ["a@x.no"],
        "wave_deleted": [False], "wave_modified": ["2026-03-01T08:30:00Z"], "Name__wave": ["Acme AS"], "Email__wave": ["a@x.no"],
        "has_base": [True], "crm_state": ["present"], "wave_state": ["present"], "Name": ["Acme AS"], "Email": ["a@x.no"],
        "Type__crm": ["organization"], "Type__wave": [None], "Type": ["organization"],
    })
    with store.connect() as con:
        store.replace_table(con, "global_customer", frame)
    snap = publish_snapshot(store, tmp_path / "snaps", T0)

    assert _columns(snap, "golden_customers") == ["global_id", "crm_id", "wave_id", "how", "crm_state", "wave_state", "Name", "Email", "Type"]
    assert _rows(snap, "SELECT Name, Type FROM golden_customers") == [{"Name": "Acme AS", "Type": "organization"}]
    assert "Name__crm" in _columns(snap, "global_customer")  # the table itself is still in the snapshot


def test_entity_as_of_returns_the_version_valid_at_that_time(tmp_path: Path) -> None:
    store = Store(tmp_path / "crm_wave.duckdb")
    t1, t2, t3 = T0, T0 + timedelta(hours=2), T0 + timedelta(hours=5)
    with store.connect() as con:
        store.append_versions(con, "crm_product", [_v("crm", "product", "P1", {"Id": "P1", "Name": "Widget", "UnitPrice": "10.00"})], t1)
    with store.connect() as con:
        store.append_versions(con, "crm_product", [
            _v("crm", "product", "P1", {"Id": "P1", "Name": "Widget Pro", "UnitPrice": "12.00"}),
            _v("crm", "product", "P2", {"Id": "P2", "Name": "Gizmo"}),
        ], t2)
    with store.connect() as con:
        store.append_versions(con, "crm_product", [_v("crm", "product", "P2", None, deleted=True)], t3)
    snap = publish_snapshot(store, tmp_path / "snaps", t3 + timedelta(minutes=1))

    history = _rows(snap, "SELECT id, valid_from, valid_to, deleted FROM entity_history WHERE id = 'crm-product:P1' ORDER BY seq")
    assert [(h["valid_from"], h["valid_to"]) for h in history] == [(t1, t2), (t2, None)]

    def names_at(ts: datetime) -> dict[str, tuple[str | None, bool]]:
        rows = _rows(snap, "SELECT source_id, body->>'$.Name' AS name, deleted FROM entity_as_of(?)", [ts])
        return {r["source_id"]: (r["name"], r["deleted"]) for r in rows}

    assert names_at(t1 - timedelta(seconds=1)) == {}
    assert names_at(t1) == {"P1": ("Widget", False)}
    assert names_at(t1 + timedelta(hours=1)) == {"P1": ("Widget", False)}
    assert names_at(t2) == {"P1": ("Widget Pro", False), "P2": ("Gizmo", False)}
    assert names_at(t3 + timedelta(days=1)) == {"P1": ("Widget Pro", False), "P2": (None, True)}
    # A string works as well (the macro casts it).
    assert len(_rows(snap, "SELECT * FROM entity_as_of('2026-03-01 10:00:00')")) == 1


def test_links_conflicts_failures_share_and_log_views(tmp_path: Path) -> None:
    store = Store(tmp_path / "crm_wave.duckdb")
    share = pl.DataFrame({
        "global_id": ["crm-order:O1", "crm-order:O2", "crm-order:O3", "crm-order:O4"],
        "op": ["insert", "update", "delete", "wait"],
        "target_id": [None, "O2", "O3", None], "source_id": ["I1", "I2", "I3", "I4"],
        "changes": ['{"Title": "x"}', '{"Memo": "m"}', "{}", '{"Title": "y"}'],
        "before": ["{}", '{"Memo": null}', "{}", "{}"],
        "reason": [None, None, None, "customer crm-customer:C9 is not linked in crm yet"],
    })
    with store.connect() as con:
        store.upsert_links(con, "customer", [("crm-customer:C1", "C1", "W1", "merge:Email")], T0)
        store.record_conflicts(con, "customer", [{"global_id": "crm-customer:C1", "field": "Phone", "crm_value": "1",
                                                  "wave_value": "2", "base_value": "0", "winner": "wave",
                                                  "reason": "changed on both sides"}], T0)
        store.dead_letter(con, system="wave", entity="customer", global_id="crm-customer:C1", record_id="W1", op="update",
                          field="Email", message="invalid email", now=T0)
        store.replace_table(con, "crm_order_share", share)
        store.replace_table(con, "wave_customer_share", share.head(2).with_columns(pl.lit("crm-customer:C5").alias("global_id")))
        store.log(con, [(T0, "run-1", "wave", "customer", "crm-customer:C1", "W1", "update", {"Phone": "2"}, {"Phone": "1"}, "ok")])
    snap = publish_snapshot(store, tmp_path / "snaps", T0)

    assert _rows(snap, "SELECT * FROM record_links") == [
        {"entity": "customer", "global_id": "crm-customer:C1", "crm_id": "C1", "wave_id": "W1", "how": "merge:Email", "linked_at": T0}]
    (conflict,) = _rows(snap, "SELECT * FROM field_conflicts")
    assert (conflict["field"], conflict["crm_id"], conflict["wave_id"], conflict["winner"]) == ("Phone", "C1", "W1", "wave")
    (failed,) = _rows(snap, "SELECT * FROM failed_records")
    assert (failed["system"], failed["field"], failed["message"], failed["attempts"]) == ("wave", "Email", "invalid email", 1)

    (delete,) = _rows(snap, "SELECT * FROM pending_deletes")
    assert (delete["target_system"], delete["entity"], delete["global_id"], delete["target_id"]) == ("crm", "order", "crm-order:O3", "O3")
    (wait,) = _rows(snap, "SELECT * FROM waiting_records")
    assert (wait["target_system"], wait["entity"], wait["reason"]) == ("crm", "order", "customer crm-customer:C9 is not linked in crm yet")
    planned = _rows(snap, "SELECT target_system, entity, op, changes->>'$.Title' AS title FROM planned_writes ORDER BY target_system, op")
    assert [(p["target_system"], p["entity"], p["op"]) for p in planned] == [
        ("crm", "order", "insert"), ("crm", "order", "update"), ("wave", "customer", "insert"), ("wave", "customer", "update")]
    assert planned[0]["title"] == "x"

    (entry,) = _rows(snap, "SELECT * FROM sync_log_entries")
    assert (entry["run_id"], entry["op"], json.loads(entry["changes"]), entry["outcome"]) == ("run-1", "update", {"Phone": "2"}, "ok")


def test_a_snapshot_before_the_first_pass_has_every_view_empty_and_typed(tmp_path: Path) -> None:
    store = Store(tmp_path / "crm_wave.duckdb")  # bookkeeping tables only: no dataset, global or share table yet
    snap = publish_snapshot(store, tmp_path / "snaps", T0)
    with duckdb.connect(str(snap), read_only=True) as con:
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        macros = {r[0] for r in con.execute("SELECT function_name FROM duckdb_functions() WHERE function_type = 'table_macro'").fetchall()}
        assert set(VIEW_NAMES) - {"entity_as_of"} <= views
        assert "entity_as_of" in macros
        for view in VIEW_NAMES:
            source = "entity_as_of(TIMESTAMP '2026-01-01')" if view == "entity_as_of" else view
            assert con.execute(f"SELECT count(*) FROM {source}").fetchone() == (0,), view
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'entity_history'").fetchall())
        assert types["valid_from"] == "TIMESTAMP" and types["seq"] == "BIGINT" and types["body"] == "JSON"
        assert "OrderNumber" in [d[0] for d in con.execute("SELECT * FROM golden_orders").description]
        assert not [c for c in [d[0] for d in con.execute("SELECT * FROM golden_orders").description] if "__" in c]


def test_a_table_of_another_shape_gives_an_empty_view_not_a_failed_snapshot(tmp_path: Path) -> None:
    store = Store(tmp_path / "crm_wave.duckdb")
    with store.connect() as con:
        store.replace_table(con, "crm_product", pl.DataFrame({"_id": ["g"], "unexpected": [1]}))
        store.append_versions(con, "crm_customer", [_v("crm", "customer", "C1", {"Name": "Acme"})], T0)
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(store.path.read_bytes())
    with duckdb.connect(str(copy)) as con:
        created = create_views(con)
        assert created["crm_customers_now"] == []
        assert created["crm_products_now"] == ["crm_product"]
        assert con.execute("SELECT count(*) FROM crm_products_now").fetchone() == (0,)
        assert con.execute("SELECT name FROM crm_customers_now").fetchall() == [("Acme",)]
        assert create_views(con) == created  # idempotent: every object is CREATE OR REPLACE
