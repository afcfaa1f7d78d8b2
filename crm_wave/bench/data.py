"""Reproducible synthetic data for the benchmark: API pages of both systems, made on demand.

The two systems hold overlapping data, as after a company starts syncing two systems
that both have history:

- customers: CRM record i exists for every i; Wave holds a twin (same email, upper-cased
  now and then) of every CRM customer with i % 10 != 0, plus as many Wave-only customers
  as the CRM has unmatched ones. Every 20th twin differs in a field (phone, city), every
  50th has a newer phone on each side (a conflict).
- products: the same pattern by name (case differs on the Wave side).
- orders: CRM order i references customer i % customers and three products; its Wave
  twin (invoice with the same number, i % 10 != 0) references the Wave twins where
  there is one. Every 25th twin has another memo.

Pages are generated page by page from (seed, page number), so a million records never
sit in memory at once, and the same seed always gives the same records.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, UTC
from typing import Any

__all__ = ["Scale", "Dataset", "FakeCrm", "FakeWave", "QUICK", "DEFAULT", "NAIVE"]

_FIRST = ["Ola", "Kari", "Ingrid", "Lars", "Astrid", "Erik", "Sofia", "Johan", "Emma", "Mats", "Nora", "Björn", "Åse"]
_LAST = ["Hansen", "Johansen", "Olsen", "Larsen", "Berg", "Dahl", "Smith", "Müller", "Sørensen", "Østby", "Chen"]
_ORG = ["Nordic", "Fjord", "Aurora", "Polar", "Granite", "Harbor", "Summit", "Tromsø", "Cedar", "Atlas"]
_KIND = ["Consulting", "Logistics", "Systems", "Bakery", "Design", "Foods", "Energy", "Marine"]
_CITIES = [("Oslo", "NO-03", "NO", "NOK"), ("Bergen", "NO-46", "NO", "NOK"), ("Stockholm", "SE-AB", "SE", "SEK"),
           ("København", "DK-84", "DK", "DKK"), ("Berlin", "DE-BE", "DE", "EUR"), ("Austin", "US-TX", "US", "USD")]
_PRODUCTS = ["Office Chair", "Desk Lamp", "Coffee Beans 1 kg", "Backpack", "Headphones", "Rain Jacket", "Tent"]
_PRICES = ["10", "12.50", "99.90", "149", "1250", "7.25", "0.5"]
_QTY = ["1", "2", "3", "0.5", "10"]
T0 = datetime(2025, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Scale:
    """How many records each system holds (customers and products per side; orders with 3 lines)."""

    customers: int
    products: int
    orders: int
    page: int = 1000

    def scaled(self, factor: float) -> Scale:
        return Scale(max(10, int(self.customers * factor)), max(10, int(self.products * factor)),
                     max(10, int(self.orders * factor)), self.page)


DEFAULT = Scale(1_000_000, 100_000, 1_000_000)
NAIVE = Scale(100_000, 10_000, 100_000)
QUICK = Scale(2_000, 200, 2_000, page=500)


def _ts(ms: int) -> str:
    t = T0 + timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


@dataclass
class Dataset:
    """The synthetic content of both systems at one scale and seed, plus edits made later."""

    scale: Scale
    seed: int = 42
    #: (system, entity) -> {index: version}: records edited after the first read (see `edit`).
    edits: dict[tuple[str, str], dict[int, int]] = field(default_factory=dict)

    # ---- which records exist ----------------------------------------------------------
    def wave_count(self, entity: str) -> int:
        """Wave records of an entity: twins of 9 in 10 CRM records, then Wave-only ones."""
        n = self.crm_count(entity)
        return n - (n + 9) // 10 + ((n + 9) // 10 if entity != "order" else 0)

    def crm_count(self, entity: str) -> int:
        return {"customer": self.scale.customers, "product": self.scale.products, "order": self.scale.orders}[entity]

    def _twin(self, entity: str, w: int) -> int | None:
        """The CRM index of Wave record `w`, or None for a Wave-only record."""
        n = self.crm_count(entity)
        twins = n - (n + 9) // 10
        if w >= twins:
            return None
        return (w // 9) * 10 + (w % 9) + 1

    def _wave_index(self, entity: str, i: int) -> int | None:
        """The Wave index of CRM record `i`'s twin, or None."""
        if i % 10 == 0:
            return None
        return (i // 10) * 9 + (i % 10) - 1

    # ---- records ------------------------------------------------------------------------
    def crm_customer(self, i: int, version: int = 0) -> dict[str, Any]:
        r = random.Random(self.seed * 1_000_003 + i)
        city, state, country, currency = _CITIES[i % len(_CITIES)]
        person = i % 3 == 0
        first, last = r.choice(_FIRST), r.choice(_LAST)
        name = f"{first} {last}" if person else f"{r.choice(_ORG)} {r.choice(_KIND)} {i} AS"
        phone = f"+47 2{i % 10} {i:06d}"
        if version:
            phone = f"+47 9{version} {i:06d}"
        elif i % 50 == 7:
            phone = f"+47 40 {i:06d}"
        return {"Id": f"C{i}", "Type": "person" if person else "organization", "Name": name,
                "CustomerNumber": str(100000 + i), "Email": f"c{i}@{'example' if person else 'firma'}.no",
                "Phone": phone, "Mobile": None, "Fax": None, "Website": None if person else f"https://firma{i}.no",
                "Description": "Key account" if i % 7 == 0 else None, "FirstName": first, "LastName": last,
                "Currency": currency, "StreetAddress1": f"Storgata {i % 200 + 1}", "StreetAddress2": None,
                "City": city, "ZipCode": f"{(i * 7) % 9000 + 1000}", "State": state, "Country": country,
                "Version": 1 + version, "UpdatedAt": _ts(i + version * 10_000_000)}

    def wave_customer(self, w: int, version: int = 0) -> dict[str, Any]:
        i = self._twin("customer", w)
        if i is None:
            j = w
            r = random.Random(self.seed * 7_000_003 + j)
            city, state, country, currency = _CITIES[j % len(_CITIES)]
            body = {"name": f"{r.choice(_ORG)} Wave {j}", "firstName": None, "lastName": None, "email": f"w{j}@wave.no",
                    "displayId": None, "phone": f"+46 8 {j:06d}", "internalNotes": None, "website": None}
        else:
            c = self.crm_customer(i)
            city, state, country, currency = c["City"], c["State"], c["Country"], c["Currency"]
            body = {"name": c["Name"], "firstName": c["FirstName"], "lastName": c["LastName"],
                    "email": c["Email"].upper() if i % 4 == 0 else c["Email"], "displayId": c["CustomerNumber"],
                    "phone": c["Phone"], "internalNotes": c["Description"], "website": c["Website"]}
            if i % 20 == 3:
                city = "Trondheim"
            if i % 50 == 7:
                body["phone"] = f"+47 41 {i:06d}"
        k = i if i is not None else w
        address = {"addressLine1": f"Storgata {k % 200 + 1}", "addressLine2": None, "city": city,
                   "postalCode": f"{(k * 7) % 9000 + 1000}",
                   "province": {"code": state, "name": None}, "country": {"code": country, "name": None}}
        return {"id": f"QnVzaW5lc3M6Q3VzdG9tZXI6{w}", **body, "mobile": None, "fax": None, "tollFree": None,
                "currency": {"code": currency}, "address": address,
                "shippingDetails": {"name": None, "phone": None, "instructions": None, "address": address},
                "isArchived": False, "createdAt": _ts(w), "modifiedAt": _ts(w + 500 + version * 10_000_000)}

    def crm_product(self, i: int, version: int = 0) -> dict[str, Any]:
        name = f"{_PRODUCTS[i % len(_PRODUCTS)]} {i}"
        return {"Id": f"P{i}", "Name": name, "Description": "Bestseller" if i % 5 == 0 else None,
                "UnitPrice": _PRICES[i % len(_PRICES)] if not version else f"{version}.99", "Sku": f"SKU-{i}",
                "IsArchived": i % 40 == 0, "Version": 1 + version, "UpdatedAt": _ts(i + version * 10_000_000)}

    def wave_product(self, w: int, version: int = 0) -> dict[str, Any]:
        i = self._twin("product", w)
        if i is None:
            body = {"name": f"Wave service {w}", "description": None, "unitPrice": "100.00000", "isArchived": False}
        else:
            p = self.crm_product(i)
            body = {"name": p["Name"].lower() if i % 3 == 0 else p["Name"], "description": p["Description"],
                    "unitPrice": p["UnitPrice"] if i % 20 != 3 else "1.00", "isArchived": p["IsArchived"]}
        return {"id": f"QnVzaW5lc3M6UHJvZHVjdDo{w}", **body, "isSold": True, "isBought": False,
                "incomeAccount": {"id": "acc1"}, "createdAt": _ts(w), "modifiedAt": _ts(w + 500 + version * 10_000_000)}

    def _order_refs(self, i: int) -> tuple[int, list[int]]:
        return i % self.scale.customers, [(i * 3 + k * 7) % self.scale.products for k in range(3)]

    def crm_order(self, i: int, version: int = 0) -> dict[str, Any]:
        cust, prods = self._order_refs(i)
        lines = [{"ProductId": f"P{p}", "Description": None if k else "As agreed", "Quantity": _QTY[(i + k) % len(_QTY)],
                  "UnitPrice": _PRICES[p % len(_PRICES)]} for k, p in enumerate(prods)]
        return {"Id": f"O{i}", "OrderNumber": f"SO-{100000 + i}", "CustomerId": f"C{cust}", "Title": f"Order {i}",
                "OrderDate": "2026-01-15", "DueDate": "2026-02-14", "Currency": "NOK",
                "PoNumber": f"PO-{i}" if i % 3 == 0 else None, "Memo": "Takk" if not version else f"edit {version}",
                "Status": "confirmed" if i % 2 else "draft", "Lines": lines, "Total": None, "AmountPaid": None,
                "AmountDue": None, "PaymentStatus": None, "Version": 1 + version,
                "UpdatedAt": _ts(i + version * 10_000_000)}

    def wave_invoice(self, w: int, version: int = 0) -> dict[str, Any]:
        i = self._twin("order", w)
        assert i is not None
        o = self.crm_order(i)
        cust, prods = self._order_refs(i)
        wc = self._wave_index("customer", cust)
        wcust = f"QnVzaW5lc3M6Q3VzdG9tZXI6{wc if wc is not None else self.wave_count('customer') - 1}"
        items = []
        for line, p in zip(o["Lines"], prods):
            wp = self._wave_index("product", p)
            pid = f"QnVzaW5lc3M6UHJvZHVjdDo{wp if wp is not None else self.wave_count('product') - 1}"
            items.append({"product": {"id": pid}, "description": line["Description"], "quantity": line["Quantity"],
                          "unitPrice": line["UnitPrice"], "total": {"value": "0"}})
        return {"id": f"QnVzaW5lc3M6SW52b2ljZTo{w}", "invoiceNumber": o["OrderNumber"],
                "status": "SAVED" if i % 2 else "DRAFT", "title": o["Title"], "subhead": None,
                "invoiceDate": o["OrderDate"], "dueDate": o["DueDate"], "poNumber": o["PoNumber"],
                "memo": o["Memo"] if i % 25 != 4 else "Other memo", "currency": {"code": "NOK"},
                "customer": {"id": wcust}, "items": items, "total": {"value": "100.00"},
                "amountDue": {"value": "100.00"}, "amountPaid": {"value": "0.00"},
                "createdAt": _ts(w), "modifiedAt": _ts(w + 500 + version * 10_000_000)}

    def record(self, system: str, entity: str, index: int) -> dict[str, Any]:
        version = self.edits.get((system, entity), {}).get(index, 0)
        maker = {("crm", "customer"): self.crm_customer, ("wave", "customer"): self.wave_customer,
                 ("crm", "product"): self.crm_product, ("wave", "product"): self.wave_product,
                 ("crm", "order"): self.crm_order, ("wave", "order"): self.wave_invoice}[(system, entity)]
        return maker(index, version)

    def count(self, system: str, entity: str) -> int:
        return self.crm_count(entity) if system == "crm" else self.wave_count(entity)

    def pages(self, system: str, entity: str, indices: list[int] | None = None) -> Iterator[list[dict[str, Any]]]:
        """Pages of records (all, or just `indices`), `scale.page` records each."""
        size = self.scale.page
        if indices is None:
            n = self.count(system, entity)
            for start in range(0, n, size):
                yield [self.record(system, entity, i) for i in range(start, min(n, start + size))]
        else:
            for start in range(0, len(indices), size):
                yield [self.record(system, entity, i) for i in indices[start:start + size]]

    def edit(self, system: str, entity: str, share: float, version: int = 1) -> list[int]:
        """Edit `share` of one system's records of an entity (spread evenly); return their indices."""
        n = self.count(system, entity)
        step = max(1, round(1 / share))
        changed = list(range(0, n, step))
        self.edits.setdefault((system, entity), {}).update(dict.fromkeys(changed, version))
        return changed


@dataclass
class _Page:
    items: list[dict[str, Any]]
    next_cursor: str | None
    has_more: bool = False


class FakeCrm:
    """What `crm_wave.sync.collect` needs of a CRM client (`always_full`, `read_changes`), served from a `Dataset`."""

    _RESOURCES = {"customers": "customer", "products": "product", "orders": "order"}

    def __init__(self, data: Dataset) -> None:
        self.data = data
        self.pending: dict[str, list[int]] = {}  # entity -> indices changed since the last read

    def always_full(self, resource: str) -> bool:
        """A change feed: incremental reads."""
        return False

    def read_changes(self, resource: str, since: str | None, *, limit: int = 1000) -> Iterator[_Page]:
        entity = self._RESOURCES[resource]
        if since is None:
            pages = self.data.pages("crm", entity)
        else:
            pages = self.data.pages("crm", entity, self.pending.pop(entity, []))
        cursor = since or "0"
        for page in pages:
            cursor = str(int(cursor) + len(page))
            yield _Page(page, cursor, True)
        yield _Page([], cursor, False)


class FakeWave:
    """What `crm_wave.sync.collect` needs of a Wave client (`iter_*` pages), served from a `Dataset`."""

    def __init__(self, data: Dataset) -> None:
        self.data = data
        self.pending: dict[str, list[int]] = {}

    def _iter(self, entity: str, modified_after: str | None) -> Iterator[list[dict[str, Any]]]:
        if modified_after is None:
            yield from self.data.pages("wave", entity)
        else:
            yield from self.data.pages("wave", entity, self.pending.pop(entity, []))

    def iter_customers(self, *, modified_after: str | None = None) -> Iterator[list[dict[str, Any]]]:
        return self._iter("customer", modified_after)

    def iter_products(self, *, modified_after: str | None = None) -> Iterator[list[dict[str, Any]]]:
        return self._iter("product", modified_after)

    def iter_invoices(self, *, modified_after: str | None = None,
                      status: str | None = None) -> Iterator[list[dict[str, Any]]]:
        if status is not None:  # the open-invoice re-read: nothing changes behind the bench's back
            return iter(())
        return self._iter("order", modified_after)

    def get_invoices(self, invoice_ids: Sequence[str], *, per_request: int = 50) -> dict[str, dict[str, Any] | None]:
        """No lookups: the bench's invoices change only through the listings above."""
        return {}
