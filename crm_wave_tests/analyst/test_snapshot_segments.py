"""Segment snapshots: what changed is written as Parquet deltas the snapshots share; the views answer as a copy's."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from crm_wave.analyst import ReadOnlyError, run_sql, segments
from crm_wave.analyst.snapshot import Layout, Published, Retention, list_snapshots, prune_snapshots, publish
from crm_wave.analyst.views import VIEW_NAMES
from crm_wave.bench.data import FakeCrm, FakeWave, Scale
from crm_wave.bench.transform import _pass, _TimedData
from crm_wave.config.settings import ConfigError
from crm_wave.store.db import Store, Version
import crm_wave.store.datasets as datasets
import crm_wave.sync.global_step as global_step
from crm_wave.store import files
from crm_wave.sync.names import ENTITIES, global_table, share_table

T0 = datetime(2026, 3, 1, 9, 0, 0)
KEEP = Retention(keep=100, max_age=timedelta(days=1), max_bytes=2**40, grace=timedelta(0))
SEG = Layout(mode="segments")


def _customers(system: str, ids: list[str], tag: str = "") -> list[Version]:
    return [Version(f"{system}-customer:{i}", i, f"h-{i}{tag}", False, None, None, {"Id": i, "Name": f"Customer {i}{tag}"})
            for i in ids]


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return sorted(con.execute(sql).fetchall())


def _parquet_rows(path: Path) -> int:
    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()[0]  # type: ignore[index]


TABLE = "crm_customer_share"


def _golden(store: Store, n: int) -> None:
    """`n` golden rows, and as many of a table kept in DuckDB (`crm_customer_share`, here with the same
    columns), whose changes the tests below follow: the golden table is Parquet parts a snapshot links."""
    frame = pl.DataFrame({"global_id": [f"g{i}" for i in range(n)], "Name": [f"Name {i}" for i in range(n)]})
    with store.connect() as con:
        store.replace_table(con, "global_customer", frame, as_files=True)
        store.replace_table(con, TABLE, frame)


def _start(tmp_path: Path) -> tuple[Store, Path]:
    store = Store(tmp_path / "crm_wave.duckdb")
    with store.connect() as con:
        store.append_versions(con, "crm_customer", _customers("crm", [f"C{i}" for i in range(20)]), T0)
    _golden(store, 50)
    return store, tmp_path / "snaps"


def test_after_a_change_only_the_delta_is_written_and_the_view_returns_the_new_row(tmp_path: Path) -> None:
    store, snaps = _start(tmp_path)
    first = publish(store, snaps, T0, retention=KEEP, layout=SEG)
    assert first.how == "segments from a copy"  # nothing to build on: the file is copied under the lock
    assert {s.table: s.rows for s in first.written}.items() >= {"crm_customer": 20, TABLE: 50}.items()
    with store.connect() as con:  # one golden row rewritten (DELETE + INSERT), two new CRM versions
        store.replace_rows(con, TABLE, "global_id", pl.Series(["g7"]),
                           pl.DataFrame({"global_id": ["g7"], "Name": ["Renamed"]}))
        store.append_versions(con, "crm_customer", _customers("crm", ["C1"], " v2") + _customers("crm", ["C20"]), T0)
    second = publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=SEG)
    assert second.how == "segments"
    by_table = {s.table: s for s in second.written}
    assert set(by_table) == {"crm_customer", TABLE}  # every other table is shared as it was
    delta = by_table[TABLE]
    assert (delta.kind, delta.rows) == ("delta", 2)  # the new row, and the old row's hash removed
    assert _parquet_rows(snaps / delta.file) == 2
    assert (by_table["crm_customer"].kind, by_table["crm_customer"].rows) == ("seq", 2)
    assert _rows(second.path, f"SELECT Name FROM {TABLE} WHERE global_id = 'g7'") == [("Renamed",)]
    assert _rows(second.path, f"SELECT count(*) FROM {TABLE}") == [(50,)]
    assert _rows(first.path, f"SELECT Name FROM {TABLE} WHERE global_id = 'g7'") == [("Name 7",)]
    assert _rows(second.path, "SELECT name FROM crm_customers_now WHERE crm_id = 'C1'") == [("Customer C1 v2",)]
    third = publish(store, snaps, T0 + timedelta(minutes=2), retention=KEEP, layout=SEG)
    assert third.written == () and segments.read_manifest(third.path) == segments.read_manifest(second.path)
    assert "_snap_h" not in {c for (c,) in _rows(third.path, "SELECT column_name FROM information_schema.columns")}


def test_a_deleted_row_disappears_and_a_rebuilt_table_with_the_same_rows_writes_nothing(tmp_path: Path) -> None:
    store, snaps = _start(tmp_path)
    publish(store, snaps, T0, retention=KEEP, layout=SEG)
    with store.connect() as con:
        con.execute(f"DELETE FROM {TABLE} WHERE global_id IN ('g3', 'g4')")
    gone = publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=SEG)
    [delta] = gone.written
    assert (delta.table, delta.kind, delta.rows) == (TABLE, "delta", 2)
    assert _rows(gone.path, f"SELECT count(*), count(*) FILTER (global_id IN ('g3', 'g4')) FROM {TABLE}") == [(48, 0)]
    with store.connect() as con:  # the global step's full rebuild: same content, new table
        con.execute(f"CREATE OR REPLACE TABLE {TABLE} AS SELECT * FROM {TABLE} ORDER BY global_id DESC")
    again = publish(store, snaps, T0 + timedelta(minutes=2), retention=KEEP, layout=SEG)
    assert again.written == ()
    with store.connect() as con:  # a row comes back as it was: added again after its removal
        con.execute(f"INSERT INTO {TABLE} VALUES ('g3', 'Name 3')")
    back = publish(store, snaps, T0 + timedelta(minutes=3), retention=KEEP, layout=SEG)
    assert _rows(back.path, f"SELECT Name FROM {TABLE} WHERE global_id = 'g3'") == [("Name 3",)]
    assert _rows(back.path, f"SELECT count(*) FROM {TABLE}") == [(49,)]


def test_compaction_gives_the_same_view_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segments, "COMPACT_SHARE", 100.0)  # no compaction while the chain grows
    store, snaps = _start(tmp_path)
    publish(store, snaps, T0, retention=KEEP, layout=SEG)
    for n in range(1, 5):
        with store.connect() as con:
            store.replace_rows(con, TABLE, "global_id", pl.Series([f"g{n}", "g0"]),
                               pl.DataFrame({"global_id": [f"g{n}", "g0"], "Name": [f"v{n}", f"zero v{n}"]}))
            con.execute(f"DELETE FROM {TABLE} WHERE global_id = ?", [f"g{10 + n}"])
        last = publish(store, snaps, T0 + timedelta(minutes=n), retention=KEEP, layout=SEG)
    chain = [s for s in segments.read_manifest(last.path) if s.table == TABLE]
    assert [s.kind for s in chain] == ["base", "delta", "delta", "delta", "delta"]
    before = _rows(last.path, f"SELECT * FROM {TABLE}")
    exported = segments.Export(segments={TABLE: chain}, types={TABLE: [("global_id", "VARCHAR"),
                                                                                                ("Name", "VARCHAR")]})
    # Too many deltas, whose rows mostly cancel out (g0 changed four times): they become one delta, the base is kept.
    [merged] = segments.compact(snaps, exported, max_deltas=2)
    # g0 and g1-g4 as they are now; the base's g0-g4 and g11-g14 removed
    assert (merged.kind, merged.rows) == ("delta", 14) and _parquet_rows(snaps / merged.file) == 14
    assert exported.segments[TABLE] == [chain[0], merged]
    compacted = tmp_path / "compacted.duckdb"
    segments.write_snapshot(compacted, snaps, exported)
    assert _rows(compacted, f"SELECT * FROM {TABLE}") == before
    # 14 rows of deltas against a base of 50 with a share of 0.25: a new base.
    [base] = segments.compact(snaps, exported, max_deltas=2, share=0.25)
    assert (base.kind, base.rows) == ("base", 46) and _parquet_rows(snaps / base.file) == 46
    assert exported.segments[TABLE] == [base]
    segments.write_snapshot(based := tmp_path / "based.duckdb", snaps, exported)
    assert _rows(based, f"SELECT * FROM {TABLE}") == before
    assert ("g0", "zero v4") in before and ("g1", "v1") in before and not any(r[0] == "g11" for r in before)
    with store.connect() as con:
        store.replace_rows(con, TABLE, "global_id", pl.Series(["g1"]),
                           pl.DataFrame({"global_id": ["g1"], "Name": ["v9"]}))
    monkeypatch.setattr(segments, "COMPACT_SHARE", 0.25)  # 5 deltas of 22 rows against a base of 50: compacted
    nxt = publish(store, snaps, T0 + timedelta(minutes=9), retention=KEEP, layout=SEG)
    with store.connect() as con:
        live = sorted(con.execute(f"SELECT * FROM {TABLE}").fetchall())
    assert [s.kind for s in segments.read_manifest(nxt.path) if s.table == TABLE] == ["base"]
    assert _rows(nxt.path, f"SELECT * FROM {TABLE}") == live and ("g1", "v9") in live


def test_a_long_dataset_chain_is_compacted_beside_a_table_s_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A dataset appended to before every publish grows a chain of `_seq` segments, compacted past
    # `MAX_SEQ_CHAIN`; in the same publishes a table's deltas are compacted into one (its base kept). Until
    # 2026-12-02 the dataset's compaction raised UnboundLocalError (`kept`) when it came first, and took the
    # other table's base into the dataset's chain when it came after.
    monkeypatch.setattr(segments, "MAX_SEQ_CHAIN", 3)
    monkeypatch.setattr(segments, "MAX_DELTAS", 2)
    store, snaps = _start(tmp_path)
    publish(store, snaps, T0, retention=KEEP, layout=SEG)
    for n in range(1, 8):
        with store.connect() as con:
            store.append_versions(con, "crm_customer", _customers("crm", [f"C{n}", f"N{n}"], tag=f" v{n}"), T0)
            store.replace_rows(con, TABLE, "global_id", pl.Series(["g0"]),
                               pl.DataFrame({"global_id": ["g0"], "Name": [f"zero v{n}"]}))
            live = {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall()) for t in ("crm_customer", TABLE)}
        last = publish(store, snaps, T0 + timedelta(minutes=n), retention=KEEP, layout=SEG)
        chains = {t: [s for s in segments.read_manifest(last.path) if s.table == t] for t in live}
        assert all(s.table == t for t, chain in chains.items() for s in chain)
        if n % 3 == 0:  # the dataset's chain past 3 segments and the table's past 2 deltas: both compacted here
            assert [(s.kind, s.rows) for s in chains["crm_customer"]] == [("seq", 20 + 2 * n)]
            assert [s.kind for s in chains[TABLE]] == ["base"]
        for t, rows in live.items():
            assert _rows(last.path, f"SELECT * FROM {t}") == rows


def test_pruning_never_removes_a_segment_a_kept_snapshot_needs(tmp_path: Path) -> None:
    store, snaps = _start(tmp_path)
    paths = []
    for n in range(4):
        with store.connect() as con:
            store.replace_rows(con, TABLE, "global_id", pl.Series([f"g{n}"]),
                               pl.DataFrame({"global_id": [f"g{n}"], "Name": [f"v{n}"]}))
            store.append_versions(con, "crm_customer", _customers("crm", [f"N{n}"]), T0)
        paths.append(publish(store, snaps, T0 + timedelta(minutes=n), retention=KEEP, layout=SEG).path)
    answers = {p: _rows(p, f"SELECT * FROM {TABLE}") for p in paths[2:]}
    removed = prune_snapshots(snaps, T0 + timedelta(minutes=5), Retention(keep=2, grace=timedelta(0)))
    assert removed == paths[:2] and list_snapshots(snaps) == paths[2:]
    on_disk = {str(p.relative_to(snaps)) for p in (snaps / "segments").rglob("*.parquet")}
    needed = {s.file for p in paths[2:] for s in segments.read_manifest(p)}
    assert on_disk == needed  # the base the first snapshot wrote is still there: the kept ones read it
    assert any(s.kind == "base" for p in paths[2:] for s in segments.read_manifest(p) if s.file in on_disk)
    for p in paths[2:]:
        assert _rows(p, f"SELECT * FROM {TABLE}") == answers[p]
    # with a grace period, a segment no snapshot reads is first marked, and deleted only later
    stray = snaps / "segments" / TABLE / "base-unused.parquet"
    duckdb.sql(f"COPY (SELECT 1 AS x) TO '{stray}' (FORMAT parquet)")
    prune_snapshots(snaps, T0 + timedelta(minutes=6), Retention(keep=2, grace=timedelta(minutes=10)))
    assert stray.exists() and stray.with_name(stray.name + ".orphaned").exists()
    prune_snapshots(snaps, T0 + timedelta(minutes=6), Retention(keep=2, grace=timedelta(0)))
    assert not stray.exists() and not list((snaps / "segments").rglob("*.orphaned"))
    assert _rows(paths[3], f"SELECT count(*) FROM {TABLE}") == [(50,)]


@pytest.mark.parametrize(("mode", "step"), [("segments", "exported"), ("segments", "segments"), ("segments", "compacted"),
                                            ("segments", "written"), ("copy", "copied"), ("copy", "views")])
def test_a_crash_mid_publish_leaves_the_previous_snapshot_and_no_half_one(tmp_path: Path, mode: str, step: str) -> None:
    store, snaps = _start(tmp_path)
    layout = Layout(mode=mode)
    first = publish(store, snaps, T0, retention=KEEP, layout=layout)
    answer = _rows(first.path, "SELECT * FROM golden_customers")
    with store.connect() as con:
        for table in (TABLE, "global_customer"):
            store.replace_rows(con, table, "global_id", pl.Series(["g1"]),
                               pl.DataFrame({"global_id": ["g1"], "Name": ["crashed"]}))
    with pytest.raises(RuntimeError, match=f"injected failure at {step}"):
        publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=layout, _fail_at=step)
    assert list_snapshots(snaps) == [first.path]  # no half snapshot is visible
    assert not list(snaps.glob("*.tmp.duckdb*"))
    assert _rows(first.path, "SELECT * FROM golden_customers") == answer
    retry = publish(store, snaps, T0 + timedelta(minutes=2), retention=KEEP, layout=layout)
    assert _rows(retry.path, "SELECT Name FROM golden_customers WHERE global_id = 'g1'") == [("crashed",)]
    assert list_snapshots(snaps) == [first.path, retry.path] and not list(snaps.glob("*.tmp.duckdb*"))
    if mode == "copy":
        return
    assert not [p for p in (snaps / "segments").rglob("*") if p.name.endswith(".tmp")]  # nothing half-written is left
    on_disk = {str(p.relative_to(snaps)) for p in (snaps / "segments").rglob("*.parquet")}
    assert on_disk == {s.file for p in list_snapshots(snaps) for s in segments.read_manifest(p)}


@pytest.mark.parametrize("tables", [(TABLE,), (TABLE, "global_customer")])
def test_a_failure_beside_the_export_s_jobs_leaves_no_segment_they_wrote(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tables: tuple[str, ...]) -> None:
    """The file-backed tables' parts are linked while the export's jobs write their tables (`_Workers.map`'s
    `meanwhile`): an error there is raised once the jobs are done, with the files they wrote removed, whether one
    job ran on the caller's connection or several on the workers; the next publish shows every change."""
    store, snaps = _start(tmp_path)
    first = publish(store, snaps, T0, retention=KEEP, layout=SEG)
    with store.connect() as con:
        for table in tables:
            store.replace_rows(con, table, "global_id", pl.Series(["g1"]), pl.DataFrame({"global_id": ["g1"], "Name": ["later"]}))
    made: list[Path] = []
    write = segments._Plan.write

    def recording(self: segments._Plan, con: duckdb.DuckDBPyConnection, **kw: Path) -> Any:
        out = write(self, con, **kw)
        made.append(out[1][0])
        return out

    def broken(*args: object) -> set[str]:
        raise RuntimeError("linking failed")

    monkeypatch.setattr(segments._Plan, "write", recording)
    monkeypatch.setattr(segments, "_export_files", broken)
    with pytest.raises(RuntimeError, match="linking failed"):
        publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=SEG)
    assert made and not [p for p in made if p.exists()]
    assert list_snapshots(snaps) == [first.path]
    monkeypatch.undo()
    retry = publish(store, snaps, T0 + timedelta(minutes=2), retention=KEEP, layout=SEG)
    for table in tables:
        assert _rows(retry.path, f"SELECT Name FROM {table} WHERE global_id = 'g1'") == [("later",)]


