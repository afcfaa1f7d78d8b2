"""`run_sql`: read-only queries on a snapshot, as an aligned table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path

import pytest

from crm_wave.analyst import ReadOnlyError, publish_snapshot, run_sql
from crm_wave.store.db import Store, Version

T0 = datetime(2026, 3, 1, 9, 0, 0)
QUERY = """
SELECT * FROM (VALUES
    (1, 'Acme AS', DATE '2026-03-01', 1.50::DECIMAL(10, 2), NULL, TIMESTAMP '2026-03-01 09:00:00', '{"a": [1, 2]}'::JSON, true),
    (22, 'Bø', DATE '2026-03-02', 10.25::DECIMAL(10, 2), 'x', TIMESTAMP '2026-03-02 10:30:00', NULL::JSON, false)
) AS t(n, name, day, amount, note, seen_at, doc, ok) ORDER BY n
"""


@pytest.fixture
def snap(tmp_path: Path) -> Path:
    store = Store(tmp_path / "crm_wave.duckdb")
    with store.connect() as con:
        store.append_versions(con, "crm_customer", [
            Version("crm-customer:C1", "C1", "h1", False, None, 1, {"Id": "C1", "Name": "Acme AS", "Email": "a@acme.no"}),
        ], T0)
        store.upsert_links(con, "customer", [("crm-customer:C1", "C1", None, "created:crm")], T0)
    return publish_snapshot(store, tmp_path / "snaps", T0)


def test_table_format_is_aligned_with_a_header(snap: Path) -> None:
    out = run_sql(snap, QUERY)
    lines = out.splitlines()
    assert lines[0].split(" | ") == ["n ", "name   ", "day       ", "amount", "note", "seen_at            ", "doc          ", "ok"]
    assert set(lines[1]) == {"-", "+"}
    assert lines[2] == " 1 | Acme AS | 2026-03-01 |   1.50 | NULL | 2026-03-01T09:00:00 | {\"a\": [1, 2]} | true"
    assert lines[3] == "22 | Bø      | 2026-03-02 |  10.25 | x    | 2026-03-02T10:30:00 | NULL          | false"
    assert lines[-1] == "(2 rows)"
    # every row's column separators line up with the header's
    bars = {tuple(i for i, ch in enumerate(line) if ch in "|+") for line in lines[:4]}
    assert len(bars) == 1
    assert "crm_customers_now" not in out and run_sql(snap, "SELECT name FROM crm_customers_now").splitlines()[2] == "Acme AS"


def test_csv_format(snap: Path) -> None:
    rows = list(csv.reader(io.StringIO(run_sql(snap, QUERY, fmt="csv"))))
    assert rows == [
        ["n", "name", "day", "amount", "note", "seen_at", "doc", "ok"],
        ["1", "Acme AS", "2026-03-01", "1.50", "", "2026-03-01T09:00:00", '{"a": [1, 2]}', "true"],
        ["22", "Bø", "2026-03-02", "10.25", "x", "2026-03-02T10:30:00", "", "false"],
    ]


def test_json_format_is_a_list_of_objects_with_dates_and_decimals_as_strings(snap: Path) -> None:
    data = json.loads(run_sql(snap, QUERY, fmt="json"))
    assert data == [
        {"n": 1, "name": "Acme AS", "day": "2026-03-01", "amount": "1.50", "note": None, "seen_at": "2026-03-01T09:00:00",
         "doc": {"a": [1, 2]}, "ok": True},
        {"n": 22, "name": "Bø", "day": "2026-03-02", "amount": "10.25", "note": "x", "seen_at": "2026-03-02T10:30:00",
         "doc": None, "ok": False},
    ]
    assert json.loads(run_sql(snap, "SELECT * FROM record_links WHERE false", fmt="json")) == []
    (link,) = json.loads(run_sql(snap, "SELECT crm_id, linked_at FROM record_links", fmt="json"))
    assert link == {"crm_id": "C1", "linked_at": "2026-03-01T09:00:00"}


@pytest.mark.parametrize("statement", [
    "INSERT INTO links VALUES ('customer', 'g2', 'C2', NULL, 'x', TIMESTAMP '2026-01-01')",
    "DELETE FROM links",
    "UPDATE crm_customer SET _deleted = true",
    "CREATE TABLE scratch AS SELECT 1 AS x",
    "DROP VIEW crm_customers_now",
    "ATTACH '{dir}/other.duckdb' AS other",
    "COPY links TO '{dir}/links.csv'",
])
def test_a_write_is_refused_and_changes_nothing(snap: Path, statement: str) -> None:
    before = run_sql(snap, "SELECT * FROM links", fmt="csv") + run_sql(snap, "SELECT count(*) FROM crm_customers_now", fmt="csv")
    with pytest.raises(ReadOnlyError, match="read-only|other files"):
        run_sql(snap, statement.format(dir=snap.parent))
    after = run_sql(snap, "SELECT * FROM links", fmt="csv") + run_sql(snap, "SELECT count(*) FROM crm_customers_now", fmt="csv")
    assert after == before
    assert sorted(p.name for p in snap.parent.iterdir()) == [snap.name, "segments"]  # nothing written beside it


def test_bad_arguments_fail_clearly(snap: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown format"):
        run_sql(snap, "SELECT 1", fmt="xml")
    with pytest.raises(FileNotFoundError, match="no snapshot"):
        run_sql(tmp_path / "missing.duckdb", "SELECT 1")
