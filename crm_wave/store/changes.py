"""The change log: which global ids' links, agreed values or golden rows changed since an
incremental step (global, share) last ran, and how far each step has read (`step_marks`)."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import polars as pl

from crm_wave.store.connection import FEW, registered

__all__ = ["ChangeLog"]


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
        ((seq,),) = con.execute("SELECT nextval('change_seq')").fetchall()
        ids = ids.cast(pl.String).unique(maintain_order=True)
        if ids.len() <= FEW:
            for g in ids:
                con.execute("INSERT INTO changes VALUES (?, ?, ?, ?, ?)", [seq, entity, g, kind, writer])
            return
        with registered(con, "_changes_in", pl.DataFrame({"global_id": ids})):
            con.execute("INSERT INTO changes SELECT ?, ?, global_id, ?, ? FROM _changes_in", [seq, entity, kind, writer])

    def last_change(self, con: duckdb.DuckDBPyConnection) -> int:
        """The newest change sequence number (0 when none)."""
        return int(con.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchall()[0][0])

    def read_changes(self, con: duckdb.DuckDBPyConnection, after: int, upto: int) -> pl.DataFrame:
        """Changes in (`after`, `upto`]: entity, global_id, kind, writer."""
        return con.execute("SELECT entity, global_id, kind, writer FROM changes WHERE seq > ? AND seq <= ?",
                           [after, upto]).pl().cast({"entity": pl.String, "global_id": pl.String, "kind": pl.String,
                                                     "writer": pl.String})

    def read_marks(self, con: duckdb.DuckDBPyConnection, step: str) -> dict[str, int]:
        """`source -> mark` of one incremental step."""
        return dict(con.execute("SELECT source, mark FROM step_marks WHERE step = ?", [step]).fetchall())

    def set_marks(self, con: duckdb.DuckDBPyConnection, step: str, marks: dict[str, int]) -> None:
        """Replace the marks of one step; then forget changes every step has read."""
        frame = pl.DataFrame({"step": step, "source": list(marks), "mark": [int(v) for v in marks.values()]},
                             schema={"step": pl.String, "source": pl.String, "mark": pl.Int64})
        with registered(con, "_marks_in", frame):
            con.execute("INSERT INTO step_marks SELECT * FROM _marks_in "
                        "ON CONFLICT (step, source) DO UPDATE SET mark = excluded.mark")
        con.execute("DELETE FROM changes WHERE seq <= (SELECT min(mark) FROM step_marks WHERE source = 'changes')")
