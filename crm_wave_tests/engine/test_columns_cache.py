"""Fewer statements per step: remembered table columns, marks in one statement, the change log pruned in steps and after many changes."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import polars as pl
import pytest

import crm_wave.store.changes as changes
from crm_wave.store import Store
from crm_wave.store.changes import PRUNE_CHANGES, PRUNE_READ
from crm_wave_tests.engine.test_incremental import World, _run_steps, _tables


def test_remembered_columns_follow_replace_swap_and_rollback(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    with store.session():
        with store.connect() as con:
            assert store.table_columns(con, "global_customer") is None
            store.replace_table(con, "global_customer", pl.DataFrame({"global_id": ["g1"], "a": ["x"]}))
            assert store.table_columns(con, "global_customer") == ["global_id", "a"]
        with pytest.raises(RuntimeError), store.connect() as con:  # rolled back: the columns are the old ones again
            store.replace_table(con, "global_customer", pl.DataFrame({"global_id": ["g1"], "b": ["y"], "c": ["z"]}))
            assert store.table_columns(con, "global_customer") == ["global_id", "b", "c"]
            raise RuntimeError("fail the step")
        with store.connect() as con:
            assert store.table_columns(con, "global_customer") == ["global_id", "a"]
            store.replace_table(con, "global_customer__rebuild", pl.DataFrame({"global_id": ["g2"], "d": ["w"]}))
            store.swap_table(con, "global_customer__rebuild", "global_customer")
            assert store.table_columns(con, "global_customer") == ["global_id", "d"]
            assert store.table_columns(con, "global_customer__rebuild") is None


def test_marks_move_in_one_statement_and_new_ones_are_inserted(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    with store.connect() as con:
        store.set_marks(con, "step", {"a": 1, "b": 2})
        previous = store.read_marks(con, "step")
        store.set_marks(con, "step", {"a": 5, "b": 6, "c": 7}, previous)
        assert store.read_marks(con, "step") == {"a": 5, "b": 6, "c": 7}


def test_the_change_log_is_pruned_when_every_step_has_read_past_a_multiple(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    with store.connect() as con:
        for i in range(PRUNE_CHANGES + 3):
            store.log_changes(con, "customer", [f"g{i}"], "golden")
        top = store.last_change(con)
        assert top >= PRUNE_CHANGES + 3
        store.set_marks(con, "share_a", {"changes": 1})  # a first mark: what it read is forgotten
        assert con.execute("SELECT count(*) FROM changes").fetchone() == (top - 1,)
        store.set_marks(con, "share_a", {"changes": 2}, {"changes": 1})  # no multiple crossed: nothing pruned
        assert con.execute("SELECT count(*) FROM changes").fetchone() == (top - 1,)
        store.set_marks(con, "share_a", {"changes": top}, {"changes": 2})  # crossed: what it read is forgotten
        assert con.execute("SELECT count(*) FROM changes").fetchone() == (0,)
        assert store.changes_since(con, top)[1] == top  # the newest change is remembered by the marks


def test_a_step_that_read_many_changes_prunes_what_every_step_has_read(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    with store.connect() as con:
        store.set_marks(con, "share_a", {"changes": 0})
        store.set_marks(con, "share_b", {"changes": 0})
        store.log_changes(con, "customer", [f"g{i}" for i in range(PRUNE_READ)], "golden")
        top = store.last_change(con)
        assert top < PRUNE_CHANGES  # no multiple crossed: only what was read prunes
        store.set_marks(con, "share_a", {"changes": top}, {"changes": 0}, read=PRUNE_READ)
        assert con.execute("SELECT count(*) FROM changes").fetchone() == (PRUNE_READ,)  # share_b has not read them
        store.set_marks(con, "share_b", {"changes": top}, {"changes": 0}, read=PRUNE_READ - 1)
        assert con.execute("SELECT count(*) FROM changes").fetchone() == (PRUNE_READ,)  # read few: kept till later
        store.set_marks(con, "share_b", {"changes": top}, {"changes": 0}, read=PRUNE_READ)
        assert con.execute("SELECT count(*) FROM changes").fetchone() == (0,)


def test_own_top_moves_past_a_writers_own_changes_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    with store.connect() as con:
        store.log_changes(con, "customer", ["g1"], "golden", writer="global")
        store.log_changes(con, "customer", ["g2", "g3"], "link", writer="global")
        top = store.last_change(con)
        assert store.own_top(con, 0, "customer", "global") == top
        assert store.own_top(con, top, "customer", "global") == top  # nothing after it
        assert store.own_top(con, 0, "order", "global") == 0  # another entity's
        store.log_changes(con, "customer", ["g4"], "agreed")  # a push's, after them
        assert store.own_top(con, 0, "customer", "global") == 0


def test_after_each_pass_the_change_log_holds_nothing_every_step_has_read(tmp_path: Path, monkeypatch) -> None:
    """With every step pruning what it read, a pass leaves none of the changes every step has read, nor its
    customer changes (the global step's mark moves past its own), and the incremental steps still leave what
    a full rebuild leaves."""
    monkeypatch.setattr(changes, "PRUNE_READ", 1)
    world = World(random.Random(5))
    (tmp_path / "policy.toml").write_text('first_sync = "newest"\n')
    store = Store(tmp_path / "sync.duckdb")
    for round_ in range(4):
        if round_ == 0:
            world.seed(store, 8)
        elif round_ == 2:
            world.push_like(store)
        else:
            world.edit_round(store)
        copy = tmp_path / f"copy{round_}.duckdb"
        shutil.copyfile(store.path, copy)
        _run_steps(store, world.clock, full=False)
        with store.connect() as con:
            read_by_all = con.execute("SELECT count(*) FROM changes WHERE seq <= (SELECT min(mark) FROM step_marks "
                                      "WHERE source = 'changes')").fetchone()
            customers = con.execute("SELECT count(*) FROM changes WHERE entity = 'customer'").fetchone()
        # A first pass rebuilds, reading none: its few "*" rows wait for the next. The customer steps run first,
        # so the products' and orders' changes of a pass are read by them in the next one.
        if round_:
            assert (read_by_all, customers) == ((0,), (0,)), round_
        full_store = Store(copy)
        _run_steps(full_store, world.clock, full=True)
        got, want = _tables(store), _tables(full_store)
        for name in want:
            assert got[name].equals(want[name]), (round_, name)
