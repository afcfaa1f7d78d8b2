"""Collect: read one system's records into its append-only dataset (`<system>-<type>-collect`).

Incremental reads continue from the stored cursor; a full read (first time, on request,
or when the last one is older than `full_every`) also detects deletes, which an
incremental read cannot see. Unchanged records write nothing. The cursor moves in the
same transaction as the versions it covers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from crm_wave.store.db import Store, Version
from crm_wave.sync.names import CRM_RESOURCE, dataset, namespaced

__all__ = ["CollectResult", "CollectError", "collect"]

#: Wave's modifiedAt cursor is re-read with this overlap; unchanged records write nothing.
WAVE_CURSOR_LAG = timedelta(seconds=2)
#: A full read that returns nothing while more records than this are known is refused.
EMPTY_READ_GUARD = 10
#: Allowance for the difference between our clock and Wave's.
WAVE_SKEW = timedelta(seconds=5)


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


def body_hash(body: dict[str, Any] | None) -> str:
    """Stable hash of a record body."""
    return hashlib.sha1(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _crm_records(client: Any, entity: str, cursor: str | None):
    records, next_cursor = [], cursor
    for page in client.read_changes(CRM_RESOURCE[entity], cursor):
        for item in page.items:
            deleted = bool(item.get("Deleted"))
            records.append((str(item["Id"]), deleted, item.get("UpdatedAt"), item.get("Version"), None if deleted else item))
        next_cursor = page.next_cursor or next_cursor
    return records, next_cursor


def _wave_records(client: Any, entity: str, cursor: str | None, started: datetime):
    after = None
    if cursor:
        after = (datetime.fromisoformat(cursor.replace("Z", "+00:00")) - WAVE_CURSOR_LAG).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    read = {"customer": client.list_customers, "product": client.list_products, "order": client.list_invoices}[entity]
    records, newest = [], cursor
    for node in read(modified_after=after):
        records.append((str(node["id"]), False, node.get("modifiedAt"), None, node))
        if node.get("modifiedAt") and (newest is None or node["modifiedAt"] > newest):
            newest = node["modifiedAt"]
    # Wave pages by offset: a record changed while we paged moves to the end and may push
    # another one past us. If anything changed after the read began, keep the old cursor
    # and read that stretch again next time (unchanged records write nothing).
    margin = (started - WAVE_SKEW).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if newest is not None and newest >= margin:
        return records, cursor
    return records, newest


def collect(store: Store, system: str, entity: str, client: Any, now: datetime, *,
            full: bool | None = None, full_every: timedelta = timedelta(hours=1)) -> CollectResult:
    """Collect `entity` (stem) from `system` ("crm" or "wave") through its client."""
    name = dataset(system, entity)
    with store.connect() as con:
        cursor, last_full = store.get_cursor(con, name)
    if full is None:
        full = cursor is None or last_full is None or now - last_full.replace(tzinfo=now.tzinfo) >= full_every
    started = utcnow()
    if system == "crm":
        records, next_cursor = _crm_records(client, entity, None if full else cursor)
    else:
        records, next_cursor = _wave_records(client, entity, None if full else cursor, started)
    versions = [
        Version(namespaced(system, entity, sid), sid, body_hash(body), deleted, modified, version, body)
        for sid, deleted, modified, version, body in records
    ]
    deleted = sum(1 for v in versions if v.deleted)
    with store.connect() as con:
        if full:
            seen = {v.id for v in versions}
            live = {i for i, (_, _, d) in store.current_index(con, name).items() if not d}
            gone = live - seen
            if len(live) > EMPTY_READ_GUARD and not seen:
                raise CollectError(
                    f"{name}: a full read returned no records while {len(live)} are known; "
                    "refusing to read that as 'everything was deleted'"
                )
            versions += [Version(i, i.split(":", 1)[1], body_hash(None), True, None, None, None) for i in sorted(gone)]
            deleted += len(gone)
        written = store.append_versions(con, name, versions, now.replace(tzinfo=None))
        store.set_cursor(con, name, next_cursor, now.replace(tzinfo=None), full=full)
    return CollectResult(name, len(records), written, deleted, full)


def utcnow() -> datetime:
    """Now, in UTC (the only clock read of the stages; tests pass their own `now`)."""
    return datetime.now(timezone.utc)
