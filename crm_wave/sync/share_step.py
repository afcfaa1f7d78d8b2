"""Share: per target, the diff between golden and current state (`<system>-<type>-share`).

Orders wait, visibly and with the reason, until their customer and every line's
product exist in the target. Values a target cannot take are held at the target's
value here (Wave has no un-archive and no un-approve; a cancelled order is not created
in Wave), so they never loop.

Incremental like the global step: a pass recomputes the rows of the global ids whose
golden row the global step rewrote since this step last ran (and, for orders, whose
customer or product link changed), and replaces just those rows of the share table.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from crm_wave.logic.merge import HELD
from crm_wave.logic.share import SHARE_SCHEMA, share_diff
from crm_wave.store.db import Store
from crm_wave.store import files
from crm_wave.store.files import STAGING
from crm_wave.sync import global_step
from crm_wave.sync.global_step import (
    CHUNK,
    all_links,
    fingerprint,
    golden_columns,
    merge_fields,
    one_way_fields,
    orders_touching,
)
from crm_wave.sync.names import global_table, share_table
from crm_wave.sync.refs import line_products, order_links

__all__ = ["ShareResult", "build_share", "target_fields"]

#: Parts of a rebuild computed at once (`_computed`; docs/benchmarks.md, "Session 32"). An incremental step's few
#: rows are computed on the caller's thread, in its one transaction.
AHEAD = 2


@dataclass(frozen=True)
class ShareResult:
    """Counts of one share step, by op."""

    table: str
    inserts: int
    updates: int
    deletes: int
    waiting: int

    @property
    def work(self) -> int:
        """Writes the push would do now."""
        return self.inserts + self.updates

    @property
    def rows(self) -> int:
        """Rows of the share table."""
        return self.inserts + self.updates + self.deletes + self.waiting


def target_fields(entity: str, target: str) -> list[str]:
    """Fields the sync writes to `target` for an entity stem."""
    one_way = one_way_fields(entity)
    fields = merge_fields(entity)
    if target == "wave":
        return [f for f in fields if f not in one_way]
    return [f for f in fields if f != "Total"]


def _order_waits(merged: pl.DataFrame, target: str, links: dict[str, pl.DataFrame]) -> pl.Series:
    """Why each order waits (None: it does not), from the golden `CustomerId` and `Lines`."""
    t_col = f"{target}_id"
    ids = merged.select(pl.int_range(pl.len()).alias("_r"), "CustomerId", "Lines", "Status", f"{target}_state")
    cust = ids.join(links["customer"].select(pl.col("global_id").alias("CustomerId"), pl.col(t_col).alias("_t")),
                    on="CustomerId", how="left", maintain_order="left")
    cancelled = pl.lit(target == "wave") & (pl.col("Status") == "cancelled") & (pl.col(f"{target}_state") == "absent")
    unlinked_customer = (pl.col("CustomerId").is_not_null() & ~pl.col("CustomerId").str.starts_with("unlinked:")
                         & pl.col("_t").is_null())
    reasons = cust.select(
        "_r",
        pl.when(cancelled).then(pl.lit("cancelled in the CRM: not created in Wave")).alias("_w1"),
        pl.when(unlinked_customer).then(pl.lit("customer ") + pl.col("CustomerId") + pl.lit(f" is not linked in {target} yet"))
        .alias("_w2"),
    )
    # A line's product id that is null reads "None", as str() has it (and sorts like one).
    products_named = line_products(ids["Lines"]).list.eval(pl.element().fill_null("None"))
    refs = ids.select("_r", products_named.alias("_p")).explode("_p").drop_nulls("_p")
    if refs.height:
        products = links["product"].select(pl.col("global_id").alias("_p"), pl.col(t_col).alias("_t"))
        missing = (refs.filter(~pl.col("_p").str.starts_with("unlinked:"))
                   .join(products, on="_p", how="left").filter(pl.col("_t").is_null())
                   .unique(["_r", "_p"]).sort("_r", "_p")
                   .group_by("_r").agg(pl.col("_p").str.join(", ").alias("_m")))
        reasons = reasons.join(missing, on="_r", how="left", maintain_order="left")
    else:
        reasons = reasons.with_columns(pl.lit(None, pl.String).alias("_m"))
    w3 = pl.when(pl.col("_m").is_not_null()).then(pl.lit("product(s) ") + pl.col("_m") + pl.lit(f" not linked in {target} yet"))
    out = reasons.sort("_r").select(pl.concat_str([pl.col("_w1"), pl.col("_w2"), w3], separator="; ", ignore_nulls=True)
                                     .alias("_wait"))["_wait"]
    return pl.select(pl.when(out.str.len_bytes() > 0).then(out)).to_series().alias("_wait")


def _hold(merged: pl.DataFrame, field: str, cond: pl.Expr, target: str) -> pl.DataFrame:
    """Keep the target's value where it cannot take the golden one."""
    return merged.with_columns(
        pl.when(cond & (pl.col(f"{target}_state") == "present")).then(pl.col(f"{field}__{target}")).otherwise(pl.col(field)).alias(field)
    )


