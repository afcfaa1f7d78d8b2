"""A corpus of bad input: the sync finishes, every good record is synced, every bad one is a
dead letter that names the record and the field.

Dirty CRM records are written straight into the CRM simulator's database (a CRM with
legacy data accepts what its API would refuse today); dirty Wave records go through Wave's
API, which accepts things the CRM refuses.
"""

from __future__ import annotations


LONG = "x" * 10_000

# (label, resource, body, expected dead-letter field or None when the record must sync)
CRM_CUSTOMERS = [
    ("bad email", {"Email": "not-an-email"}, "Email"),
    ("email with a space", {"Email": "a b@example.com"}, "Email"),
    ("email without domain", {"Email": "nobody@"}, "Email"),
    ("unknown country", {"Country": "XX"}, "Country"),
    ("unknown currency", {"Currency": "ABC"}, "Currency"),
    ("unknown state", {"State": "US-ZZ"}, "State"),
    ("missing name", {"Name": None}, "Name"),
    ("10 kB description", {"Description": LONG}, "Description"),
    ("control character in name", {"Name": "Bad\x07Name"}, "Name"),
    ("emoji in name", {"Name": "Café ☕ AS"}, None),
    ("lower-case country", {"Country": "no", "City": "Oslo"}, None),
    ("email with blanks and capitals", {"Email": "  MIXED@Example.COM "}, None),
]
CRM_PRODUCTS = [
    ("negative price", {"UnitPrice": "-5"}, "UnitPrice"),
    ("non-numeric price", {"UnitPrice": "abc"}, "UnitPrice"),
    ("NaN price", {"UnitPrice": "NaN"}, "UnitPrice"),
    ("missing product name", {"Name": None}, "Name"),
    ("10 kB product description", {"Description": LONG}, "Description"),
    ("price with nine decimals", {"UnitPrice": "1.123456789"}, None),
    ("emoji product name", {"Name": "Kaffe ☕"}, None),
    ("price past any precision", {"UnitPrice": "1e308"}, "UnitPrice"),
]
CRM_ORDERS = [
    ("unknown customer", {"CustomerId": "C999999"}, "CustomerId"),
    ("unknown product", {"Lines": [{"ProductId": "P999999", "Quantity": "1", "UnitPrice": "5"}]}, "Lines[0].ProductId"),
    ("zero quantity", {"Lines": [{"ProductId": "{p}", "Quantity": "0", "UnitPrice": "5"}]}, "Lines[0].Quantity"),
    ("negative quantity", {"Lines": [{"ProductId": "{p}", "Quantity": "-2", "UnitPrice": "5"}]}, "Lines[0].Quantity"),
    ("non-numeric quantity", {"Lines": [{"ProductId": "{p}", "Quantity": "two", "UnitPrice": "5"}]}, "Lines[0].Quantity"),
    ("negative line price", {"Lines": [{"ProductId": "{p}", "Quantity": "1", "UnitPrice": "-1"}]}, "Lines[0].UnitPrice"),
    ("impossible date", {"OrderDate": "2026-13-45"}, "OrderDate"),
    ("due before order date", {"OrderDate": "2026-11-20", "DueDate": "2026-11-01"}, "DueDate"),
    ("missing order number", {"OrderNumber": None}, "OrderNumber"),
    ("10 kB memo", {"Memo": LONG}, "Memo"),
    ("control character in title", {"Title": "Tab\x00Null"}, "Title"),
    ("emoji in memo", {"Memo": "Takk 🙏"}, None),
    ("quantity past any precision", {"Lines": [{"ProductId": "{p}", "Quantity": "1e309", "UnitPrice": "5"}]},
     "Lines[0].Quantity"),
]


def _label_id(label: str) -> str:
    return "bad-" + "".join(ch if ch.isalnum() else "-" for ch in label)


