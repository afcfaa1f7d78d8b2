"""Fewer statements per step: remembered table columns, marks in one statement, the change log pruned in steps."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from crm_wave.store import Store
from crm_wave.store.changes import PRUNE_CHANGES


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