def test_too_much_change_copies_the_file_under_the_lock_and_duplicates_are_written_whole(tmp_path: Path) -> None:
    store, snaps = _start(tmp_path)
    publish(store, snaps, T0, retention=KEEP, layout=SEG)
    _golden(store, 500)  # 450 new rows, past max_rows
    big = publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=Layout(mode="segments", max_rows=100))
    assert big.how == "segments from a copy"
    # 450 rows of 500 changed: a new base at once (`DIRECT_BASE_ROWS`), not a delta compacted next.
    assert [(s.table, s.kind, s.rows) for s in big.written] == [(TABLE, "base", 500), ("global_customer__files", "files", 500)]
    assert _rows(big.path, "SELECT count(*) FROM golden_customers") == [(500,)]
    with store.connect() as con:  # two identical rows: the table has no identity by content
        con.execute("CREATE TABLE notes (note VARCHAR)")
        con.execute("INSERT INTO notes VALUES ('same'), ('same'), ('other')")
    dup = publish(store, snaps, T0 + timedelta(minutes=2), retention=KEEP, layout=SEG)
    assert [(s.table, s.kind, s.rows) for s in dup.written] == [("notes", "whole", 3)]
    assert publish(store, snaps, T0 + timedelta(minutes=3), retention=KEEP, layout=SEG).written == ()
    with store.connect() as con:
        con.execute("INSERT INTO notes VALUES ('same')")
    more = publish(store, snaps, T0 + timedelta(minutes=4), retention=KEEP, layout=SEG)
    assert [(s.table, s.kind, s.rows) for s in more.written] == [("notes", "whole", 4)]
    assert _rows(more.path, "SELECT note, count(*) FROM notes GROUP BY note") == [("other", 1), ("same", 3)]


