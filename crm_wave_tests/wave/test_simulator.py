"""The Wave simulator over real HTTP: auth, reads, writes, business rules, persistence, faults."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from crm_wave.systems.serve import serve_in_thread
from crm_wave.systems.wave.simulator import DEFAULT_BUSINESS_UUID, Store, create_app, create_business
from crm_wave_tests.conftest import Sim

CUSTOMER_FIELDS = """
  id name firstName lastName displayId email mobile phone fax tollFree website internalNotes isArchived
  currency { code symbol name }
  address { addressLine1 addressLine2 city postalCode province { code name } country { code name } }
  shippingDetails { name phone instructions address { addressLine1 city country { code } } }
  outstandingAmount { value minorUnitValue raw currency { code } }
  overdueAmount { value }
  createdAt modifiedAt
"""
PRODUCT_FIELDS = """
  id name description unitPrice isSold isBought isArchived createdAt modifiedAt
  incomeAccount { id name } expenseAccount { id } defaultSalesTaxes { id name }
"""
INVOICE_FIELDS = """
  id invoiceNumber title status invoiceDate dueDate poNumber memo createdAt modifiedAt lastSentAt lastSentVia
  currency { code }
  customer { id name }
  items { product { id name } description quantity unitPrice price subtotal { value } total { value }
          account { id } taxes { amount { value } salesTax { id } } }
  subtotal { value } taxTotal { value } total { value minorUnitValue } amountPaid { value } amountDue { value }
"""


class Wave:
    """A tiny httpx GraphQL helper for these tests."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.http = httpx.Client(headers={"Authorization": f"Bearer {sim.token}"}, timeout=30)
        self.business_id = self.data("{ business { id } }")["business"]["id"]

    def post(self, query: str, variables: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        return self.http.post(self.sim.url, json={"query": query, "variables": variables or {}}, **kw)

    def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = self.post(query, variables).json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def mutate(self, name: str, input_type: str, entity: str | None, fields: str, payload: dict[str, Any]) -> dict:
        sel = f"{entity} {{ {fields} }}" if entity else ""
        q = f"mutation($i: {input_type}!) {{ r: {name}(input: $i) {{ didSucceed inputErrors {{ code message path }} {sel} }} }}"
        return self.data(q, {"i": payload})["r"]

    def create_customer(self, business_id: str | None = None, **fields: Any) -> dict:
        out = self.mutate("customerCreate", "CustomerCreateInput", "customer", CUSTOMER_FIELDS,
                          {"businessId": business_id or self.business_id, **fields})
        assert out["didSucceed"], out
        return out["customer"]

    def create_product(self, **fields: Any) -> dict:
        out = self.mutate("productCreate", "ProductCreateInput", "product", PRODUCT_FIELDS,
                          {"businessId": self.business_id, **fields})
        assert out["didSucceed"], out
        return out["product"]

    def create_invoice(self, **fields: Any) -> dict:
        out = self.mutate("invoiceCreate", "InvoiceCreateInput", "invoice", INVOICE_FIELDS,
                          {"businessId": self.business_id, **fields})
        assert out["didSucceed"], out
        return out["invoice"]

    def customers(self, args: str = "", fields: str = "id name modifiedAt") -> dict:
        q = f"{{ business {{ customers{args} {{ edges {{ node {{ {fields} }} }} pageInfo {{ currentPage totalPages totalCount }} }} }} }}"
        return self.data(q)["business"]["customers"]


@pytest.fixture
def wave(wave_sim: Sim) -> Iterator[Wave]:
    w = Wave(wave_sim)
    yield w
    w.http.close()


def decode(opaque: str) -> str:
    return base64.b64decode(opaque).decode()


# ---------------------------------------------------------------- auth, defaults, validation


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}])
def test_missing_or_bad_token_is_unauthenticated(wave_sim: Sim, headers: dict[str, str]) -> None:
    r = httpx.post(wave_sim.url, json={"query": "{ user { id } }"}, headers=headers)
    body = r.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_default_business_and_user(wave: Wave) -> None:
    data = wave.data("""{
      user { id firstName }
      business { id name isClassicAccounting isArchived currency { code symbol exponent } createdAt modifiedAt
        accounts(types: [INCOME]) { edges { node { id name subtype { value } type { value } } } }
        salesTaxes { edges { node { id name rate } } pageInfo { totalCount } } }
      businesses { edges { node { id } } pageInfo { totalCount currentPage totalPages } }
    }""")
    biz = data["business"]
    assert decode(biz["id"]) == f"Business:{DEFAULT_BUSINESS_UUID}"
    assert biz["currency"] == {"code": "USD", "symbol": "$", "exponent": 2}
    assert biz["isClassicAccounting"] is False
    assert biz["createdAt"].endswith("Z") and len(biz["createdAt"]) == 24
    incomes = [e["node"] for e in biz["accounts"]["edges"]]
    assert incomes and all(a["type"]["value"] == "INCOME" for a in incomes)
    assert decode(incomes[0]["id"]).startswith("Account:") and decode(incomes[0]["id"]).endswith(DEFAULT_BUSINESS_UUID)
    assert biz["salesTaxes"]["pageInfo"]["totalCount"] == 1
    assert biz["salesTaxes"]["edges"][0]["node"]["rate"] == "0.08"
    assert data["businesses"]["edges"] == [{"node": {"id": biz["id"]}}]
    assert data["businesses"]["pageInfo"] == {"totalCount": 1, "currentPage": 1, "totalPages": 1}
    same = wave.data("query($id: ID) { business(id: $id) { name } }", {"id": biz["id"]})
    assert same["business"]["name"] == wave.data("{ business { name } }")["business"]["name"]


