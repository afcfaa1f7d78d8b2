"""Resolvers of `Query` and `Business` (lookups and filtered, sorted, paginated listings)."""

from __future__ import annotations

from typing import Any

from ariadne import ObjectType, QueryType
from graphql import GraphQLResolveInfo

from .catalog import ACCOUNT_TYPES, SUBTYPE_TYPE, SYSTEM_SUBTYPES
from .mode import not_found
from .loader import UNPAID_STATUSES, ListSpec, Loader, amount_due, effective_status, list_connection, paginate_list, \
    parse_modified
from .store import DEFAULT_BUSINESS_UUID, Node
from .values import country, currency, encode_id, parse_business_id, parse_node_id, province, to_decimal

__all__ = ["query", "business", "loader_of", "account_subtype", "account_type", "BINDABLES"]

query = QueryType()
business = ObjectType("Business")

_EPOCH_MS = 1_577_836_800_000  # 2020-01-01, creation time of the simulated user and app


def loader_of(info: GraphQLResolveInfo) -> Loader:
    return info.context["loader"]


def account_type(value: str) -> dict[str, Any]:
    name, balance = ACCOUNT_TYPES[value]
    return {"name": name, "normalBalanceType": balance, "value": value}


def account_subtype(value: str, info: GraphQLResolveInfo) -> dict[str, Any]:
    enum = info.schema.get_type("AccountSubtypeValue")
    values = getattr(enum, "values", None) or {}  # an enum type's values by name
    desc = values[value].description if value in values else None
    return {"archivable": value not in SYSTEM_SUBTYPES, "description": desc, "name": desc or value.title(),
            "systemCreated": value in SYSTEM_SUBTYPES, "type": account_type(SUBTYPE_TYPE[value]), "value": value}


# ---------------------------------------------------------------- Query


@query.field("user")
def resolve_user(_: Any, info: GraphQLResolveInfo) -> dict[str, Any]:
    return {"id": encode_id(("User", DEFAULT_BUSINESS_UUID)), "firstName": "Sim", "lastName": "Owner",
            "defaultEmail": "owner@wave-simulator.invalid", "createdAt": _EPOCH_MS, "modifiedAt": _EPOCH_MS}


@query.field("oAuthApplication")
def resolve_oauth_application(_: Any, info: GraphQLResolveInfo) -> dict[str, Any]:
    return {"clientId": "wave-simulator", "createdAt": _EPOCH_MS, "description": "Local Wave simulator",
            "extraData": None, "id": encode_id(("OAuthApplication", "wave-simulator")), "logoUrl": None,
            "modifiedAt": _EPOCH_MS, "name": "Wave simulator"}


@query.field("businesses")
def resolve_businesses(_: Any, info: GraphQLResolveInfo, page: int | None = 1, pageSize: int | None = 10,
                       isArchived: bool | None = None) -> dict[str, Any]:
    nodes = [b for b in loader_of(info).store.businesses() if bool(b.get("isArchived")) == bool(isArchived)]
    return paginate_list(nodes, page, pageSize)


@query.field("business")
def resolve_business(_: Any, info: GraphQLResolveInfo, id: str | None = None) -> Node | None:
    loader = loader_of(info)
    if id is None:
        return loader.store.default_business()
    bid = parse_business_id(id)
    found = loader.business(bid) if bid else None
    if found is None:
        raise not_found("Business", id)
    return found