@pytest.mark.parametrize("datasets_as_files", [False, True])
def test_every_analyst_view_answers_as_in_a_whole_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       datasets_as_files: bool) -> None:
    """The views over Parquet segments give the rows and types the views over a copy of the file gave,
    after a full pass and after an incremental pass (a delta of golden, share, link and agreed rows);
    the golden tables stored as Parquet parts, as a large store's are, and (`datasets_as_files`) the
    full pass's versions too (each dataset a view of its parts and `<name>__rows`)."""
    monkeypatch.setattr(global_step, "FILES_PAST", 0)
    monkeypatch.setattr(segments, "DIRECT_BASE_ROWS", 0)  # deltas, as a large store's, though a tenth changes here
    if datasets_as_files:
        monkeypatch.setattr(datasets, "FILES_FROM", 20)
    data = _TimedData(Scale(60, 10, 60, page=50), 7)
    crm, wave = FakeCrm(data), FakeWave(data)
    store = Store(tmp_path / "live" / "crm_wave.duckdb")
    _pass(store, data, {"crm": crm, "wave": wave}, T0, full=True)
    publish(store, tmp_path / "snaps", T0, retention=KEEP, layout=SEG)
    crm.pending["customer"] = data.edit("crm", "customer", 0.1)
    _pass(store, data, {"crm": crm, "wave": wave}, T0 + timedelta(hours=1), full=False)
    new = publish(store, tmp_path / "snaps", T0 + timedelta(hours=1), retention=KEEP, layout=SEG)
    # The golden table and (a share rebuild of more than `FILES_PAST` rows) the Wave customers' share: the same
    # Parquet parts (a full pass wrote them), their changed rows a small table, found from the row-write log.
    for table in ("global_customer", "wave_customer_share"):
        assert dict(new.read)[f"{table}__files"] == "files" and not any(s.table == f"{table}__files" for s in new.written)
        assert any(s.table == f"{table}__changed" for s in new.written)
    assert new.how == "segments" and dict(new.read)["wave_customer_share__changed"].startswith("log: ")
    with store.connect() as con:
        backed = {t for t in (*(global_table(e) for e in ENTITIES), *(share_table(s, e) for e in ENTITIES for s in ("crm", "wave")))
                  if files.is_backed(con, t)}
    assert {"global_customer", "global_product", "global_order", "wave_customer_share"} <= backed
    if datasets_as_files:  # the edits' versions are rows of `__rows`, a dataset chain of its own
        backed |= {"crm_customer", "wave_customer", "crm_order", "wave_invoice"}
        assert dict(new.read)["crm_customer__files"] == "files" and dict(new.read)["crm_customer__rows"] == "seq"
        assert any(s.table == "crm_customer__rows" for s in new.written)
    old = publish(store, tmp_path / "copy", T0 + timedelta(hours=1), retention=KEEP, layout=Layout(mode="copy"))
    # A copy reads the file-backed tables' parts, linked into the segments (the same files the segments snapshot reads).
    assert old.how == "copy" and {s.table for s in segments.read_manifest(old.path)} >= {f"{n}__files" for n in backed}
    with duckdb.connect(str(old.path), read_only=True) as a, duckdb.connect(str(new.path), read_only=True) as b:
        for name in VIEW_NAMES:
            sql = f"SELECT * FROM {name}" if name != "entity_as_of" else "SELECT * FROM entity_as_of(now()::TIMESTAMP)"
            ca, cb = a.execute(sql), b.execute(sql)
            assert [(d[0], str(d[1])) for d in ca.description] == [(d[0], str(d[1])) for d in cb.description], name
            assert sorted(map(repr, ca.fetchall())) == sorted(map(repr, cb.fetchall())), name
        assert b.execute("SELECT count(*) FROM golden_customers").fetchone()[0] > 0  # type: ignore[index]


