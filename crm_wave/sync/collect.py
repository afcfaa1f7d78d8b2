"""Collect: read one system's records into its append-only dataset (`<system>-<type>-collect`).

Incremental reads continue from the stored cursor; a full read (first time, on request,
or when the last one is older than `full_every`) also detects deletes, which an
incremental read cannot see. Unchanged records write nothing. The cursor moves in the
same transaction as the versions it covers.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, UTC
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import polars as pl

from crm_wave.model.values import show_value
from crm_wave.store.datasets import body_text
from crm_wave.store.db import VERSION_SCHEMA, Store
from crm_wave.sync.names import CRM_RESOURCE, dataset, namespaced
from crm_wave.sync.wave_survival import note_reread, reread_due, reread_open_invoices, seen_ids
from crm_wave.systems.protocols import Client, CrmApi, WaveApi

__all__ = ["CollectResult", "CollectError", "collect", "deleted_versions"]

#: Wave's modifiedAt cursor is re-read with this overlap; unchanged records write nothing.
WAVE_CURSOR_LAG = timedelta(seconds=2)
#: A full read that returns nothing while more records than this are known is refused.
EMPTY_READ_GUARD = 10
#: A read of more versions than this commits them in parts of this many (bounded memory), the cursor last.
COMMIT_ROWS = 200_000
#: Allowance for the difference between our clock and Wave's.
WAVE_SKEW = timedelta(seconds=5)
#: A record the sync created this long before a full read began is listed by then, if it still exists; one
#: created later may not be yet (neither API promises when a create shows in its listing: the harsh case).
LISTING_LAG = timedelta(minutes=5)


class CollectError(RuntimeError):
    """A collect that must not be trusted (e.g. a full read that came back empty)."""


@dataclass(frozen=True)
class CollectResult:
    """What one collect read and wrote."""

    dataset: str
    read: int
    written: int
    deleted: int
    full: bool
    #: Where the next incremental read starts (the source's change cursor; not a secret).
    cursor: str | None = None
    #: One message per record read without an id, which no dataset can hold: left out, the others go on.
    skipped: tuple[str, ...] = ()


class _Writer:
    """Appends a full read's parts on a thread of its own while the read goes on, one part at a time, in the
    order read: the append is DuckDB's and polars' work, which leaves the GIL, while turning pages into
    columns is Python's (docs/benchmarks.md, "Session 32"). Each part is its own transaction, as a large read's
    parts were before; the cursor still moves only with the last part, written by the caller."""

    def __init__(self, store: Store, name: str, now: datetime) -> None:
        self.store, self.name, self.now = store, name, now.replace(tzinfo=None)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"collect-{name}")
        self.pending: Future[int] | None = None
        self.written = 0

    def submit(self, part: pl.DataFrame) -> None:
        """Append `part` once the part before it is written (at most one in flight: bounded memory); an error
        of the part before is raised here, and the read stops."""
        self.wait()
        self.pending = self.pool.submit(self._append, part)

    def _append(self, part: pl.DataFrame) -> int:
        with self.store.connect() as con:
            return self.store.append_frame(con, self.name, part, self.now)

    def wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            self.written += pending.result()

    def close(self) -> None:
        """Wait for the part in flight (nothing is written after the collect returns or raises)."""
        try:
            self.wait()
        finally:
            self.pool.shutdown()


class _Chunks:
    """Collected records, page by page, as frames (a page's dicts are dropped once encoded). Given a `writer`,
    every `COMMIT_ROWS` versions are handed to it as a part, and only their ids and deleted flags are kept."""

    def __init__(self, system: str, entity: str, writer: _Writer | None = None) -> None:
        self.prefix = namespaced(system, entity, "")
        self.what = f"{system} {entity}"
        self.frames: list[pl.DataFrame] = []
        self.count = 0
        self.skipped: list[str] = []
        self.writer = writer
        self.pending = 0  # versions in `frames`
        self.written: list[pl.DataFrame] = []  # `_id`, `_source_id`, `_deleted` of the parts handed to `writer`

    def identified(self, items: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
        """`items` less those without an id (not an object, or `key` missing, null or empty), each of which gets a
        message: such a record can be neither stored nor linked, and must not stop the others."""
        def has_id(item: object) -> bool:
            return isinstance(item, dict) and item.get(key) not in (None, "")

        if all(has_id(item) for item in items):
            return items
        where = "the CRM" if key == "Id" else "Wave"
        for item in items:
            if not isinstance(item, dict):
                self.skipped.append(f"{self.what}: a listed item that is not a record was left out "
                                    f"({show_value(item, 120)}); it is not synced: see what {where} lists")
            elif not has_id(item):
                self.skipped.append(f"{self.what}: a record without an {key} was left out "
                                    f"({show_value(body_text(item), 120)}); give it an {key} in {where}: until then it "
                                    f"is not synced")
        return [item for item in items if has_id(item)]

    def add(self, records: Sequence[tuple[str, bool, Any, int | None, dict | None]]) -> None:
        if records:
            self._add(_frame(self.prefix, records))

    def add_columns(self, sids: list[str], deleted: list[bool], modified: list[Any], versions: list[Any],
                    bodies: Sequence[dict | None]) -> None:
        """A page given as columns (what `add` takes as rows)."""
        if sids:
            self._add(_columns_frame(self.prefix, sids, deleted, modified, versions, bodies))

    def _add(self, frame: pl.DataFrame) -> None:
        self.frames.append(frame)
        self.count += frame.height
        self.pending += frame.height
        if self.writer is not None and self.pending >= COMMIT_ROWS:
            read = self.frame()
            whole = read.height - read.height % COMMIT_ROWS
            rest = read.slice(whole)
            self.frames, self.pending = [rest], rest.height
            for part in read.slice(0, whole).iter_slices(COMMIT_ROWS):
                self.written.append(part.select("_id", "_source_id", "_deleted"))
                self.writer.submit(part)

    def frame(self) -> pl.DataFrame:
        """The versions not handed to a writer."""
        return pl.concat(self.frames) if self.frames else pl.DataFrame(schema=VERSION_SCHEMA)

    def seen(self, rest: pl.DataFrame) -> pl.DataFrame:
        """`_id`, `_source_id` and `_deleted` of every version read, given `rest`, the versions not handed to a
        writer (`frame()`)."""
        return pl.concat([*self.written, rest.select("_id", "_source_id", "_deleted")])


def _frame(prefix: str, records: Sequence[tuple[str, bool, Any, int | None, dict | None]]) -> pl.DataFrame:
    return _columns_frame(prefix, [r[0] for r in records], [r[1] for r in records], [r[2] for r in records],
                          [r[3] for r in records], [r[4] for r in records])


def _columns_frame(prefix: str, sids: list[str], deleted: list[bool], modified: list[Any], versions: list[Any],
                   bodies: Sequence[dict | None]) -> pl.DataFrame:
    # Bodies as `str`: keeping a million of orjson's `bytes` costs 5.7 us each, where decoding each into a
    # `str` (freeing the bytes at once) costs 1.8 us with the Series built (docs/benchmarks.md, "Session 15").
    # The hash is left to `append_frame` (DuckDB's `sha1`, on its threads): hashlib here costs as much CPU.
    encoded = [None if b is None else body_text(b) for b in bodies]
    return pl.DataFrame({
        "_id": [prefix + sid for sid in sids],
        "_source_id": sids,
        "_hash": pl.Series("_hash", [None] * len(sids), pl.String),
        "_deleted": deleted,
        "_modified": modified,
        "_version": versions,
        "body": pl.Series("body", encoded, pl.String),
    }, schema=VERSION_SCHEMA)


def deleted_versions(system: str, entity: str, source_ids: list[str]) -> pl.DataFrame:
    """Versions saying these records are gone, as a full read that misses them writes them
    (for a delete the sync itself made, which an incremental read of Wave cannot see)."""
    return _frame(namespaced(system, entity, ""), [(i, True, None, None, None) for i in source_ids])


def _crm_records(client: CrmApi, entity: str, cursor: str | None, out: _Chunks) -> str | None:
    next_cursor = cursor
    for page in client.read_changes(CRM_RESOURCE[entity], cursor):
        items = out.identified(page.items, "Id")
        deleted = [bool(item.get("Deleted")) for item in items]
        out.add_columns([str(item["Id"]) for item in items], deleted, [item.get("UpdatedAt") for item in items],
                        [item.get("Version") for item in items], [None if d else item for item, d in zip(items, deleted)])
        next_cursor = page.next_cursor or next_cursor
    return next_cursor


def _wave_pages(client: WaveApi, entity: str, after: str | None) -> Iterator[list[dict[str, Any]]]:
    pages = {"customer": client.iter_customers, "product": client.iter_products, "order": client.iter_invoices}[entity]
    return pages(modified_after=after)


def _wave_records(client: WaveApi, entity: str, cursor: str | None, started: datetime, out: _Chunks,
                  own: Callable[[list[tuple[str, str]]], bool]) -> str | None:
    after = None
    if cursor:
        after = (datetime.fromisoformat(cursor.replace("Z", "+00:00")) - WAVE_CURSOR_LAG).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    newest = cursor
    margin = (started - WAVE_SKEW).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    recent: list[tuple[str, str]] = []
    for page in _wave_pages(client, entity, after):
        page = out.identified(page, "id")
        sids = [str(node["id"]) for node in page]
        modified = [node.get("modifiedAt") for node in page]
        top = max(filter(None, modified), default=None)
        if top and (newest is None or top > newest):
            newest = top
        if top and top >= margin:
            recent.extend((sid, m) for sid, m in zip(sids, modified) if m and m >= margin)
        out.add_columns(sids, [False] * len(sids), modified, [None] * len(sids), page)
    # Wave pages by offset: a record changed while we paged moves to the end and may push
    # another one past us. If anything may have changed after the read began (within Wave's
    # clock margin of its start), keep the old cursor and read that stretch again next time
    # (unchanged records write nothing) -- unless every such change is one of the sync's own
    # writes answered before the read began (`own`): the read-back after a push, which would
    # otherwise never move the cursor (and read everything again while it is still None).
    if recent and not own(recent):
        return cursor
    return newest


def collect(store: Store, system: str, entity: str, client: Client, now: datetime, *,
            full: bool | None = None, full_every: timedelta = timedelta(hours=1)) -> CollectResult:
    """Collect `entity` (stem) from `system` ("crm" or "wave") through its client."""
    name = dataset(system, entity)
    with store.connect() as con:
        cursor, last_full = store.get_cursor(con, name)
    if full is None:
        full = cursor is None or last_full is None or now - last_full.replace(tzinfo=now.tzinfo) >= full_every
    if system == "crm" and cast(CrmApi, client).always_full(CRM_RESOURCE[entity]):
        full = True  # a CRM without a change listing: every read is whole, and shows deletes too
    started = utcnow()
    # A full read gives the file back while it reads (below), so its parts can be appended meanwhile on a
    # thread of their own; an incremental read may hold this thread's session, which that thread would wait for.
    writer = _Writer(store, name, now) if full else None
    chunks = _Chunks(system, entity, writer)
    reread: int | None = None  # invoices known open when this read re-read them (`note_reread`)
    # A full read may take minutes: the file is not held meanwhile. An incremental read is a
    # request or two; giving the file back and opening it again would cost more than it saves.
    with store.released() if full else contextlib.nullcontext():
        try:
            if system == "crm":
                next_cursor = _crm_records(cast(CrmApi, client), entity, None if full else cursor, chunks)
            else:
                wave = cast(WaveApi, client)
                next_cursor = _wave_records(wave, entity, None if full else cursor, started, chunks,
                                            lambda recent: _own_writes(store, name, recent, started))
                if not full and entity == "order":  # payments and overdue need not move modifiedAt
                    if reread_due(store, now):
                        records, reread = reread_open_invoices(store, wave, seen_ids(chunks.frames))
                        chunks.add(records)
        finally:
            if writer is not None:
                writer.close()
    frame = chunks.frame()
    seen = chunks.seen(frame)
    deleted = int(seen["_deleted"].sum())
    written = 0 if writer is None else writer.written
    never: list[str] = []

    def finish(con: Any) -> int:
        """In the transaction of the last versions: the deletes of records never seen, the cursor, and the
        pushes' writes this read began after marked as read. Returns the versions it wrote."""
        n = 0
        if never:
            n = store.append_frame(con, name, deleted_versions(system, entity, never), now.replace(tzinfo=None),
                                   new_deleted=True)
        store.set_cursor(con, name, next_cursor, now.replace(tzinfo=None), full=full)
        if full and system == "wave" and entity == "order":  # it read every invoice: a re-read of the open ones
            note_reread(store, con, now, chunks.count)
        elif reread is not None:
            note_reread(store, con, now, reread)
        store.read_back(con, name, started.astimezone(UTC).replace(tzinfo=None))
        return n

    with store.connect() as con:
        if full:
            live, gone = store.live_ids_not_in(con, name, seen["_id"])
            if live > EMPTY_READ_GUARD and chunks.count == 0:
                raise CollectError(
                    f"{name}: a full read returned no records while {live} are known; "
                    "refusing to read that as 'everything was deleted'"
                )
            if gone:
                frame = pl.concat([frame, deleted_versions(system, entity, [i.removeprefix(chunks.prefix) for i in gone])])
            deleted += len(gone)
            # Records the sync created and linked well before this read began (`LISTING_LAG`) that no collect
            # ever saw, and this read does not find either: deleted before any read saw them.
            never = store.linked_never_seen(con, name, system, entity, seen["_source_id"],
                                            (started - LISTING_LAG).astimezone(UTC).replace(tzinfo=None))
            deleted += len(never)
        if frame.height <= COMMIT_ROWS:  # the usual case: the versions and the cursor in one transaction
            written += store.append_frame(con, name, frame, now.replace(tzinfo=None)) + finish(con)
            return CollectResult(name, chunks.count, written, deleted, full, next_cursor, tuple(chunks.skipped))
    # A large read is committed in parts: DuckDB holds a transaction's appended rows in memory until it
    # commits (1.8 GB for a million Wave customers). The cursor moves with the last part, so after a
    # crash the next collect reads the same records again, and the parts already written are unchanged
    # versions, which write nothing: no version is lost or written twice. (A full read's parts were written
    # as it read, by `_Writer`; this is an incremental read's, or the deletes a full read found.)
    parts = list(frame.iter_slices(COMMIT_ROWS))
    for i, part in enumerate(parts):
        with store.connect() as con:
            written += store.append_frame(con, name, part, now.replace(tzinfo=None))
            if i == len(parts) - 1:
                written += finish(con)
    return CollectResult(name, chunks.count, written, deleted, full, next_cursor, tuple(chunks.skipped))


def _own_writes(store: Store, name: str, recent: list[tuple[str, str]], started: datetime) -> bool:
    with store.connect() as con:
        return store.own_writes(con, name, recent, started.astimezone(UTC).replace(tzinfo=None))


def utcnow() -> datetime:
    """Now, in UTC (the only clock read of the stages; tests pass their own `now`)."""
    return datetime.now(UTC)
