"""A transaction an error aborted is not committed as if nothing happened (store.connection.commit).

DuckDB rolls back the COMMIT of an aborted transaction without an error: the code that caught the error
and went on would believe its writes kept. `commit` (every `store.connect()` transaction) raises instead."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from crm_wave.store.connection import TransactionAborted, commit
from crm_wave.store.db import Store

ERRORS = {  # statements whose error aborts the transaction in DuckDB 1.5.6 (in 2.0 any error does)
    "constraint": "INSERT INTO t VALUES (1)",
    "conversion": "SELECT 'not a number'::INTEGER",
}


def _aborted(error: str) -> duckdb.DuckDBPyConnection:
    """A connection whose open transaction inserted a row and then met the error `error`, caught."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t (a INTEGER PRIMARY KEY)")
    con.execute("BEGIN")
    con.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(duckdb.Error):
        con.execute(ERRORS[error])
    return con


@pytest.mark.parametrize("error", sorted(ERRORS))
def test_duckdb_rolls_back_an_aborted_transaction_at_commit_without_an_error(error):
    # The behaviour the guard is for: if DuckDB ever raises here instead, `commit` may rest on it.
    con = _aborted(error)
    con.execute("COMMIT")  # no error ...
    assert con.execute("SELECT count(*) FROM t").fetchall() == [(0,)]  # ... and nothing kept


@pytest.mark.parametrize("error", sorted(ERRORS))
def test_commit_refuses_an_aborted_transaction(error):
    con = _aborted(error)
    with pytest.raises(TransactionAborted, match="aborted"):
        commit(con)
    con.execute("ROLLBACK")
    con.execute("BEGIN")
    con.execute("INSERT INTO t VALUES (2)")
    commit(con)  # a transaction nothing aborted is committed
    assert con.execute("SELECT a FROM t").fetchall() == [(2,)]


def test_a_store_transaction_whose_error_was_caught_raises_and_keeps_nothing(tmp_path: Path):
    store = Store(tmp_path / "sync.duckdb")
    with store.connect() as con:
        con.execute("CREATE TABLE t (a INTEGER PRIMARY KEY)")
    with pytest.raises(TransactionAborted):
        with store.connect() as con:
            con.execute("INSERT INTO t VALUES (1)")
            try:
                con.execute("INSERT INTO t VALUES (1)")
            except duckdb.ConstraintException:
                pass  # code that goes on after an error it caught
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
        con.execute("INSERT INTO t VALUES (3)")  # the store works on
    with store.connect() as con:
        assert con.execute("SELECT a FROM t").fetchall() == [(3,)]


def test_at_the_terminal_an_aborted_transaction_is_an_internal_error_in_one_line():
    from crm_wave.cli_errors import EXIT_CODES, explain

    err = explain(TransactionAborted("an error inside a transaction aborted it and the code went on: nothing of the "
                                     "transaction was written (DuckDB: TransactionContext Error: ...)"))
    assert err.kind == "internal" and err.code == EXIT_CODES["internal"] == 70
    assert "\n" not in err.message and "nothing of the transaction was written" in err.message
    assert "--debug" in err.message
