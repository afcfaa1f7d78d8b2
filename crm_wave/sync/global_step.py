"""Global: link the two systems' records and merge them into golden records (`global-<type>`).

Reads both collected datasets, maps them to canonical records (references translated to
global ids through the link tables), links unlinked records by the merge keys, merges
per field against the agreed values, and stores the golden table, new links, agreed
values and conflicts.

The step is incremental. It remembers (`step_marks`) the last dataset `_seq` it merged
from each side and the last entry of `changes` (links and agreed values written by the
pushes) it read. A pass re-merges only the global ids whose records have a new version,
whose link or agreed values changed, or (orders) whose customer or product link changed,
and replaces just those rows of the golden table; the other rows are what a full rebuild
would compute again. The first run, a mapping change (`fingerprint`) or `full=True`
rebuilds everything.

Canonical records are computed in bulk: the database hands over the JSON fragment of
every field the mapping reads (`json_transform`), polars normalises them
(`crm_wave.mapping.canonical.canonical_from_fragments`). A record the mapping cannot read
does not stop the step: it is held at its newest readable version or left out (`_hold`),
and listed (`GlobalResult.unreadable`, `unreadable_records`) until a version of it reads.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import polars as pl

from crm_wave.logic.intents import CREATE_KEY_FIELD, intent_key
from crm_wave.logic.link import LINK_SCHEMA, link_records
from crm_wave.logic.merge import merge_records
from crm_wave.mapping.canonical import (
    LINE_DTYPE,
    LINE_SLOTS,
    LINES_PATH,
    canonical_fields,
    canonical_from_fragments,
    UnreadableRecord,
    exact_cells,
    source_slots,
)
from crm_wave.mapping import canonical as canonical_paths
from crm_wave.mapping.flows import flows_for
from crm_wave.mapping.normalize import canonical_series
from crm_wave.config.settings import AppSettings
from crm_wave.mapping.policy import Policy, field_policy_exprs, load_policy
from crm_wave.store.connection import ids_predicate, registered, sql_str
from crm_wave.store.db import Store
from crm_wave.store.files import STAGING
from crm_wave.store.queue import has_items, read_queue, reconcile
from crm_wave.store.tables import column_types
from crm_wave.store.unreadable import record_unreadable
from crm_wave.sync.cells import lines_cell_series
from crm_wave.sync.names import dataset, global_table
from crm_wave.sync.refs import line_products, links_where
from crm_wave.sync.spill import Spill

__all__ = ["GlobalResult", "all_links", "build_global", "merge_fields", "one_way_fields", "read_canonical", "ENGINE_VERSION"]

#: Bump when the canonical mapping or the merge changes in a way `flows.py` does not show:
#: every step then rebuilds its table once.
ENGINE_VERSION = 4
#: `changes.writer` of the global step's own writes.
OWN = "global"
SIDES = ("crm", "wave")


@dataclass(frozen=True)
class GlobalResult:
    """Counts of one global step."""

    entity: str
    golden: int
    new_links: int
    merged_by_key: int
    conflicts: int
    #: One message per record the mapping could not read, held at its last readable version or left out
    #: (`UnreadableRecord.held`): each names the record, the field and what to do.
    unreadable: tuple[str, ...] = ()


def merge_fields(entity: str) -> list[str]:
    """Canonical fields merged for an entity stem."""
    return list(canonical_fields(entity))


def one_way_fields(entity: str) -> frozenset[str]:
    """Fields that only flow Wave -> CRM."""
    return frozenset(n for n, f in canonical_fields(entity).items() if f.direction == "wave_to_crm")


@functools.cache
def fingerprint(entity: str) -> int:
    """Changes when the mapping of `entity` or the engine version changes."""
    return zlib.crc32(f"{ENGINE_VERSION}|{flows_for(entity)!r}".encode())


# ---- canonical records from the collected datasets ----------------------------------------

def _tree(paths: list[str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = "JSON"
    return tree


def _sql_path(root: str, path: str) -> str:
    return root + "".join(f"['{p}']" for p in path.split("."))


@functools.cache
def _fragment_query(system: str, entity: str, fields: tuple[str, ...] | None = None) -> tuple[str, str, str]:
    """(json_transform structure, select list, lines validity expression) for one dataset."""
    paths = list(dict.fromkeys(p for f, p in source_slots(system, entity).items() if fields is None or f in fields))
    tree = _tree(paths)
    select = [f'{_sql_path("s", p)} AS "{p}"' for p in paths]
    lines_ok = "true"
    if entity == "order" and (fields is None or "Lines" in fields):
        # The lines are typed in the same parse as the rest: a list of structs of their items' fragments.
        # Rows whose lines are there but not a list of objects are left to the Python mapping: `json_type`
        # tells those apart (null lines from lines that are not a list; a line that is not an object from
        # an empty one, which both type as a struct of nulls). Before, the lines' JSON was parsed twice more,
        # as a list and line by line: ~10 % more of a million orders' read (docs/benchmarks.md, "Session 19").
        # `json_type` parses the body once more, so it runs only where the parse above cannot tell: lines
        # that are null, or a line whose fragments are all null (that CASE branch alone is evaluated for
        # them); a line with a fragment is an object. A third of the CRM orders' read ("Session 29").
        lp = LINES_PATH[system]
        slots = LINE_SLOTS[system]
        tree[lp] = [_tree(list(slots.values()))]
        fields_sql = ", ".join(f"'{p.replace('.', '__')}': {_sql_path('x', p)}" for p in slots.values())
        select.append(f"list_transform(s['{lp}'], x -> {{{fields_sql}}}) AS \"Lines\"")
        some = f"coalesce({', '.join(_sql_path('x', p) for p in slots.values())}) IS NOT NULL"
        lines_ok = (f"CASE WHEN s['{lp}'] IS NULL THEN coalesce(json_type(body, '$.\"{lp}\"') = 'NULL', true) "
                    f"WHEN coalesce(list_bool_and(list_transform(s['{lp}'], x -> {some})), true) THEN true "
                    f"ELSE coalesce(list_bool_and(list_transform(json_type(body, '$.\"{lp}\"[*]'), t -> t = 'OBJECT')), true) END")
    return json.dumps(tree), ", ".join(select), lines_ok


def read_canonical(store: Store, con: duckdb.DuckDBPyConnection, system: str, entity: str,
                   ids: pl.Series | None = None, fields: tuple[str, ...] | None = None, *,
                   changed: tuple[int, int] | None = None, within: tuple[int, int] | None = None,
                   current: pl.Series | None = None,
                   unreadable: list[tuple[str, str, str]] | None = None) -> pl.DataFrame:
    """Canonical cells of the current records of (`system`, `entity`), all or those whose source id is in `ids`.

    Columns: `<system>_id`, `deleted`, `modified`, one String column per canonical field
    (`Lines` still a list of structs, references still source ids), `Type` for customers.
    Deleted records have every field null. `fields`: just these canonical fields.
    `changed`: `(after, top]` with `top` the dataset's newest `_seq` and at most `SMALL` versions in it: the
    records with a version in it (an incremental step's few changed records, read in one statement).
    `within`: `[lo, hi]`, a range that holds the current version's `_seq` of every one of `ids`: the scan
    may skip the row groups whose `_seq` lies outside it (a large rebuild's part, its records next to each
    other in the file).
    `current`: with `within`, the `_seq` of the current versions of `ids` (every one in the range), known to the
    caller: the rows are read by them, where otherwise the newest version of each id is found by grouping the
    range's rows by id (8 % of the statement for 200,000 orders; docs/benchmarks.md, "Session 33").
    `unreadable`: a record the mapping cannot read (`UnreadableRecord`) is held (`_hold`) and added here as
    (system, record id, message), where without it the read raises.
    """
    name = dataset(system, entity)
    store.ensure_dataset(con, name)
    if (ids is not None and ids.len() == 0) or (changed is not None and changed[1] <= changed[0]):
        return _canonical_frame(pl.DataFrame(), system, entity, None, fields)
    few: contextlib.AbstractContextManager[tuple[str, list[Any]]] | None = None
    if changed is not None:
        assert ids is None and changed[1] - changed[0] <= canonical_paths.SMALL
        # The newest version in the range is the current one: the range ends at the newest `_seq`.
        few = contextlib.nullcontext(("_seq > ? AND _seq <= ?", list(changed)))
    elif ids is not None and ids.n_unique() <= canonical_paths.SMALL:
        few = ids_predicate(con, "_canon_ids", ids, "_source_id")
    if few is not None:
        # A few records: they are mapped from their bodies (`canonical_from_fragments`' exact path), so
        # the fragments query, the costliest statement of an incremental pass, is not needed.
        with few as (among, params):
            rows = con.execute(
                f"SELECT _source_id, _deleted, _modified, body IS NULL AS _nobody, body::VARCHAR AS _body FROM {name} "
                f"WHERE {among} QUALIFY row_number() OVER (PARTITION BY _id ORDER BY _seq DESC) = 1", params).fetchall()
        bad: dict[int, UnreadableRecord] | None = None if unreadable is None else {}
        return _hold(con, name, system, entity, _few_frame(rows, system, entity, fields, bad), bad, fields, unreadable)
    structure, select, lines_ok = _fragment_query(system, entity, fields)
    fragments = (f"SELECT _source_id, _deleted, _modified, body IS NULL AS _nobody, {lines_ok} AS lines_ok, {select} "
                 f"FROM (SELECT *, json_transform(body, ?) AS s FROM cur)")
    if current is not None:
        assert within is not None
        with registered(con, "_canon_seqs", pl.DataFrame({"_top": current.cast(pl.Int64)})):
            raw = con.execute(f"WITH cur AS (SELECT _source_id, _deleted, _modified, body FROM {name} "
                              f"WHERE _seq >= ? AND _seq <= ? AND _seq IN (SELECT _top FROM _canon_seqs)) {fragments}",
                              [*within, structure]).pl()
    else:
        some: contextlib.AbstractContextManager[tuple[str, list[Any]]] = (
            contextlib.nullcontext(("true", [])) if ids is None else ids_predicate(con, "_canon_ids", ids, "_source_id"))
        with some as (among, params):
            if within is not None:  # older versions below `lo` drop out too: the current one is in the range
                among, params = f"_seq >= ? AND _seq <= ? AND ({among})", [*within, *params]
            # The current versions by a semi join on their `_seq` (the newest of each id among the rows `among` keeps),
            # not a window over the rows: the window holds every body it reads until it has ranked them all.
            raw = con.execute(
                f"WITH cur AS (SELECT _source_id, _deleted, _modified, body FROM {name} SEMI JOIN "
                f"(SELECT max(_seq) AS _top FROM {name} WHERE {among} GROUP BY _id) ON _top = _seq WHERE {among}) "
                f"{fragments}", [*params, *params, structure]).pl()

    def bodies(source_ids: pl.Series) -> pl.Series:
        """The JSON bodies of some of these rows (for the rows the fast path cannot map)."""
        with ids_predicate(con, "_body_ids", source_ids, "_source_id") as (among, params):
            found = dict(con.execute(
                f"SELECT _source_id, body::VARCHAR FROM {name} WHERE {among} "
                f"QUALIFY row_number() OVER (PARTITION BY _id ORDER BY _seq DESC) = 1", params).fetchall())
        return pl.Series([found.get(i) for i in source_ids.to_list()], dtype=pl.String)

    bad = None if unreadable is None else {}
    frame = _canonical_frame(raw, system, entity, bodies, fields, bad)
    return _hold(con, name, system, entity, frame, bad, fields, unreadable)


def _hold(con: duckdb.DuckDBPyConnection, name: str, system: str, entity: str, frame: pl.DataFrame,
          bad: dict[int, UnreadableRecord] | None, subset: tuple[str, ...] | None,
          sink: list[tuple[str, str, str]] | None) -> pl.DataFrame:
    """`frame` with its rows `bad` (records whose current version the mapping cannot read) at their newest
    readable older version, or left out when no version of theirs can be read: one bad record does not stop
    the others. Held at an older version, a linked record's values are those agreed before, so the merge
    sees no change from its side. Left out, a linked one is "unseen" (`logic.merge.side_state`: nothing is
    shared to or from it) and an unlinked one is neither linked nor created on the other side. Each held
    record goes to `sink`: (system, record id, `UnreadableRecord.held`)."""
    gone = frame["deleted"]
    bad = {r: e for r, e in (bad or {}).items() if not gone[r]}  # a delete is read as one whatever its body
    if not bad:
        return frame
    assert sink is not None
    id_col = f"{system}_id"
    cols = list(_canonical_columns(system, entity, subset))[3:]
    rows = sorted(bad)
    ids = frame[id_col].gather(rows)
    with ids_predicate(con, "_held_ids", ids, "_source_id") as (among, params):
        versions = con.execute(f"SELECT _source_id, _deleted, _modified, body::VARCHAR FROM {name} WHERE {among} "
                               f"ORDER BY _source_id, _seq DESC", params).fetchall()
    older: dict[str, list[tuple[Any, str]]] = {}
    seen: set[str] = set()
    for source_id, deleted, modified, body in versions:
        sid = str(source_id)
        if sid not in seen:  # the current version, the one that cannot be read
            seen.add(sid)
        elif not deleted and body is not None:
            older.setdefault(sid, []).append((modified, body))
    patch: list[dict[str, Any]] = []
    for row, sid in zip(rows, ids.to_list()):  # the held rows' ids only: the frame may hold a million
        err = bad[row]
        for modified, body in older.get(sid, []):
            failed: dict[int, UnreadableRecord] = {}
            cell = exact_cells([body], system, entity, cols, failed)[0]
            if not failed:
                patch.append({"_i": row, id_col: sid, "deleted": False, "modified": modified, **cell})
                sink.append((system, sid, err.held(True, None if modified is None else str(modified))))
                break
        else:
            sink.append((system, sid, err.held(False)))
    schema = {"_i": pl.UInt32, **_canonical_columns(system, entity, subset)}
    kept = frame.with_row_index("_i").filter(~pl.col("_i").is_in(rows))
    return pl.concat([kept, pl.DataFrame(patch, schema=schema, orient="row").select(kept.columns)]
                     ).sort("_i").drop("_i")


@functools.cache
def _canonical_columns(system: str, entity: str, subset: tuple[str, ...] | None) -> dict[str, Any]:
    """The schema of `read_canonical`'s frame: the id, `deleted`, `modified` and the canonical fields."""
    cols = [*merge_fields(entity), *(["Type"] if entity == "customer" else [])]
    if subset is not None:
        cols = [c for c in cols if c in subset]
    return {f"{system}_id": pl.String, "deleted": pl.Boolean, "modified": pl.String,
            **{c: (pl.List(LINE_DTYPE) if c == "Lines" else pl.String) for c in cols}}


def _few_frame(rows: list[tuple[Any, ...]], system: str, entity: str, subset: tuple[str, ...] | None,
               unreadable: dict[int, UnreadableRecord] | None = None) -> pl.DataFrame:
    """`read_canonical`'s frame of a few records (`_source_id, _deleted, _modified, _nobody, _body` rows), mapped
    from their bodies in Python: one frame built, where the polars steps of a larger read cost ~5 ms each time."""
    schema = _canonical_columns(system, entity, subset)
    id_col, cols = next(iter(schema)), list(schema)[3:]
    cells = exact_cells([None if deleted or nobody else body for _, deleted, _, nobody, body in rows], system, entity,
                        cols, unreadable)
    return pl.DataFrame([{id_col: str(source_id), "deleted": bool(deleted), "modified": modified, **cell}
                         for (source_id, deleted, modified, _, _), cell in zip(rows, cells)], schema=schema, orient="row")


def _canonical_frame(raw: pl.DataFrame, system: str, entity: str, bodies: Any = None,
                     subset: tuple[str, ...] | None = None,
                     unreadable: dict[int, UnreadableRecord] | None = None) -> pl.DataFrame:
    schema = _canonical_columns(system, entity, subset)
    cols = list(schema)[3:]
    id_col = f"{system}_id"
    if raw.height == 0:
        return pl.DataFrame(schema=schema)
    paths = list(dict.fromkeys(p for f, p in source_slots(system, entity).items() if subset is None or f in subset))
    with_lines = entity == "order" and "Lines" in cols
    frags = raw.select([pl.col(p).cast(pl.String) for p in paths]
                       + ([pl.col("Lines"), pl.col("lines_ok")] if with_lines else []))
    ids = raw["_source_id"].cast(pl.String)
    given = bodies if isinstance(bodies, pl.Series) else (lambda idx: bodies(ids.gather(idx)))
    cells = canonical_from_fragments(frags, system, entity, given, subset, unreadable)
    gone = raw["_deleted"].fill_null(False) | raw["_nobody"]
    cells = cells.with_columns([pl.when(gone).then(None).otherwise(pl.col(c)).alias(c) for c in cols])
    return pl.concat([
        raw.select(pl.col("_source_id").cast(pl.String).alias(id_col), pl.col("_deleted").fill_null(False).alias("deleted"),
                   pl.col("_modified").cast(pl.String).alias("modified")),
        cells,
    ], how="horizontal")


def _ref_map(links: pl.DataFrame, system: str) -> pl.DataFrame:
    return links.select(pl.col(f"{system}_id").alias("_src"), pl.col("global_id").alias("_gid")).drop_nulls("_src")


def _translate(frame: pl.DataFrame, system: str, refs: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Orders: `CustomerId` and line `ProductId` from source ids to global ids (or `unlinked:<system>:<id>`);
    `Lines` becomes its cell (JSON text)."""
    unlinked = f"unlinked:{system}:"
    cust = refs["customer"]
    frame = frame.join(cust, left_on="CustomerId", right_on="_src", how="left", maintain_order="left").with_columns(
        pl.when(pl.col("CustomerId").is_not_null()).then(pl.coalesce("_gid", pl.lit(unlinked) + pl.col("CustomerId")))
        .alias("CustomerId")).drop("_gid")
    n = frame.height
    rows = pl.DataFrame({"_r": pl.int_range(0, n, eager=True)})
    exploded = pl.DataFrame({"_r": rows["_r"], "_l": frame["Lines"]}).explode("_l").filter(pl.col("_l").is_not_null())
    items = exploded.unnest("_l") if exploded.height else pl.DataFrame(
        schema={"_r": pl.Int64, **LINE_DTYPE.to_schema()})
    items = items.join(refs["product"], left_on="ProductId", right_on="_src", how="left", maintain_order="left").with_columns(
        pl.when(pl.col("ProductId").is_not_null()).then(pl.coalesce("_gid", pl.lit(unlinked) + pl.col("ProductId")))
        .alias("ProductId"))
    grouped = items.select("_r", pl.struct(list(LINE_DTYPE.to_schema())).alias("_line")).group_by("_r").agg("_line")
    lines = rows.join(grouped, on="_r", how="left", maintain_order="left")["_line"].cast(pl.List(LINE_DTYPE)) \
        .fill_null(pl.lit([], dtype=pl.List(LINE_DTYPE)))
    lines = pl.select(pl.when(frame["Lines"].is_not_null()).then(lines)).to_series()
    return frame.with_columns(lines_cell_series(lines).alias("Lines"))


def _keyed(frame: pl.DataFrame, entity: str) -> pl.DataFrame:
    """Add the merge-key columns `_key_<field>` (the CRM key's kind applied to both sides)."""
    flow = flows_for(entity)[0]
    return frame.with_columns([canonical_series(k.kind, frame[k.crm]).alias(f"_key_{k.crm}") for k in flow.merge_keys])


def both_sides(con: duckdb.DuckDBPyConnection,
               read: Callable[[duckdb.DuckDBPyConnection, str], pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """`read(connection, side)` of both sides at once: the Wave side on a cursor of `con` (a connection of
    its own to the same database, so its own transaction) in a second thread. Only for reads of the
    datasets, which no transaction of the step writes: a rebuild's reads take 2.9 s instead of 4.8 s for a
    million customers a side, the same CPU (DuckDB and polars leave the GIL while they work)."""
    cur = con.cursor()
    try:
        with ThreadPoolExecutor(1) as pool:
            wave = pool.submit(read, cur, "wave")
            crm = read(con, "crm")
            return {"crm": crm, "wave": wave.result()}
    finally:
        cur.close()


def _load(store: Store, con: duckdb.DuckDBPyConnection, system: str, entity: str, ids: pl.Series | None,
          refs: dict[str, pl.DataFrame], changed: tuple[int, int] | None = None, within: tuple[int, int] | None = None, *,
          current: pl.Series | None = None, held: list[tuple[str, str, str]], keyed: bool = True) -> pl.DataFrame:
    """Canonical records of `system` with order references translated and, if `keyed`, the merge-key columns
    (linking needs them, the merge does not)."""
    frame = read_canonical(store, con, system, entity, ids, changed=changed, within=within, current=current,
                           unreadable=held)
    if entity == "order":
        frame = _translate(frame, system, refs)
    return _keyed(frame, entity) if keyed else frame


def _chunks(store: Store, con: duckdb.DuckDBPyConnection, system: str, entity: str, top: int,
            refs: dict[str, pl.DataFrame], *, held: list[tuple[str, str, str]]) -> Iterator[pl.DataFrame]:
    """Every field of every current record, mapped in parts of `CHUNK` versions (`_seq` ranges, so the
    JSON fragments of one part at a time); each record in one part, the one its current version is in.

    The current versions are found once (the newest `_seq` of each record), and each part reads them by their
    `_seq` within its range (`read_canonical`'s `current`): a part found by `read_canonical`'s `seqs` grouped the
    whole dataset twice, 0.4-0.5 CPU-s of the ~2 a part of 200,000 Wave customers took (docs/benchmarks.md,
    "Session 31"), and a part read by id grouped its range again ("Session 33")."""
    name = dataset(system, entity)
    store.ensure_dataset(con, name)
    current = con.execute(f"SELECT _source_id, max(_seq) AS _top FROM {name} GROUP BY _source_id").pl()
    # `_seq` starts at 1: parts [0, CHUNK + 1), [CHUNK + 1, 2 * CHUNK + 1), ...
    ends = [*range(CHUNK + 1, top + 1, CHUNK), max(top + 1, CHUNK + 1)]
    for lo, hi in zip([0, *ends], ends):
        part = current.filter((pl.col("_top") >= lo) & (pl.col("_top") < hi))
        yield _load(store, con, system, entity, part["_source_id"].cast(pl.String), refs, within=(lo, hi - 1),
                    current=part["_top"], held=held)


def _load_whole(store: Store, con: duckdb.DuckDBPyConnection, system: str, entity: str, top: int,
                refs: dict[str, pl.DataFrame], *, held: list[tuple[str, str, str]]) -> pl.DataFrame:
    """Every field of every current record (`_chunks`): one read serves linking and the merge of a full rebuild."""
    pieces = list(_chunks(store, con, system, entity, top, refs, held=held))
    return pl.concat(pieces, how="vertical_relaxed") if len(pieces) > 1 else pieces[0]


def _known_or_load(store: Store, con: duckdb.DuckDBPyConnection, system: str, entity: str, ids: pl.Series,
                   refs: dict[str, pl.DataFrame], known: pl.DataFrame | None,
                   within: tuple[int, int] | None = None, *, held: list[tuple[str, str, str]]) -> pl.DataFrame:
    """The records of `ids` for the merge: `known` (read earlier in the same step, in its transaction,
    one row per record), and `_load` of those of `ids` it lacks. The merge takes just the linked ones, so
    rows of `known` outside `ids` do no harm. An incremental step reads only the linked counterparts of
    its records (one statement and one mapping less per side for one edit); a small table read whole
    reads nothing more. Without `known` (a large rebuild's part), no merge-key columns: linking is done."""
    if known is None:
        return _load(store, con, system, entity, ids, refs, within=within, held=held, keyed=False)
    missing = ids.filter(~ids.is_in(known[f"{system}_id"].implode()))
    if missing.is_empty():
        return known
    return pl.concat([known, _load(store, con, system, entity, missing, refs, within=within, held=held)],
                     how="vertical_relaxed")


# ---- link bookkeeping -------------------------------------------------------------------

def all_links(store: Store, con: duckdb.DuckDBPyConnection, entity: str) -> pl.DataFrame:
    """Every link row of `entity` (`LINK_SCHEMA`)."""
    frame = store.read_links(con, entity)
    return frame.cast(LINK_SCHEMA) if frame.height else pl.DataFrame(schema=LINK_SCHEMA)


def _recover_intents(store: Store, entity: str, links: pl.DataFrame, frames: dict[str, pl.DataFrame],
                     now: datetime) -> list[str]:
    """Link records created by a push whose response was lost to the intent that created them."""
    recovered = []
    with store.connect() as con:
        for system, frame in frames.items():
            pending = store.pending_intents(con, system, entity)
            if not pending:
                continue
            col = f"{system}_id"
            unlinked = frame.filter(~pl.col("deleted")).join(links.select(col).drop_nulls(), on=col, how="anti").sort(col)
            by_key: dict[tuple, str] = {}
            for row in unlinked.iter_rows(named=True):
                key = intent_key(entity, row)
                if key is not None:
                    by_key.setdefault(key, row[col])
            # A CRM that numbers records itself keeps the intent's own key in them (profile `create_key`).
            by_created = _created_keys(con, system, entity, unlinked[col]) if system == "crm" else {}
            taken: set[str] = set()
            for gid, (created_key, payload, _at) in pending.items():
                key = intent_key(entity, payload)
                found = by_created.get(created_key)
                if found is not None and found not in taken:
                    # As after a create whose answer came: what was sent is agreed, so the values the
                    # CRM assigned itself (its number) read as its change and reach the other side.
                    store.upsert_agreed(con, entity, {gid: payload}, now)
                else:
                    found = by_key.pop(key, None) if key is not None else None
                if found is None or found in taken:
                    continue
                taken.add(found)
                side = (found, None) if system == "crm" else (None, found)
                store.upsert_links(con, entity, [(gid, side[0], side[1], f"created:{system} (recovered)")], now)
                store.clear(con, "intents", system, entity, [gid])
                recovered.append(gid)
    return recovered


def _created_keys(con: duckdb.DuckDBPyConnection, system: str, entity: str, ids: pl.Series) -> dict[str, str]:
    """{key the sync wrote into the record on create: source id} of these records (those that kept one)."""
    if ids.is_empty():
        return {}
    with ids_predicate(con, "_created_ids", ids, "_source_id") as (among, params):
        rows = con.execute(
            f"SELECT _source_id, json_extract_string(body, '$.{CREATE_KEY_FIELD}') FROM {dataset(system, entity)} "
            f"WHERE {among} QUALIFY row_number() OVER (PARTITION BY _id ORDER BY _seq DESC) = 1", params).fetchall()
    return {key: sid for sid, key in rows if key}


# ---- golden rows ------------------------------------------------------------------------

def _golden(result_merged: pl.DataFrame, crm: pl.DataFrame, wave: pl.DataFrame, entity: str) -> pl.DataFrame:
    merged = result_merged
    if entity == "customer":
        types = crm.select("crm_id", pl.col("Type").alias("Type__crm"))
        wtypes = wave.select("wave_id", pl.col("Type").alias("Type__wave"))
        merged = merged.join(types, on="crm_id", how="left", maintain_order="left").join(
            wtypes, on="wave_id", how="left", maintain_order="left")
        merged = merged.with_columns(
            pl.when(pl.col("crm_state").is_in(["present", "deleted"])).then(pl.col("Type__crm")).otherwise(pl.col("Type__wave")).alias("Type")
        )
        person = pl.concat_str(["FirstName", "LastName"], separator=" ", ignore_nulls=True)
        merged = merged.with_columns(
            pl.when(pl.col("Type") == "person")
            .then(pl.when(person.str.len_bytes() > 0).then(person))
            .otherwise(pl.col("Name")).alias("Name")
        )
    fields = [c for c, dtype in merged.schema.items() if dtype == pl.Null]  # the schema once: it is built per call
    return merged.with_columns([pl.col(c).cast(pl.String) for c in fields])


def _canonical_schema(system: str, entity: str) -> dict[str, Any]:
    frame = _keyed(_translate(_canonical_frame(pl.DataFrame(), system, entity), system,
                              {"customer": pl.DataFrame(schema={"_src": pl.String, "_gid": pl.String}),
                               "product": pl.DataFrame(schema={"_src": pl.String, "_gid": pl.String})})
                   if entity == "order" else _canonical_frame(pl.DataFrame(), system, entity), entity)
    return dict(frame.schema)


@functools.cache
def golden_columns(entity: str) -> tuple[str, ...]:
    """The columns of `global_<entity>`, in order."""
    crm = pl.DataFrame(schema=_canonical_schema("crm", entity))
    wave = pl.DataFrame(schema=_canonical_schema("wave", entity))
    fields = merge_fields(entity)
    agreed = pl.DataFrame(schema={"global_id": pl.String, **{f: pl.String for f in fields}})
    result = merge_records(pl.DataFrame(schema=LINK_SCHEMA), crm, wave, agreed, fields, one_way_fields(entity))
    return tuple(_golden(result.merged, crm, wave, entity).columns)


@functools.cache
def _golden_schema(entity: str) -> pl.Schema:
    return pl.Schema({c: (pl.Boolean if c in ("crm_deleted", "wave_deleted", "has_base") else pl.String)
                      for c in golden_columns(entity)})


# ---- which orders a changed customer or product link touches ---------------------------

def ref_values(con: duckdb.DuckDBPyConnection, changes: pl.DataFrame, ref_entity: str) -> pl.Series:
    """Values an order cell may hold for the customers/products whose links changed:
    their global ids and `unlinked:<system>:<source id>` of their source ids."""
    gids = changes.filter((pl.col("entity") == ref_entity) & (pl.col("kind") == "link"))["global_id"].unique()
    if gids.len() == 0:
        return pl.Series("v", [], pl.String)
    links = links_where(con, ref_entity, gids=gids)
    return pl.concat([
        gids.alias("v"),
        ("unlinked:crm:" + links["crm_id"].drop_nulls()).alias("v"),
        ("unlinked:wave:" + links["wave_id"].drop_nulls()).alias("v"),
    ]).unique()


#: Up to this many values of changed product links, `orders_touching` has DuckDB keep the orders whose lines'
#: text holds one of them and decodes just those; more (a rebuild of the products) decode every order's lines.
TOUCH_TEXT = 64


def orders_touching(con: duckdb.DuckDBPyConnection, changes: pl.DataFrame) -> pl.Series:
    """Global ids of golden orders that refer to a customer or product whose link changed.

    The orders are found in SQL: those whose customer columns hold one of the customers' values, and those
    whose lines' text holds one of the products' values as a JSON string, escaped as a line cell writes it
    (`cells.to_cell`) or not; only those rows are read, and their lines decoded to keep the exact matches.
    Before, every order's references were read and every line decoded: at 200,000 orders, one customer's
    link 0.46-0.49 s against 0.12 s now, one product's 1.54-1.76 s against 0.37-0.41 s (docs/benchmarks.md,
    "Session 26")."""
    customers = ref_values(con, changes, "customer")
    products = ref_values(con, changes, "product")
    if customers.len() == 0 and products.len() == 0:
        return pl.Series("global_id", [], pl.String)
    if column_types(con, "global_order") is None:
        return pl.Series("global_id", [], pl.String)
    cust_cols = ["CustomerId", "CustomerId__crm", "CustomerId__wave"]
    line_cols = ["Lines", "Lines__crm", "Lines__wave"]
    select = f"SELECT global_id, {', '.join(cust_cols + line_cols)} FROM global_order"
    if products.len() > TOUCH_TEXT:
        frame = con.execute(select).pl()
    else:
        with contextlib.ExitStack() as stack:
            where: list[str] = []
            params: list[Any] = []
            if customers.len():
                for c in cust_cols:
                    among, more = stack.enter_context(ids_predicate(con, f"_touch_{c}", customers, c))
                    where.append(among)
                    params += more
            if products.len():
                # Each value as a JSON string, escaped as a cell writes it and as it is: one regular expression
                # (RE2, a literal in the statement) where one `contains` per value and column took 13x as long.
                tokens = sorted({t for v in products.to_list() for t in (json.dumps(v), json.dumps(v, ensure_ascii=False))})
                pattern = sql_str("|".join(re.escape(t) for t in tokens))
                where += [f"regexp_matches({c}::VARCHAR, {pattern})" for c in line_cols]
            frame = con.execute(f"{select} WHERE {' OR '.join(where)}", params).pl()
    hit = pl.lit(False)
    for c in cust_cols:
        hit = hit | pl.col(c).is_in(customers.implode())
    out = frame.filter(hit)["global_id"]
    if products.len() and frame.height:
        refs = pl.concat([frame.select("global_id", line_products(frame[c]).alias("_p")) for c in line_cols]).explode("_p")
        out = pl.concat([out, refs.filter(pl.col("_p").is_in(products.implode()))["global_id"]])
    return out.unique()


# ---- the step ---------------------------------------------------------------------------

#: Versions read per `_seq` part of a full rebuild (bounds memory on large rebuilds; a share rebuild reads
#: its golden rows in parts of this many too).
CHUNK = 200_000
#: Golden rows merged and written per part (a full rebuild's peak memory follows it): one DuckDB row group.
#: At a million orders a side, parts of 200,000 peaked at 3.2 GB, parts of 122,880 at 2.75 GB for ~8 % more
#: wall time (more id-filtered reads); docs/benchmarks.md, "Session 14".
PART = 122_880
#: A golden table rebuilt with more rows than this is stored as Parquet parts under a view (crm_wave/store/files.py):
#: polars writes 1.1M golden customers in 1.1-1.7 s where DuckDB took 7.3-9.8 s, but each read of the view opens
#: the files (at 250 rows, a read of one id 6.5 ms against 1.7 ms, `replace_rows` 8 ms against 2.5 ms: one
#: edit's pass cost ~30 % more; docs/benchmarks.md, "Session 17"). At 30,000 and 100,000 customers a side an
#: edit's pass cost the same either way (within 10-15 ms), and a full pass 8-19 % less with files
#: ("Session 18"); so past 50,000 rows, and the smaller tables stay DuckDB tables.
FILES_PAST = 50_000
#: A full rebuild of up to this many parts of versions reads every field of every record once and holds it; a
#: larger one reads them once and spills them (`SPILL`), or (without) reads the link fields of all, then every
#: field part by part (each body parsed twice).
READ_ONCE_PARTS = 4
#: A rebuild of more than one part read part by part reads the next part while it merges and writes this one
#: (`_ReadAhead`; docs/benchmarks.md, "Session 27"). False: each part is read when its turn comes.
READ_AHEAD = True
#: A rebuild too large to hold whole spills its records to Parquet and reads them once (`Spill`; docs/benchmarks.md,
#: "Session 31": the customers' rebuild at 1M a side took 8-15 % less wall time, 8-9 CPU-s less).
SPILL = True


def _link_fields(entity: str) -> tuple[str, ...]:
    """Fields linking needs: the merge keys and what an intent is recognised by."""
    keys = [k.crm for k in flows_for(entity)[0].merge_keys]
    extra = {"customer": ["Email", "Name", "CustomerNumber"], "product": ["Name"], "order": ["OrderNumber"]}[entity]
    return tuple(dict.fromkeys(keys + extra))


def _untouched(names: dict[str, str], marks: dict[str, int], top: dict[str, int], relevant: pl.DataFrame) -> bool:
    """No new version on either side since the step last ran, and no link or agreed value changed by
    another writer: a merge would write the golden table as it is (an open intent needs a new version
    to be recovered by, so it does not count)."""
    return relevant.height == 0 and all(top[n] == marks[n] for n in names.values())


#: Times a global step reads back a dataset that pushes keep writing to before it merges what it has.
READ_BACKS = 3


def build_global(store: Store, entity: str, now: datetime, *, full: bool | None = None,
                 read_back: Callable[[list[str]], object] | None = None) -> GlobalResult:
    """Run the global step of `entity` (stem); dependencies' links must exist first.

    Incremental unless `full` is true (or there is nothing to continue from). One global
    step per entity runs at a time (two syncs started at once take turns).

    `read_back(systems)` collects the entity's datasets of those systems: the ones a push wrote to since
    they were last read (`Datasets.unread`: another sync's push, which that sync has not read back yet).
    Merged as they are, the agreed values the push recorded would meet the system's older copy and read
    as an edit made there, sent back to the other side. The check and the merge hold the file in between.
    """
    with store.named_lock(f"global_{entity}"), store.session(), contextlib.ExitStack() as rest:
        for _ in range(READ_BACKS):
            if read_back is None:
                break
            with store.connect() as con:
                unread = store.unread(con, [dataset(s, entity) for s in SIDES])
            if not unread:
                break
            read_back([s for s in SIDES if dataset(s, entity) in unread])
        return _build_global(store, entity, now, full=full, rest=rest)


def _build_global(store: Store, entity: str, now: datetime, *, full: bool | None,
                  rest: contextlib.ExitStack) -> GlobalResult:
    fields = merge_fields(entity)
    flow = flows_for(entity)[0]
    naive_now = now.replace(tzinfo=None)
    held: list[tuple[str, str, str]] = []  # the records the mapping cannot read (`_hold`), added to by the reads
    step = f"global_{entity}"
    table = global_table(entity)
    names = {s: dataset(s, entity) for s in SIDES}
    policy = load_policy(store.path.parent, AppSettings.load().policy)
    # A policy change re-merges everything once (open waits may be decided by it).
    fp = zlib.crc32(f"{fingerprint(entity)}|{policy.key}".encode())
    if not all(store.has_dataset(n) for n in names.values()):
        with store.connect() as con:  # committed first: a rebuild reads each side on a connection of its own (`both_sides`)
            for n in names.values():
                store.ensure_dataset(con, n)
    with store.connect() as con:
        marks = store.read_marks(con, step)
        top, top_change = store.tops(con, [names[s] for s in SIDES])
        incremental = (not full and store.table_columns(con, table) == list(golden_columns(entity))
                       and marks.get("fingerprint") == fp and "changes" in marks and all(n in marks for n in top))
        logged = pl.DataFrame(schema={"entity": pl.String, "global_id": pl.String, "kind": pl.String, "writer": pl.String})
        if incremental:
            logged = store.read_changes(con, marks["changes"], top_change)
            stars = logged.filter(pl.col("kind").is_in(["link", "agreed"]) & (pl.col("global_id") == "*"))
            own = (pl.col("entity") == entity) & (pl.col("writer").is_null() | (pl.col("writer") != OWN))
            deps = pl.lit(entity == "order") & (pl.col("entity") != entity) & (pl.col("kind") == "link")
            if stars.filter(own | deps).height:
                incremental = False
            elif _untouched(names, marks, top, logged.filter(own | deps)):
                store.set_marks(con, step, {**top, "changes": top_change, "fingerprint": fp}, marks, read=logged.height)
                golden = int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
                return GlobalResult(entity=entity, golden=golden, new_links=0, merged_by_key=0, conflicts=0)
        dep = {e: all_links(store, con, e) for e in ("customer", "product")} if entity == "order" else {}
        refs = {s: {e: _ref_map(df, s) for e, df in dep.items()} for s in SIDES}
        changed: dict[str, pl.Series | None]
        spill: Spill | None = None  # a large rebuild's records, read once (`Spill`)
        every_field = True  # `frames` hold every field of the records they hold, so the merge can take them
        if incremental:
            changed, frames = {}, {}
            for s in SIDES:
                span = (marks[names[s]], top[names[s]])
                if span[1] - span[0] <= canonical_paths.SMALL:  # a few versions: one statement reads their records
                    frames[s] = _load(store, con, s, entity, None, refs[s], changed=span, held=held)
                    changed[s] = frames[s][f"{s}_id"]
                else:
                    changed[s] = store.changed_source_ids(con, names[s], *span)
                    frames[s] = _load(store, con, s, entity, changed[s], refs[s], held=held)
            links = links_where(con, entity, frames["crm"]["crm_id"], frames["wave"]["wave_id"])
            frames, links = _with_key_peers(store, con, entity, frames, links, refs, held)
        else:
            changed = {s: None for s in SIDES}
            if sum(top.values()) <= CHUNK:  # `_seq` counts versions: at least the current records
                # Small enough for one part: every field of every record, read once, for linking and merging.
                frames = both_sides(con, lambda c, s: _load(store, c, s, entity, None, refs[s], held=held))
            elif sum(top.values()) <= READ_ONCE_PARTS * CHUNK:
                # Every field of every record, read once in parts for linking and merging (the branch below
                # parses every body twice: ~10 % of a rebuild), held through the merge (~0.5 KB a record).
                frames = both_sides(con, lambda c, s: _load_whole(store, c, s, entity, top[names[s]], refs[s], held=held))
            elif SPILL:
                # Every field of every record read once, as above, but held on disk (`Spill`): linking needs the
                # link fields of every record (held), the merge below reads the rest back part by part.
                every_field = False
                spill = rest.enter_context(Spill(store.files_root / f".spill-{step}"))

                def spilled(c: duckdb.DuckDBPyConnection, s: str) -> pl.DataFrame:
                    columns = [*_canonical_columns(s, entity, _link_fields(entity)),
                               *(f"_key_{k.crm}" for k in flow.merge_keys)]
                    return spill.keep(s, _chunks(store, c, s, entity, top[names[s]], refs[s], held=held), columns)
                frames = both_sides(con, spilled)
            else:
                # Linking needs the keys of every record, the merge below reads the rest part by part:
                # a million records a side hold 1 GB less than when read whole (2.4 GB against 3.4 GB peak).
                every_field = False
                frames = both_sides(con, lambda c, s: _keyed(read_canonical(
                    store, c, s, entity, None, _link_fields(entity), unreadable=held), entity))
            links = all_links(store, con, entity)
    if incremental:  # a few rows: the rest of the step is one transaction (see `Connection.atomic`)
        rest.enter_context(store.atomic())
    recovered = _recover_intents(store, entity, links, frames, naive_now)
    if recovered:
        with store.connect() as con:
            links = all_links(store, con, entity) if not incremental else links_where(
                con, entity, frames["crm"]["crm_id"], frames["wave"]["wave_id"], pl.Series(recovered, dtype=pl.String))
    crm_keyed = frames["crm"].rename({f"_key_{k.crm}": f"_kc_{k.crm}" for k in flow.merge_keys})
    wave_keyed = frames["wave"].rename({f"_key_{k.crm}": f"_kw_{k.crm}" for k in flow.merge_keys})
    new_links, dropped = link_records(
        entity, links, crm_keyed, wave_keyed, [(f"_kc_{k.crm}", f"_kw_{k.crm}") for k in flow.merge_keys]
    )
    # What linking read with every field (an incremental step's records, or every record of a rebuild up to
    # `READ_ONCE_PARTS` parts) is merged as it is, and only the linked records missing from it are read;
    # the link fields alone are freed.
    known = frames if every_field else None
    del frames, crm_keyed, wave_keyed
    new_links = new_links.with_columns(pl.col("how").str.replace_all("_kc_", "", literal=True)
                                       .str.replace_all("_kw_", "", literal=True))
    # A rebuild that found no link of the entity (its first pass) has its links in hand: they are the new ones,
    # inserted plainly, and written while the first part is read and merged ahead (below), not read back.
    first = (not incremental and links.height == 0 and not dropped
             and new_links["global_id"].n_unique() == new_links.height)
    # What a part reads besides its records: its global ids' agreed values and queue items. A first rebuild of an
    # entity that has neither (a store's first pass) reads none: each part's read found nothing, ~0.16 s a part
    # of 122,880 customers at 1M on the read-ahead thread (docs/benchmarks.md, "Session 33"). Its global ids are
    # the links' it made, which no push can know before its share step; rows left of an earlier life of the
    # store (the ids are the records' own) are read as always.
    read_agreed = read_items = True
    if first:
        links = new_links.select(list(LINK_SCHEMA)).cast(LINK_SCHEMA).sort("global_id")  # as `all_links` reads them
        with store.connect() as con:
            read_agreed, read_items = store.has_agreed(con, entity), has_items(con, entity)
    else:
        with store.connect() as con:
            store.drop_links(con, entity, dropped, writer=OWN)
            store.upsert_links(con, entity, new_links, naive_now, writer=OWN, log=incremental,
                               fresh=not incremental and links.height == 0)
            if not incremental:
                store.log_changes(con, entity, ["*"], "link", writer=OWN)
                links = all_links(store, con, entity)
            else:
                mine = logged.filter((pl.col("entity") == entity) & pl.col("kind").is_in(["link", "agreed"])
                                     & (pl.col("writer").is_null() | (pl.col("writer") != OWN)))["global_id"]
                touched: list[pl.Series] = [mine, new_links["global_id"], pl.Series(dropped, dtype=pl.String), pl.Series(recovered, dtype=pl.String)]
                if entity == "order":
                    touched.append(orders_touching(con, logged.filter(pl.col("entity") != "order")))
                touched_ids = pl.concat(touched).unique()
                if touched_ids.len() == 0:  # no link moved: those of the changed records are among the ones read above
                    crm_ids, wave_ids = changed["crm"], changed["wave"]
                    assert crm_ids is not None and wave_ids is not None
                    links = links.filter(pl.col("crm_id").is_in(crm_ids.implode()) | pl.col("wave_id").is_in(wave_ids.implode()))
                else:
                    links = links_where(con, entity, changed["crm"], changed["wave"], touched_ids)
    dropped_ids = pl.Series(dropped, dtype=pl.String)
    staging = f"{table}{STAGING}"
    n_conflicts = 0
    seqs = None  # a large rebuild's parts follow the datasets: each part reads its records' range of `_seq`
    if spill is not None:
        links = spill.in_file_order(links)
    elif known is None and not incremental and links.height > PART:
        with store.connect() as con:
            links, seqs = _in_dataset_order(con, entity, links)
    parts = [links.slice(i, PART) for i in range(0, links.height, PART)] or [links]

    def read_sides(con: duckdb.DuckDBPyConnection, i: int) -> dict[str, pl.DataFrame]:
        part = parts[i]
        spans = _spans(seqs.slice(i * PART, PART)) if seqs is not None else {}

        def load(c: duckdb.DuckDBPyConnection, side: str) -> pl.DataFrame:
            return _known_or_load(store, c, side, entity, part[f"{side}_id"].drop_nulls(), refs[side],
                                  _of_part(known, side, part, len(parts)), spans.get(side), held=held)
        def unspill(side: str) -> pl.DataFrame:
            assert spill is not None
            got, absent = spill.rows(side, part[f"{side}_id"].drop_nulls())
            if absent.len() == 0 and got is not None:
                return got
            more = _load(store, con, side, entity, absent, refs[side], held=held)
            return more if got is None else pl.concat([got, more], how="vertical_relaxed")
        if spill is not None:  # read back from the spilled files (a few ids no file holds from the dataset)
            return {s: unspill(s) for s in SIDES}
        # Records held already (an incremental step's, in its one transaction; a rebuild's that read every
        # field): at most a few to read, on this connection. Otherwise the part reads both sides at once.
        return {s: load(con, s) for s in SIDES} if known is not None else both_sides(con, load)

    def read_part(con: duckdb.DuckDBPyConnection, i: int) -> tuple[dict[str, pl.DataFrame], pl.DataFrame, pl.DataFrame]:
        """What part `i`'s merge reads: both sides' records, the agreed values and the queue of its global ids."""
        ids = parts[i]["global_id"]
        return (read_sides(con, i), store.read_agreed_frame(con, entity, fields, ids if read_agreed else ids.clear()),
                read_queue(con, entity, ids if read_items else ids.clear()))

    def merge_part(i: int, read: tuple[dict[str, pl.DataFrame], pl.DataFrame, pl.DataFrame]) -> _Merged:
        sides, agreed, queue = read
        # No agreed row of the part's global ids (a first pass): the new ones are inserted plainly.
        return (*_merge(entity, parts[i], sides["crm"], sides["wave"], agreed, fields, policy, queue),
                not incremental and agreed.height == 0)

    # A rebuild reads and merges the next part while it writes this one (`_ReadAhead`), and a first rebuild its
    # first part while it writes its links, one part or many. (An incremental step is one transaction.)
    ahead = (_ReadAhead(lambda c, i: merge_part(i, read_part(c, i)), len(parts))
             if READ_AHEAD and not incremental and (first or len(parts) > 1) else None)
    with ahead or contextlib.nullcontext():
        taken: _Merged | None = None
        if first:
            with store.connect() as con:
                if ahead is not None:  # the first part read and merged ahead while the links are written, ...
                    ahead.start(con, 0)
                store.upsert_links(con, entity, new_links, naive_now, writer=OWN, log=False, fresh=True)
                store.log_changes(con, entity, ["*"], "link", writer=OWN)
                if ahead is not None and len(parts) > 1:  # ... and the second started before the links' commit
                    taken = ahead.take(con, 0)  # (one part: taken after it, as the loop below takes a part)
        for i, part in enumerate(parts):
            read: tuple[dict[str, pl.DataFrame], pl.DataFrame, pl.DataFrame] | None = None
            if ahead is None:
                with store.connect() as con:
                    read = read_part(con, i)
            with store.connect() as con:
                # Part i + 1 is started ahead in this transaction's `take`: it reads on a cursor (a transaction of
                # its own) its own global ids' rows, which this part does not write.
                if taken is not None:
                    prepared, taken = taken, None
                elif ahead is not None:
                    prepared = ahead.take(con, i)
                else:
                    assert read is not None
                    prepared = merge_part(i, read)
                    del read
                merged, conflicts, agreed_now, waits, fates, fresh = prepared
                del prepared
                if incremental:
                    keys = pl.concat([part["global_id"], dropped_ids]) if i == 0 else part["global_id"]
                    store.replace_rows(con, table, "global_id", keys, merged)
                elif i == 0:
                    store.replace_table(con, staging, merged, as_files=links.height > FILES_PAST)
                else:
                    store.insert_rows(con, staging, merged)
                n_conflicts += store.record_conflicts(con, entity, conflicts, naive_now)
                reconcile(con, entity, waits, fates, naive_now)
                store.upsert_agreed(con, entity, agreed_now, naive_now, log=False, fresh=fresh)
            del merged
    once = {(system, rid): message for system, rid, message in held}  # a rebuild at 1M reads a record twice
    with store.connect() as con:
        record_unreadable(con, entity, [(system, rid, m) for (system, rid), m in once.items()],
                          changed if incremental else {s: None for s in SIDES}, naive_now)
        if incremental:
            store.log_changes(con, entity, pl.concat([links["global_id"], dropped_ids]).unique(), "golden", writer=OWN)
        else:
            store.swap_table(con, staging, table)
            store.log_changes(con, entity, ["*"], "golden", writer=OWN)
        # Past its own changes of this step when no one else's came between: they are never read by it,
        # and its mark behind them kept a pass's golden changes from being pruned (`set_marks`).
        store.set_marks(con, step, {**top, "changes": store.own_top(con, top_change, entity, OWN), "fingerprint": fp},
                        marks, read=logged.height)
        golden = int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
    return GlobalResult(
        entity=entity,
        golden=golden,
        new_links=new_links.height,
        merged_by_key=new_links.filter(pl.col("how").str.starts_with("merge:")).height,
        conflicts=n_conflicts,
        unreadable=tuple(once.values()),
    )


#: A part's merge (`_merge`'s five frames) and whether its agreed values are new (`fresh`).
_Merged = tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, bool]


class _ReadAhead:
    """A large rebuild's next part read and merged while this one is written.

    The reads of a part (both sides' records, mapped, or read back from a `Spill`) and its merge keep the
    cores busy in bursts; its writes (the golden rows, agreed values and their commit) mostly one. Reading and
    merging part i + 1 on a cursor of its own (its own connection and transaction, as `both_sides` reads) while
    part i is written fills the other core: the datasets it reads are not written by the step, and the agreed
    values and queue rows it reads are its own global ids', which no other part writes. At most one part is
    prepared ahead (its frames held beside the current part's). Used as a `with` block: on the way out (an
    error included) a read still running is waited for, so nothing reads after the step's session ends
    (docs/benchmarks.md, "Session 27"; the merge ahead too since "Session 31")."""

    def __init__(self, read: Callable[[duckdb.DuckDBPyConnection, int], _Merged], parts: int) -> None:
        self._read, self._parts = read, parts
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="read-ahead")
        self._next: Future[_Merged] | None = None

    def _on_cursor(self, cur: duckdb.DuckDBPyConnection, i: int) -> _Merged:
        try:
            return self._read(cur, i)
        finally:
            cur.close()

    def start(self, con: duckdb.DuckDBPyConnection, i: int) -> None:
        """Part `i` read and merged on a cursor of `con` while the caller writes something else (before its
        `take`): a first rebuild's links, which no part reads."""
        assert self._next is None
        self._next = self._pool.submit(self._on_cursor, con.cursor(), i)

    def take(self, con: duckdb.DuckDBPyConnection, i: int) -> _Merged:
        """Part `i` merged (ahead, or now on `con`), with part `i + 1`'s started if there is one."""
        got, self._next = self._next, None
        sides = got.result() if got is not None else self._read(con, i)
        if i + 1 < self._parts:
            self._next = self._pool.submit(self._on_cursor, con.cursor(), i + 1)
        return sides

    def __enter__(self) -> _ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._next is not None:
            with contextlib.suppress(Exception):  # the step's own error, if any, is the one raised
                self._next.result()
        self._pool.shutdown()


def _in_dataset_order(con: duckdb.DuckDBPyConnection, entity: str,
                      links: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(`links` in the order their records were written to the datasets, the newest `_seq` of each link's
    records in columns `crm`, `wave`): by the CRM record's, then (Wave only) by the Wave record's.

    A large rebuild reads each part's records by id. In global id order each part's ids were spread over
    the whole dataset, so its scan could skip no row group; in this order a part's records lie in a range of
    `_seq` (`read_canonical`'s `within`). At 1M a side the rebuild took 4-5 % less (docs/benchmarks.md,
    "Session 16"): most of a part's read is mapping its records, not scanning."""
    crm, wave = dataset("crm", entity), dataset("wave", entity)
    with registered(con, "_links_order", links.with_row_index("_i")):
        order = con.execute(
            f"SELECT l._i, c.s AS crm, w.s AS wave FROM _links_order l "
            f"LEFT JOIN (SELECT _source_id, max(_seq) AS s FROM {crm} GROUP BY _source_id) c ON c._source_id = l.crm_id "
            f"LEFT JOIN (SELECT _source_id, max(_seq) AS s FROM {wave} GROUP BY _source_id) w ON w._source_id = l.wave_id "
            f"ORDER BY c.s NULLS LAST, w.s NULLS LAST, l._i").pl()
    return links[order["_i"]], order.select("crm", "wave")


def _spans(seqs: pl.DataFrame) -> dict[str, tuple[int, int]]:
    """Per side, the `[lo, hi]` of the `_seq` of one part's records (`_in_dataset_order`); none without records."""
    row = seqs.select(*(pl.col(s).min().alias(f"{s}_lo") for s in SIDES),
                      *(pl.col(s).max().alias(f"{s}_hi") for s in SIDES)).row(0, named=True)
    return {s: (int(row[f"{s}_lo"]), int(row[f"{s}_hi"])) for s in SIDES if row[f"{s}_lo"] is not None}


def _of_part(known: dict[str, pl.DataFrame] | None, side: str, part: pl.DataFrame, n_parts: int) -> pl.DataFrame | None:
    """The rows of `known[side]` linked in `part` (all of them when there is one part: the merge takes the linked ones)."""
    if known is None or n_parts == 1:
        return None if known is None else known[side]
    col = f"{side}_id"
    return known[side].join(part.select(col).drop_nulls(), on=col, how="semi", maintain_order="left")


def _merge(entity: str, links: pl.DataFrame, crm: pl.DataFrame, wave: pl.DataFrame, agreed: pl.DataFrame,
           fields: list[str], policy: Policy | None = None, queue: pl.DataFrame | None = None,
           ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(golden rows, conflicts, newly agreed values, waits, queue fates) of the global ids in `links`."""
    policy = policy or Policy()
    result = merge_records(links, crm, wave, agreed, fields, one_way_fields(entity),
                           policy=field_policy_exprs(policy, entity), first_sync=policy.first_sync, queue=queue)
    merged = _golden(result.merged, crm, wave, entity)
    # The values agreed in this pass are the base from now on (as a rebuild would show it).
    merged = merged.with_columns((pl.col("has_base") | pl.col("global_id").is_in(result.agreed["global_id"].implode()))
                                 .alias("has_base"))
    merged = merged.select(list(golden_columns(entity))).cast(_golden_schema(entity))
    conflicts = result.conflicts
    if entity == "customer" and conflicts.height:
        persons = merged.filter(pl.col("Type") == "person").select("global_id")
        conflicts = conflicts.join(persons.with_columns(pl.lit(True).alias("_p")), on="global_id", how="left").filter(
            ~((pl.col("field") == "Name") & pl.col("_p").fill_null(False))).drop("_p")
    return merged, conflicts, result.agreed, result.waits, result.fates


def _with_key_peers(store: Store, con: duckdb.DuckDBPyConnection, entity: str, frames: dict[str, pl.DataFrame],
                    links: pl.DataFrame, refs: dict[str, dict[str, pl.DataFrame]],
                    held: list[tuple[str, str, str]]) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """Add the unlinked records that share a merge-key value with a changed unlinked record.

    Those are the only records a full pass could link besides the changed ones (a pass
    leaves no two unlinked records of the two systems with a key value in common), and
    their order decides who pairs with whom.
    """
    flow = flows_for(entity)[0]
    keys = [f"_key_{k.crm}" for k in flow.merge_keys]
    values: dict[str, pl.Series] = {}
    for s in SIDES:
        col, other = f"{s}_id", f"{'wave' if s == 'crm' else 'crm'}_id"
        complete = links.filter(pl.col(other).is_not_null()).select(col).drop_nulls()
        open_ = frames[s].filter(~pl.col("deleted")).join(complete, on=col, how="anti")
        for key in keys:
            values[key] = pl.concat([values.get(key, pl.Series(key, [], pl.String)), open_[key].drop_nulls()])
    if all(v.len() == 0 for v in values.values()):
        return frames, links
    # Half-linked records and their key values, from the golden table (their cells are current:
    # a record that changed is among the changed ones already).
    half = con.execute(
        f"SELECT global_id, crm_id, wave_id, {', '.join(f'{k.crm}__crm, {k.crm}__wave' for k in flow.merge_keys)} "
        f"FROM {global_table(entity)} WHERE (crm_id IS NULL) <> (wave_id IS NULL)").pl()
    extra: dict[str, list[pl.Series]] = {s: [] for s in SIDES}
    for k in flow.merge_keys:
        wanted = values[f"_key_{k.crm}"].unique()
        if wanted.len() == 0:
            continue
        for s in SIDES:
            cell = half[f"{k.crm}__{s}"].cast(pl.String)
            hit = canonical_series(k.kind, cell).is_in(wanted.implode())
            extra[s].append(half.filter(hit & half[f"{s}_id"].is_not_null())[f"{s}_id"].cast(pl.String))
    for s in SIDES:
        col = f"{s}_id"
        if not extra[s]:
            continue
        ids = pl.concat(extra[s]).unique()
        ids = pl.DataFrame({col: ids}).join(frames[s].select(col), on=col, how="anti")[col]
        if ids.len():
            frames[s] = pl.concat([frames[s], _load(store, con, s, entity, ids, refs[s], held=held)], how="vertical_relaxed")
    links = links_where(con, entity, frames["crm"]["crm_id"], frames["wave"]["wave_id"])
    return frames, links
