"""Large share tables stored as Parquet parts, as large golden tables are (crm_wave/store/files.py): a rebuild
of more than `FILES_PAST` share rows writes files, and reads as the DuckDB table a rebuild writes otherwise; an
incremental step that leaves at most `FILES_PAST` rows makes the table a DuckDB table again (its parts deleted); a
pending delete is removed from a share table stored as files."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

import crm_wave.sync.global_step as global_step
from crm_wave.logic.share import SHARE_SCHEMA
from crm_wave.store import files
from crm_wave.store.db import Store
from crm_wave.sync.deletes import drop_pending_delete
from crm_wave.sync.names import ENTITIES, share_table
from crm_wave_tests.engine.test_incremental import World, _run_steps

SHARES = [share_table(t, e) for e in ENTITIES for t in ("crm", "wave")]


def _shares(store: Store) -> dict[str, pl.DataFrame]:
    with store.connect() as con:
        return {name: frame.sort("global_id") for name in SHARES if (frame := store.read_table(con, name)) is not None}


def _backed(store: Store) -> set[str]:
    with store.connect() as con:
        return {name for name in SHARES if files.is_backed(con, name)}


def _world(tmp_path: Path, name: str) -> tuple[World, Store]:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "policy.toml").write_text('first_sync = "newest"\n')
    world, store = World(random.Random(5)), Store(folder / "sync.duckdb")
    world.seed(store, 6)
    return world, store


def _rebuilt(tmp_path: Path, monkeypatch, name: str, files_past: int) -> tuple[World, Store]:
    """The seeded world's store after a full pass with `FILES_PAST` at `files_past` (left so)."""
    monkeypatch.setattr(global_step, "FILES_PAST", files_past)
    world, store = _world(tmp_path, name)
    _run_steps(store, world.clock, full=True)
    return world, store


def test_a_large_share_rebuild_is_files_that_read_as_the_table_and_few_rows_make_it_a_table_again(tmp_path, monkeypatch):
    world_p, plain = _rebuilt(tmp_path, monkeypatch, "plain", 10**9)
    want = _shares(plain)
    large = {name for name, frame in want.items() if frame.height > 3}
    assert large and large != set(want), want  # some share tables have more than 3 rows, some not

    world_b, backed = _rebuilt(tmp_path, monkeypatch, "backed", 3)  # the same seed: the same records
    assert _backed(backed) == large
    got = _shares(backed)
    assert got.keys() == want.keys()
    for name in want:
        assert_frame_equal(got[name], want[name])

    # An incremental step: its changed rows go to `<name>__changed` while the table has more than 3 rows.
    world_p.edit_round(plain)
    world_b.edit_round(backed)  # the same edits: the same seed, the same rounds
    for world, store in ((world_p, plain), (world_b, backed)):
        _run_steps(store, world.clock, full=False)
    got, want = _shares(backed), _shares(plain)
    for name in want:
        assert_frame_equal(got[name], want[name])
    assert _backed(backed) == {name for name in large if want[name].height > 3}

    # With at most FILES_PAST rows after an incremental step that changes them, a share table stored as files is a
    # DuckDB table again (a step with nothing to change leaves the table as it is).
    before = _backed(backed)
    monkeypatch.setattr(global_step, "FILES_PAST", 10**9)
    world_p.edit_round(plain)
    world_b.edit_round(backed)
    for world, store in ((world_p, plain), (world_b, backed)):
        _run_steps(store, world.clock, full=False)
    after = _backed(backed)
    assert after < before
    assert all((backed.files_root / name).is_dir() for name in after)
    assert not any((backed.files_root / name).exists() for name in before - after)  # its parts deleted, committed
    got, want = _shares(backed), _shares(plain)
    with backed.connect() as con:
        for name in before - after:
            kind = con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = ?", [name]).fetchall()
            assert kind == [("BASE TABLE",)], name
    for name in want:
        assert_frame_equal(got[name], want[name])


def test_a_pending_delete_is_dropped_from_a_share_table_stored_as_files(tmp_path):
    store = Store(tmp_path / "sync.duckdb")
    table = "wave_customer_share"
    rows = pl.DataFrame({"global_id": ["g1", "g2", "g3"], "op": ["delete", "update", "delete"],
                         "target_id": ["W1", "W2", "W3"], "source_id": [None, "C2", None],
                         "changes": ["{}", '{"Name": "B"}', "{}"], "before": ["{}", '{"Name": "A"}', "{}"],
                         "reason": [None, None, None]}, schema=SHARE_SCHEMA)
    with store.connect() as con:
        store.replace_table(con, f"{table}__rebuild", rows, as_files=True)
        store.swap_table(con, f"{table}__rebuild", table)
        assert files.is_backed(con, table)
    for gid in ("g1", "g2"):  # g2's row is an update: it stays
        with store.connect() as con:
            drop_pending_delete(store, con, table, gid)
    with store.connect() as con:
        left = store.read_table(con, table)
        assert files.is_backed(con, table)
    assert left is not None
    assert left.sort("global_id")["global_id"].to_list() == ["g2", "g3"]


def test_a_share_table_whose_parts_are_not_beside_the_file_reads_as_absent_and_is_rebuilt(tmp_path, monkeypatch):
    _, plain = _rebuilt(tmp_path, monkeypatch, "plain", 10**9)
    world_b, backed = _rebuilt(tmp_path, monkeypatch, "backed", 3)
    large = _backed(backed)
    assert large
    alone = tmp_path / "alone"  # the DuckDB file copied without its folder of parts
    alone.mkdir()
    shutil.copyfile(backed.path, alone / "sync.duckdb")
    shutil.copyfile(backed.path.parent / "policy.toml", alone / "policy.toml")
    copy = Store(alone / "sync.duckdb")
    with copy.connect() as con:
        assert all(copy.read_table(con, name) is None for name in large)
    _run_steps(copy, world_b.clock, full=False)
    got, want = _shares(copy), _shares(plain)
    assert got.keys() == want.keys()
    for name in want:
        assert_frame_equal(got[name], want[name])


def test_a_share_rebuild_computes_parts_at_once_and_writes_what_one_at_a_time_writes(tmp_path, monkeypatch):
    """A rebuild's parts are computed on threads of their own, up to `share_step.AHEAD` at once, and written in
    order: the same share tables as computing each part in turn, stored as files or as DuckDB tables."""
    import threading

    from crm_wave.sync import share_step

    compute, threads = share_step.compute_share, []
    monkeypatch.setattr(share_step, "compute_share",
                        lambda *a, **k: threads.append(threading.current_thread().name) or compute(*a, **k))
    monkeypatch.setattr(share_step, "CHUNK", 2)  # a golden DuckDB table read in parts of 2 rows
    monkeypatch.setattr(global_step, "PART", 2)  # a golden table stored as files in parts of 2 rows
    got = {}
    for ahead in (2, 1):
        monkeypatch.setattr(share_step, "AHEAD", ahead)
        threads.clear()
        for files_past in (3, 10**9):
            got[ahead, files_past] = _shares(_rebuilt(tmp_path, monkeypatch, f"a{ahead}-{files_past}", files_past)[1])
        on_pool = [t.startswith("share-") for t in threads]
        assert (all(on_pool) if ahead > 1 else not any(on_pool)) and len(threads) > 2 * len(SHARES)
    for files_past in (3, 10**9):
        assert got[2, files_past].keys() == got[1, files_past].keys()
        for name, frame in got[1, files_past].items():
            assert_frame_equal(got[2, files_past][name], frame, check_row_order=True)
    assert any(frame.height > 2 for frame in got[1, 3].values())
