"""Segment snapshots that find what changed from the store's row-write log: they still show exactly
the live store, and fall back to hashing every row whenever the log cannot be trusted."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from crm_wave.analyst import segments
from crm_wave.analyst.snapshot import Layout, Published, Retention, publish
from crm_wave.store import files, writes
from crm_wave.store.db import Store

T0 = datetime(2026, 3, 1, 9, 0, 0)
KEEP = Retention(keep=100, max_age=timedelta(days=1), max_bytes=2**40, grace=timedelta(0))
SEG = Layout(mode="segments")
N = 40


def _golden(n: int, tag: str = "") -> pl.DataFrame:
    return pl.DataFrame({"global_id": [f"g{i}" for i in range(n)], "Name": [f"Name {i}{tag}" for i in range(n)]})


def _share(ids: list[str], op: str = "update") -> pl.DataFrame:
    return pl.DataFrame({"global_id": ids, "op": [op] * len(ids), "target_id": [f"W{g}" for g in ids]})


def _start(tmp_path: Path) -> tuple[Store, Path, Published]:
    store = Store(tmp_path / "live" / "crm_wave.duckdb")
    with store.connect() as con:
        store.replace_table(con, "global_customer", _golden(N), as_files=True)
        store.replace_table(con, "wave_customer_share", _share([f"g{i}" for i in range(5)]))
        store.replace_table(con, "crm_customer_share", _golden(N))
        store.upsert_links(con, "customer", [(f"g{i}", f"C{i}", f"W{i}", "id") for i in range(N)], T0)
        store.upsert_agreed(con, "customer", {f"g{i}": {"Name": f"Name {i}"} for i in range(N)}, T0)
    snaps = tmp_path / "snaps"
    first = publish(store, snaps, T0, retention=KEEP, layout=SEG)
    return store, snaps, first


def _tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                                      "AND table_type = 'BASE TABLE' ORDER BY 1").fetchall()]


def _same_as_live(store: Store, snap: Path) -> None:
    """Every table of the live store (but the log's own and `table_files`), and the golden view, has the
    same rows in the snapshot."""
    with store.connect() as live, duckdb.connect(str(snap), read_only=True) as shot:
        names = [t for t in _tables(live) if t not in (*writes.LOG_TABLES, files.FILES_TABLE)] + ["global_customer"]
        assert names
        for name in names:
            want = sorted(map(repr, live.execute(f"SELECT * FROM {name}").fetchall()))
            got = sorted(map(repr, shot.execute(f"SELECT * FROM {name}").fetchall()))
            assert got == want, name


def _read(p: Published) -> dict[str, str]:
    return dict(p.read)


def test_writes_through_the_store_are_found_from_the_log_and_the_rest_is_not_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tables this small whose log names most rows are written anew without a comparison (the next test): not here.
    monkeypatch.setattr(segments, "DIRECT_BASE_ROWS", 0)
    store, snaps, first = _start(tmp_path)
    assert _read(first)["crm_customer_share"] == "hashed"  # nothing to build on
    assert _read(first)["global_customer__files"] == "files"  # the golden table's Parquet parts, linked
    quiet = publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=SEG)
    assert quiet.written == ()
    # The golden table's changed rows are spoken for by its log (`segments.log_of`).
    logged = ("crm_customer_share", "links", "agreed", "wave_customer_share", "global_customer__changed")
    assert {t: _read(quiet)[t] for t in logged} == dict.fromkeys(logged, "log: none")
    with store.connect() as con:
        for table in ("global_customer", "crm_customer_share"):
            store.replace_rows(con, table, "global_id", pl.Series(["g3", "g4"]),
                               pl.DataFrame({"global_id": ["g3", "g99"], "Name": ["Renamed", "New"]}))  # g4 gone, g99 new
        store.upsert_links(con, "customer", [("g99", "C99", None, "new"), ("g3", "C3", "W3", "id")], T0)
        store.drop_links(con, "customer", ["g4"])
        store.upsert_agreed(con, "customer", {"g3": {"Name": "Renamed"}}, T0)
        store.replace_rows(con, "wave_customer_share", "global_id", pl.Series(["g1"]), _share(["g1", "g7"], "insert"))
    second = publish(store, snaps, T0 + timedelta(minutes=2), retention=KEEP, layout=SEG)
    read = _read(second)
    assert {t: read[t] for t in logged} == dict.fromkeys(logged, "log: rows")
    by_table = {s.table: (s.kind, s.rows) for s in second.written}
    assert by_table["crm_customer_share"] == ("delta", 4)  # g3 and g4 removed, g3 and g99 added
    assert by_table["links"] == ("delta", 2) and by_table["agreed"] == ("delta", 2)  # g3's link is the same row
    assert _read(second)["changes"] == "hashed"  # a table the log does not cover is hashed as before
    # The golden table's parts are the same files; its changed rows (g3, g99 and g4 gone) a delta of 3.
    assert "global_customer__files" not in by_table and by_table["global_customer__changed"] == ("delta", 3)
    _same_as_live(store, second.path)
    with duckdb.connect(str(second.path), read_only=True) as con:
        assert con.execute("SELECT Name FROM golden_customers WHERE global_id = 'g3'").fetchall() == [("Renamed",)]
        assert con.execute("SELECT count(*) FROM golden_customers WHERE global_id IN ('g4', 'g99')").fetchall() == [(1,)]
    with store.connect() as con:  # one more changed golden row: the three before are not read again
        store.replace_rows(con, "global_customer", "global_id", pl.Series(["g3"]),
                           pl.DataFrame({"global_id": ["g3"], "Name": ["Renamed again"]}))
    third = publish(store, snaps, T0 + timedelta(minutes=3), retention=KEEP, layout=SEG)
    assert _read(third)["global_customer__changed"] == "log: rows"
    assert {s.table: (s.kind, s.rows) for s in third.written}["global_customer__changed"] == ("delta", 2)  # g3 out, in
    _same_as_live(store, third.path)


def test_a_small_table_mostly_rewritten_is_a_new_base_unless_a_key_is_there_twice(tmp_path: Path) -> None:
    store, snaps, _ = _start(tmp_path)
    with store.connect() as con:  # four of the share table's five rows rewritten, one deleted, one new
        store.replace_rows(con, "wave_customer_share", "global_id", pl.Series(["g0", "g1", "g2", "g3"]),
                           _share(["g0", "g1", "g2", "g8"], "insert"))
    rewritten = publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=SEG)
    assert _read(rewritten)["wave_customer_share"] == "log: base"
    assert {s.table: (s.kind, s.rows) for s in rewritten.written}["wave_customer_share"] == ("base", 5)
    _same_as_live(store, rewritten.path)
    with store.connect() as con:  # a key twice: its rows are compared, as before
        store.replace_rows(con, "wave_customer_share", "global_id", pl.Series(["g0", "g1", "g2"]),
                           pl.concat([_share(["g0", "g1", "g2"], "delete"), _share(["g0"], "update")]))
    twice = publish(store, snaps, T0 + timedelta(minutes=2), retention=KEEP, layout=SEG)
    assert _read(twice)["wave_customer_share"] == "log: rows"
    _same_as_live(store, twice.path)
    with duckdb.connect(str(twice.path), read_only=True) as con:
        assert con.execute("SELECT op FROM wave_customer_share WHERE global_id = 'g0' ORDER BY op").fetchall() == [
            ("delete",), ("update",)]


def test_a_full_rewrite_or_a_write_the_log_missed_is_hashed(tmp_path: Path) -> None:
    store, snaps, _ = _start(tmp_path)
    with store.connect() as con:  # the global step's full pass: a staging table swapped in
        store.replace_table(con, "crm_customer_share__rebuild", _golden(N, " v2"))
        store.swap_table(con, "crm_customer_share__rebuild", "crm_customer_share")
    full = publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=SEG)
    assert _read(full)["crm_customer_share"] == "hashed" and "crm_customer_share__rebuild" not in _read(full)
    _same_as_live(store, full.path)
    with store.connect() as con:  # raw SQL the log never sees, changing the row count
        con.execute("DELETE FROM crm_customer_share WHERE global_id = 'g5'")
        con.execute("INSERT INTO links VALUES ('order', 'o1', 'CO1', NULL, 'raw', ?)", [T0])
    raw = publish(store, snaps, T0 + timedelta(minutes=2), retention=KEEP, layout=SEG)
    assert _read(raw)["crm_customer_share"] == "hashed" and _read(raw)["links"] == "hashed"
    _same_as_live(store, raw.path)
    with store.connect() as con:  # a logged write of one row beside an unlogged delete of another
        store.replace_rows(con, "crm_customer_share", "global_id", pl.Series(["g6"]),
                           pl.DataFrame({"global_id": ["g6"], "Name": ["logged"]}))
        con.execute("DELETE FROM crm_customer_share WHERE global_id = 'g7'")
    mixed = publish(store, snaps, T0 + timedelta(minutes=3), retention=KEEP, layout=SEG)
    assert _read(mixed)["crm_customer_share"] == "hashed"
    _same_as_live(store, mixed.path)


def test_a_store_built_again_with_the_same_writes_has_another_log(tmp_path: Path) -> None:
    _, snaps, first = _start(tmp_path / "one")
    rebuilt = Store(tmp_path / "rebuilt" / "crm_wave.duckdb")  # the same writes, in the same order, other names
    with rebuilt.connect() as con:
        rebuilt.replace_table(con, "global_customer", _golden(N, " rebuilt"), as_files=True)
        rebuilt.replace_table(con, "wave_customer_share", _share([f"g{i}" for i in range(5)]))
        rebuilt.replace_table(con, "crm_customer_share", _golden(N, " rebuilt"))
        rebuilt.upsert_links(con, "customer", [(f"g{i}", f"C{i}", f"W{i}", "id") for i in range(N)], T0)
        rebuilt.upsert_agreed(con, "customer", {f"g{i}": {"Name": f"Name {i}"} for i in range(N)}, T0)
    mark = segments.read_mark(first.path)
    assert mark is not None
    with rebuilt.connect() as con:  # its log reached the same seq with the same rows
        assert con.execute("SELECT max(seq) FROM row_writes").fetchall() == [(mark[1],)]
    again = publish(rebuilt, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=SEG)
    assert _read(again)["crm_customer_share"] == "hashed"
    _same_as_live(rebuilt, again.path)


def test_a_pruned_log_or_an_older_file_is_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, snaps, first = _start(tmp_path)
    older = tmp_path / "older.duckdb"
    shutil.copyfile(store.path, older)
    with store.connect() as con:  # written after the copy: the older file has the log behind the mark
        for i in range(3):
            store.replace_rows(con, "crm_customer_share", "global_id", pl.Series([f"g{i}"]),
                               pl.DataFrame({"global_id": [f"g{i}"], "Name": [f"late {i}"]}))
    late = publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=SEG)
    assert _read(late)["crm_customer_share"] == "log: rows"
    restored = Store(tmp_path / "restored" / "crm_wave.duckdb")
    shutil.copyfile(older, restored.path)
    with restored.connect() as con:  # the older file, written again up to the same seq, other rows
        for i in range(3):
            restored.replace_rows(con, "crm_customer_share", "global_id", pl.Series([f"g{10 + i}"]),
                               pl.DataFrame({"global_id": [f"g{10 + i}"], "Name": [f"restored {i}"]}))
    back = publish(restored, snaps, T0 + timedelta(minutes=2), retention=KEEP, layout=SEG)
    assert _read(back)["crm_customer_share"] == "hashed"
    _same_as_live(restored, back.path)

    monkeypatch.setattr(writes, "KEEP", 2)
    monkeypatch.setattr(writes, "_PRUNE_EVERY", 1)
    with restored.connect() as con:  # the log keeps 2 rows: the mark's rows and those after it are gone
        for i in range(4):
            restored.replace_rows(con, "crm_customer_share", "global_id", pl.Series([f"g{i}"]),
                                 pl.DataFrame({"global_id": [f"g{i}"], "Name": [f"pruned {i}"]}))
        assert con.execute("SELECT count(*) FROM row_writes").fetchall() == [(2,)]
    pruned = publish(restored, snaps, T0 + timedelta(minutes=4), retention=KEEP, layout=SEG)
    assert _read(pruned)["crm_customer_share"] == "hashed"
    _same_as_live(restored, pruned.path)
    assert segments.read_mark(pruned.path) is not None


def test_a_big_write_logs_the_whole_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, snaps, _ = _start(tmp_path)
    monkeypatch.setattr(writes, "WHOLE_PAST", 10)
    with store.connect() as con:
        store.replace_rows(con, "crm_customer_share", "global_id", pl.Series([f"g{i}" for i in range(12)]), _golden(12, " big"))
        assert con.execute("SELECT global_id FROM row_writes WHERE table_name = 'crm_customer_share' "
                           "ORDER BY seq DESC LIMIT 1").fetchall() == [(None,)]
    big = publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=SEG)
    assert _read(big)["crm_customer_share"] == "hashed"
    _same_as_live(store, big.path)


def test_a_whole_rewrite_of_a_big_table_is_copied_without_hashing_it_under_the_lock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, snaps, _ = _start(tmp_path)
    hashed: list[str] = []
    plan_rows = segments._plan_rows

    def counting(con: duckdb.DuckDBPyConnection, table: str, *args: object, **kwargs: object) -> object:
        hashed.append(table)
        return plan_rows(con, table, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(segments, "_plan_rows", counting)
    with store.connect() as con:
        store.replace_table(con, "crm_customer_share__rebuild", _golden(N, " v2"))
        store.swap_table(con, "crm_customer_share__rebuild", "crm_customer_share")
    big = publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=Layout(mode="segments", max_rows=N - 1))
    assert big.how == "segments from a copy"
    assert hashed.count("crm_customer_share") == 1  # from the copy, outside the lock; never under it
    _same_as_live(store, big.path)


def test_the_log_counts_each_id_once_however_often_it_was_written(tmp_path: Path) -> None:
    store, snaps, first = _start(tmp_path)
    mark = segments.read_mark(first.path)
    with store.connect() as con:  # g1 written three times, g2 twice, g3 once; links in one write
        for ids in (["g1", "g2"], ["g1"], ["g1", "g2", "g3"]):
            store.replace_rows(con, "crm_customer_share", "global_id", pl.Series(ids),
                               pl.DataFrame({"global_id": ids, "Name": ["again"] * len(ids)}))
        store.upsert_links(con, "customer", [("g5", "C5", "W5", "id"), ("g6", "C6", "W6", "id")], T0)
        now = segments._log_mark(con)
        assert segments._written_since(con, mark, now) == {"crm_customer_share": ("rows", 3), "links": ("rows", 2)}


def test_publishes_forget_the_log_rows_they_no_longer_need(tmp_path: Path) -> None:
    store, snaps, first = _start(tmp_path)

    def logged_seqs() -> list[int]:
        with store.connect() as con:
            return [s for (s,) in con.execute("SELECT DISTINCT seq FROM row_writes ORDER BY seq").fetchall()]

    mark = segments.read_mark(first.path)
    assert mark is not None and logged_seqs()[-1] == mark[1]  # nothing to build on: nothing forgotten yet
    with store.connect() as con:
        store.upsert_agreed(con, "customer", {"g1": {"Name": "one"}}, T0)
    second = publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=SEG)
    assert _read(second)["agreed"] == "log: rows"
    assert all(s > mark[1] for s in logged_seqs())  # the first snapshot's rows: the second covers them
    with store.connect() as con:
        store.upsert_agreed(con, "customer", {"g2": {"Name": "two"}}, T0)
    third = publish(store, snaps, T0 + timedelta(minutes=2), retention=KEEP, layout=SEG)
    assert _read(third)["agreed"] == "log: rows"
    _same_as_live(store, third.path)
    with store.connect() as con:
        store.upsert_agreed(con, "customer", {"g3": {"Name": "three"}}, T0)
    publish(store, tmp_path / "copies", T0 + timedelta(minutes=3), retention=KEEP, layout=Layout(mode="copy"))
    assert logged_seqs() == []  # a copy reads no log
    after = publish(store, snaps, T0 + timedelta(minutes=4), retention=KEEP, layout=SEG)
    assert _read(after)["agreed"] == "hashed"  # g3's row went with the copy's forgetting: the log cannot say
    _same_as_live(store, after.path)
    with store.connect() as con:
        store.upsert_agreed(con, "customer", {"g4": {"Name": "four"}}, T0)
    last = publish(store, snaps, T0 + timedelta(minutes=5), retention=KEEP, layout=SEG)
    assert _read(last)["agreed"] == "log: rows"
    _same_as_live(store, last.path)


def test_a_table_whose_export_fails_leaves_the_store_and_the_next_publish_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tables read row by row run at once, each in a cursor of its own: when one of them fails, the publish
    fails with its error, writes no snapshot, and the store and the next publish go on as before."""
    store, snaps, first = _start(tmp_path)
    with store.connect() as con:  # three tables to read row by row: two by the log, one hashed
        store.replace_rows(con, "crm_customer_share", "global_id", pl.Series(["g1"]),
                           pl.DataFrame({"global_id": ["g1"], "Name": ["one"]}))
        store.replace_rows(con, "global_customer", "global_id", pl.Series(["g2"]),
                           pl.DataFrame({"global_id": ["g2"], "Name": ["two"]}))
        store.log_changes(con, "customer", ["g3"], "agreed")
    plan_written = segments._plan_written

    def failing(con: duckdb.DuckDBPyConnection, snapshots_dir: Path, table: str, *args: object) -> object:
        if table == "crm_customer_share":
            raise RuntimeError("a read that fails")
        return plan_written(con, snapshots_dir, table, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(segments, "_plan_written", failing)
    with pytest.raises(RuntimeError, match="a read that fails"):
        publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=SEG)
    assert not [p for p in (snaps / "segments").rglob("*") if p.name.endswith(".tmp")]  # the others' writes removed
    monkeypatch.setattr(segments, "_plan_written", plan_written)
    with store.connect() as con:  # the store writes as before
        store.replace_rows(con, "crm_customer_share", "global_id", pl.Series(["g4"]),
                           pl.DataFrame({"global_id": ["g4"], "Name": ["four"]}))
    after = publish(store, snaps, T0 + timedelta(minutes=2), retention=KEEP, layout=SEG)
    read = _read(after)
    # The golden table's one changed row (g2), named by the log: a table that small is written anew (`_rewrite_whole`).
    assert (read["crm_customer_share"], read["global_customer__changed"], read["changes"]) == ("log: rows", "log: base", "hashed")
    _same_as_live(store, after.path)
    assert [p.name for p in sorted(snaps.glob("*.duckdb"))] == [first.path.name, after.path.name]


def test_a_change_past_max_rows_found_while_writing_leaves_nothing_written(tmp_path: Path) -> None:
    """Each table is written as soon as it is planned: when a later table's plan takes the rows past `max_rows`
    (each table alone is within it), the publish writes from a copy and leaves no file no snapshot names (what
    the failed export wrote is removed: `test_a_table_whose_export_fails...` sees that before any prune)."""
    store, snaps, first = _start(tmp_path)
    with store.connect() as con:
        for name in ("notes_a", "notes_b"):
            con.execute(f"CREATE TABLE {name} (note VARCHAR)")
    publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=SEG)
    with store.connect() as con:  # 30 rows each, hashed: within 40 alone, past it together
        for name in ("notes_a", "notes_b"):
            con.execute(f"INSERT INTO {name} SELECT 'note ' || i FROM range(30) t(i)")
    big = publish(store, snaps, T0 + timedelta(minutes=2), retention=KEEP, layout=Layout(mode="segments", max_rows=40))
    assert big.how == "segments from a copy"
    assert not [p for p in (snaps / "segments").rglob("*") if p.name.endswith(".tmp")]
    on_disk = {str(p.relative_to(snaps)) for p in (snaps / "segments").rglob("*.parquet")}
    assert on_disk == {s.file for p in sorted(snaps.glob("*.duckdb")) for s in segments.read_manifest(p)}
    _same_as_live(store, big.path)


