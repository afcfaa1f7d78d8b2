"""Has anything changed in either system since the last look? Asked cheaply, without DuckDB.

`changes_sensor` (crm_wave/defs/automation.py) calls `look` for each idle tenant every few
seconds and launches a sync when it reports a change, so an edit does not wait for the
once-a-minute collect schedule. A look costs four or five small requests:

- **CRM**, per resource (`customers`, `products`, `orders`): the change feed after the
  cursor the previous look ended at, `GET /R?since=<cursor>&limit=1000`. With nothing new the
  page is empty, and its `next_cursor` is the feed's head. The contract has no "head" call
  and the feed runs oldest first, so a page of 1 would walk a burst of changes one request
  at a time; a page of 1000 costs the same when nothing changed and moves to the head in one
  request when something did. The mark is that cursor (opaque, never a secret).
- **Wave**, in one GraphQL request (`WaveClient.change_heads`): per listing (customers,
  products with archived ones, invoices) the most recently modified record (`pageSize: 1`,
  `sort: [MODIFIED_AT_DESC]`, only `id` and `modifiedAt`) and `totalCount`. An edit moves
  `modifiedAt`; a delete changes the count. The mark is `modifiedAt|id|totalCount`. Without
  `WAVE_BUSINESS_ID` the client first asks for the token's business (one more request).

The first look at a feed only records its mark: the collect schedule covers everything
that happened before. A CRM feed's first read starts where the tenant's last collect of it
ended (`seed_marks`, from the collect assets' `cursor` metadata), or at the beginning of the
feed when there was none; it reads at most `MAX_PAGES` pages per look, and until it reaches
the head its mark starts with `~` ("behind") and what it reads is not reported as a change.
A burst of more than `MAX_PAGES` pages after the head was reached is reported once (the sync
it starts reads all of it) and the rest is skipped over the same way.

The sync's own writes move the marks too, so a sync that wrote something is followed by one
more (which reads those writes back and normally writes nothing): the same last pass
`crm-wave sync --once` makes. Its marks then stay put.

Pure: no Dagster, no DuckDB; the clients are passed in. Errors name the system and the kind
of failure, never a URL, header or token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from crm_wave.sync.names import CRM_RESOURCE, ENTITIES, WAVE_ENTITY, dataset
from crm_wave.systems.http import ApiError
from crm_wave.systems.protocols import CrmApi, WaveApi

__all__ = ["CRM_FEEDS", "FEED_DATASET", "MAX_PAGES", "WAVE_FEEDS", "Look", "Unreachable", "look", "seed_marks"]

#: The CRM resources whose change feeds are watched: those the sync collects.
CRM_FEEDS = tuple(CRM_RESOURCE.values())
#: Wave's listings whose newest change is watched.
WAVE_FEEDS = ("customers", "products", "invoices")
#: CRM pages (of 1000 changes) read per feed and look; bounds a look on a large CRM.
MAX_PAGES = 5
_PAGE = 1000
_BEHIND = "~"


class Unreachable(Exception):
    """One system could not be asked. The message names the system and the error's kind only."""

    def __init__(self, system: str, cause: BaseException) -> None:
        status = getattr(cause, "status", None)
        super().__init__(f"{system} did not answer ({type(cause).__name__}{f', HTTP {status}' if status else ''})")
        self.system = system
        self.cause = cause  # for a caller that reports it itself (`crm-wave sync`'s first look)


@dataclass(frozen=True)
class Look:
    """What one look found: the marks to keep for the next look, and which feeds changed.

    `marks` maps `crm:<resource>` and `wave:<listing>` to a position (see the module doc).
    `changed` lists the feeds with a change since `previous` (empty on a first look);
    `first` is true when there were no previous marks, or only those of `seed_marks`.
    """

    marks: dict[str, str]
    changed: tuple[str, ...]
    first: bool

    @property
    def moved(self) -> frozenset[str]:
        """The datasets of the feeds that moved: what a look between a sync's passes adds to the next pass
        (`engine.sync_once`'s `before_pass`)."""
        return frozenset(FEED_DATASET[feed] for feed in self.changed if feed in FEED_DATASET)

    @property
    def datasets(self) -> frozenset[str]:
        """The datasets a sync must collect after this look (`engine.sync_once(changed=...)`): those of
        the feeds that moved, and those of CRM resources without a feed, which a look cannot tell about."""
        return self.moved | {FEED_DATASET[feed] for feed, mark in self.marks.items()
                             if mark == NO_FEED and feed in FEED_DATASET}


