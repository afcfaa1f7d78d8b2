"""Mutations on customers and products, and the shared mutation machinery.

Every mutation answers `{didSucceed, inputErrors, <entity>}`; a business-rule failure
raises `InputErrors` inside the resolver and becomes `didSucceed: false` with
`inputErrors [{code, message, path}]` (`path` starts with "input"). Codes used:
REQUIRED, INVALID, NOT_FOUND, DUPLICATE, UNSUPPORTED. The record a mutation acts on
(`id` / `invoiceId`) being unknown or deleted is instead a top-level NOT_FOUND error with
the mutation's field (its alias in a batch) null, as Wave answers a stale id; ids the
input merely refers to (`customerId`, an item's `productId`...) stay `inputErrors`.

Patch semantics: an omitted field is untouched, an explicit null clears it. Nested
objects (`address`, `shippingDetails`, `shippingDetails.address`) merge the same way:
omitted sub-fields are kept, null sub-fields cleared, a null object clears it all.
Empty strings are stored as null. A customer's `currency` defaults to the business'.
A product's `isSold`/`isBought` follow whether it has an income/expense account; a
product created with neither gets the business' default income account ("Sales").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ariadne import MutationType
from graphql import GraphQLError, GraphQLResolveInfo

from .catalog import EXPENSE_SUBTYPES, INCOME_SUBTYPES, income_account_n
from .mode import mode_of, not_found
from .query import loader_of
from .store import Node, Tx
from .values import PRODUCT_PRICE_PLACES, fmt_decimal, parse_business_id, parse_node_id, province, to_decimal

__all__ = ["mutation", "InputErrors", "input_error", "require_business", "require_node", "require_target", "BINDABLES",
           "IMPLEMENTED"]

mutation = MutationType()
IMPLEMENTED: set[str] = set()


class InputErrors(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


def input_error(code: str, message: str, *path: str | int) -> dict[str, Any]:
    return {"code": code, "message": message, "path": ["input", *(str(p) for p in path)]}


def fail(code: str, message: str, *path: str | int) -> InputErrors:
    return InputErrors([input_error(code, message, *path)])


def wave_mutation(field: str, entity: str | None) -> Callable[[Callable[..., Node | None]], Callable[..., Any]]:
    """Bind `fn(info, input) -> node` as mutation `field`, wrapping the output type."""
    def deco(fn: Callable[..., Node | None]) -> Callable[..., Any]:
        def resolver(_: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
            if field.endswith("Create") and mode_of(info).spurious_not_found():
                raise GraphQLError("Node could not be found.", extensions={"code": "NOT_FOUND"})
            try:
                node = fn(info, input)
            except InputErrors as exc:
                out: dict[str, Any] = {"didSucceed": False, "inputErrors": exc.errors}
                if entity:
                    out[entity] = None
                return out
            if node is not None:
                loader_of(info).prime([node])
            out = {"didSucceed": True, "inputErrors": []}
            if entity:
                out[entity] = node
            return out
        mutation.set_field(field, resolver)
        IMPLEMENTED.add(field)
        return fn
    return deco


def require_business(tx: Tx, value: Any, *path: str) -> Node:
    bid = parse_business_id(value)
    biz = tx.business(bid) if bid else None
    if biz is None:
        raise fail("NOT_FOUND" if bid else "INVALID", f"Business {value!r} was not found", *path)
    return biz


def require_node(tx: Tx, kind: str, value: Any, *path: str | int, bid: str | None = None) -> Node:
    """The node of `kind` an input id names (in business `bid` when given), else an input error."""
    parsed = parse_node_id(value, kind)
    if parsed is None:
        raise fail("INVALID", f"{value!r} is not a valid {kind} id", *path)
    if bid is not None and parsed[0] != bid:
        raise fail("INVALID", f"{kind} {value!r} belongs to another business", *path)
    node = tx.get(parsed[0], kind, parsed[1])
    if node is None:
        raise fail("NOT_FOUND", f"{kind} {value!r} was not found", *path)
    return node


def require_target(tx: Tx, kind: str, value: Any) -> Node:
    """The record a mutation acts on; unknown, stale or malformed: a top-level NOT_FOUND error."""
    parsed = parse_node_id(value, kind)
    node = tx.get(parsed[0], kind, parsed[1]) if parsed else None
    if node is None:
        raise not_found(kind, value)
    return node


def _s(value: Any) -> Any:
    return None if value == "" else value


# ---------------------------------------------------------------- customers

_CUSTOMER_STRINGS = ("name", "firstName", "lastName", "displayId", "email", "mobile", "phone", "fax", "tollFree",
                     "website", "internalNotes")
_ADDRESS_FIELDS = ("addressLine1", "addressLine2", "city", "postalCode", "countryCode", "provinceCode")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _merge_address(old: dict[str, Any] | None, new: dict[str, Any] | None, path: list[str]) -> dict[str, Any] | None:
    if new is None:
        return None
    merged = {k: None for k in _ADDRESS_FIELDS} | (old or {})
    for key in _ADDRESS_FIELDS:
        if key in new:
            merged[key] = _s(new[key])
    if merged.get("provinceCode"):
        found = province(merged["provinceCode"])
        if found is None:
            raise fail("INVALID", f"Unknown province code {merged['provinceCode']!r} (ISO 3166-2 expected)",
                       *path, "provinceCode")
        merged["provinceCode"] = found["code"]
    return merged


def _apply_customer(body: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    for key in _CUSTOMER_STRINGS:
        if key in data:
            body[key] = _s(data[key])
    if not isinstance(body.get("name"), str) or not body["name"].strip():
        raise fail("REQUIRED", "Name is required", "name")
    if body.get("email") is not None and not _EMAIL_RE.match(body["email"].strip()):
        raise fail("INVALID", f"{body['email']!r} is not a valid email address", "email")
    if "currency" in data:
        body["currency"] = data["currency"]
    if "address" in data:
        body["address"] = _merge_address(body.get("address"), data["address"], ["address"])
    if "shippingDetails" in data:
        new = data["shippingDetails"]
        if new is None:
            body["shippingDetails"] = None
        else:
            sd = {"name": None, "phone": None, "instructions": None, "address": None} | (body.get("shippingDetails") or {})
            for key in ("name", "phone", "instructions"):
                if key in new:
                    sd[key] = _s(new[key])
            if "address" in new:
                sd["address"] = _merge_address(sd.get("address"), new["address"], ["shippingDetails", "address"])
            body["shippingDetails"] = sd
    return body


@wave_mutation("customerCreate", "customer")
def customer_create(info: GraphQLResolveInfo, data: dict[str, Any]) -> Node:
    with loader_of(info).store.write() as tx:
        biz = require_business(tx, data["businessId"], "businessId")
        body: dict[str, Any] = {k: None for k in _CUSTOMER_STRINGS}
        body.update(currency=biz["currency"], address=None, shippingDetails=None, isArchived=False)
        return tx.insert(biz["_bid"], "Customer", _apply_customer(body, data))


@wave_mutation("customerPatch", "customer")
def customer_patch(info: GraphQLResolveInfo, data: dict[str, Any]) -> Node:
    with loader_of(info).store.write() as tx:
        node = require_target(tx, "Customer", data["id"])
        body = _apply_customer(dict(node), data)
        return tx.update(node, body)


@wave_mutation("customerDelete", None)
def customer_delete(info: GraphQLResolveInfo, data: dict[str, Any]) -> None:
    with loader_of(info).store.write() as tx:
        node = require_target(tx, "Customer", data["id"])
        if tx.count(node["_bid"], "Invoice", "ref = ?", (node["_n"],)):
            raise fail("INVALID", "A customer with invoices cannot be deleted; delete its invoices first", "id")
        tx.delete(node)
    return None


# ---------------------------------------------------------------- products


def _account_n(tx: Tx, bid: str, value: Any, allowed: frozenset[str], field: str) -> int | None:
    if value is None:
        return None
    acc = require_node(tx, "Account", value, field, bid=bid)
    if acc["subtype"] not in allowed:
        raise fail("INVALID", f"Account subtype {acc['subtype']} is not allowed; expected one of {sorted(allowed)}",
                   field)
    return acc["_n"]


def _apply_product(tx: Tx, bid: str, body: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    if "name" in data:
        body["name"] = _s(data["name"])
    if not isinstance(body.get("name"), str) or not body["name"].strip():
        raise fail("REQUIRED", "Name is required", "name")
    if "description" in data:
        body["description"] = _s(data["description"])
    if "unitPrice" in data:
        if data["unitPrice"] is None:
            raise fail("REQUIRED", "Unit price is required", "unitPrice")
        price = to_decimal(data["unitPrice"])
        if price < 0:
            raise fail("INVALID", "Unit price cannot be negative", "unitPrice")
        body["unitPrice"] = fmt_decimal(price, PRODUCT_PRICE_PLACES)
    if "incomeAccountId" in data:
        body["incomeAccountN"] = _account_n(tx, bid, data["incomeAccountId"], INCOME_SUBTYPES, "incomeAccountId")
    if "expenseAccountId" in data:
        body["expenseAccountN"] = _account_n(tx, bid, data["expenseAccountId"], EXPENSE_SUBTYPES, "expenseAccountId")
    if "defaultSalesTaxIds" in data:
        ns = []
        for i, value in enumerate(data["defaultSalesTaxIds"] or []):
            ns.append(require_node(tx, "SalesTax", value, "defaultSalesTaxIds", i, bid=bid)["_n"])
        body["defaultSalesTaxNs"] = ns
    body["isSold"] = body.get("incomeAccountN") is not None
    body["isBought"] = body.get("expenseAccountN") is not None
    return body


@wave_mutation("productCreate", "product")
def product_create(info: GraphQLResolveInfo, data: dict[str, Any]) -> Node:
    with loader_of(info).store.write() as tx:
        biz = require_business(tx, data["businessId"], "businessId")
        bid = biz["_bid"]
        body: dict[str, Any] = {"name": None, "description": None, "unitPrice": "0.00", "isArchived": False,
                                "incomeAccountN": None, "expenseAccountN": None, "defaultSalesTaxNs": []}
        if data.get("incomeAccountId") is None and data.get("expenseAccountId") is None:
            accounts = {a["_n"]: a for a in tx.select(bid, "Account", order="n ASC")}
            body["incomeAccountN"] = income_account_n(accounts)
            data = {k: v for k, v in data.items() if k not in ("incomeAccountId", "expenseAccountId")}
        return tx.insert(bid, "Product", _apply_product(tx, bid, body, data))


@wave_mutation("productPatch", "product")
def product_patch(info: GraphQLResolveInfo, data: dict[str, Any]) -> Node:
    with loader_of(info).store.write() as tx:
        node = require_target(tx, "Product", data["id"])
        return tx.update(node, _apply_product(tx, node["_bid"], dict(node), data))


@wave_mutation("productArchive", "product")
def product_archive(info: GraphQLResolveInfo, data: dict[str, Any]) -> Node:
    with loader_of(info).store.write() as tx:
        node = require_target(tx, "Product", data["id"])
        if node["isArchived"]:
            return node
        return tx.update(node, {**node, "isArchived": True})


# ---------------------------------------------------------------- everything else


def bind_unsupported(fields: list[str]) -> None:
    """Answer the schema's other mutations with didSucceed false / UNSUPPORTED (never a crash)."""
    for field in fields:
        if field in IMPLEMENTED:
            continue
        if field == "_":
            mutation.set_field(field, lambda *_args, **_kw: None)
            continue

        def resolver(_: Any, info: GraphQLResolveInfo, input: Any = None, _f: str = field) -> dict[str, Any]:
            return {"didSucceed": False, "invoiceId": "",
                    "inputErrors": [input_error("UNSUPPORTED", f"{_f} is not supported by the Wave simulator")]}
        mutation.set_field(field, resolver)


BINDABLES = [mutation]
