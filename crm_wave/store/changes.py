"""The change log: which global ids' links, agreed values or golden rows changed since an
incremental step (global, share) last ran, and how far each step has read (`step_marks`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import duckdb
import polars as pl

from crm_wave.store.connection import FEW_IDS, fetch_frame, registered

__all__ = ["PRUNE_CHANGES", "PRUNE_READ", "ChangeLog"]

#: The change log is pruned when a step's `changes` mark crosses a multiple of this,
PRUNE_CHANGES = 32
#: or when the step read at least this many changes past its mark (a pass that changed many records
#: leaves no rows behind for the analysts' snapshot to hash: docs/benchmarks.md, "Session 22").
PRUNE_READ = 1_000


class ChangeLog:
    """The `changes` and `step_marks` tables."""

    def log_changes(self, con: duckdb.DuckDBPyConnection, entity: str, global_ids: pl.Series | Sequence[str], kind: str,
                    *, writer: str | None = None) -> None:
        """Record that these global ids' links, agreed values or golden rows changed (see `changes`).

        `global_ids` of just "*" means "all of them" (after a full rebuild).
        """
        ids = global_ids if isinstance(global_ids, pl.Series) else pl.Series(list(global_ids), dtype=pl.String)
        if ids.len() == 0:
            return
        ids = ids.cast(pl.String).unique(maintain_order=True)
        if ids.len() <= FEW_IDS:  # one statement, the sequence number drawn inside it
            con.execute("INSERT INTO changes SELECT n.seq, ?, u.g, ?, ? FROM (SELECT nextval('change_seq') AS seq) n, "
                        "unnest(?::VARCHAR[]) AS u(g)", [entity, kind, writer, ids.to_list()])
            return
        ((seq,),) = con.execute("SELECT nextval('change_seq')").fetchall()
        with registered(con, "_changes_in", pl.DataFrame({"global_id": ids})):
            con.execute("INSERT INTO changes SELECT ?, ?, global_id, ?, ? FROM _changes_in", [seq, entity, kind, writer])

    def own_top(self, con: duckdb.DuckDBPyConnection, after: int, entity: str, writer: str) -> int:
        """The newest change sequence number when every change after `after` was written by `writer` for
        `entity` (a step that never reads its own changes may move its mark past them), else `after`."""
        ((top, own),) = con.execute("SELECT max(seq), bool_and(entity = ? AND writer IS NOT DISTINCT FROM ?) "
                                    "FROM changes WHERE seq > ?", [entity, writer, after]).fetchall()
        return int(top) if top is not None and own else after

    def last_change(self, con: duckdb.DuckDBPyConnection) -> int:
        """The newest change sequence number (0 when none)."""
        return int(con.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchall()[0][0])

    def read_changes(self, con: duckdb.DuckDBPyConnection, after: int, upto: int) -> pl.DataFrame:
        """Changes in (`after`, `upto`]: entity, global_id, kind, writer."""
        return fetch_frame(con, "SELECT entity, global_id, kind, writer FROM changes WHERE seq > ? AND seq <= ?",
                           [after, upto], small=upto - after <= FEW_IDS).cast({"entity": pl.String, "global_id": pl.String, "kind": pl.String,
                                                     "writer": pl.String})

    def changes_since(self, con: duckdb.DuckDBPyConnection, after: int) -> tuple[pl.DataFrame, int]:
        """(changes after `after`, as `read_changes`; the newest change sequence number, at least `after`):
        one statement for `last_change` and `read_changes` together."""
        frame = fetch_frame(con, "SELECT entity, global_id, kind, writer, seq FROM changes WHERE seq > ?", [after])
        top = max(after, int(frame["seq"].cast(pl.Int64).max() or 0))  # type: ignore[arg-type]
        return frame.drop("seq").cast({"entity": pl.String, "global_id": pl.String, "kind": pl.String,
                                       "writer": pl.String}), top

    def read_marks(self, con: duckdb.DuckDBPyConnection, step: str) -> dict[str, int]:
        """`source -> mark` of one incremental step."""
        return dict(con.execute("SELECT source, mark FROM step_marks WHERE step = ?", [step]).fetchall())

    def set_marks(self, con: duckdb.DuckDBPyConnection, step: str, marks: dict[str, int],
                  previous: Mapping[str, int] | None = None, *, read: int = 0) -> None:
        """Set the marks of one step (just those that differ from `previous`, the marks it read, when
        given); then, if its `changes` mark moved, forget the changes every step has read (`read`: how
        many changes the step read past its mark).

        One `UPDATE` for the marks that moved, an `INSERT` for a new one: DuckDB's `ON CONFLICT` upsert
        costs 2.6x an `UPDATE` (9.6 against 3.7 ms of CPU), and a pass sets 18 steps' marks."""
        moved = {k: int(v) for k, v in marks.items() if previous is None or previous.get(k) != int(v)}
        if len(moved) == 1:
            ((source, mark),) = moved.items()
            ((n,),) = con.execute("UPDATE step_marks SET mark = ? WHERE step = ? AND source = ?",
                                  [mark, step, source]).fetchall()
            missing = [] if n else [source]
        elif moved:  # one statement for all of them (a global step moves 3-4)
            found = {r[0] for r in con.execute(
                "UPDATE step_marks SET mark = m.mark FROM (SELECT unnest(?::VARCHAR[]) AS source, unnest(?::BIGINT[]) AS mark) m "
                "WHERE step_marks.step = ? AND step_marks.source = m.source RETURNING step_marks.source",
                [list(moved), list(moved.values()), step]).fetchall()}
            missing = [k for k in moved if k not in found]
        else:
            missing = []
        for source in missing:
            con.execute("INSERT INTO step_marks VALUES (?, ?, ?)", [step, source, moved[source]])
        # Forgetting what every step has read is one statement of ~2 ms: done when the mark crosses a
        # multiple of `PRUNE_CHANGES` or the step read `PRUNE_READ` changes (the changes kept meanwhile
        # are past every step's mark: never read).
        if "changes" in moved and (previous is None or read >= PRUNE_READ or moved["changes"] // PRUNE_CHANGES
                                   != int(previous.get("changes", 0)) // PRUNE_CHANGES):
            con.execute("DELETE FROM changes WHERE seq <= (SELECT min(mark) FROM step_marks WHERE source = 'changes')")