def test_schema_violations_have_validation_code(wave: Wave) -> None:
    cases = [
        ("{ business { customers(sort: [BOGUS]) { pageInfo { totalCount } } } }", None),
        ("{ business { noSuchField } }", None),
        ("mutation { customerCreate { didSucceed } }", None),
    ]
    for query, variables in cases:
        r = wave.post(query, variables)
        body = r.json()
        assert r.status_code == 400, body
        assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", body
    bad = wave.post("{ business { ").json()
    assert bad["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


# ---------------------------------------------------------------- customers


def test_customer_create_patch_delete(wave: Wave) -> None:
    address = {"addressLine1": "Karl Johans gate 1", "city": "Oslo", "postalCode": "0154",
               "countryCode": "NO", "provinceCode": "NO-03"}
    c = wave.create_customer(name="Acme AS", firstName="Ada", lastName="Lovelace", email="post@acme.no",
                             phone="+47 1", website="https://acme.no", internalNotes="vip", displayId="C-1",
                             address=address, shippingDetails={"name": "Acme", "address": address})
    assert decode(c["id"]) == f"Business:{DEFAULT_BUSINESS_UUID};Customer:1"
    assert c["address"]["province"] == {"code": "NO-03", "name": "Oslo"}
    assert c["address"]["country"] == {"code": "NO", "name": "Norway"}
    assert c["shippingDetails"]["address"]["city"] == "Oslo"
    assert c["currency"]["code"] == "USD"
    assert c["outstandingAmount"] == {"value": "0.00", "minorUnitValue": "0", "raw": 0, "currency": {"code": "USD"}}
    assert c["createdAt"] == c["modifiedAt"]

    out = wave.mutate("customerPatch", "CustomerPatchInput", "customer", CUSTOMER_FIELDS,
                      {"id": c["id"], "phone": "+47 2", "email": None, "address": {"city": "Bergen"}})
    assert out["didSucceed"], out
    p = out["customer"]
    assert p["phone"] == "+47 2" and p["email"] is None  # explicit null clears
    assert p["name"] == "Acme AS" and p["website"] == "https://acme.no" and p["firstName"] == "Ada"  # untouched
    assert p["address"]["city"] == "Bergen" and p["address"]["addressLine1"] == "Karl Johans gate 1"
    assert p["modifiedAt"] > c["modifiedAt"] and p["createdAt"] == c["createdAt"]

    read = wave.data("query($id: ID!) { business { customer(id: $id) { name phone email } } }", {"id": c["id"]})
    assert read["business"]["customer"] == {"name": "Acme AS", "phone": "+47 2", "email": None}

    assert wave.mutate("customerDelete", "CustomerDeleteInput", None, "", {"id": c["id"]})["didSucceed"]
    gone = wave.post("query($id: ID!) { business { customer(id: $id) { id } } }", {"id": c["id"]}).json()
    assert gone["data"]["business"]["customer"] is None
    assert gone["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert gone["errors"][0]["path"] == ["business", "customer"]
    again = wave.post("mutation($i: CustomerDeleteInput!) { r: customerDelete(input: $i) { didSucceed } }",
                      {"i": {"id": c["id"]}}).json()
    assert again["data"] == {"r": None}
    assert again["errors"][0]["extensions"]["code"] == "NOT_FOUND" and again["errors"][0]["path"] == ["r"]


def test_customer_input_errors(wave: Wave) -> None:
    cases = [
        ({"businessId": wave.business_id, "name": "  "}, "REQUIRED", ["input", "name"]),
        ({"businessId": "not-an-id", "name": "x"}, "INVALID", ["input", "businessId"]),
        ({"businessId": base64.b64encode(b"Business:nope").decode(), "name": "x"}, "NOT_FOUND", ["input", "businessId"]),
        ({"businessId": wave.business_id, "name": "x", "email": "nope"}, "INVALID", ["input", "email"]),
        ({"businessId": wave.business_id, "name": "x", "address": {"provinceCode": "XX-99"}}, "INVALID",
         ["input", "address", "provinceCode"]),
    ]
    for payload, code, path in cases:
        out = wave.mutate("customerCreate", "CustomerCreateInput", "customer", "id", payload)
        assert out["didSucceed"] is False and out["customer"] is None
        assert (out["inputErrors"][0]["code"], out["inputErrors"][0]["path"]) == (code, path), out
    patch = wave.post("mutation($i: CustomerPatchInput!) { r: customerPatch(input: $i) { didSucceed } }",
                      {"i": {"id": "garbage", "name": "x"}}).json()
    assert patch["data"] == {"r": None} and patch["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert wave.customers()["pageInfo"]["totalCount"] == 0


def test_customer_email_filter_is_exact_and_case_insensitive(wave: Wave) -> None:
    wave.create_customer(name="A", email="Ann@Example.com")
    wave.create_customer(name="B", email="ann@example.com.au")
    found = wave.customers('(email: "ann@EXAMPLE.com")', "name email")
    assert [e["node"]["name"] for e in found["edges"]] == ["A"]


def test_pagination_and_sorts(wave: Wave) -> None:
    names = ["delta", "Alpha", "echo", "charlie", "bravo", "golf", "foxtrot"]
    for n in names:
        wave.create_customer(name=n)
    seen = []
    page = 1
    while True:
        conn = wave.customers(f"(page: {page}, pageSize: 3, sort: [CREATED_AT_ASC])", "name")
        assert conn["pageInfo"] == {"currentPage": page, "totalPages": 3, "totalCount": 7}
        seen += [e["node"]["name"] for e in conn["edges"]]
        if page >= conn["pageInfo"]["totalPages"]:
            break
        page += 1
    assert seen == names
    default = wave.customers("", "name")  # CREATED_AT_DESC, pageSize 45
    assert [e["node"]["name"] for e in default["edges"]] == names[::-1]
    by_name = wave.customers("(sort: [NAME_ASC])", "name")
    assert [e["node"]["name"] for e in by_name["edges"]] == sorted(names, key=str.lower)
    desc = wave.customers("(sort: [NAME_DESC], pageSize: 2, page: 4)", "name")
    assert [e["node"]["name"] for e in desc["edges"]] == ["Alpha"]
    assert wave.customers("(page: 9, pageSize: 3)")["edges"] == []


def test_incremental_read_with_modified_at_after(wave: Wave) -> None:
    created = [wave.create_customer(name=f"c{i}") for i in range(6)]
    stamps = [c["modifiedAt"] for c in created]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # strictly increasing
    cursor = stamps[-1]
    assert wave.customers(f'(modifiedAtAfter: "{cursor}")')["pageInfo"]["totalCount"] == 0
    for c in (created[3], created[1]):
        out = wave.mutate("customerPatch", "CustomerPatchInput", "customer", "id", {"id": c["id"], "phone": "1"})
        assert out["didSucceed"]
    changed = wave.customers(f'(modifiedAtAfter: "{cursor}", sort: [MODIFIED_AT_ASC])', "name modifiedAt")
    assert [e["node"]["name"] for e in changed["edges"]] == ["c3", "c1"]
    assert all(e["node"]["modifiedAt"] > cursor for e in changed["edges"])
    before = wave.customers(f'(modifiedAtBefore: "{stamps[2]}", sort: [MODIFIED_AT_ASC])', "name")
    assert [e["node"]["name"] for e in before["edges"]] == ["c0"]  # strict; c1 was modified later


# ---------------------------------------------------------------- products


def test_product_create_patch_archive_and_filters(wave: Wave) -> None:
    p = wave.create_product(name="Widget", description="A widget", unitPrice="1.234565")
    assert p["unitPrice"] == "1.23457"  # 5 dp, ties away from zero
    assert p["isSold"] is True and p["isBought"] is False and p["incomeAccount"]["name"] == "Sales"
    assert p["isArchived"] is False and p["defaultSalesTaxes"] == []
    q = wave.create_product(name="Service", unitPrice="10")
    assert q["unitPrice"] == "10.00"

    out = wave.mutate("productPatch", "ProductPatchInput", "product", PRODUCT_FIELDS,
                      {"id": p["id"], "unitPrice": "2.5", "description": None})
    assert out["didSucceed"], out
    assert out["product"]["unitPrice"] == "2.50" and out["product"]["description"] is None
    assert out["product"]["name"] == "Widget" and out["product"]["modifiedAt"] > p["modifiedAt"]

    bad = wave.mutate("productPatch", "ProductPatchInput", "product", "id", {"id": p["id"], "unitPrice": "-1"})
    assert bad["didSucceed"] is False and bad["inputErrors"][0]["path"] == ["input", "unitPrice"]
    bad = wave.mutate("productCreate", "ProductCreateInput", "product", "id",
                      {"businessId": wave.business_id, "name": "", "unitPrice": "1"})
    assert bad["inputErrors"][0] == {"code": "REQUIRED", "message": "Name is required", "path": ["input", "name"]}

    archived = wave.mutate("productArchive", "ProductArchiveInput", "product", "id isArchived", {"id": p["id"]})
    assert archived["didSucceed"] and archived["product"]["isArchived"] is True

    def names(args: str) -> list[str]:
        data = wave.data(f"{{ business {{ products{args} {{ edges {{ node {{ name }} }} }} }} }}")
        return sorted(e["node"]["name"] for e in data["business"]["products"]["edges"])

    assert names("") == ["Service"]
    assert names("(isArchived: true)") == ["Widget"]
    assert names("(isArchived: null)") == ["Service", "Widget"]
    assert names("(isArchived: null, isSold: true)") == ["Service", "Widget"]
    assert names("(isBought: true)") == []


# ---------------------------------------------------------------- invoices


@pytest.fixture
def sales(wave: Wave) -> dict[str, Any]:
    return {
        "customer": wave.create_customer(name="Buyer Ltd", email="buyer@example.com"),
        "widget": wave.create_product(name="Widget", unitPrice="10.005"),
        "service": wave.create_product(name="Service", unitPrice="99.99", description="Consulting hour"),
        "cash": wave.data("{ business { accounts(subtypes: [CASH_AND_BANK]) { edges { node { id } } } } }")
        ["business"]["accounts"]["edges"][0]["node"]["id"],
    }


def _pay(wave: Wave, invoice_id: str, amount: str, account: str) -> dict:
    return wave.mutate("invoicePaymentCreateManual", "InvoicePaymentCreateManualInput", "invoicePayment",
                       "id amount paymentDate paymentMethod invoice { id status amountPaid { value } amountDue { value } modifiedAt }",
                       {"invoiceId": invoice_id, "amount": amount, "exchangeRate": "1", "paymentAccountId": account,
                        "paymentDate": "2030-01-15", "paymentMethod": "BANK_TRANSFER"})


def test_invoice_lifecycle_totals_and_payments(wave: Wave, sales: dict[str, Any]) -> None:
    inv = wave.create_invoice(
        customerId=sales["customer"]["id"], invoiceDate="2030-01-01", dueDate="2030-01-31", poNumber="PO-7",
        items=[{"productId": sales["widget"]["id"], "quantity": "3"},
               {"productId": sales["service"]["id"], "quantity": "1.5", "unitPrice": "100.123456789"}])
    assert inv["invoiceNumber"] == "1" and inv["status"] == "DRAFT" and inv["title"] == "Invoice"
    assert inv["currency"]["code"] == "USD" and inv["customer"]["name"] == "Buyer Ltd"
    first, second = inv["items"]
    assert first["unitPrice"] == "10.005" and first["quantity"] == "3.00" and first["subtotal"]["value"] == "30.02"
    assert first["price"] == first["unitPrice"]  # deprecated field still resolves
    assert second["unitPrice"] == "100.12345679" and second["description"] == "Consulting hour"
    assert second["subtotal"]["value"] == "150.19"  # 1.5 * 100.12345679 = 150.185185185 -> 150.19
    assert inv["subtotal"]["value"] == "180.21" and inv["taxTotal"]["value"] == "0.00"
    assert inv["total"] == {"value": "180.21", "minorUnitValue": "18021"}
    assert inv["amountDue"]["value"] == "180.21" and inv["amountPaid"]["value"] == "0.00"

    draft_pay = _pay(wave, inv["id"], "10", sales["cash"])
    assert draft_pay["didSucceed"] is False and draft_pay["inputErrors"][0]["path"] == ["input", "invoiceId"]

    approved = wave.mutate("invoiceApprove", "InvoiceApproveInput", "invoice", "status modifiedAt", {"invoiceId": inv["id"]})
    assert approved["invoice"]["status"] == "SAVED"
    sent = wave.mutate("invoiceMarkSent", "InvoiceMarkSentInput", "invoice", "status lastSentAt lastSentVia",
                       {"invoiceId": inv["id"], "sendMethod": "MARKED_SENT", "sentAt": "2030-01-02T10:00:00Z"})
    assert sent["invoice"] == {"status": "SENT", "lastSentAt": "2030-01-02T10:00:00.000Z", "lastSentVia": "MARKED_SENT"}

    part = _pay(wave, inv["id"], "80.21", sales["cash"])
    assert part["didSucceed"], part
    assert part["invoicePayment"]["amount"] == "80.21"
    assert part["invoicePayment"]["invoice"]["status"] == "PARTIAL"
    assert part["invoicePayment"]["invoice"]["amountPaid"]["value"] == "80.21"
    assert part["invoicePayment"]["invoice"]["amountDue"]["value"] == "100.00"
    assert part["invoicePayment"]["invoice"]["modifiedAt"] > approved["invoice"]["modifiedAt"]
    owed = wave.data("query($id: ID!) { business { customer(id: $id) { outstandingAmount { value } } } }",
                     {"id": sales["customer"]["id"]})
    assert owed["business"]["customer"]["outstandingAmount"]["value"] == "100.00"

    paid = _pay(wave, inv["id"], "100", sales["cash"])["invoicePayment"]["invoice"]
    assert (paid["status"], paid["amountDue"]["value"]) == ("PAID", "0.00")
    over = _pay(wave, inv["id"], "5", sales["cash"])["invoicePayment"]["invoice"]
    assert (over["status"], over["amountPaid"]["value"]) == ("OVERPAID", "185.21")

    nonpositive = _pay(wave, inv["id"], "0", sales["cash"])
    assert nonpositive["didSucceed"] is False and nonpositive["inputErrors"][0]["path"] == ["input", "amount"]
    payments = wave.data("query($id: ID!) { business { invoice(id: $id) { payments { amount paymentMethod } } } }",
                         {"id": inv["id"]})["business"]["invoice"]["payments"]
    assert [p["amount"] for p in payments] == ["80.21", "100.00", "5.00"]


def test_invoice_patch_replaces_items_and_numbers_increment(wave: Wave, sales: dict[str, Any]) -> None:
    first = wave.create_invoice(customerId=sales["customer"]["id"], invoiceNumber="41",
                                items=[{"productId": sales["widget"]["id"]}])
    second = wave.create_invoice(customerId=sales["customer"]["id"], status="SAVED")
    assert second["invoiceNumber"] == "42" and second["status"] == "PAID"  # approved with a total of 0
    assert second["dueDate"] == second["invoiceDate"] and second["items"] == []
    out = wave.mutate("invoicePatch", "InvoicePatchInput", "invoice", INVOICE_FIELDS,
                      {"id": first["id"], "memo": "thanks", "items": [
                          {"productId": sales["service"]["id"], "quantity": "2", "description": "Two hours"}]})
    assert out["didSucceed"], out
    inv = out["invoice"]
    assert [i["description"] for i in inv["items"]] == ["Two hours"]
    assert inv["total"]["value"] == "199.98" and inv["memo"] == "thanks" and inv["invoiceNumber"] == "41"
    assert inv["modifiedAt"] > first["modifiedAt"]
    dup = wave.mutate("invoicePatch", "InvoicePatchInput", "invoice", "id", {"id": first["id"], "invoiceNumber": "42"})
    assert dup["inputErrors"][0]["code"] == "DUPLICATE" and dup["inputErrors"][0]["path"] == ["input", "invoiceNumber"]
    gone = wave.mutate("invoiceDelete", "InvoiceDeleteInput", None, "", {"invoiceId": second["id"]})
    assert gone["didSucceed"]
    assert wave.data("{ business { invoices { pageInfo { totalCount } } } }")["business"]["invoices"]["pageInfo"]["totalCount"] == 1


def test_invoice_input_errors(wave: Wave, wave_sim: Sim, sales: dict[str, Any]) -> None:
    other_store = Store(wave_sim.db_path)
    other = create_business(other_store, "Other Co", "EUR")
    other_store.close()
    other_id = base64.b64encode(f"Business:{other['_bid']}".encode()).decode()
    foreign = wave.create_customer(other_id, name="Foreign")
    cust = sales["customer"]["id"]
    widget = sales["widget"]["id"]
    cases = [
        ({"customerId": "bogus"}, "INVALID", ["input", "customerId"]),
        ({"customerId": foreign["id"]}, "INVALID", ["input", "customerId"]),
        ({"customerId": base64.b64encode(f"Business:{DEFAULT_BUSINESS_UUID};Customer:x".encode()).decode()},
         "INVALID", ["input", "customerId"]),
        ({"customerId": base64.b64encode(f"Business:{DEFAULT_BUSINESS_UUID};Customer:999".encode()).decode()},
         "NOT_FOUND", ["input", "customerId"]),
        ({"customerId": cust, "items": [{"productId": widget}, {"productId": "nope"}]}, "INVALID",
         ["input", "items", "1", "productId"]),
        ({"customerId": cust, "invoiceDate": "2030-02-01", "dueDate": "2030-01-01"}, "INVALID", ["input", "dueDate"]),
    ]
    for payload, code, path in cases:
        out = wave.mutate("invoiceCreate", "InvoiceCreateInput", "invoice", "id", {"businessId": wave.business_id, **payload})
        assert out["didSucceed"] is False and out["invoice"] is None, payload
        assert (out["inputErrors"][0]["code"], out["inputErrors"][0]["path"]) == (code, path), out
    wave.create_invoice(customerId=cust, invoiceNumber="A-1")
    dup = wave.mutate("invoiceCreate", "InvoiceCreateInput", "invoice", "id",
                      {"businessId": wave.business_id, "customerId": cust, "invoiceNumber": "A-1"})
    assert dup["inputErrors"][0]["path"] == ["input", "invoiceNumber"]
    in_use = wave.mutate("customerDelete", "CustomerDeleteInput", None, "", {"id": cust})
    assert in_use["didSucceed"] is False  # an invoice still refers to it
    # the other business' data stays separate
    assert wave.data("query($id: ID) { business(id: $id) { currency { code } customers { pageInfo { totalCount } } } }",
                     {"id": other_id})["business"] == {"currency": {"code": "EUR"}, "customers": {"pageInfo": {"totalCount": 1}}}


def test_invoice_filters_and_sorts(wave: Wave, sales: dict[str, Any]) -> None:
    other = wave.create_customer(name="Aardvark Inc")
    for number, customer, day in [("100", sales["customer"], "2030-03-01"), ("1012", other, "2030-03-05"),
                                  ("7", sales["customer"], "2030-04-01")]:
        wave.create_invoice(customerId=customer["id"], invoiceNumber=number, invoiceDate=day,
                            dueDate="2099-01-01", items=[{"productId": sales["widget"]["id"]}])
    approve_target = wave.data('{ business { invoices(invoiceNumber: "7") { edges { node { id } } } } }')
    assert len(approve_target["business"]["invoices"]["edges"]) == 1
    wave.mutate("invoiceApprove", "InvoiceApproveInput", "invoice", "id",
                {"invoiceId": approve_target["business"]["invoices"]["edges"][0]["node"]["id"]})

    def numbers(args: str) -> list[str]:
        data = wave.data(f"{{ business {{ invoices{args} {{ edges {{ node {{ invoiceNumber }} }} }} }} }}")
        return [e["node"]["invoiceNumber"] for e in data["business"]["invoices"]["edges"]]

    assert numbers('(invoiceNumber: "10", sort: [INVOICE_NUMBER_ASC])') == ["100", "1012"]
    assert numbers("(sort: [INVOICE_NUMBER_DESC])") == ["1012", "100", "7"]
    assert numbers(f'(customerId: "{other["id"]}")') == ["1012"]
    assert numbers('(invoiceDateStart: "2030-03-02", invoiceDateEnd: "2030-04-01", sort: [INVOICE_DATE_ASC])') == ["1012", "7"]
    assert numbers("(status: SAVED)") == ["7"]
    assert numbers("(status: DRAFT, sort: [CUSTOMER_NAME_ASC, INVOICE_NUMBER_ASC])") == ["1012", "100"]
    assert numbers("(status: UNPAID)") == ["7"]
    assert numbers("(sort: [MODIFIED_AT_DESC], pageSize: 1)") == ["7"]


# ---------------------------------------------------------------- batching, concurrency, persistence, faults


def test_fifty_aliased_mutations_in_one_request(wave: Wave) -> None:
    parts = [f'c{i}: customerCreate(input: {{businessId: "{wave.business_id}", name: "Bulk {i}"}}) '
             "{ didSucceed customer { id name } }" for i in range(50)]
    data = wave.data("mutation { " + " ".join(parts) + " }")
    assert all(data[f"c{i}"]["didSucceed"] for i in range(50))
    assert [data[f"c{i}"]["customer"]["name"] for i in range(50)] == [f"Bulk {i}" for i in range(50)]
    assert len({data[f"c{i}"]["customer"]["id"] for i in range(50)}) == 50
    assert wave.customers()["pageInfo"]["totalCount"] == 50


def test_concurrent_writes_are_not_lost(wave: Wave, wave_sim: Sim) -> None:
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            w = Wave(wave_sim)
            for i in range(15):
                w.create_customer(name=f"t{k}-{i}")
            w.http.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    conn = wave.customers("(pageSize: 200)", "id modifiedAt")
    assert conn["pageInfo"]["totalCount"] == 90
    assert len({e["node"]["modifiedAt"] for e in conn["edges"]}) == 90


def test_data_survives_restart(wave: Wave, wave_sim: Sim, sales: dict[str, Any]) -> None:
    inv = wave.create_invoice(customerId=sales["customer"]["id"], items=[{"productId": sales["widget"]["id"]}])
    query = "query($id: ID!) { business { id invoice(id: $id) { invoiceNumber total { value } customer { name } } } }"
    before = wave.data(query, {"id": inv["id"]})
    with serve_in_thread(create_app(db_path=wave_sim.db_path, token="other-token")) as base:
        restarted = Wave(Sim(base=base, url=f"{base}/graphql/public", token="other-token", db_path=wave_sim.db_path))
        assert restarted.data(query, {"id": inv["id"]}) == before
        assert restarted.business_id == wave.business_id
        nxt = restarted.create_customer(name="After restart")
        assert decode(nxt["id"]).endswith(";Customer:2")  # counters persisted
        assert nxt["modifiedAt"] > sales["customer"]["modifiedAt"]
        restarted.http.close()


def test_faults_error_rate_and_lost_response(wave: Wave, wave_sim: Sim) -> None:
    faults = f"{wave_sim.base}/_sim/faults"
    assert httpx.put(faults, json={"error_rate": 1.0}).status_code == 200
    assert wave.post("{ business { id } }").status_code == 503
    assert httpx.put(faults, json={"lost_response_rate": 1.0}).status_code == 200
    q = f'mutation {{ customerCreate(input: {{businessId: "{wave.business_id}", name: "Ghost"}}) {{ didSucceed }} }}'
    assert wave.post(q).status_code == 502
    assert httpx.put(faults, json={}).status_code == 200
    found = wave.customers("", "name")
    assert [e["node"]["name"] for e in found["edges"]] == ["Ghost"]  # the write happened
