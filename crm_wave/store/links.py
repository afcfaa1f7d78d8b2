"""Links (which CRM and Wave records are one global entity) and agreed values (the base of the
three-way merge: the last values both sides held)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import duckdb
import polars as pl

from crm_wave.logic.link import LINK_SCHEMA
from crm_wave.store.changes import ChangeLog
from crm_wave.store.connection import FEW, FEW_IDS, arrow, fetch_frame, ids_predicate, json_typed, registered, sql_ident, sql_str
from crm_wave.store.writes import log_rows

__all__ = ["Links"]


_UPSERT_LINK = (
    "ON CONFLICT (entity, global_id) DO UPDATE SET "
    "crm_id = coalesce(links.crm_id, excluded.crm_id), wave_id = coalesce(links.wave_id, excluded.wave_id), "
    "how = CASE WHEN links.crm_id IS NULL OR links.wave_id IS NULL THEN excluded.how ELSE links.how END, "
    "linked_at = CASE WHEN links.crm_id IS NULL OR links.wave_id IS NULL THEN excluded.linked_at "
    "ELSE links.linked_at END")


class Links(ChangeLog):
    """The `links` and `agreed` tables. Every write is logged in `changes` (see `ChangeLog`)."""

    def read_links(self, con: duckdb.DuckDBPyConnection, entity: str) -> pl.DataFrame:
        """The link table of one entity stem."""
        return con.execute(
            "SELECT global_id, crm_id, wave_id, how FROM links WHERE entity = ? ORDER BY global_id", [entity]
        ).pl()

    def upsert_links(self, con: duckdb.DuckDBPyConnection, entity: str,
                     links: pl.DataFrame | Iterable[tuple[str, str | None, str | None, str]], now: datetime, *,
                     writer: str | None = None, log: bool = True, fresh: bool = False) -> None:
        """Insert or complete links `(global_id, crm_id, wave_id, how)` (rows or a frame); a side once
        set is never unset. `fresh`: the caller knows no link row of these global ids exists (a plain
        insert: no conflict check, and a commit about half as dear)."""
        frame = links if isinstance(links, pl.DataFrame) else pl.DataFrame(list(links), schema=LINK_SCHEMA,
                                                                            orient="row")
        if frame.height == 0:
            return
        frame = frame.select(list(LINK_SCHEMA)).cast(LINK_SCHEMA)
        if frame["global_id"].n_unique() != frame.height:  # the same link twice: one after the other
            for part in frame.with_row_index("_i").with_columns(
                    pl.int_range(pl.len()).over("global_id").alias("_n")).partition_by("_n", maintain_order=True):
                self.upsert_links(con, entity, part.drop("_i", "_n"), now, writer=writer, log=log, fresh=fresh)
                fresh = False  # the next round completes the links of this one
            return
        if frame.height <= FEW:
            for g, c, w, h in frame.iter_rows():
                con.execute(f"INSERT INTO links VALUES (?, ?, ?, ?, ?, ?) {_UPSERT_LINK}", [entity, g, c, w, h, now])
        else:
            with registered(con, "_links_in", frame):
                con.execute(f"INSERT INTO links SELECT ?, global_id, crm_id, wave_id, how, ? FROM _links_in "
                            f"{'' if fresh else _UPSERT_LINK}", [entity, now])
        log_rows(con, "links", frame["global_id"])
        if log:
            self.log_changes(con, entity, frame["global_id"], "link", writer=writer)

    def drop_links(self, con: duckdb.DuckDBPyConnection, entity: str, global_ids: Sequence[str], *,
                   writer: str | None = None) -> None:
        """Remove link rows (a half link absorbed into another one)."""
        if not global_ids:
            return
        ids = pl.DataFrame({"global_id": list(global_ids)}, schema={"global_id": pl.String})
        with ids_predicate(con, "_drop_in", ids["global_id"], "global_id") as (among, params):
            con.execute(f"DELETE FROM links WHERE entity = ? AND {among}", [entity, *params])
        log_rows(con, "links", ids["global_id"])
        self.log_changes(con, entity, ids["global_id"], "link", writer=writer)

    # ---- agreed values --------------------------------------------------------------
    def read_agreed(self, con: duckdb.DuckDBPyConnection, entity: str) -> dict[str, dict[str, Any]]:
        """`global_id -> last agreed canonical values`."""
        rows = con.execute('SELECT global_id, "values"::VARCHAR FROM agreed WHERE entity = ?', [entity]).fetchall()
        return {g: json.loads(v) for g, v in rows}

    def has_agreed(self, con: duckdb.DuckDBPyConnection, entity: str) -> bool:
        """Whether any value of `entity` is agreed."""
        return bool(con.execute("SELECT 1 FROM agreed WHERE entity = ? LIMIT 1", [entity]).fetchall())

    def read_agreed_frame(self, con: duckdb.DuckDBPyConnection, entity: str, fields: Sequence[str],
                          global_ids: pl.Series | None = None) -> pl.DataFrame:
        """Agreed values as a frame: `global_id` and one String column per field (null when not agreed)."""
        schema = pl.Schema({"global_id": pl.String, **{f: pl.String for f in fields}})
        if global_ids is not None and global_ids.len() == 0:
            return pl.DataFrame(schema=schema)
        structure = json.dumps({f: "VARCHAR" for f in fields})
        sel = ", ".join(f"s[{sql_str(f)}] AS {sql_ident(f)}" for f in fields)
        query = (f"SELECT global_id{', ' + sel if fields else ''} FROM (SELECT global_id, json_transform(\"values\", ?) "
                 f"AS s FROM agreed WHERE entity = ?{{where}})")
        if global_ids is None:
            frame = con.execute(query.format(where=""), [structure, entity]).pl()
        else:
            with ids_predicate(con, "_agreed_ids", global_ids, "global_id") as (among, params):
                frame = fetch_frame(con, query.format(where=f" AND {among}"), [structure, entity, *params],
                                    small=global_ids.len() <= FEW_IDS)
        return frame.cast(schema) if frame.height else pl.DataFrame(schema=schema)

    def upsert_agreed(self, con: duckdb.DuckDBPyConnection, entity: str,
                      values: pl.DataFrame | dict[str, dict[str, Any]], now: datetime, *, log: bool = True,
                      fresh: bool = False) -> None:
        """Store agreed values per global id, merged over what was agreed before: a dict
        `global_id -> values`, or a frame of `global_id` plus one String column per field.

        A null stands for "agreed: empty"; `log=False` for the global step's own writes (it has
        merged those rows already). `fresh`: the caller knows no agreed row of these global ids exists
        (a plain insert, as `upsert_links`)."""
        if isinstance(values, pl.DataFrame):
            if values.height == 0:
                return
            fields = [c for c in values.columns if c != "global_id"]
            frame = values.select("global_id", pl.struct(fields).struct.json_encode().alias("values"))
        else:
            if not values:
                return
            frame = pl.DataFrame({"global_id": list(values),
                                  "values": [json.dumps(v, sort_keys=True, separators=(",", ":")) for v in values.values()]},
                                 schema={"global_id": pl.String, "values": pl.String})
        # The rows agreed before are patched with the new values as given, nulls included: `json_merge_patch` drops a
        # key whose new value is null, which reads back as null all the same (an `ON CONFLICT` update would patch
        # with the inserted row: a field agreed empty kept its old value, and an edit back to that value was then
        # undone as "unchanged"). The others are inserted as given, a field agreed empty as a null: they were
        # `json_merge_patch('{}', values)`, nulls dropped, which cost as much again as the insert (~0.4 s a
        # 200,000 rows; docs/benchmarks.md, "Session 33"). The values go as JSON (`json_typed`, not parsed to
        # check them): polars and `json.dumps` write them.
        with registered(con, "_agreed_in", json_typed(arrow(frame), "values")):
            if not fresh:
                con.execute('UPDATE agreed SET "values" = json_merge_patch(agreed."values", i."values"), updated_at = ? '
                            'FROM _agreed_in i WHERE agreed.entity = ? AND agreed.global_id = i.global_id', [now, entity])
            con.execute('INSERT INTO agreed SELECT ?, global_id, "values", ? FROM _agreed_in'
                        + ('' if fresh else ' ON CONFLICT (entity, global_id) DO NOTHING'), [entity, now])
        log_rows(con, "agreed", frame["global_id"])
        if log:
            self.log_changes(con, entity, frame["global_id"], "agreed")
