"""The store's file format: a new file is created in DuckDB's newest storage format, where a dataset's
bodies, `agreed`'s values and `links`' ids are compressed with zstd; a file created in an older format keeps
it, gets no zstd (there it would store the strings uncompressed) and syncs as before."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from crm_wave.store.connection import close_kept, schema_sql, zstd_clause
from crm_wave.store.datasets import VERSION_SCHEMA, body_text, dataset_sql
from crm_wave.store.db import Store

NOW = datetime(2026, 1, 1)


def _versions(n: int) -> pl.DataFrame:
    bodies = [body_text({"Id": f"C{i}", "Name": f"Customer {i} of a sync that writes bodies", "Email": f"c{i}@example.com"})
              for i in range(n)]
    return pl.DataFrame({"_id": [f"crm-customer:C{i}" for i in range(n)], "_source_id": [f"C{i}" for i in range(n)],
                         "_hash": [None] * n, "_deleted": [False] * n, "_modified": [None] * n, "_version": [1] * n,
                         "body": bodies}, schema=VERSION_SCHEMA)


def _format_and_body_compression(path: Path, table: str = "crm_customer", column: str = "body") -> tuple[str, set[str]]:
    """The file's storage version and the compressions of a column's segments, once checkpointed, read by a
    process of its own. Read in the test's process (after its store had closed the file), the bodies read
    "Uncompressed", as rows not yet checkpointed do, three times in full runs (twice on 2026-11-30, once on
    2026-12-02) and never alone, a CHECKPOINT asked for first: the cause was not found. A new process opens
    the file as a new instance, nothing of this one's state shared. Bodies given zstd in an older format
    still read "Uncompressed" after it."""
    close_kept()  # a file this process keeps open cannot be opened by another
    script = (
        "import duckdb, json, sys\n"
        "con = duckdb.connect(sys.argv[1])\n"
        "con.execute('CHECKPOINT')\n"
        "((tags,),) = con.execute('SELECT tags FROM duckdb_databases() WHERE database_name = current_database()').fetchall()\n"
        "kinds = sorted({k for (k,) in con.execute(\"SELECT DISTINCT compression FROM pragma_storage_info(?) \"\n"
        "    \"WHERE column_name = ? AND segment_type <> 'VALIDITY'\", [sys.argv[2], sys.argv[3]]).fetchall()})\n"
        "print(json.dumps([tags['storage_version'], kinds]))\n")
    out = subprocess.run([sys.executable, "-c", script, str(path), table, column], capture_output=True, text=True, check=True)
    version, kinds = json.loads(out.stdout)
    return version, set(kinds)


def _write(store: Store, n: int) -> int:
    with store.connect() as con:
        return store.append_frame(con, "crm_customer", _versions(n), NOW)  # closing the file checkpoints it


def test_a_new_file_is_in_the_newest_format_with_zstd_bodies(tmp_path: Path) -> None:
    store = Store(tmp_path / "sync.duckdb")
    assert _write(store, 5000) == 5000
    version, kinds = _format_and_body_compression(store.path)
    assert version >= "v1.2.0", version
    assert "ZSTD" in kinds, kinds
    with store.connect() as con:  # the bodies read back as the JSON written
        assert con.execute("SELECT body->>'$.Email' FROM crm_customer WHERE _source_id = 'C42'").fetchall() == [("c42@example.com",)]
    assert _write(store, 5000) == 0  # unchanged versions write nothing


def test_a_file_in_an_older_format_keeps_it_and_compresses_as_before(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    duckdb.connect(str(path), config={"storage_compatibility_version": "v1.0.0"}).close()
    store = Store(path)
    assert _write(store, 5000) == 5000
    version, kinds = _format_and_body_compression(path)
    assert version.startswith("v1.0"), version
    # zstd asked for in this format would store the bodies uncompressed: the statements ask for none. (The
    # segments' own compression is judged as "no ZSTD" only: "Uncompressed" is what the unexplained reads of
    # `_format_and_body_compression` gave, with these statements.)
    assert "ZSTD" not in kinds, kinds
    with store.connect() as con:
        assert zstd_clause(con) == ""
        assert "USING COMPRESSION" not in dataset_sql(con, "crm_customer") + schema_sql(con)
        assert con.execute("SELECT count(*) FROM crm_customer_current").fetchall() == [(5000,)]


def test_an_id_read_twice_in_one_frame_gets_a_version_each_time_it_changed(tmp_path: Path) -> None:
    """A read that returns a record twice (it changed while the read paged) appends its versions in order; the
    same body twice is one version. (A frame of distinct ids takes one round, the common case.)"""
    store = Store(tmp_path / "sync.duckdb")
    bodies = [body_text({"Id": "C1", "Name": name}) for name in ("first", "second", "second", "third")]
    frame = pl.DataFrame({"_id": ["crm-customer:C1"] * 4 + ["crm-customer:C2"], "_source_id": ["C1"] * 4 + ["C2"],
                          "_hash": [None] * 5, "_deleted": [False] * 5, "_modified": [None] * 5, "_version": [1] * 5,
                          "body": [*bodies, body_text({"Id": "C2"})]}, schema=VERSION_SCHEMA)
    with store.connect() as con:
        assert store.append_frame(con, "crm_customer", frame, NOW) == 4
        rows = con.execute("SELECT _source_id, body->>'$.Name', _previous IS NULL FROM crm_customer ORDER BY _seq").fetchall()
    assert [r for r in rows if r[0] == "C1"] == [("C1", "first", True), ("C1", "second", False), ("C1", "third", False)]
    assert ("C2", None, True) in rows


def _agree_and_link(store: Store, n: int) -> None:
    ids = [f"crm-customer:C{i}" for i in range(n)]
    links = pl.DataFrame({"global_id": ids, "crm_id": [f"C{i}" for i in range(n)], "wave_id": [f"QnVzaW5lc3M6{i:08d}" for i in range(n)],
                          "how": ["merge:Email"] * n})
    agreed = pl.DataFrame({"global_id": ids, "Name": [f"Customer {i} of a sync that agrees" for i in range(n)],
                           "Email": [f"c{i}@example.com" for i in range(n)], "Phone": [None] * n})
    with store.connect() as con:
        store.upsert_links(con, "customer", links, NOW, fresh=True)
        store.upsert_agreed(con, "customer", agreed, NOW, fresh=True)


def test_agreed_values_and_link_ids_are_zstd_in_a_new_file_and_read_back(tmp_path: Path) -> None:
    """The global step's bulk writes besides the golden table (a rebuild's agreed values and links) are long
    strings: zstd writes them faster than DuckDB's default string compression, and smaller (docs/benchmarks.md,
    "Session 27"). An older format keeps its default."""
    for path, newest in ((tmp_path / "new.duckdb", True), (tmp_path / "old.duckdb", False)):
        if not newest:
            duckdb.connect(str(path), config={"storage_compatibility_version": "v1.0.0"}).close()
        store = Store(path)
        _agree_and_link(store, 5000)
        for table, column in (("agreed", "values"), ("links", "global_id"), ("links", "wave_id")):
            _, kinds = _format_and_body_compression(path, table, column)
            assert ("ZSTD" in kinds) is newest, (path.name, table, column, kinds)
        with store.connect() as con:
            frame = store.read_agreed_frame(con, "customer", ["Name", "Email", "Phone"], pl.Series(["crm-customer:C42"]))
            assert frame.row(0) == ("crm-customer:C42", "Customer 42 of a sync that agrees", "c42@example.com", None)
            assert con.execute("SELECT wave_id FROM links WHERE global_id = 'crm-customer:C42'").fetchall() == [("QnVzaW5lc3M600000042",)]
