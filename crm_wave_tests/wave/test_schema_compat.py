"""The simulator serves Wave's schema unchanged, and resolves every field of the types it simulates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from ariadne import ObjectType, load_schema_from_path, make_executable_schema
from graphql import (
    GraphQLEnumType,
    GraphQLInterfaceType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    Undefined,
    build_client_schema,
    build_schema,
    find_breaking_changes,
    find_dangerous_changes,
    get_introspection_query,
    get_named_type,
    lexicographic_sort_schema,
    print_schema,
)

from crm_wave.systems.wave.simulator import SCHEMA_PATH
from crm_wave_tests.conftest import Sim

REFERENCE = Path("/work/shared/reference/wave_schema.graphql")


def _post(sim: Sim, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    r = httpx.post(sim.url, json={"query": query, "variables": variables or {}},
                   headers={"Authorization": f"Bearer {sim.token}"}, timeout=30)
    return r.json()


@pytest.fixture
def served(wave_sim: Sim) -> GraphQLSchema:
    body = _post(wave_sim, get_introspection_query(descriptions=True))
    assert "errors" not in body
    return build_client_schema(body["data"])


def _reference_sdl() -> str:
    return (REFERENCE if REFERENCE.exists() else SCHEMA_PATH).read_text()


def test_schema_file_is_a_verbatim_copy() -> None:
    if not REFERENCE.exists():
        pytest.skip("reference schema not available")
    assert SCHEMA_PATH.read_text() == REFERENCE.read_text()


def test_introspection_matches_reference_schema(served: GraphQLSchema) -> None:
    reference = build_schema(_reference_sdl())
    assert find_breaking_changes(reference, served) == []
    assert find_dangerous_changes(reference, served) == []
    assert find_breaking_changes(served, reference) == []
    assert find_dangerous_changes(served, reference) == []
    assert print_schema(lexicographic_sort_schema(served)) == print_schema(lexicographic_sort_schema(reference))
    assert len(served.type_map) - len([t for t in served.type_map if t.startswith("__")]) >= 212
    assert len(served.mutation_type.fields) == 41  # type: ignore[union-attr]


def test_binding_a_field_the_schema_lacks_fails_at_start_up() -> None:
    stray = ObjectType("Customer")
    stray.set_field("nickname", lambda obj, info: "x")
    with pytest.raises(ValueError, match="nickname"):
        make_executable_schema(load_schema_from_path(SCHEMA_PATH), stray)


def test_deprecated_fields_resolve(wave_sim: Sim) -> None:
    biz = _post(wave_sim, "{ business { id isClassicAccounting isClassicInvoicing } }")["data"]["business"]
    assert biz["isClassicAccounting"] is False and biz["isClassicInvoicing"] is False
    ids = _post(wave_sim, """mutation($b: ID!) {
      c: customerCreate(input: {businessId: $b, name: "Dep"}) { customer { id internalId } }
      p: productCreate(input: {businessId: $b, name: "Thing", unitPrice: "12.5"}) { product { id } }
    }""", {"b": biz["id"]})["data"]
    inv = _post(wave_sim, """mutation($b: ID!, $c: ID!, $p: ID!) {
      invoiceCreate(input: {businessId: $b, customerId: $c, items: [{productId: $p, quantity: "2"}]}) {
        didSucceed invoice { internalId total { raw } items { price unitPrice } } } }""",
                {"b": biz["id"], "c": ids["c"]["customer"]["id"], "p": ids["p"]["product"]["id"]})
    invoice = inv["data"]["invoiceCreate"]["invoice"]
    assert invoice["items"] == [{"price": "12.50", "unitPrice": "12.50"}]
    assert invoice["total"]["raw"] == 2500 and invoice["internalId"] == "1"
    assert ids["c"]["customer"]["internalId"] == "1"


# ---------------------------------------------------------------- every field of the simulated types


def _literal(arg_type: Any, key: str, ids: dict[str, str]) -> str:
    """A value for a required argument: a real id when `key` ("Type.field") has one."""
    named = get_named_type(arg_type)
    if key in ids:
        return f'"{ids[key]}"'
    if isinstance(named, GraphQLEnumType):
        return next(iter(named.values))
    return {"String": '"US-CA"', "ID": '"none"', "Int": "1", "Boolean": "true", "Date": '"2030-01-01"'}.get(
        named.name, '"1"')


def _selection(schema: GraphQLSchema, type_: Any, depth: int, ids: dict[str, str]) -> str:
    """Every field of `type_` down to `depth` levels (unions and the last level: `__typename`)."""
    named = get_named_type(type_)
    if not isinstance(named, GraphQLObjectType | GraphQLInterfaceType | GraphQLUnionType):
        return ""
    if depth == 0 or isinstance(named, GraphQLUnionType):
        return "{ __typename }"
    parts = ["__typename"]
    for fname, field in named.fields.items():
        args = []
        for aname, arg in field.args.items():
            if isinstance(arg.type, GraphQLNonNull) and arg.default_value is Undefined:
                args.append(f"{aname}: {_literal(arg.type, f'{named.name}.{fname}', ids)}")
        sub = _selection(schema, field.type, depth - 1, ids)
        if fname == "business" and sub:
            sub = "{ id name }"  # Business itself is walked from the top once
        parts.append(f"{fname}{'(' + ', '.join(args) + ')' if args else ''} {sub}".strip())
    return "{ " + " ".join(parts) + " }"


def test_every_field_of_simulated_types_resolves(wave_sim: Sim, served: GraphQLSchema) -> None:
    bid = _post(wave_sim, "{ business { id } }")["data"]["business"]["id"]
    made = _post(wave_sim, """mutation($b: ID!) {
      c: customerCreate(input: {businessId: $b, name: "All", email: "all@example.com",
          address: {city: "Toronto", countryCode: CA, provinceCode: "CA-ON"},
          shippingDetails: {name: "Dock", address: {countryCode: CA}}}) { customer { id } }
      p: productCreate(input: {businessId: $b, name: "Every", unitPrice: "3"}) { product { id } }
    }""", {"b": bid})["data"]
    cid, pid = made["c"]["customer"]["id"], made["p"]["product"]["id"]
    accounts = _post(wave_sim, "{ business { accounts { edges { node { id } } } salesTaxes { edges { node { id } } } } }")
    acc = accounts["data"]["business"]["accounts"]["edges"][0]["node"]["id"]
    tax = accounts["data"]["business"]["salesTaxes"]["edges"][0]["node"]["id"]
    inv = _post(wave_sim, """mutation($b: ID!, $c: ID!, $p: ID!, $t: ID!) {
      invoiceCreate(input: {businessId: $b, customerId: $c, status: SAVED,
                            items: [{productId: $p, taxes: [{salesTaxId: $t}]}]}) { invoice { id } } }""",
                {"b": bid, "c": cid, "p": pid, "t": tax})["data"]["invoiceCreate"]["invoice"]["id"]
    pay = _post(wave_sim, """mutation($i: ID!, $a: ID!) { invoicePaymentCreateManual(input: {invoiceId: $i,
      amount: "1", exchangeRate: "1", paymentAccountId: $a, paymentDate: "2030-01-01", paymentMethod: CASH}) {
      didSucceed invoicePayment { id } } }""", {"i": inv, "a": acc})["data"]["invoicePaymentCreateManual"]
    assert pay["didSucceed"]
    ids = {"Business.customer": cid, "Business.product": pid, "Business.invoice": inv, "Business.account": acc,
           "Business.salesTax": tax, "Business.invoicePayment": pay["invoicePayment"]["id"]}
    business_type = served.get_type("Business")
    selection = _selection(served, business_type, 6, ids)
    query = f"{{ user {{ id createdAt }} country(code: NO) {{ code name currency {{ code }} provinces {{ code name }} }} " \
            f"province(code: \"US-CA\") {{ name }} currency(code: NOK) {{ symbol exponent }} " \
            f"accountTypes {{ value }} accountSubtypes {{ value type {{ value }} }} business {selection} }}"
    body = _post(wave_sim, query)
    assert "errors" not in body, body["errors"][:3]
    biz = body["data"]["business"]
    assert biz["customer"]["address"]["province"]["name"] == "Ontario"
    assert biz["invoice"]["items"][0]["taxes"][0]["amount"]["value"] == "0.24"
    assert biz["invoice"]["status"] == "PARTIAL"
    assert biz["invoicePayment"]["amount"] == "1.00"
    assert biz["customer"]["outstandingAmount"]["value"] == "2.24"
    assert body["data"]["country"]["currency"]["code"] == "NOK"
    assert {"code": "NO-03", "name": "Oslo"} in body["data"]["country"]["provinces"]


def test_unsupported_mutations_answer_input_errors(wave_sim: Sim) -> None:
    body = _post(wave_sim, 'mutation { estimateDelete(input: {estimateId: "x"}) { didSucceed inputErrors { code } } '
                           'salesTaxArchive(input: {id: "x"}) { didSucceed } }')
    assert body["data"]["estimateDelete"] == {"didSucceed": False, "inputErrors": [{"code": "UNSUPPORTED"}]}
    assert body["data"]["salesTaxArchive"] == {"didSucceed": False}
