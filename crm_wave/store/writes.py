"""The row-write log: which rows of the golden and share tables, `links`, `agreed` and the
conflict queue each transaction wrote, by global id, so that a segment snapshot (crm_wave/analyst/segments.py) reads
the rows written since the one before instead of hashing every row.

Every write of a logged table (`logged`) goes through `crm_wave/store` (`Tables`, `Links`,
`queue.py`; one more in `crm_wave/sync/deletes.py`), which calls `log_rows` in the same transaction: the global ids of the rows written (deleted, inserted or
updated), or NULL when any row may have changed (a whole table replaced, or more than `WHOLE_PAST`
rows at once: a full pass, which a snapshot copies anyway). `row_writes_state` holds the log's
identity (a store built again has another, so a snapshot never trusts a mark of another log) and
the highest `seq` pruned. A snapshot publish forgets the rows its previous snapshot covered
(`forget`; a copy, all of them), and the oldest rows past `KEEP` are deleted when no snapshot
does; a snapshot whose mark is older than what was pruned reads every row again.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import polars as pl

from crm_wave.store.connection import FEW_IDS, registered

__all__ = ["KEEP", "LOG", "LOG_TABLES", "STATE", "WHOLE_PAST", "forget", "log_rows", "logged"]

LOG, STATE = "row_writes", "row_writes_state"
#: The log's own tables (segment snapshots leave them out: bookkeeping of the snapshots themselves).
LOG_TABLES = (LOG, STATE)
#: A write of more rows than this logs the whole table (NULL) instead of each global id.
WHOLE_PAST = 100_000
#: Log rows kept; older ones are pruned (checked every `_PRUNE_EVERY` writes).
KEEP = 500_000
_PRUNE_EVERY = 64


def logged(table: str) -> bool:
    """Whether every write of `table` is in the log: golden `global_<entity>`, share `<side>_<entity>_share`,
    `links`, `agreed`, `conflict_queue` (a staging table `<name>__rebuild` is not: `swap_table` logs its
    target whole). A golden table stored as files (crm_wave/store/files.py) is logged all the same; a
    snapshot links its parts and reads its few changed rows (`<name>__changed`, not logged) whole."""
    if "__" in table:
        return False
    return table in ("links", "agreed", "conflict_queue") or table.startswith("global_") or table.endswith("_share")


def log_rows(con: duckdb.DuckDBPyConnection, table: str, global_ids: pl.Series | Sequence[str] | None) -> None:
    """Record, in the caller's transaction, that the rows of `table` with these global ids were written
    (None, or a null id: any row may have changed)."""
    if not logged(table):
        return
    ids = None if global_ids is None else (global_ids if isinstance(global_ids, pl.Series)
                                           else pl.Series(list(global_ids), dtype=pl.String))
    if ids is not None:
        if ids.len() == 0:
            return
        ids = ids.cast(pl.String)
        if ids.null_count() or ids.len() > WHOLE_PAST:
            ids = None
    # One statement for a few ids, the sequence number drawn inside it (a statement costs ~1 ms here).
    if ids is None:
        ((seq,),) = con.execute(f"INSERT INTO {LOG} VALUES (nextval('row_write_seq'), ?, NULL) RETURNING seq",
                                [table]).fetchall()
    else:
        ids = ids.unique()
        if ids.len() <= FEW_IDS:  # as `ids_predicate`: a list parameter costs less than a registered frame
            seq = con.execute(f"INSERT INTO {LOG} SELECT n.seq, ?, u.g FROM (SELECT nextval('row_write_seq') AS seq) n, "
                              "unnest(?::VARCHAR[]) AS u(g) RETURNING seq", [table, ids.to_list()]).fetchall()[0][0]
        else:
            ((seq,),) = con.execute("SELECT nextval('row_write_seq')").fetchall()
            with registered(con, "_row_writes_in", pl.DataFrame({"global_id": ids})):
                con.execute(f"INSERT INTO {LOG} SELECT ?, ?, global_id FROM _row_writes_in", [seq, table])
    if seq % _PRUNE_EVERY == 0:
        _prune(con)


def forget(con: duckdb.DuckDBPyConnection, upto: int | None) -> None:
    """Delete the log's rows up to seq `upto` (None: all), in the caller's transaction."""
    try:
        ((top,),) = con.execute(f"SELECT max(seq) FROM {LOG}" + ("" if upto is None else " WHERE seq <= ?"),
                                [] if upto is None else [upto]).fetchall()
    except duckdb.CatalogException:  # a store from before the log
        return
    if top is None:
        return
    con.execute(f"DELETE FROM {LOG} WHERE seq <= ?", [top])
    con.execute(f"UPDATE {STATE} SET pruned = greatest(pruned, ?)", [top])


def _prune(con: duckdb.DuckDBPyConnection) -> None:
    """Delete the log's oldest rows past `KEEP` and raise `pruned` to the highest seq deleted."""
    cut = con.execute(f"SELECT seq FROM {LOG} ORDER BY seq DESC LIMIT 1 OFFSET ?", [KEEP]).fetchall()
    if not cut:
        return
    con.execute(f"DELETE FROM {LOG} WHERE seq <= ?", [cut[0][0]])
    con.execute(f"UPDATE {STATE} SET pruned = greatest(pruned, ?)", [cut[0][0]])