@query.field("countries")
def resolve_countries(_: Any, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    return [country(code) for code in info.schema.get_type("CountryCode").values]  # type: ignore[union-attr]


@query.field("country")
def resolve_country(_: Any, info: GraphQLResolveInfo, code: str) -> dict[str, Any]:
    return country(code)


@query.field("currencies")
def resolve_currencies(_: Any, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    return [currency(code) for code in info.schema.get_type("CurrencyCode").values]  # type: ignore[union-attr]


@query.field("currency")
def resolve_currency(_: Any, info: GraphQLResolveInfo, code: str) -> dict[str, Any]:
    return currency(code)


@query.field("province")
def resolve_province(_: Any, info: GraphQLResolveInfo, code: str) -> dict[str, Any] | None:
    return province(code)


@query.field("accountTypes")
def resolve_account_types(_: Any, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    return [account_type(v) for v in ACCOUNT_TYPES]


@query.field("accountSubtypes")
def resolve_account_subtypes(_: Any, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    return [account_subtype(v, info) for v in SUBTYPE_TYPE]


# ---------------------------------------------------------------- Business: scalars and lookups


@business.field("currency")
def resolve_business_currency(obj: Node, info: GraphQLResolveInfo) -> dict[str, Any]:
    return currency(obj["currency"])


@business.field("invoiceEstimateSettings")
def resolve_settings(obj: Node, info: GraphQLResolveInfo) -> dict[str, Any]:
    return {"generalSettings": {"accentColor": "#1C252C", "logoUrl": None}}


def _lookup(obj: Node, info: GraphQLResolveInfo, kind: str, id: str) -> Node:
    """The node an id names in this business; an unknown, stale or malformed id is NOT_FOUND."""
    parsed = parse_node_id(id, kind)
    found = loader_of(info).get(obj["_bid"], kind, parsed[1]) if parsed and parsed[0] == obj["_bid"] else None
    if found is None:
        raise not_found(kind, id)
    return found


def _small(obj: Node, info: GraphQLResolveInfo, kind: str, id: str) -> Node:
    parsed = parse_node_id(id, kind)
    found = loader_of(info).all(obj["_bid"], kind).get(parsed[1]) if parsed and parsed[0] == obj["_bid"] else None
    if found is None:
        raise not_found(kind, id)
    return found


for _kind, _field in (("Customer", "customer"), ("Product", "product"), ("Invoice", "invoice"),
                      ("InvoicePayment", "invoicePayment")):
    business.set_field(_field, lambda obj, info, id, _k=_kind: _lookup(obj, info, _k, id))
business.set_field("account", lambda obj, info, id: _small(obj, info, "Account", id))
business.set_field("salesTax", lambda obj, info, id: _small(obj, info, "SalesTax", id))
for _field in ("estimate", "estimatePayment", "vendor", "subtype", "type", "address"):
    business.set_field(_field, lambda obj, info, **kwargs: None)


def _empty(obj: Node, info: GraphQLResolveInfo, page: int | None = 1, pageSize: int | None = 45,
           **kwargs: Any) -> dict[str, Any]:
    return paginate_list([], page, pageSize)


business.set_field("estimates", _empty)
business.set_field("vendors", _empty)


# ---------------------------------------------------------------- Business: listings


@business.field("customers")
def resolve_customers(obj: Node, info: GraphQLResolveInfo, page: int | None = 1, pageSize: int | None = 45,
                      sort: list[str] | None = None, email: str | None = None, **kwargs: Any) -> dict[str, Any]:
    spec = ListSpec()
    if email is not None:
        spec.add("lookup = ?", email.strip().lower())
    spec.modified(*parse_modified(kwargs))
    conn = list_connection(loader_of(info), obj["_bid"], "Customer", spec, sort or [], page, pageSize)
    loader_of(info).want_amounts(obj["_bid"], (e["node"]["_n"] for e in conn["edges"]))
    return conn


@business.field("products")
def resolve_products(obj: Node, info: GraphQLResolveInfo, page: int | None = 1, pageSize: int | None = 45,
                     sort: list[str] | None = None, isArchived: bool | None = None, isSold: bool | None = None,
                     isBought: bool | None = None, **kwargs: Any) -> dict[str, Any]:
    spec = ListSpec()
    if isArchived is not None:
        spec.add("archived = ?", int(isArchived))
    if isSold is not None:
        spec.add("json_extract(body, '$.isSold') = ?", int(isSold))
    if isBought is not None:
        spec.add("json_extract(body, '$.isBought') = ?", int(isBought))
    spec.modified(*parse_modified(kwargs))
    return list_connection(loader_of(info), obj["_bid"], "Product", spec, sort or [], page, pageSize)


@business.field("salesTaxes")
def resolve_sales_taxes(obj: Node, info: GraphQLResolveInfo, page: int | None = 1, pageSize: int | None = 45,
                        isArchived: bool | None = False, **kwargs: Any) -> dict[str, Any]:
    spec = ListSpec()
    if isArchived is not None:
        spec.add("archived = ?", int(isArchived))
    spec.modified(*parse_modified(kwargs))
    return list_connection(loader_of(info), obj["_bid"], "SalesTax", spec, ["CREATED_AT_ASC"], page, pageSize)


@business.field("accounts")
def resolve_accounts(obj: Node, info: GraphQLResolveInfo, page: int | None = 1, pageSize: int | None = 45,
                     isArchived: bool | None = False, subtypes: list[str] | None = None,
                     excludedSubtypes: list[str] | None = None, types: list[str] | None = None) -> dict[str, Any]:
    nodes = [a for a in loader_of(info).all(obj["_bid"], "Account").values()
             if (isArchived is None or a["isArchived"] == isArchived)
             and (subtypes is None or a["subtype"] in subtypes)
             and (excludedSubtypes is None or a["subtype"] not in excludedSubtypes)
             and (types is None or SUBTYPE_TYPE[a["subtype"]] in types)]
    return paginate_list(nodes, page, pageSize)


def _invoice_number_key(inv: Node) -> tuple[int, int, str]:
    number = inv["invoiceNumber"]
    return (0, int(number), "") if number.isdigit() else (1, 0, number)


@business.field("invoices")
def resolve_invoices(obj: Node, info: GraphQLResolveInfo, page: int | None = 1, pageSize: int | None = 45,
                     sort: list[str] | None = None, customerId: str | None = None, invoiceNumber: str | None = None,
                     status: str | None = None, invoiceDateStart: str | None = None,
                     invoiceDateEnd: str | None = None, currency: str | None = None, amountDue: Any = None,
                     sourceId: str | None = None, **kwargs: Any) -> dict[str, Any]:
    bid, loader = obj["_bid"], loader_of(info)
    spec = ListSpec()
    if customerId is not None:
        parsed = parse_node_id(customerId, "Customer")
        if not parsed or parsed[0] != bid:
            spec.empty = True
        else:
            spec.add("ref = ?", parsed[1])
    if sourceId is not None:
        spec.empty = True  # the simulator has no estimates nor recurring invoices
    if invoiceNumber is not None:
        spec.add("instr(lookup, ?) > 0", invoiceNumber)
    if invoiceDateStart is not None:
        spec.add("day >= ?", invoiceDateStart)
    if invoiceDateEnd is not None:
        spec.add("day <= ?", invoiceDateEnd)
    if currency is not None:
        spec.add("json_extract(body, '$.currency') = ?", currency)
    spec.modified(*parse_modified(kwargs))
    filters = []
    if status is not None:
        filters.append((lambda n: effective_status(n) in UNPAID_STATUSES) if status == "UNPAID"
                       else (lambda n: effective_status(n) == status))
    if amountDue is not None:
        wanted = to_decimal(amountDue)
        filters.append(lambda n: amount_due(n) == wanted)
    if filters:
        spec.py_filter = lambda n: all(f(n) for f in filters)

    def customer_name(inv: Node) -> str:
        cust = loader.get(bid, "Customer", inv["customerN"])
        return (cust or {}).get("name", "").lower()

    spec.py_sorts = {
        "INVOICE_NUMBER": _invoice_number_key,
        "CUSTOMER_NAME": customer_name,
        "DUE_AT": lambda n: n["dueDate"],
        "AMOUNT_DUE": amount_due,
        "AMOUNT_PAID": lambda n: to_decimal(n["amountPaid"]),
        "TOTAL": lambda n: to_decimal(n["total"]),
        "STATUS": effective_status,
    }
    if any(s.startswith("CUSTOMER_NAME") for s in sort or []):
        loader.prime(loader.all(bid, "Customer").values())
    conn = list_connection(loader, bid, "Invoice", spec, sort or [], page, pageSize)
    invoices = [e["node"] for e in conn["edges"]]
    loader.want(bid, "Customer", (inv["customerN"] for inv in invoices))
    loader.want(bid, "Product", (item["productN"] for inv in invoices for item in inv.get("items") or []))
    return conn


BINDABLES = [query, business]
