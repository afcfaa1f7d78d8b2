"""Reproducible sample data for the CRM simulator, written straight into SQLite.

`seed()` replaces whatever the database held: the same seed and counts always give
the same entities, Ids, versions and timestamps (timestamps derive from the seed,
not the clock). About 60 % of customers are organisations; addresses use real ISO
country and subdivision codes; orders have 1-4 lines of seeded products.
Rows are generated lazily and inserted with `executemany` in one transaction, so
1,000,000 customers take seconds, not minutes.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import random
import unicodedata
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from .resources import RESOURCES, order_total
from .store import FIRST_ID, SCHEMA, bulk_put, connect, format_ts

__all__ = ["seed"]

# country: (weight, currency, legal form, phone prefix, zip digits, [(city, subdivision), ...], email domains)
_COUNTRIES: dict[str, tuple[int, str, str, str, int, list[tuple[str, str]], list[str]]] = {
    "NO": (30, "NOK", "AS", "+47", 4,
           [("Oslo", "NO-03"), ("Bergen", "NO-46"), ("Trondheim", "NO-50"), ("Stavanger", "NO-11"),
            ("Kristiansand", "NO-42"), ("Tromsø", "NO-54")], ["online.no", "gmail.com", "outlook.com"]),
    "SE": (15, "SEK", "AB", "+46", 5,
           [("Stockholm", "SE-AB"), ("Göteborg", "SE-O"), ("Malmö", "SE-M"), ("Uppsala", "SE-C")],
           ["telia.com", "gmail.com", "hotmail.se"]),
    "DK": (8, "DKK", "ApS", "+45", 4, [("København", "DK-84"), ("Aarhus", "DK-82"), ("Odense", "DK-83")],
           ["mail.dk", "gmail.com"]),
    "GB": (12, "GBP", "Ltd", "+44", 0, [("London", "GB-LND"), ("Manchester", "GB-MAN"), ("Edinburgh", "GB-EDH")],
           ["btinternet.com", "gmail.com", "outlook.com"]),
    "US": (20, "USD", "Inc.", "+1", 5,
           [("San Francisco", "US-CA"), ("Los Angeles", "US-CA"), ("New York", "US-NY"), ("Austin", "US-TX"),
            ("Seattle", "US-WA"), ("Chicago", "US-IL")], ["gmail.com", "yahoo.com", "outlook.com"]),
    "CA": (5, "CAD", "Inc.", "+1", 0, [("Toronto", "CA-ON"), ("Vancouver", "CA-BC"), ("Montréal", "CA-QC")],
           ["gmail.com", "rogers.com"]),
    "DE": (10, "EUR", "GmbH", "+49", 5, [("Berlin", "DE-BE"), ("Hamburg", "DE-HH"), ("München", "DE-BY")],
           ["web.de", "gmx.de", "gmail.com"]),
}
_TLD = {"NO": "no", "SE": "se", "DK": "dk", "GB": "co.uk", "US": "com", "CA": "ca", "DE": "de"}
_FIRST = ["Ola", "Kari", "Ingrid", "Lars", "Astrid", "Erik", "Sofia", "Johan", "Emma", "Mats", "Nora", "Henrik",
          "Freya", "Magnus", "Sigrid", "Anders", "Linnea", "Oskar", "Maja", "Jonas", "Olivia", "James", "Grace",
          "Liam", "Amelia", "Noah", "Charlotte", "Ethan", "Hannah", "Lukas", "Mia", "Felix", "Lea", "Björn", "Åse",
          "Søren", "Zoë", "Chloé", "Rahul", "Mei", "Aisha", "Diego"]
_LAST = ["Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsson", "Lindqvist", "Berg", "Dahl",
         "Haugen", "Solberg", "Smith", "Jones", "Taylor", "Brown", "Williams", "Miller", "Davis", "Wilson", "Müller",
         "Schmidt", "Fischer", "Weber", "Jensen", "Nielsen", "Sørensen", "Østby", "Åberg", "Lefèvre", "O'Brien",
         "Nakamura", "Chen", "Patel", "García", "Kowalski", "Novak", "Rossi", "Dubois", "Virtanen"]
_ORG_A = ["Nordic", "Fjord", "Aurora", "Polar", "Granite", "Harbor", "Summit", "Blue", "Silver", "North", "Bright",
          "Cedar", "Pine", "Atlas", "Vega", "Nova", "Coastal", "Iron", "Maple", "Oak", "Birch", "Glacier", "Midnight",
          "Tidewater", "Highland"]
_ORG_B = ["Consulting", "Logistics", "Systems", "Bakery", "Design", "Foods", "Energy", "Marine", "Analytics",
          "Builders", "Media", "Outdoor", "Dental", "Legal", "Robotics", "Textiles", "Coffee", "Software", "Travel",
          "Electric", "Architects", "Ventures", "Health", "Print", "Audio"]
_STREETS = ["Storgata", "Kirkeveien", "Drottninggatan", "Vesterbrogade", "High Street", "Main Street", "Market Street",
            "Hauptstraße", "Bahnhofstraße", "Queen Street", "Elm Avenue", "Strandveien", "Parkveien", "Sveavägen"]
_PRODUCT_A = ["Ergonomic", "Premium", "Compact", "Organic", "Wireless", "Heavy-duty", "Recycled", "Smart", "Classic",
              "Portable", "Insulated", "Handmade", "Deluxe", "Nordic", "Professional", "Eco", "Ultra-light",
              "Waterproof", "Modular", "Vintage"]
_PRODUCT_B = ["Office Chair", "Desk Lamp", "Coffee Beans 1 kg", "Backpack", "Headphones", "Rain Jacket",
              "Standing Desk", "Water Bottle", "Wool Sweater", "Notebook A5", "Monitor Arm", "Keyboard", "Tent",
              "Sleeping Bag", "Consulting Hour", "Support Plan (monthly)", "Installation Service", "Ski Wax",
              "Cutting Board", "Tea Sampler", "Bicycle Helmet", "Router", "Printer Paper (box)", "Webcam",
              "Training Session"]
_ORDER_TITLES = ["Spring delivery", "Annual licence", "Consulting services", "Office refurbishment", "Webshop order",
                 "Framework agreement call-off", "Trade fair equipment", "Replacement parts", "Quarterly supply",
                 "Pilot project"]
_QUANTITIES = ["1", "1", "1", "2", "2", "3", "4", "5", "10", "12", "20", "0.5", "1.5", "2.5", "7.25"]


def _ascii(text: str) -> str:
    text = text.replace("ø", "o").replace("Ø", "O").replace("æ", "ae").replace("Æ", "Ae").replace("ß", "ss")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


@functools.lru_cache(maxsize=4096)
def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in _ascii(text).lower()).strip("-").replace("--", "-")


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class _Clock:
    """Deterministic UpdatedAt values: a seed-derived start, +250 ms per entity."""

    def __init__(self, seed: int) -> None:
        start = _dt.datetime(2025, 6, 1, tzinfo=_dt.UTC) + _dt.timedelta(minutes=seed % 100_000)
        self._ms = int(start.timestamp() * 1000)
        self._second = -1
        self._prefix = ""

    def tick(self) -> str:
        self._ms += 250
        second, ms = divmod(self._ms, 1000)
        if second != self._second:
            self._second = second
            self._prefix = format_ts(_dt.datetime.fromtimestamp(second, _dt.UTC))[:-4]
        return f"{self._prefix}{ms:03d}Z"


def _customers(rng: random.Random, n: int, clock: _Clock, out: list[tuple[str, str, str]]) -> Iterator[tuple]:
    names = list(_COUNTRIES)
    weights = [c[0] for c in _COUNTRIES.values()]
    used: dict[str, int] = {}
    fields = [f.name for f in RESOURCES["customers"].fields]
    for i in range(n):
        id_ = f"C{FIRST_ID + i}"
        country = rng.choices(names, weights)[0]
        _, currency, form, prefix, zip_digits, cities, domains = _COUNTRIES[country]
        city, state = rng.choice(cities)
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        e: dict[str, Any] = dict.fromkeys(fields)
        if rng.random() < 0.6:
            org = f"{rng.choice(_ORG_A)} {rng.choice(_ORG_B)}"
            slug = _slug(org)
            k = used[slug] = used.get(slug, 0) + 1
            domain = f"{slug}{k if k > 1 else ''}.{_TLD[country]}"
            e.update(Type="organization", Name=f"{org} {form}", Website=f"https://www.{domain}")
            if rng.random() < 0.7:
                e.update(FirstName=first, LastName=last)
            email = f"{rng.choice(['post', 'info', 'contact', 'accounts'])}@{domain}"
            if rng.random() < 0.3:
                e["Description"] = rng.choice(["Key account", "Prefers invoices by email", "Net 30 agreed",
                                               "Reseller", "Public sector customer"])
        else:
            base = f"{_slug(first)}.{_slug(last)}".replace("-", "")
            dom = rng.choice(domains)
            k = used[base + "@" + dom] = used.get(base + "@" + dom, 0) + 1
            email = f"{base}{k if k > 1 else ''}@{dom}"
            e.update(Type="person", Name=f"{first} {last}", FirstName=first, LastName=last,
                     Mobile=f"{prefix} {rng.randrange(400, 999)} {rng.randrange(10000, 99999)}")
        if rng.random() < 0.9:
            e["Email"] = email
        if rng.random() < 0.7:
            e["CustomerNumber"] = str(10000 + i)
        e["Phone"] = f"{prefix} {rng.randrange(20, 99)} {rng.randrange(100000, 999999)}"
        e["StreetAddress1"] = f"{rng.choice(_STREETS)} {rng.randrange(1, 200)}"
        if rng.random() < 0.15:
            e["StreetAddress2"] = f"Floor {rng.randrange(1, 12)}"
        e["City"] = city
        if zip_digits:
            e["ZipCode"] = str(rng.randrange(10 ** (zip_digits - 1), 10**zip_digits))
        elif country == "GB":
            e["ZipCode"] = f"{rng.choice(['SW1A', 'M1', 'EH1', 'EC2V'])} {rng.randrange(1, 9)}{rng.choice('ABDEFGHJ')}{rng.choice('LNPQRSTU')}"
        else:
            e["ZipCode"] = f"{rng.choice(['M5V', 'V6B', 'H2Y'])} {rng.randrange(1, 9)}{rng.choice('ABCEGH')}{rng.randrange(1, 9)}"
        if country in ("US", "CA") or rng.random() < 0.5:
            e["State"] = state
        e["Country"] = country
        e["Currency"] = currency
        out.append((id_, currency, e["Name"]))
        body = _dumps({"Id": id_, **e, "Version": 1, "UpdatedAt": clock.tick()})
        yield ("customers", id_, i + 1, 1, 0, e["CustomerNumber"], body)


def _products(rng: random.Random, n: int, clock: _Clock, out: list[tuple[str, str]]) -> Iterator[tuple]:
    used: dict[str, int] = {}
    for i in range(n):
        id_ = f"P{FIRST_ID + i}"
        name = f"{rng.choice(_PRODUCT_A)} {rng.choice(_PRODUCT_B)}"
        k = used[name] = used.get(name, 0) + 1
        if k > 1:
            name = f"{name} Mk {k}"
        price = f"{Decimal(rng.randrange(500, 500000)) / 100:.2f}"
        if rng.random() < 0.2:
            price = f"{rng.randrange(5, 5000)}.00"
        archived = rng.random() < 0.05
        if not archived:
            out.append((id_, price))
        body = _dumps({
            "Id": id_,
            "Name": name,
            "Description": rng.choice([None, f"{name}, sold per unit", "Ships within 3 days", "Bestseller"]),
            "UnitPrice": price,
            "Sku": f"SKU-{100000 + i}",
            "IsArchived": archived,
            "Version": 1,
            "UpdatedAt": clock.tick(),
        })
        yield ("products", id_, i + 1, 1, 0, None, body)


def _orders(rng: random.Random, n: int, clock: _Clock, customers: list[tuple[str, str, str]],
            products: list[tuple[str, str]], base_date: _dt.date) -> Iterator[tuple]:
    for i in range(n):
        id_ = f"O{FIRST_ID + i}"
        customer_id, currency, customer_name = rng.choice(customers)
        chosen = rng.sample(products, min(len(products), rng.randint(1, 4)))
        lines = [{"ProductId": pid, "Description": rng.choice([None, "As agreed", "Express delivery"]),
                  "Quantity": rng.choice(_QUANTITIES), "UnitPrice": price} for pid, price in chosen]
        order_date = base_date - _dt.timedelta(days=rng.randrange(0, 180))
        r = rng.random()
        status = "confirmed" if r < 0.55 else ("draft" if r < 0.95 else "cancelled")
        number = f"SO-{100001 + i}"
        body = _dumps({
            "Id": id_,
            "OrderNumber": number,
            "CustomerId": customer_id,
            "Title": f"{rng.choice(_ORDER_TITLES)} – {customer_name}",
            "OrderDate": order_date.isoformat(),
            "DueDate": (order_date + _dt.timedelta(days=rng.choice([10, 14, 30]))).isoformat(),
            "Currency": currency,
            "PoNumber": f"PO-{rng.randrange(1000, 99999)}" if rng.random() < 0.3 else None,
            "Memo": rng.choice([None, None, "Thank you for your business", "Deliver to the back entrance"]),
            "Status": status,
            "Lines": lines,
            "Total": order_total(lines, currency),
            "AmountPaid": None,
            "AmountDue": None,
            "PaymentStatus": None,
            "Version": 1,
            "UpdatedAt": clock.tick(),
        })
        yield ("orders", id_, i + 1, 1, 0, number, body)


def seed(db_path: Path, *, seed: int, customers: int, products: int, orders: int) -> dict[str, int]:
    """Replace the contents of `db_path` with reproducible sample data; return counts per resource."""
    if min(customers, products, orders) < 0:
        raise ValueError("counts must be >= 0")
    if orders and (not customers or not products):
        raise ValueError("orders need at least one customer and one product")
    path = Path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    clock = _Clock(seed)
    conn = connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN IMMEDIATE")
        for table in ("entities", "counters", "idempotency"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute("COMMIT")
        conn.executescript(SCHEMA)
        conn.execute("BEGIN IMMEDIATE")
        seeded_customers: list[tuple[str, str, str]] = []
        seeded_products: list[tuple[str, str]] = []
        bulk_put(conn, _customers(rng, customers, clock, seeded_customers))
        bulk_put(conn, _products(rng, products, clock, seeded_products))
        if orders and not seeded_products:
            raise ValueError("every seeded product is archived; seed more products")
        base_date = _dt.date(2026, 1, 1) + _dt.timedelta(days=seed % 365)
        bulk_put(conn, _orders(rng, orders, clock, seeded_customers, seeded_products, base_date))
        counts = {"customers": customers, "products": products, "orders": orders}
        for name, n in counts.items():
            if n:
                conn.execute("INSERT INTO counters (name, value) VALUES (?, ?)", (f"id:{name}", FIRST_ID + n - 1))
                conn.execute("INSERT INTO counters (name, value) VALUES (?, ?)", (f"seq:{name}", n))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
    return counts
