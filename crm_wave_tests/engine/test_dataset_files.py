"""File-backed datasets (crm_wave/store/files.py, `append`): a large append of versions is a Parquet part,
small appends go to `<name>__rows`, and the view `<name>` reads as the table it replaces; rollback,
a moved store, a store without its files, and copies."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

import crm_wave.store.datasets as datasets
from crm_wave.cli_errors import explain
from crm_wave.store import files
from crm_wave.store.db import Store

NAME = "crm_customer"
NOW = datetime(2026, 1, 1, 12)


@pytest.fixture(autouse=True)
def _small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "FILES_FROM", 50)


def _versions(ids: range | list[int], tag: str, deleted: bool = False) -> pl.DataFrame:
    return pl.DataFrame({"_id": [f"crm-customer:{i}" for i in ids], "_source_id": [str(i) for i in ids],
                         "_hash": [None] * len(ids), "_deleted": [deleted] * len(ids), "_modified": [f"m{tag}"] * len(ids),
                         "_version": [1] * len(ids),
                         "body": [None if deleted else f'{{"Id":"{i}","Name":"{tag} {i}"}}' for i in ids]},
                        schema=datasets.VERSION_SCHEMA)


def _append(store: Store, frame: pl.DataFrame) -> int:
    with store.connect() as con:
        return store.append_frame(con, NAME, frame, NOW)


def _history(store: Store) -> list[tuple]:
    with store.connect() as con:
        return con.execute(f"SELECT _id, _seq, _hash, _deleted, _ts, _previous, _source_id, _modified, _version, "
                           f"body::VARCHAR FROM {NAME} ORDER BY _seq").fetchall()


def _kind(store: Store, name: str) -> str | None:
    with store.connect() as con:
        rows = con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = ?", [name]).fetchall()
    return rows[0][0] if rows else None


def _feed(store: Store) -> list[int]:
    """The same appends, for a store with files and one without."""
    return [_append(store, _versions(range(10), "a")),          # small: the table
            _append(store, _versions(range(100), "a")),         # 90 new: the first part
            _append(store, _versions(range(100), "a")),         # nothing new
            _append(store, _versions(range(60, 200), "b")),     # 140 new versions: a second part
            _append(store, _versions([1, 2, 3], "c")),          # small: `__rows`
            _append(store, _versions(range(150, 250), "d", deleted=True)),  # 50 deletes (and 50 never seen): a part
            _append(store, _versions(range(60, 120), "b"))]     # 60 unchanged: none


def test_large_appends_are_parts_and_the_view_reads_as_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "s.duckdb")
    written = _feed(store)
    monkeypatch.setattr(datasets, "FILES_FROM", 10**9)
    plain = Store(tmp_path / "plain.duckdb")
    assert _feed(plain) == written == [10, 90, 0, 140, 3, 50, 0]
    assert _kind(store, NAME) == "VIEW" and _kind(store, files.rows_table(NAME)) == "BASE TABLE"
    assert _kind(plain, NAME) == "BASE TABLE"
    assert _history(store) == _history(plain)
    with store.connect() as con, plain.connect() as pcon:
        assert con.execute(f"SELECT * FROM {NAME}").description == pcon.execute(f"SELECT * FROM {NAME}").description
        assert con.execute(f"SELECT count(*) FROM {files.rows_table(NAME)}").fetchall() == [(13,)]
        current = f"SELECT _id, _seq, _deleted FROM {NAME}_current ORDER BY _id"
        assert con.execute(current).fetchall() == pcon.execute(current).fetchall()
        assert store.max_seq(con, NAME) == 293
    assert len(list((store.files_root / NAME).glob("*/part-*.parquet"))) == 3


def test_a_rolled_back_part_leaves_the_dataset_as_it_was(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    _append(store, _versions(range(10), "a"))
    with pytest.raises(RuntimeError, match="boom"), store.connect() as con:
        store.append_frame(con, NAME, _versions(range(100), "a"), NOW)
        raise RuntimeError("boom")
    assert _kind(store, NAME) == "BASE TABLE"
    assert len(_history(store)) == 10
    with store.connect() as con:
        assert files.current(con, NAME) is None
    assert _append(store, _versions(range(100), "a")) == 90  # written over the part the rollback left
    _append(store, _versions(range(100, 200), "a"))
    assert [r[1] for r in _history(store)] == list(range(1, 201))
    assert len(list((store.files_root / NAME).glob("*/part-*.parquet"))) == 2


def test_a_moved_store_reads_its_parts_and_one_without_them_stops_with_a_clear_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "a" / "s.duckdb")
    _append(store, _versions(range(100), "a"))
    _append(store, _versions([1], "b"))
    want = _history(store)
    moved = tmp_path / "b" / "s.duckdb"
    moved.parent.mkdir()
    shutil.copy(store.path, moved)
    shutil.copytree(files.root_of(store.path), files.root_of(moved))
    shutil.rmtree(tmp_path / "a")
    assert _history(Store(moved)) == want
    with Store(moved).connect() as con:
        assert con.execute("SELECT root FROM table_files WHERE name = ?", [NAME]).fetchall() == [(str(files.root_of(moved)),)]
    alone = tmp_path / "c" / "s.duckdb"
    alone.parent.mkdir()
    shutil.copy(moved, alone)
    with pytest.raises(files.FilesMissing) as err:
        with Store(alone).connect() as con:
            Store(alone).ensure_dataset(con, NAME)
    message = explain(err.value)
    assert message.kind == "no_data" and NAME in message.message and str(files.root_of(alone)) in message.message


def test_a_copy_carried_as_a_dry_run_does_appends_to_its_own_parts(tmp_path: Path) -> None:
    """The dry run's scratch copy (crm_wave/sync/plan.py) collects into parts of its own; the store's stay as they were."""
    store = Store(tmp_path / "s.duckdb")
    _append(store, _versions(range(100), "a"))
    with store.connect() as con:
        before = [(n, [p.stat().st_size for p in paths]) for n, paths in files.generations(con)]
    scratch = tmp_path / "scratch.duckdb"
    with store.locked():
        files.copy_store(store.path, scratch)
    other = Store(scratch)
    with other.connect() as con:
        other.append_frame(con, NAME, _versions(range(100, 200), "x"), NOW)
    assert len(_history(other)) == 200 and len(_history(store)) == 100
    with store.connect() as con:
        assert [(n, [p.stat().st_size for p in paths]) for n, paths in files.generations(con)] == before
