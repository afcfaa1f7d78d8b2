"""How the sync survives Wave's harsher behaviour (docs/wave-behaviour.md).

- Open invoices are re-read by incremental passes (`reread_open_invoices`): a payment, or an
  invoice falling overdue, need not move `modifiedAt`, so the incremental read alone would
  never see them. Cost: one request per 200 open invoices (Wave's `status: UNPAID` listing),
  plus one per 50 invoices that left the open set since the last pass (batched lookups by
  id); nothing when no open invoice is known. Every pass while the last re-read found at most
  `OPEN_EVERY_PASS` open invoices; past that, at most every `OPEN_SPACING` (`reread_due`): at a
  million invoices, half of them open, every pass would list 2,500 pages and scan every stored
  invoice. A full read (hourly) reads every invoice anyway and counts as a re-read.
- A push answered NOT_FOUND for a linked Wave record breaks the link visibly
  (`wave_record_gone`): the dataset records the Wave record as deleted, so the next pass
  holds the CRM side as a delete for approval (`crm-wave deletes`) instead of re-creating
  it or retrying the write forever.
- A CRM edit Wave refuses because the invoice is locked (strict mode: sent, viewed, paid,
  partial or overdue invoices keep their lines, customer and currency) goes to dead letters
  once, with the reason in words, and is parked until the order changes again
  (`locked_invoice_reason`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import polars as pl

from crm_wave.store.db import Store
from crm_wave.store.parking import park
from crm_wave.sync.names import dataset
from crm_wave.systems.protocols import WaveApi

__all__ = ["OPEN_STATUSES", "reread_open_invoices", "wave_record_gone", "locked_invoice_reason", "park_locked"]

#: Statuses of Wave's `status: UNPAID` filter: approved invoices not yet paid in full.
OPEN_STATUSES = ("SAVED", "SENT", "VIEWED", "OVERDUE", "PARTIAL", "UNPAID")
#: Statuses in which (strict) Wave refuses changes to an invoice's lines, customer and currency.
LOCKED_STATUSES = frozenset({"SENT", "VIEWED", "PAID", "PARTIAL", "OVERDUE", "OVERPAID"})
_LOCKED_FIELDS = {"items": "lines", "customerId": "customer", "currency": "currency"}

Record = tuple[str, bool, str | None, int | None, dict | None]
#: Open invoices are re-read every incremental pass while the last re-read (or full read) found at most
#: this many: 5 requests of Wave's listing.
OPEN_EVERY_PASS = 1_000
#: Past `OPEN_EVERY_PASS`, the re-read waits this long after the last one: a payment that keeps `modifiedAt`
#: reaches the CRM within it (or with the next full read, `collect`'s `full_every`).
OPEN_SPACING = timedelta(minutes=10)
#: `step_marks` of the re-read: `at` (epoch seconds of the last one) and `open` (what it found).
_MARKS = "reread_open_invoices"


def reread_due(store: Store, now: datetime) -> bool:
    """Whether an incremental pass at `now` re-reads the open invoices (see `OPEN_EVERY_PASS`)."""
    with store.connect() as con:
        marks = store.read_marks(con, _MARKS)
    return (not marks or marks.get("open", 0) <= OPEN_EVERY_PASS
            or now.timestamp() - marks.get("at", 0) >= OPEN_SPACING.total_seconds())


def note_reread(store: Store, con: Any, now: datetime, open_invoices: int) -> None:
    """Record a re-read (or a full read, `open_invoices` then at most the invoices it read) at `now`, in the
    transaction of the versions it collected: a re-read that failed is not recorded as done."""
    store.set_marks(con, _MARKS, {"at": int(now.timestamp()), "open": open_invoices}, store.read_marks(con, _MARKS))


def reread_open_invoices(store: Store, client: WaveApi, seen: set[str]) -> tuple[list[Record], int]:
    """Collect records of the open invoices an incremental read did not return (`seen`): every
    invoice Wave lists as UNPAID, and a lookup of each invoice known open that it no longer lists
    (paid in full now, or deleted: a NOT_FOUND answer records it deleted). Returns them and how many
    invoices were known open, for `note_reread` with the versions they make."""
    name = dataset("wave", "order")
    with store.connect() as con:
        store.ensure_dataset(con, name)
        marks = ", ".join("?" * len(OPEN_STATUSES))
        known_open = {r[0] for r in con.execute(
            f"SELECT _source_id FROM {name}_current WHERE NOT _deleted "
            f"AND json_extract_string(body, '$.status') IN ({marks})", list(OPEN_STATUSES)).fetchall()}
    if not known_open - seen:
        return [], len(known_open)
    records: list[Record] = []
    listed: set[str] = set()
    for page in client.iter_invoices(status="UNPAID"):
        for node in page:
            listed.add(node["id"])
            if node["id"] not in seen:
                records.append((node["id"], False, node.get("modifiedAt"), None, node))
    left = sorted(known_open - seen - listed)
    for invoice_id, found in (client.get_invoices(left) if left else {}).items():
        records.append((invoice_id, found is None, None if found is None else found.get("modifiedAt"), None, found))
    return records, len(known_open)


def wave_record_gone(store: Store, con: Any, entity: str, wave_id: str, now: datetime) -> None:
    """Record that Wave no longer has `wave_id` (it answered NOT_FOUND to a write): a deleted
    version in the Wave dataset, as a full read that misses it would write."""
    from crm_wave.sync.collect import deleted_versions

    store.append_frame(con, dataset("wave", entity), deleted_versions("wave", entity, [wave_id]), now)


def locked_invoice_reason(client: WaveApi, invoice_id: str, paths: list[list[str]]) -> str | None:
    """Why Wave refused a patch of an invoice, in words, when the invoice is locked
    ("Wave invoice INV-0043 is PAID; its lines can no longer be changed"); None otherwise."""
    fields = [_LOCKED_FIELDS[p[1]] for p in paths if len(p) > 1 and p[1] in _LOCKED_FIELDS]
    if not fields:
        return None
    invoice = client.get_invoice(invoice_id)
    if invoice is None or invoice.get("status") not in LOCKED_STATUSES:
        return None
    what = " and ".join(dict.fromkeys(fields))
    return f"Wave invoice {invoice.get('invoiceNumber')} is {invoice['status']}; its {what} can no longer be changed"


def park_locked(store: Store, con: Any, entity: str, global_id: str, attempts: int) -> None:
    """Hold a locked-invoice dead letter: it is not sent again until the order changes."""
    park(con, "wave", entity, global_id, attempts)


def seen_ids(frames: list[pl.DataFrame]) -> set[str]:
    """The source ids of the collected frames so far."""
    return {sid for f in frames for sid in f["_source_id"].to_list()}