def _hold_listed(merged: pl.DataFrame, target: str, entity: str) -> pl.DataFrame:
    """Keep the target's value of the fields the merge listed in `held__<target>` (they wait for a
    person, or are one-way and were edited on this side)."""
    col = HELD[target]
    if col not in merged.columns or merged[col].null_count() == merged.height:
        return merged
    listed = pl.lit(",") + pl.col(col) + pl.lit(",")
    for f in target_fields(entity, target):
        merged = _hold(merged, f, listed.str.contains(f",{f},", literal=True).fill_null(False), target)
    return merged


def compute_share(merged: pl.DataFrame, target: str, entity: str, links: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """The share rows of the golden rows `merged` (any subset of the golden table)."""
    merged = _hold_listed(merged, target, entity)
    wait_col = None
    if entity == "order":
        merged = merged.with_columns(_order_waits(merged, target, links))
        wait_col = "_wait"
        if target == "wave":
            merged = _hold(merged, "Status", pl.col("Status").is_in(["cancelled", "draft"]) & (pl.col("Status__wave") != "draft"), target)
    if entity == "product" and target == "wave":
        merged = _hold(merged, "IsArchived", (pl.col("IsArchived") == "false") & (pl.col("IsArchived__wave") == "true"), target)
        # Archiving is Wave's delete of a product: one archived already has nothing left to delete.
        done = ((pl.col("crm_state") == "deleted") & (pl.col("IsArchived__wave") == "true")).fill_null(False)
        merged = merged.filter(~done)
    extra = None
    if entity == "customer" and target == "crm":
        # A person's Name is derived; it is written to the CRM only when the customer is created there.
        merged = _hold(merged, "Name", pl.col("Type") == "person", target)
        extra = {"Type": pl.coalesce(pl.col("Type"), pl.lit("organization"))}
    return share_diff(merged, target, target_fields(entity, target), wait_reason=wait_col, insert_extra=extra)


def build_share(store: Store, target: str, entity: str, *, full: bool | None = None) -> ShareResult:
    """Compute and store the share table of (`target`, `entity`); incremental unless `full`.

    One share step per table runs at a time (two syncs started at once take turns), and no global step of
    the entity runs meanwhile: a rebuild reads the golden table in parts, across transactions, and a large
    one's parts are Parquet files that the global step's next rebuilds replace and delete (crm_wave/store/files.py)."""
    with store.named_lock(f"share_{target}_{entity}"), store.named_lock(f"global_{entity}"):
        with store.session(), contextlib.ExitStack() as rest:
            result, unfiled = _build_share(store, target, entity, full=full, rest=rest)
        if unfiled:  # a DuckDB table again, committed: nothing reads its parts now (a copy's are hard links)
            files.delete_parts(store.files_root, result.table)
        return result


def _read_columns(entity: str, target: str) -> list[str]:
    """The golden columns a share of `target` reads: all but the other side's copies of the fields."""
    other = "__wave" if target == "crm" else "__crm"
    return [c for c in golden_columns(entity) if not c.endswith(other)]


def _build_share(store: Store, target: str, entity: str, *, full: bool | None,
                 rest: contextlib.ExitStack) -> tuple[ShareResult, bool]:
    """(the step's counts, whether a share table stored as files became a DuckDB table)."""
    table = share_table(target, entity)
    gtable = global_table(entity)
    step = f"share_{target}_{entity}"
    fp = fingerprint(entity)
    with store.connect() as con:
        columns = store.table_columns(con, gtable)
        if columns is None:
            raise RuntimeError(f"{gtable} does not exist yet: run the global step first")
        marks = store.read_marks(con, step)
        incremental = (not full and marks.get("fingerprint") == fp and "changes" in marks
                       and columns == list(golden_columns(entity)) and store.table_columns(con, table) == list(SHARE_SCHEMA))
        dirty, read = None, 0
        if not incremental:
            top_change = store.last_change(con)
        else:
            logged, top_change = store.changes_since(con, marks["changes"])
            read = logged.height
            golden = logged.filter((pl.col("entity") == entity) & (pl.col("kind") == "golden"))
            deps = logged.filter((pl.col("entity") != entity) & (pl.col("kind") == "link")) if entity == "order" \
                else logged.clear()
            if (golden["global_id"] == "*").any() or (deps["global_id"] == "*").any():
                incremental = False
            else:
                sources = [golden["global_id"]]
                if entity == "order" and deps.height:
                    sources.append(orders_touching(con, deps))
                dirty = pl.concat(sources).unique()
                if dirty.len() == 0:  # no golden row changed: the share table stands as it is
                    store.set_marks(con, step, {"changes": top_change, "fingerprint": fp}, marks, read=read)
                    return _share_result(con, table), False
        # In parts, so that a rebuild of a large table needs bounded memory.
        if incremental:
            assert dirty is not None  # set whenever the step stays incremental
            parts: list = [dirty.slice(i, CHUNK) for i in range(0, dirty.len(), CHUNK)] or [dirty]
        else:
            parts = store.row_ranges(con, gtable, CHUNK)
    if incremental:  # a few rows: the rest of the step is one transaction (see `Connection.atomic`)
        rest.enter_context(store.atomic())
    staging = f"{table}{STAGING}"
    wanted = _read_columns(entity, target)
    every: dict[str, pl.DataFrame] = {}  # a rebuild's orders: every customer and product link, read once
    # A rebuild's rows are held until they pass `FILES_PAST` (then written as the first Parquet part of the
    # staging table and each part after as the next) or the parts end (then written as a DuckDB table): a large
    # share table is stored as files, as a golden one is (writing 900,000 order updates took DuckDB 1.2 s and
    # polars 0.1 s; docs/benchmarks.md, "Session 29").
    held: list[pl.DataFrame] = []
    as_files = False

    def read_part(part: Any) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
        nonlocal every
        with store.connect() as con:
            merged = (store.read_rows(con, gtable, "global_id", part, wanted) if incremental
                      else store.read_range(con, gtable, part, wanted))
            if entity != "order":
                return merged, {}
            if incremental:
                return merged, order_links(con, merged)
            # Every part of a rebuild refers to most of them: one read (and no decoding of the lines
            # to find which) instead of an id-filtered read per part (4.1 of 14.2 s at a million orders).
            every = every or {e: all_links(store, con, e) for e in ("customer", "product")}
            return merged, every

    for part, frame in _computed(parts, read_part, target, entity, AHEAD if not incremental else 1):
        if incremental:
            with store.connect() as con:
                store.replace_rows(con, table, "global_id", part, frame)
        elif as_files:
            if frame.height:
                with store.connect() as con:
                    store.insert_rows(con, staging, frame)
        else:
            held.append(frame)
            if sum(f.height for f in held) > global_step.FILES_PAST:
                with store.connect() as con:
                    store.replace_table(con, staging, pl.concat(held), as_files=True)
                held, as_files = [], True
        del frame
    with store.connect() as con:
        if not incremental:
            if not as_files:
                store.replace_table(con, staging, pl.concat(held) if held else pl.DataFrame(schema=SHARE_SCHEMA))
            store.swap_table(con, staging, table)
        store.set_marks(con, step, {"changes": top_change, "fingerprint": fp}, marks, read=read)
        result = _share_result(con, table)
        if incremental and result.rows <= global_step.FILES_PAST and files.is_backed(con, table):
            # Stored as files by a large rebuild, and few rows left (the pushes done): a DuckDB table again, or every
            # read would keep subtracting the rows gone since from the files' (`files`, `<name>__changed`).
            rows = store.read_table(con, table)
            assert rows is not None  # its files are there: they were just read
            store.replace_table(con, table, rows)
            return result, True
        return result, False


def _computed(parts: list[Any], read_part: Callable[[Any], tuple[pl.DataFrame, dict[str, pl.DataFrame]]], target: str,
              entity: str, ahead: int) -> Iterator[tuple[Any, pl.DataFrame]]:
    """Each part with its share rows, in order. Parts are read on the caller's thread (the store's connection);
    with `ahead` > 1, up to that many are computed at once on threads of their own (`compute_share` is polars'
    work, which leaves the GIL, and a part's computation keeps little more than one core busy)."""
    if ahead <= 1:
        for part in parts:
            merged, links = read_part(part)
            yield part, compute_share(merged, target, entity, links)
        return
    with ThreadPoolExecutor(ahead, thread_name_prefix=f"share-{target}-{entity}") as pool:
        pending: deque[tuple[Any, Future[pl.DataFrame]]] = deque()
        for part in parts:
            merged, links = read_part(part)
            pending.append((part, pool.submit(compute_share, merged, target, entity, links)))
            del merged
            if len(pending) >= ahead:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


def _share_result(con: duckdb.DuckDBPyConnection, table: str) -> ShareResult:
    counts = dict(con.execute(f"SELECT op, count(*) FROM {table} GROUP BY op").fetchall())
    return ShareResult(table, counts.get("insert", 0), counts.get("update", 0), counts.get("delete", 0), counts.get("wait", 0))