def test_bad_input_corpus(rig):
    assert len(CRM_CUSTOMERS) + len(CRM_PRODUCTS) + len(CRM_ORDERS) + 4 >= 30
    good_customer = rig.crm_create("customers", {"Type": "organization", "Name": "Good Base", "Email": "base@x.example"})
    good_product = rig.crm_create("products", {"Name": "Base product", "UnitPrice": "5"})
    expected: dict[str, tuple[str, str | None]] = {}  # CRM or Wave id -> (label, field)
    for i, (label, patch, fld) in enumerate(CRM_CUSTOMERS):
        body = {"Type": "organization", "Name": f"Customer {i}", "Email": f"c{i}@corpus.example", **patch}
        expected[rig.crm_dirty("customers", {k: v for k, v in body.items() if v is not None})] = (label, fld)
    for i, (label, patch, fld) in enumerate(CRM_PRODUCTS):
        body = {"Name": f"Product {i}", "UnitPrice": "10", **patch}
        expected[rig.crm_dirty("products", {k: v for k, v in body.items() if v is not None})] = (label, fld)
    for i, (label, patch, fld) in enumerate(CRM_ORDERS):
        body = {"OrderNumber": f"CORPUS-{i}", "CustomerId": good_customer["Id"], "Title": "t", "OrderDate": "2026-11-01",
                "DueDate": "2026-11-30", "Status": "draft",
                "Lines": [{"ProductId": good_product["Id"], "Quantity": "1", "UnitPrice": "5"}], **patch}
        body["Lines"] = [{**line, "ProductId": line["ProductId"].replace("{p}", good_product["Id"])} for line in body["Lines"]]
        expected[rig.crm_dirty("orders", {k: v for k, v in body.items() if v is not None})] = (label, fld)
    # Wave accepts what the CRM refuses: a 10 kB name, a duplicate customer number.
    biz = rig.wave.business_id
    wave_cases = [
        ("10 kB name from Wave", {"name": "W" * 10_000, "email": "long@wave.example"}, "Name"),
        ("customer number taken", {"name": "Twin", "email": "twin@wave.example", "displayId": "DUP-1"}, None),
        ("customer number taken twice", {"name": "Twin 2", "email": "twin2@wave.example", "displayId": "DUP-1"}, "CustomerNumber"),
        ("emoji name from Wave", {"name": "Øl & ☕ AS", "email": "emoji@wave.example"}, None),
    ]
    for label, data, fld in wave_cases:
        expected[rig.wave_write("customerCreate", {"businessId": biz, **data}).entity["id"]] = (label, fld)

    rig.sync()  # must finish despite everything

    with rig.store.connect() as con:
        letters = {rid: (system, entity, field, message) for system, entity, rid, field, message in con.execute(
            "SELECT system, entity, record_id, field, message FROM dead_letters").fetchall()}
    wave_customers = {c["email"] for c in rig.wave.list_customers()}
    wave_products = {p["name"] for p in rig.wave.list_products()}
    wave_invoices = {i["invoiceNumber"] for i in rig.wave.list_invoices()}
    crm_emails = {c["Email"] for c in rig.crm.read_all("customers")}
    problems = []
    for rid, (label, fld) in expected.items():
        letter = letters.get(rid)
        if fld is None:
            if letter is not None:
                problems.append(f"{label}: good record dead-lettered: {letter}")
            continue
        if letter is None:
            problems.append(f"{label}: no dead letter for {rid}")
        elif letter[2] != fld or not letter[3]:
            problems.append(f"{label}: dead letter names field {letter[2]!r} ({letter[3]!r}), expected {fld!r}")
    assert not problems, "\n".join(problems)
    # Every good record made it across.
    assert {"base@x.example", "c9@corpus.example", "c10@corpus.example", "mixed@example.com"} <= wave_customers
    assert {"Base product", "Product 5", "Kaffe ☕"} <= wave_products
    assert "CORPUS-11" in wave_invoices
    assert {"twin@wave.example", "emoji@wave.example"} <= crm_emails
    assert len(letters) == sum(1 for _, f in expected.values() if f is not None)
