"""Small reads built from Python rows (`fetch_frame`) give the frame `.pl()` gives: the same columns, types and values."""

from __future__ import annotations

import duckdb
import pytest

from crm_wave.store.connection import FEW_IDS, fetch_frame

_TYPES = ("a VARCHAR, b BOOLEAN, c TIMESTAMP, d BIGINT, e DOUBLE, f DECIMAL(18,2), g INTEGER, h JSON, i DATE, "
          "j VARCHAR[], k TIMESTAMPTZ")


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t ({_TYPES})")
    con.execute("INSERT INTO t SELECT 'x' || i, i % 2 = 0, TIMESTAMP '2026-01-01' + INTERVAL (i) SECOND, i, i / 3, "
                "i / 7, i, '{\"k\": 1}', DATE '2026-01-01' + i::INTEGER, ['a', NULL], TIMESTAMPTZ '2026-01-01 00:00:00+00' "
                "FROM range(200) r(i)")
    con.execute("INSERT INTO t VALUES (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)")
    yield con
    con.close()


@pytest.mark.parametrize("columns", ["a, b, c, d, e, f, g, h, i", "a, j", "a, k", "*"])
@pytest.mark.parametrize("rows", [0, 1, FEW_IDS, FEW_IDS + 1, 201])
def test_a_small_read_equals_arrow(con, columns, rows):
    sql = f"SELECT {columns} FROM t ORDER BY d NULLS FIRST LIMIT ?"
    want = con.execute(sql, [rows]).pl()
    got = fetch_frame(con, sql, [rows])
    assert got.schema == want.schema
    assert got.equals(want)
    assert fetch_frame(con, sql, [rows], small=False).equals(want)