def test_sql_reads_only_the_snapshots_own_segments_and_never_writes_them(tmp_path: Path) -> None:
    store, snaps = _start(tmp_path)
    snap = publish(store, snaps, T0, retention=KEEP, layout=SEG).path
    segment = next(snaps / s.file for s in segments.read_manifest(snap) if s.table == "crm_customer")
    size = segment.stat().st_size
    with pytest.raises(ReadOnlyError, match="other files"):
        run_sql(snap, f"COPY (SELECT 1 AS x) TO '{segment}' (FORMAT parquet)")
    assert segment.stat().st_size == size and "C1" in run_sql(snap, "SELECT crm_id FROM crm_customers_now")
    elsewhere = tmp_path / "other.parquet"
    duckdb.sql(f"COPY (SELECT 1 AS x) TO '{elsewhere}' (FORMAT parquet)")
    with pytest.raises(ReadOnlyError, match="other files"):
        run_sql(snap, f"SELECT * FROM read_parquet('{elsewhere}')")


def test_the_layout_and_grace_are_settings_named_in_their_errors(tmp_path: Path) -> None:
    assert Layout.from_env({}) == Layout()
    assert Layout.from_env({"CRM_WAVE_SNAPSHOT_MODE": "Segments"}).mode == "segments"
    assert Layout.from_env({"CRM_WAVE_SNAPSHOT_COPY_BELOW_MB": "2"}).copy_below == 2 * 2**20
    # The segments' writer works within the memory the environment gives it (DuckDB's own limit).
    capped = Layout.from_env({"CRM_WAVE_SNAPSHOT_MEMORY_MB": "300"})
    con = capped.connect(tmp_path / "capped.duckdb")
    try:
        ((limit,),) = con.execute("SELECT current_setting('memory_limit')").fetchall()
    finally:
        con.close()
    assert limit == "300.0 MiB", limit
    with pytest.raises(ConfigError, match="CRM_WAVE_SNAPSHOT_MEMORY_MB='0'"):
        Layout.from_env({"CRM_WAVE_SNAPSHOT_MEMORY_MB": "0"})
    with pytest.raises(ConfigError, match="CRM_WAVE_SNAPSHOT_MODE='parquet'"):
        Layout.from_env({"CRM_WAVE_SNAPSHOT_MODE": "parquet"})
    with pytest.raises(ConfigError, match="CRM_WAVE_SNAPSHOT_GRACE_MINUTES='soon'"):
        Retention.from_env({"CRM_WAVE_SNAPSHOT_GRACE_MINUTES": "soon"})
    small = tmp_path / "small.duckdb"
    small.write_bytes(b"x" * 1000)
    auto = Layout(mode="auto", copy_below=2000)
    assert not auto.segmented(small)
    small.write_bytes(b"x" * 3000)
    assert auto.segmented(small)


