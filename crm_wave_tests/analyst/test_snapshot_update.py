"""A segments publish makes its snapshot file from the one before (copied, with the views of what changed
replaced) when both have the same shape, and the file reads as one written whole."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from crm_wave.analyst import segments
from crm_wave.analyst.snapshot import list_snapshots, publish
from crm_wave.analyst.views import VIEW_NAMES
from crm_wave.store.connection import scratch
from crm_wave.store.db import Store
from crm_wave_tests.analyst.test_snapshot_segments import KEEP, SEG, T0, TABLE, _customers, _rows, _start


def _everything(path: Path) -> dict[str, list[str]]:
    """Every table's and analyst view's rows (as text, sorted) in the snapshot at `path`, its bookkeeping tables left out."""
    with duckdb.connect(str(path), read_only=True) as con:
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()
            if r[0] not in (segments.MANIFEST, segments.MARK, segments.SHAPE, segments.PRINTS)]
        return {n: sorted(map(repr, con.execute(f'SELECT * FROM "{n}"').fetchall())) for n in names}


def _whole(store: Store, folder: Path) -> Path:
    """A snapshot of `store` as it is now, written whole (the first publish into an empty folder)."""
    first = publish(store, folder, T0, retention=KEEP, layout=SEG)
    assert not first.updated
    return first.path


def _change(store: Store, n: int) -> None:
    with store.connect() as con:
        store.replace_rows(con, TABLE, "global_id", pl.Series([f"g{n}"]),
                           pl.DataFrame({"global_id": [f"g{n}"], "Name": [f"Renamed {n}"]}))
        store.append_versions(con, "crm_customer", _customers("crm", [f"C{n}"], f" v{n}"), T0)


def test_each_publish_updates_the_file_before_and_reads_as_a_snapshot_written_whole(tmp_path: Path) -> None:
    store, snaps = _start(tmp_path)
    first = publish(store, snaps, T0, retention=KEEP, layout=SEG)
    assert not first.updated  # nothing before it
    same = publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=SEG)
    assert same.updated and not same.written
    assert _everything(same.path) == _everything(first.path)
    for n in (3, 4):
        _change(store, n)
        changed = publish(store, snaps, T0 + timedelta(minutes=n), retention=KEEP, layout=SEG)
        assert changed.updated and {s.table for s in changed.written} == {TABLE, "crm_customer"}
        seen = _everything(changed.path)
        assert seen == _everything(_whole(store, tmp_path / f"whole{n}"))
        assert repr((f"g{n}", f"Renamed {n}")) in seen[TABLE]
        assert set(VIEW_NAMES) - {"entity_as_of"} <= set(seen)
        # The manifest lists what the views read: pruning and the next publish build on it.
        assert {s.file for s in segments.read_manifest(changed.path)} >= {s.file for s in changed.written}
        segments._manifests.clear()  # as a new process reads it: from the file
        assert {s.file for s in segments.read_manifest(changed.path)} >= {s.file for s in changed.written}
        assert segments.read_mark(changed.path) is not None
        # Updated in an attached database of this process (`segments._attached`): detached, so checkpointed;
        # nothing beside the file it renames into place (a WAL left there would be lost).
        assert sorted(p.name for p in snaps.iterdir() if p.is_file()) == sorted(p.name for p in list_snapshots(snaps))


def test_a_snapshot_of_another_shape_is_written_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, snaps = _start(tmp_path)
    publish(store, snaps, T0, retention=KEEP, layout=SEG)
    # Other analyst views (a new release): the file is written whole once, then updated again.
    monkeypatch.setattr(segments, "views_digest", lambda: "another release")
    assert not publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=SEG).updated
    assert publish(store, snaps, T0 + timedelta(minutes=2), retention=KEEP, layout=SEG).updated
    # A live table with a column more: its view must show it.
    with store.connect() as con:
        con.execute(f"ALTER TABLE {TABLE} ADD COLUMN Phone VARCHAR")
        con.execute(f"UPDATE {TABLE} SET Phone = '+47 1' WHERE global_id = 'g1'")
    wider = publish(store, snaps, T0 + timedelta(minutes=3), retention=KEEP, layout=SEG)
    assert not wider.updated
    assert ("g1", "+47 1") in _rows(wider.path, f"SELECT global_id, Phone FROM {TABLE} WHERE Phone IS NOT NULL")


def test_a_small_table_whose_delta_would_be_compacted_is_written_as_a_new_base(tmp_path: Path) -> None:
    store, snaps = _start(tmp_path)  # TABLE: 50 rows
    publish(store, snaps, T0, retention=KEEP, layout=SEG)
    ids = [f"g{i}" for i in range(20)]  # 40 rows of delta (20 added, 20 removed): past a quarter of 50
    with store.connect() as con:
        store.replace_rows(con, TABLE, "global_id", pl.Series(ids),
                           pl.DataFrame({"global_id": ids, "Name": [f"New {i}" for i in ids]}))
    done = publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=SEG)
    mine = [s for s in done.written if s.table == TABLE]
    assert [(s.kind, s.rows) for s in mine] == [("base", 50)]  # one write, not a delta and then its compaction
    assert [s.kind for s in segments.read_manifest(done.path) if s.table == TABLE] == ["base"]
    with store.connect() as con:
        live = sorted(con.execute(f"SELECT * FROM {TABLE}").fetchall())
    assert _rows(done.path, f"SELECT * FROM {TABLE}") == live
    assert ("g3", "New g3") in live


def test_a_snapshot_file_attached_is_detached_whatever_happens_in_it(tmp_path: Path) -> None:
    """`segments._attached` works on the process's one in-memory DuckDB (`store.connection.scratch`): the
    file is detached after an error too, with what was committed in it, and nothing of it stays attached."""
    path = tmp_path / "snap.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t (n INTEGER)")
    with pytest.raises(RuntimeError, match="in the block"):
        with segments._attached(path) as con:
            con.execute("INSERT INTO t VALUES (1)")  # committed (autocommit)
            con.execute("BEGIN TRANSACTION")
            con.execute("INSERT INTO t VALUES (2)")  # left open by the error: rolled back
            raise RuntimeError("in the block")
    with scratch() as con:
        assert [name for (name,) in con.execute("SELECT database_name FROM duckdb_databases() "
                                                "WHERE NOT internal").fetchall()] == ["memory"]
    assert not path.with_name(path.name + ".wal").exists()
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT n FROM t").fetchall() == [(1,)]
