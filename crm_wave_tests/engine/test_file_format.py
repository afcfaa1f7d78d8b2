"""The store's file format: a new file is created in DuckDB's newest storage format, where a dataset's
bodies are compressed with zstd; a file created in an older format keeps it, gets no zstd (there it would
store the bodies uncompressed) and syncs as before."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from crm_wave.store.datasets import VERSION_SCHEMA, body_text
from crm_wave.store.db import Store

NOW = datetime(2026, 1, 1)


def _versions(n: int) -> pl.DataFrame:
    bodies = [body_text({"Id": f"C{i}", "Name": f"Customer {i} of a sync that writes bodies", "Email": f"c{i}@example.com"})
              for i in range(n)]
    return pl.DataFrame({"_id": [f"crm-customer:C{i}" for i in range(n)], "_source_id": [f"C{i}" for i in range(n)],
                         "_hash": [None] * n, "_deleted": [False] * n, "_modified": [None] * n, "_version": [1] * n,
                         "body": bodies}, schema=VERSION_SCHEMA)


def _format_and_body_compression(path: Path) -> tuple[str, set[str]]:
    """The file's storage version and the compressions of the bodies' segments, once checkpointed. The
    store's close checkpoints the file, yet twice on 2026-11-30, in full runs and never alone, the bodies
    read as "Uncompressed", as rows not yet checkpointed do (the cause was not found): the checkpoint is
    asked for here. Bodies given zstd in an older format still read so after it."""
    with duckdb.connect(str(path)) as con:  # the store's configuration: the same instance, if one is alive
        con.execute("CHECKPOINT")
        ((tags,),) = con.execute("SELECT tags FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
        kinds = {k for (k,) in con.execute("SELECT DISTINCT compression FROM pragma_storage_info('crm_customer') "
                                           "WHERE column_name = 'body' AND segment_type <> 'VALIDITY'").fetchall()}
    return tags["storage_version"], kinds


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
    assert "ZSTD" not in kinds and "Uncompressed" not in kinds, kinds
    with store.connect() as con:
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