def test_a_killed_publishs_leftovers_are_removed_by_the_next_publish_of_either_layout(tmp_path: Path) -> None:
    """Every publish holds the folder's lock (a copy links the golden tables' parts into the segments):
    a leftover it finds, fresh or old, is no other publish's."""
    store, snaps = _start(tmp_path)
    publish(store, snaps, T0, retention=KEEP, layout=Layout(mode="copy"))
    for i, layout in enumerate((Layout(mode="copy"), SEG), start=1):
        old, fresh = snaps / f".crm_wave-x.{i}.tmp.duckdb", snaps / f".crm_wave-y.{i}.tmp.duckdb"
        old.write_bytes(b"half")
        fresh.write_bytes(b"being written")
        os.utime(old, (time.time() - 7200, time.time() - 7200))
        publish(store, snaps, T0 + timedelta(minutes=i), retention=KEEP, layout=layout)
        assert not old.exists() and not fresh.exists(), layout.mode


def test_a_segments_publish_after_a_copy_builds_on_nothing_but_shares_the_golden_parts(tmp_path: Path) -> None:
    """A copy lists only the golden tables' linked parts: the next segment publish has no chain of the
    other tables to build on, so it copies the file under the lock and hashes outside it, as a first one."""
    store, snaps = _start(tmp_path)
    copy = publish(store, snaps, T0, retention=KEEP, layout=Layout(mode="copy"))
    parts = {s.file for s in segments.read_manifest(copy.path)}
    assert parts and {s.kind for s in segments.read_manifest(copy.path)} == {"files"}
    seg = publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=SEG)
    assert seg.how == "segments from a copy"
    assert parts <= {s.file for s in segments.read_manifest(seg.path)}  # the same links, not new files
    assert _rows(seg.path, "SELECT count(*) FROM golden_customers") == _rows(copy.path, "SELECT count(*) FROM golden_customers")


