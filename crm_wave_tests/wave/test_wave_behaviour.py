"""Wave's documented behaviour (default mode) and its harsh side (strict mode), one test each.

docs/wave-behaviour.md lists the behaviours with their sources."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crm_wave.systems.faults import WaveFaultSettings
from crm_wave.systems.serve import serve_in_thread
from crm_wave.systems.wave.simulator import create_app

TOKEN = "behaviour-token"


class Gql:
    """A bare GraphQL helper over httpx."""

    def __init__(self, url: str, base: str) -> None:
        self.url, self.base = url, base
        self.http = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        self.business_id = self.data("{ business { id } }")["business"]["id"]

    def post(self, query: str, variables: dict[str, Any] | None = None) -> httpx.Response:
        return self.http.post(self.url, json={"query": query, "variables": variables or {}})

    def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = self.post(query, variables).json()
        assert "errors" not in body, body
        return body["data"]

    def create(self, name: str, input_type: str, entity: str, payload: dict[str, Any], fields: str = "id") -> dict:
        q = f"mutation($i: {input_type}!) {{ r: {name}(input: $i) {{ didSucceed inputErrors {{ code message path }} {entity} {{ {fields} }} }} }}"
        out = self.data(q, {"i": {"businessId": self.business_id, **payload}})["r"]
        assert out["didSucceed"], out
        return out[entity]

    def mutate(self, name: str, input_type: str, payload: dict[str, Any], sel: str = "") -> dict:
        q = f"mutation($i: {input_type}!) {{ r: {name}(input: $i) {{ didSucceed inputErrors {{ code message path }} {sel} }} }}"
        return self.post(q, {"i": payload}).json()

    def cash(self) -> str:
        accounts = self.data("{ business { accounts(subtypes: [CASH_AND_BANK]) { edges { node { id } } } } }")
        return accounts["business"]["accounts"]["edges"][0]["node"]["id"]

    def pay(self, invoice_id: str, amount: str) -> dict:
        return self.mutate("invoicePaymentCreateManual", "InvoicePaymentCreateManualInput",
                           {"invoiceId": invoice_id, "amount": amount, "exchangeRate": "1", "paymentAccountId": self.cash(),
                            "paymentDate": "2026-11-05", "paymentMethod": "CASH"})

    def invoice(self, invoice_id: str, fields: str) -> dict:
        return self.data("query($id: ID!) { business { invoice(id: $id) { " + fields + " } } }",
                         {"id": invoice_id})["business"]["invoice"]


def _serve(tmp_path: Path, **kw: Any) -> Iterator[Gql]:
    with serve_in_thread(create_app(db_path=tmp_path / "wave.sqlite3", token=TOKEN, **kw)) as base:
        g = Gql(f"{base}/graphql/public", base)
        yield g
        g.http.close()


@pytest.fixture
def gql(tmp_path: Path) -> Iterator[Gql]:
    yield from _serve(tmp_path)


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[Gql]:
    """Strict mode with the per-minute limit lifted (the rate-limit tests set their own)."""
    yield from _serve(tmp_path, strict=True, faults=WaveFaultSettings(max_in_flight=2))


def _setup(g: Gql, status: str = "SAVED", number: str | None = None) -> tuple[dict, dict, dict]:
    cust = g.create("customerCreate", "CustomerCreateInput", "customer", {"name": "Ann"})
    prod = g.create("productCreate", "ProductCreateInput", "product", {"name": "Box", "unitPrice": "10"})
    payload: dict[str, Any] = {"customerId": cust["id"], "status": status, "items": [{"productId": prod["id"]}]}
    if number:
        payload["invoiceNumber"] = number
    inv = g.create("invoiceCreate", "InvoiceCreateInput", "invoice", payload, "id invoiceNumber modifiedAt")
    return cust, prod, inv


# ---------------------------------------------------------------- default mode: errors


def test_unknown_ids_are_top_level_not_found_with_null_data(gql: Gql) -> None:
    stale = base64.b64encode(f"{base64.b64decode(gql.business_id).decode()};Customer:99".encode()).decode()
    for query, variables, path in [
        ("query($id: ID!) { business(id: $id) { id } }", {"id": base64.b64encode(b"Business:nope").decode()},
         ["business"]),
        ("query($id: ID!) { business { customer(id: $id) { id } } }", {"id": stale}, ["business", "customer"]),
        ("query($id: ID!) { business { product(id: $id) { id } } }", {"id": "garbage"}, ["business", "product"]),
        ("query($id: ID!) { business { invoice(id: $id) { id } } }", {"id": stale}, ["business", "invoice"]),
    ]:
        body = gql.post(query, variables).json()
        (error,) = body["errors"]
        assert error["path"] == path and error["extensions"]["code"] == "NOT_FOUND", body
        assert error["message"].endswith("could not be found.") and len(error["extensions"]["id"]) == 36
        node: Any = body["data"]
        for key in path:
            node = node[key] if node is not None else None
        assert node is None


def test_mutation_on_a_deleted_record_fails_only_its_alias(gql: Gql) -> None:
    a = gql.create("customerCreate", "CustomerCreateInput", "customer", {"name": "A"})
    b = gql.create("customerCreate", "CustomerCreateInput", "customer", {"name": "B"})
    assert gql.mutate("customerDelete", "CustomerDeleteInput", {"id": b["id"]})["data"]["r"]["didSucceed"]
    body = gql.post("""mutation($a: CustomerPatchInput!, $b: CustomerPatchInput!) {
        m0: customerPatch(input: $a) { didSucceed customer { name } }
        m7: customerPatch(input: $b) { didSucceed customer { name } } }""",
                    {"a": {"id": a["id"], "name": "A2"}, "b": {"id": b["id"], "name": "B2"}}).json()
    assert body["data"]["m0"] == {"didSucceed": True, "customer": {"name": "A2"}}
    assert body["data"]["m7"] is None
    (error,) = body["errors"]
    assert error["path"] == ["m7"] and error["extensions"]["code"] == "NOT_FOUND" and error["extensions"]["id"]


def test_every_error_carries_a_support_id_and_wrong_typed_variables_are_bad_user_input(gql: Gql) -> None:
    body = gql.post("query($p: Int) { business { customers(page: $p) { pageInfo { totalCount } } } }",
                    {"p": "two"}).json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT" and body["errors"][0]["extensions"]["id"]
    unauth = httpx.post(gql.url, json={"query": "{ user { id } }"}).json()
    assert unauth["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED" and unauth["errors"][0]["extensions"]["id"]


@pytest.mark.parametrize("price", ["1e308", "9" * 40])
def test_a_decimal_with_more_digits_than_wave_keeps_is_bad_user_input_not_an_internal_error(gql: Gql, price: str) -> None:
    body = gql.mutate("productCreate", "ProductCreateInput", {"businessId": gql.business_id, "name": "Box",
                                                               "unitPrice": price}, "product { id }")
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "too many digits" in error["message"], body
    assert gql.data("{ business { products { pageInfo { totalCount } } } }")["business"]["products"]["pageInfo"][
        "totalCount"] == 0


def test_validation_comes_before_auth_and_introspection_needs_no_token(gql: Gql) -> None:
    invalid = httpx.post(gql.url, json={"query": "{ business { noSuchField } }"})
    assert invalid.status_code == 400
    assert invalid.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    schema = httpx.post(gql.url, json={"query": "{ __schema { queryType { name } } }"}).json()
    assert schema["data"]["__schema"]["queryType"]["name"] == "Query"
    mixed = httpx.post(gql.url, json={"query": "{ __typename business { id } }"}).json()
    assert mixed["data"] is None and mixed["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


# ---------------------------------------------------------------- default mode: invoices and pages


def test_payments_only_on_a_single_invoice_and_overpaid_amount_due_is_negative(gql: Gql) -> None:
    _, _, inv = _setup(gql)
    assert gql.pay(inv["id"], "15.00")["data"]["r"]["didSucceed"]
    single = gql.invoice(inv["id"], "status amountDue { value } payments { amount }")
    assert single["status"] == "OVERPAID" and single["amountDue"]["value"] == "-5.00"
    assert [p["amount"] for p in single["payments"]] == ["15.00"]
    listed = gql.data("{ business { invoices { edges { node { payments { amount } } } } } }")
    assert listed["business"]["invoices"]["edges"][0]["node"]["payments"] == []


def test_default_invoice_number_keeps_prefix_and_padding(gql: Gql) -> None:
    cust, prod, _ = _setup(gql, number="INV-0042")
    nxt = gql.create("invoiceCreate", "InvoiceCreateInput", "invoice",
                     {"customerId": cust["id"], "items": [{"productId": prod["id"]}]}, "invoiceNumber")
    assert nxt["invoiceNumber"] == "INV-0043"
    gql.create("invoiceCreate", "InvoiceCreateInput", "invoice",
               {"customerId": cust["id"], "invoiceNumber": "INV-0099", "items": [{"productId": prod["id"]}]})
    last = gql.create("invoiceCreate", "InvoiceCreateInput", "invoice",
                      {"customerId": cust["id"], "items": [{"productId": prod["id"]}]}, "invoiceNumber")
    assert last["invoiceNumber"] == "INV-0100"


def test_page_size_above_200_is_capped(gql: Gql) -> None:
    params = ", ".join(f"$i{i}: CustomerCreateInput!" for i in range(201))
    fields = " ".join(f"m{i}: customerCreate(input: $i{i}) {{ didSucceed }}" for i in range(201))
    made = gql.data(f"mutation({params}) {{ {fields} }}",
                    {f"i{i}": {"businessId": gql.business_id, "name": f"c{i}"} for i in range(201)})
    assert all(r["didSucceed"] for r in made.values())
    page = gql.data("{ business { customers(pageSize: 500) { pageInfo { currentPage totalPages totalCount } "
                    "edges { node { id } } } } }")["business"]["customers"]
    assert len(page["edges"]) == 200
    assert page["pageInfo"] == {"currentPage": 1, "totalPages": 2, "totalCount": 201}


# ---------------------------------------------------------------- strict mode


@pytest.mark.parametrize("status", ["SENT", "PARTIAL"])
def test_strict_locked_invoice_refuses_delete_and_patch_of_lines_customer_currency(strict: Gql, status: str) -> None:
    cust, prod, inv = _setup(strict, number="INV-0043")
    if status == "SENT":
        out = strict.mutate("invoiceMarkSent", "InvoiceMarkSentInput", {"invoiceId": inv["id"], "sendMethod": "MARKED_SENT"})
    else:
        out = strict.pay(inv["id"], "1.00")
    assert out["data"]["r"]["didSucceed"], out
    for field, value in (("items", [{"productId": prod["id"], "quantity": "2"}]), ("customerId", cust["id"]),
                         ("currency", "EUR")):
        refused = strict.mutate("invoicePatch", "InvoicePatchInput", {"id": inv["id"], field: value})["data"]["r"]
        assert refused["didSucceed"] is False and refused["inputErrors"][0]["path"] == ["input", field]
        assert status in refused["inputErrors"][0]["message"] and "INV-0043" in refused["inputErrors"][0]["message"]
    memo = strict.mutate("invoicePatch", "InvoicePatchInput", {"id": inv["id"], "memo": "ok"})["data"]["r"]
    assert memo["didSucceed"], memo
    gone = strict.mutate("invoiceDelete", "InvoiceDeleteInput", {"invoiceId": inv["id"]})["data"]["r"]
    assert gone["didSucceed"] is False and gone["inputErrors"][0]["path"] == ["input", "invoiceId"]


def test_strict_draft_and_saved_invoices_stay_editable(strict: Gql) -> None:
    _, prod, inv = _setup(strict)
    out = strict.mutate("invoicePatch", "InvoicePatchInput",
                        {"id": inv["id"], "items": [{"productId": prod["id"], "quantity": "3"}]})["data"]["r"]
    assert out["didSucceed"], out
    assert strict.mutate("invoiceDelete", "InvoiceDeleteInput", {"invoiceId": inv["id"]})["data"]["r"]["didSucceed"]


def test_strict_payment_does_not_move_modified_at_and_default_mode_does(gql: Gql, strict: Gql) -> None:
    for g, moves in ((gql, True), (strict, False)):
        _, _, inv = _setup(g)
        time.sleep(0.002)
        assert g.pay(inv["id"], "4.00")["data"]["r"]["didSucceed"]
        after = g.invoice(inv["id"], "modifiedAt amountPaid { value } status")
        assert after["amountPaid"]["value"] == "4.00" and after["status"] == "PARTIAL"
        assert (after["modifiedAt"] != inv["modifiedAt"]) is moves


def test_strict_modified_at_has_second_precision_and_is_shared(strict: Gql) -> None:
    made = [strict.create("customerCreate", "CustomerCreateInput", "customer", {"name": f"c{i}"}, "modifiedAt")
            for i in range(5)]
    assert all(m["modifiedAt"].endswith(".000Z") for m in made)
    assert len({m["modifiedAt"] for m in made}) < len(made)  # five creates within a second or two


def _rate_limited_app(tmp_path: Path, form: str) -> Iterator[Gql]:
    yield from _serve(tmp_path, strict=True, faults=WaveFaultSettings(
        rate_limit_per_minute=3, rate_limit_window_s=0.5, rate_limit_form=form, max_in_flight=2))


def test_strict_rate_limits_answer_in_both_forms(tmp_path: Path) -> None:
    gen = _rate_limited_app(tmp_path, "both")
    g = next(gen)  # its start-up read counts as the first request
    q = {"query": "{ a: business { id } b: user { id } }"}
    answers = [g.http.post(g.url, json=q) for _ in range(4)]
    refused = [r for r in answers if r.status_code == 429 or "errors" in r.json()]
    assert len(refused) >= 2
    http = next(r for r in refused if r.status_code == 429)
    assert 0 < float(http.headers["retry-after"]) <= 0.5
    gql_form = next(r for r in refused if r.status_code == 200).json()
    assert gql_form["data"] == {"a": None, "b": None}
    assert [e["path"] for e in gql_form["errors"]] == [["a"], ["b"]]
    assert {e["extensions"]["code"] for e in gql_form["errors"]} == {"RATE_LIMITED"}
    assert gql_form["errors"][0]["extensions"]["retryAfter"] > 0
    gen.close()


def test_strict_rate_limit_is_on_by_default(tmp_path: Path) -> None:
    app = create_app(db_path=tmp_path / "w.sqlite3", token=TOKEN, strict=True)
    assert (app.settings.rate_limit_per_minute, app.settings.max_in_flight) == (60, 2)
    assert app.settings.rate_limit_form == "both"
    assert create_app(db_path=tmp_path / "d.sqlite3", token=TOKEN).settings.rate_limit_per_minute is None


def test_strict_third_request_in_flight_gets_429(strict: Gql) -> None:
    httpx.put(f"{strict.base}/_sim/faults", json={"latency_ms": 300}).raise_for_status()

    async def three() -> list[int]:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as c:
            rs = await asyncio.gather(*(c.post(strict.url, json={"query": "{ user { id } }"}) for _ in range(3)))
        return sorted(r.status_code for r in rs)

    assert asyncio.run(three()) == [200, 200, 429]
    other = httpx.post(strict.url, json={"query": "{ user { id } }"}, headers={"Authorization": "Bearer x"})
    assert other.status_code == 200  # another token has its own count


def test_strict_spurious_not_found_on_creates_is_seeded(strict: Gql) -> None:
    httpx.put(f"{strict.base}/_sim/faults", json={"not_found_rate": 0.5, "seed": 7}).raise_for_status()
    outcomes = []
    for i in range(12):
        body = strict.mutate("customerCreate", "CustomerCreateInput", {"businessId": strict.business_id, "name": f"n{i}"},
                             "customer { id }")
        if body["data"]["r"] is None:
            (error,) = body["errors"]
            assert error["extensions"]["code"] == "NOT_FOUND" and error["message"] == "Node could not be found."
            outcomes.append("nf")
        else:
            outcomes.append("ok")
    assert "nf" in outcomes and "ok" in outcomes
    listed = strict.data("{ business { customers { pageInfo { totalCount } } } }")
    assert listed["business"]["customers"]["pageInfo"]["totalCount"] == outcomes.count("ok")  # nothing half-made
    assert strict.data("{ business { id } }")  # reads are never faulted