#: The dataset each feed tells about: `crm:customers` -> crm_customer, `wave:invoices` -> wave_invoice, ...
FEED_DATASET = {**{f"crm:{CRM_RESOURCE[e]}": dataset("crm", e) for e in ENTITIES},
                **{f"wave:{WAVE_ENTITY[e]}s": dataset("wave", e) for e in ENTITIES}}
assert set(FEED_DATASET) == {f"crm:{r}" for r in CRM_FEEDS} | {f"wave:{x}" for x in WAVE_FEEDS}

#: The mark of a CRM resource that has no change feed (its profile reads it whole every time): a
#: look cannot tell cheaply whether it changed, so it is left to the collect schedule.
NO_FEED = "no-feed"


def _crm_feed(crm: CrmApi, resource: str, mark: str | None, max_pages: int) -> tuple[str, bool]:
    """(new mark, whether the feed had changes after an at-head `mark`)."""
    if crm.always_full(resource):
        return NO_FEED, False
    behind = mark is None or mark.startswith(_BEHIND)
    since = (mark[1:] if mark and behind else mark) or None
    cursor, seen, at_head = since, 0, False
    for n, page in enumerate(crm.read_changes(resource, since, limit=_PAGE), start=1):
        seen += len(page.items)
        cursor = page.next_cursor or cursor
        if not page.has_more:
            at_head = True
            break
        if n >= max_pages:
            break
    new = (cursor or "") if at_head else _BEHIND + (cursor or "")
    return new, seen > 0 and not behind


def _wave_mark(head: Mapping[str, Any]) -> str:
    return f"{head.get('modifiedAt') or ''}|{head.get('id') or ''}|{head.get('totalCount')}"


def seed_marks(crm_cursors: Mapping[str, str | None]) -> dict[str, str]:
    """First marks of a tenant never looked at, from the cursors its collects ended at
    (`resource -> cursor`): each CRM feed is read on from there, not from the start of a feed
    that may hold millions of changes. Nothing read on the way counts as a change."""
    return {f"crm:{r}": _BEHIND + c for r, c in crm_cursors.items() if r in CRM_FEEDS and c}


def look(crm: CrmApi, wave: WaveApi, previous: Mapping[str, str] | None, *, max_pages: int = MAX_PAGES) -> Look:
    """Ask both systems whether anything changed since `previous` (None: the first look).

    Raises `Unreachable` naming the system that failed; then nothing is known, and the
    caller keeps `previous` for the next look.
    """
    previous = dict(previous or {})
    marks: dict[str, str] = {}
    changed: list[str] = []
    try:
        for resource in CRM_FEEDS:
            key = f"crm:{resource}"
            marks[key], moved = _crm_feed(crm, resource, previous.get(key), max_pages)
            if moved:
                changed.append(key)
    except (ApiError, httpx.HTTPError, OSError) as exc:
        raise Unreachable("crm", exc) from None
    try:
        heads = wave.change_heads()
    except (ApiError, httpx.HTTPError, OSError) as exc:
        raise Unreachable("wave", exc) from None
    for listing in WAVE_FEEDS:
        key = f"wave:{listing}"
        marks[key] = _wave_mark(heads.get(listing) or {})
        if key in previous and previous[key] != marks[key]:
            changed.append(key)
    first = all(v.startswith(_BEHIND) or v == NO_FEED for v in previous.values())  # nothing, or only `seed_marks`
    return Look(marks=marks, changed=tuple(changed), first=first)