def test_a_new_process_reads_the_hashes_only_of_the_tables_whose_rows_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each snapshot records its hashed tables' fingerprints (`PRINTS`); a publish of a process that has not
    published into the folder yet compares the live rows with them and reads the Parquet hashes of a changed
    table alone (before, every chain's, ~0.15 s at a million records). (A small table is written anew without
    reading any: `test_a_small_hashed_table_that_changed_is_written_anew`; here every table is compared.)"""
    monkeypatch.setattr(segments, "SMALL_ROWS", 0)
    store, snaps, first = _start(tmp_path)
    assert "changes" in segments.read_prints(first.path) and "crm_customer_share" in segments.read_prints(first.path)
    loaded: list[str] = []
    load = segments.Previous.load

    def counting(self: segments.Previous, con: duckdb.DuckDBPyConnection | None = None) -> segments.Previous:
        if self._hashes is None:
            loaded.append(self.chain[0].table)
        return load(self, con)

    into = segments.Previous.into

    def counting_into(self: segments.Previous, con: duckdb.DuckDBPyConnection, name: str) -> Callable[[], None]:
        if self._hashes is None:  # read from the chain's files under the lock
            loaded.append(self.chain[0].table)
        return into(self, con, name)

    monkeypatch.setattr(segments.Previous, "load", counting)
    monkeypatch.setattr(segments.Previous, "into", counting_into)

    def new_process() -> None:  # what a process keeps of the snapshots it published or read
        for cache in (segments._loaded, segments._infos, segments._manifests):
            cache.clear()
        loaded.clear()

    new_process()
    quiet = publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=SEG)
    assert quiet.written == () and loaded == []
    _same_as_live(store, quiet.path)
    with store.connect() as con:  # `changes` is hashed (the log does not cover it)
        store.log_changes(con, "customer", ["g5", "g6"], "agreed")
    new_process()
    changed = publish(store, snaps, T0 + timedelta(minutes=2), retention=KEEP, layout=SEG)
    assert loaded == ["changes"] and _read(changed)["changes"] == "hashed"
    assert {s.table: (s.kind, s.rows) for s in changed.written}["changes"][1] == 2
    _same_as_live(store, changed.path)


def test_a_small_hashed_table_that_changed_is_written_anew(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A table the log does not cover, of at most `SMALL_ROWS` rows, whose fingerprint changed is written as a new base
    of all its rows, without reading the previous snapshot's hashes; one of more rows is compared as before (a delta)."""
    store, snaps, first = _start(tmp_path)
    loaded: list[str] = []
    into = segments.Previous.into

    def counting_into(self: segments.Previous, con: duckdb.DuckDBPyConnection, name: str) -> Callable[[], None]:
        loaded.append(self.chain[0].table)
        return into(self, con, name)

    monkeypatch.setattr(segments.Previous, "into", counting_into)
    with store.connect() as con:
        n = con.execute("SELECT count(*) FROM changes").fetchall()[0][0]
        store.log_changes(con, "customer", ["g5", "g6"], "agreed")
    small = publish(store, snaps, T0 + timedelta(minutes=1), retention=KEEP, layout=SEG)
    assert loaded == [] and _read(small)["changes"] == "hashed"
    assert {s.table: (s.kind, s.rows) for s in small.written}["changes"] == ("base", n + 2)
    _same_as_live(store, small.path)
    monkeypatch.setattr(segments, "SMALL_ROWS", n + 1)  # now more rows than that: compared
    with store.connect() as con:
        store.log_changes(con, "customer", ["g7"], "agreed")
    compared = publish(store, snaps, T0 + timedelta(minutes=2), retention=KEEP, layout=SEG)
    assert loaded == ["changes"]
    assert {s.table: (s.kind, s.rows) for s in compared.written}["changes"] == ("delta", 1)
    _same_as_live(store, compared.path)
