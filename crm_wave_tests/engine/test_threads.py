"""A pass of what moved runs DuckDB on one thread; every other pass, and what follows it, on all of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_wave.store import Store
from crm_wave.sync.engine import run_pass


def _threads(store: Store) -> int:
    with store.connect() as con:
        row = con.execute("SELECT current_setting('threads')").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "s.duckdb")
    with store.session():
        if _threads(store) == 1:
            pytest.skip("DuckDB runs on one thread on this machine already: nothing to lower")
    return store


def test_threads_holds_for_the_block_and_a_reopened_session_and_is_reset_after(store: Store) -> None:
    with store.session():
        default = _threads(store)
        with store.threads(1):
            assert _threads(store) == 1
            with store.released():  # the file given back for an API call, then opened again
                pass
            assert _threads(store) == 1
        assert _threads(store) == default


def test_a_pass_of_what_moved_runs_on_one_thread_and_the_default_is_back_after_it(store: Store) -> None:
    with store.session():
        default = _threads(store)
    seen: list[int] = []
    run_pass(store, {}, only={"global_customer"}, on_stage=lambda s, r: seen.append(_threads(store)))
    assert seen == [1]
    with store.session():
        assert _threads(store) == default