def test_a_chain_over_an_empty_base_is_not_rewritten_by_every_change(tmp_path: Path) -> None:
    """A table emptied (a golden table's `__changed` rows after a rebuild) gets a base of no rows. Rows written
    into it, named by the row-write log, at least half of what it then holds, make a new base at once
    (`segments._rewrite_whole`: their delta would hold as many rows); after that a change of a row is a delta
    until the deltas reach `COMPACT_SHARE` of the base: not the whole table rewritten by every change."""
    store, snaps = _start(tmp_path)
    with store.connect() as con:
        con.execute(f"DELETE FROM {TABLE}")
    publish(store, snaps, T0, retention=KEEP, layout=SEG)

    def chain(p: Published) -> list[tuple[str, int]]:
        return [(s.kind, s.rows) for s in segments.read_manifest(p.path) if s.table == TABLE]

    with store.connect() as con:
        store.replace_rows(con, TABLE, "global_id", pl.Series([], dtype=pl.String),
                           pl.DataFrame({"global_id": [f"g{i}" for i in range(10)], "Name": ["v0"] * 10}))
    last = publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=SEG)
    assert chain(last) == [("base", 10)]
    seen = []
    for n in range(1, 4):
        with store.connect() as con:
            store.replace_rows(con, TABLE, "global_id", pl.Series([f"g{n}"]),
                               pl.DataFrame({"global_id": [f"g{n}"], "Name": [f"v{n}"]}))
        last = publish(store, snaps, T0 + timedelta(minutes=1 + n), retention=KEEP, layout=SEG)
        seen.append(chain(last))
    # A row changed: removed and added. The third would bring the deltas to 6 rows, past half the base's 10.
    assert seen == [[("base", 10), ("delta", 2)], [("base", 10), ("delta", 2), ("delta", 2)], [("base", 10)]]
    assert _rows(last.path, f"SELECT * FROM {TABLE} WHERE global_id IN ('g1', 'g2', 'g3') ORDER BY 1") == [
        ("g1", "v1"), ("g2", "v2"), ("g3", "v3")]
