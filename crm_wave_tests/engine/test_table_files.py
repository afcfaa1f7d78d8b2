"""File-backed golden tables (crm_wave/store/files.py): a rebuild's Parquet parts under a view, the
changed rows of incremental steps, crash and rollback safety, and copies that carry (or lack) the files."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from crm_wave.store import files
from crm_wave.store.db import Store

TABLE = "global_customer"
STAGING = f"{TABLE}__rebuild"


def _rows(ids: list[int], tag: str = "") -> pl.DataFrame:
    return pl.DataFrame({"global_id": [f"g{i}" for i in ids], "crm_id": [f"C{i}" for i in ids],
                         "Name": [f"Name {i}{tag}" for i in ids], "has_base": [i % 2 == 0 for i in ids],
                         "n": [i for i in ids]})


def _rebuild(store: Store, parts: list[pl.DataFrame]) -> None:
    for i, part in enumerate(parts):
        with store.connect() as con:
            if i == 0:
                store.replace_table(con, STAGING, part, as_files=True)
            else:
                store.insert_rows(con, STAGING, part)
    with store.connect() as con:
        store.swap_table(con, STAGING, TABLE)


def _all(store: Store) -> list[tuple]:
    with store.connect() as con:
        return sorted(con.execute(f"SELECT * FROM {TABLE}").fetchall())


def _generations(store: Store) -> list[str]:
    return sorted(p.name for p in (store.files_root / TABLE).iterdir())


def test_a_rebuild_in_parts_reads_as_the_table_it_replaces_and_incremental_rows_overlay_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    plain = Store(tmp_path / "plain.duckdb")  # the same rows in a DuckDB table, for the types
    with plain.connect() as con:
        plain.replace_table(con, "rows_as_table", _rows(list(range(10))))
        want_types = [(d[0], str(d[1])) for d in con.execute("SELECT * FROM rows_as_table").description]
    _rebuild(store, [_rows([0, 1, 2, 3]), _rows([4, 5, 6]), _rows([7, 8, 9])])
    with store.connect() as con:
        assert [(d[0], str(d[1])) for d in con.execute(f"SELECT * FROM {TABLE}").description] == want_types
        assert store.table_columns(con, TABLE) == [c for c, _ in want_types]
        assert con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = ?", [TABLE]).fetchall() == [("VIEW",)]
    assert len(list((store.files_root / TABLE).glob("*/part-*.parquet"))) == 3
    assert _all(store) == sorted(_rows(list(range(10))).rows())
    with store.connect() as con:  # g2 rewritten, g3 deleted, g11 new; then g2 again and g3 back
        store.replace_rows(con, TABLE, "global_id", pl.Series(["g2", "g3"]), _rows([2, 11], " v2"))
        store.replace_rows(con, TABLE, "global_id", pl.Series(["g2"]), _rows([2, 3], " v3"))
        assert con.execute(f"SELECT count(*) FROM {files.changed_table(TABLE)}").fetchall() == [(3,)]  # g2, g3, g11
    want = sorted([r for r in _rows(list(range(10))).rows() if r[0] not in ("g2", "g3")]
                  + _rows([2, 3], " v3").rows() + _rows([11], " v2").rows())
    assert _all(store) == want
    with store.connect() as con:  # a reader in parts sees every row once
        parts = store.row_ranges(con, TABLE, 4)
        got = pl.concat([store.read_range(con, TABLE, p, ["global_id", "Name"]) for p in parts])
        assert sorted(got.rows()) == sorted((r[0], r[2]) for r in want)
        whole = [store.read_range(con, TABLE, p) for p in parts]  # the Parquet parts are read by polars
        assert all(f.schema == con.execute(f"SELECT * FROM {TABLE}").pl().schema for f in whole)
        assert sorted(pl.concat(whole).rows()) == want
        assert store.read_rows(con, TABLE, "global_id", pl.Series(["g3", "g9"]))["Name"].sort().to_list() == ["Name 3 v3", "Name 9"]
    _rebuild(store, [_rows([1, 2], " new")])  # a new generation: the changed rows go with the old one
    assert _all(store) == sorted(_rows([1, 2], " new").rows())
    with store.connect() as con:
        assert con.execute(f"SELECT count(*) FROM {files.changed_table(TABLE)}").fetchall() == [(0,)]


def test_a_failed_or_unfinished_rebuild_leaves_the_table_and_the_next_one_cleans_up(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    _rebuild(store, [_rows([1, 2])])
    first = _generations(store)
    with store.connect() as con:  # a rebuild that stopped after its first part (a crash): nothing published
        store.replace_table(con, STAGING, _rows([7]), as_files=True)
    assert _all(store) == sorted(_rows([1, 2]).rows()) and len(_generations(store)) == 2
    with pytest.raises(RuntimeError, match="boom"), store.connect() as con:  # the publish rolled back
        store.replace_table(con, STAGING, _rows([8]), as_files=True)
        store.swap_table(con, STAGING, TABLE)
        raise RuntimeError("boom")
    assert _all(store) == sorted(_rows([1, 2]).rows())
    _rebuild(store, [_rows([3])])  # its start deleted every generation but the current one
    assert _all(store) == sorted(_rows([3]).rows())
    assert len(_generations(store)) == 2 and first[0] in _generations(store)
    _rebuild(store, [_rows([4])])
    assert first[0] not in _generations(store) and len(_generations(store)) == 2


def test_a_table_of_a_store_from_before_is_replaced_by_files_at_its_next_rebuild(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    with store.connect() as con:
        con.execute(f"CREATE TABLE {TABLE} AS SELECT * FROM (VALUES ('g1', 'old')) t(global_id, Name)")
        store.replace_rows(con, TABLE, "global_id", pl.Series(["g1"]), pl.DataFrame({"global_id": ["g1"], "Name": ["kept"]}))
        assert con.execute(f"SELECT Name FROM {TABLE}").fetchall() == [("kept",)]  # an incremental write, as before
    _rebuild(store, [_rows([5])])
    assert _all(store) == sorted(_rows([5]).rows())


def test_a_copy_reads_its_linked_files_and_a_copy_without_them_reads_the_table_as_absent(tmp_path: Path) -> None:
    store = Store(tmp_path / "live" / "s.duckdb")
    _rebuild(store, [_rows([1, 2]), _rows([3])])
    with store.connect() as con:
        store.replace_rows(con, TABLE, "global_id", pl.Series(["g1"]), _rows([1], " v2"))
    want = _all(store)
    with store.locked():
        carried, bare = tmp_path / "carried" / "s.duckdb", tmp_path / "bare" / "s.duckdb"
        for target in (carried, bare):
            target.parent.mkdir()
            shutil.copyfile(store.path, target)
        with duckdb.connect(str(carried)) as con:
            linked = files.carry(con, files.root_of(carried))
    assert len(linked) == 2 and all(p.stat().st_nlink == 2 for _, p in linked)  # hard links, not copies
    _rebuild(store, [_rows([9])])
    _rebuild(store, [_rows([10])])  # the live generation the copies were taken from is deleted
    assert _all(Store(carried)) == want
    copy = Store(bare)
    with copy.connect() as con:
        assert copy.table_columns(con, TABLE) is None  # the next global step rebuilds it
    _rebuild(copy, [_rows([4])])
    assert _all(copy) == sorted(_rows([4]).rows())


def test_a_table_that_shrank_to_one_part_goes_back_to_duckdb_and_its_parts_are_deleted(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    _rebuild(store, [_rows([1, 2]), _rows([3])])
    with store.connect() as con:  # a rebuild small enough for a DuckDB table
        store.replace_table(con, STAGING, _rows([5]))
        store.swap_table(con, STAGING, TABLE)
        assert con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = ?", [TABLE]).fetchall() == [
            ("BASE TABLE",)]
        assert con.execute(f"SELECT count(*) FROM {files.FILES_TABLE}").fetchall() == [(0,)]
        store.replace_rows(con, TABLE, "global_id", pl.Series(["g5"]), _rows([5], " v2"))
    assert _all(store) == sorted(_rows([5], " v2").rows())
    assert (store.files_root / TABLE).is_dir()  # the parts of the last generation, until the next rebuild starts
    with store.connect() as con:
        store.replace_table(con, STAGING, _rows([6]))
        store.swap_table(con, STAGING, TABLE)
    assert not (store.files_root / TABLE).exists() and _all(store) == sorted(_rows([6]).rows())


def test_a_whole_table_written_in_place_of_the_files_replaces_them(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    _rebuild(store, [_rows([1, 2])])
    with store.connect() as con:
        store.replace_table(con, TABLE, _rows([3]))
    assert _all(store) == sorted(_rows([3]).rows())
    with store.connect() as con:
        store.replace_table(con, TABLE, _rows([4]), as_files=True)
        assert files.is_backed(con, TABLE)
    assert _all(store) == sorted(_rows([4]).rows())


def test_a_share_step_waits_for_the_global_step_of_its_entity(tmp_path: Path) -> None:
    """A share rebuild reads the golden parts across transactions: no global step (which replaces them,
    and deletes the generation before) runs of that entity meanwhile, in this process or another."""
    import threading

    from crm_wave.sync.share_step import build_share

    store = Store(tmp_path / "s.duckdb")
    done = threading.Event()
    errors: list[BaseException] = []

    def share() -> None:
        try:
            build_share(store, "wave", "customer")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            done.set()

    with store.named_lock("global_customer"):
        worker = threading.Thread(target=share)
        worker.start()
        assert not done.wait(0.5)  # held back while a global step of customers would be running
    worker.join(10)
    assert done.is_set()
    assert len(errors) == 1 and "run the global step first" in str(errors[0])  # it ran once the lock was free


def test_a_store_moved_with_its_folder_of_files_reads_them_at_the_new_place(tmp_path: Path) -> None:
    store = Store(tmp_path / "old" / "s.duckdb")
    _rebuild(store, [_rows([1, 2]), _rows([3])])
    want = _all(store)
    with store.locked():
        moved = tmp_path / "new" / "s.duckdb"
        moved.parent.mkdir()
        shutil.copyfile(store.path, moved)
        shutil.copytree(store.files_root, files.root_of(moved))
    shutil.rmtree(tmp_path / "old")  # nothing of the old place is left
    copy = Store(moved)
    with copy.connect() as con:
        assert copy.table_columns(con, TABLE) is not None
        assert files.current(con, TABLE)[2] == str(files.root_of(moved))  # type: ignore[index]
    assert _all(copy) == want
