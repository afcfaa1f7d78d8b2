"""Resolvers of the object types under `Business`: Customer, Product, Invoice and friends.

Nodes are the store's dicts (`_bid`, `_type`, `_n`, `id`, `createdAt`, `modifiedAt`
plus the JSON body); plain fields resolve from the dict with ariadne's default
resolver, derived fields are resolved here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ariadne import ObjectType
from graphql import GraphQLResolveInfo

from .catalog import SUBTYPE_TYPE
from .loader import amount_due, effective_status
from .query import account_subtype, account_type, loader_of
from .store import Node
from .values import country, currency, encode_id, money, province, provinces_of, to_decimal, today

__all__ = ["BINDABLES", "address_object"]

customer = ObjectType("Customer")
address = ObjectType("Address")
country_type = ObjectType("Country")
product = ObjectType("Product")
invoice = ObjectType("Invoice")
invoice_item = ObjectType("InvoiceItem")
invoice_payment = ObjectType("InvoicePayment")
account = ObjectType("Account")
sales_tax = ObjectType("SalesTax")


def _business(obj: Node, info: GraphQLResolveInfo) -> Node | None:
    return loader_of(info).business(obj["_bid"])


def _internal_id(obj: Node, info: GraphQLResolveInfo) -> str:
    return str(obj["_n"])


def _business_currency(info: GraphQLResolveInfo, bid: str) -> str:
    biz = loader_of(info).business(bid)
    return biz["currency"] if biz else "USD"


for _t in (customer, product, invoice, invoice_payment, account, sales_tax):
    _t.set_field("business", _business)
for _t in (customer, product, invoice, sales_tax):
    _t.set_field("internalId", _internal_id)


def address_object(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """The stored address (input field names) as an `Address`; None when nothing is set."""
    if not stored or all(v is None for v in stored.values()):
        return None
    return stored


# ---------------------------------------------------------------- Customer and places


@customer.field("currency")
def resolve_customer_currency(obj: Node, info: GraphQLResolveInfo) -> dict[str, Any] | None:
    return currency(obj["currency"]) if obj.get("currency") else None


@customer.field("address")
def resolve_customer_address(obj: Node, info: GraphQLResolveInfo) -> dict[str, Any] | None:
    return address_object(obj.get("address"))


@customer.field("shippingDetails")
def resolve_shipping(obj: Node, info: GraphQLResolveInfo) -> dict[str, Any] | None:
    sd = obj.get("shippingDetails")
    if not sd:
        return None
    return {"name": sd.get("name"), "phone": sd.get("phone"), "instructions": sd.get("instructions"),
            "address": address_object(sd.get("address"))}


@customer.field("isArchived")
def resolve_customer_archived(obj: Node, info: GraphQLResolveInfo) -> bool:
    return bool(obj.get("isArchived"))


def _customer_amount(index: int) -> Any:
    def resolve(obj: Node, info: GraphQLResolveInfo) -> dict[str, Any]:
        amounts = loader_of(info).customer_amounts(obj["_bid"], obj["_n"])
        return money(amounts[index], _business_currency(info, obj["_bid"]))
    return resolve


customer.set_field("outstandingAmount", _customer_amount(0))
customer.set_field("overdueAmount", _customer_amount(1))


@address.field("country")
def resolve_address_country(obj: dict[str, Any], info: GraphQLResolveInfo) -> dict[str, Any] | None:
    return country(obj["countryCode"]) if obj.get("countryCode") else None


@address.field("province")
def resolve_address_province(obj: dict[str, Any], info: GraphQLResolveInfo) -> dict[str, Any] | None:
    return province(obj["provinceCode"]) if obj.get("provinceCode") else None


@country_type.field("provinces")
def resolve_country_provinces(obj: dict[str, Any], info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    return provinces_of(obj["code"])


# ---------------------------------------------------------------- Product, Account, SalesTax


def _account(info: GraphQLResolveInfo, bid: str, n: int | None) -> Node | None:
    return loader_of(info).all(bid, "Account").get(n) if n is not None else None


product.set_field("incomeAccount", lambda obj, info: _account(info, obj["_bid"], obj.get("incomeAccountN")))
product.set_field("expenseAccount", lambda obj, info: _account(info, obj["_bid"], obj.get("expenseAccountN")))


@product.field("defaultSalesTaxes")
def resolve_default_taxes(obj: Node, info: GraphQLResolveInfo) -> list[Node]:
    taxes = loader_of(info).all(obj["_bid"], "SalesTax")
    return [taxes[n] for n in obj.get("defaultSalesTaxNs") or [] if n in taxes]


account.set_field("currency", lambda obj, info: currency(obj["currency"]))
account.set_field("subtype", lambda obj, info: account_subtype(obj["subtype"], info))
account.set_field("type", lambda obj, info: account_type(SUBTYPE_TYPE[obj["subtype"]]))
account.set_field("normalBalanceType", lambda obj, info: account_type(SUBTYPE_TYPE[obj["subtype"]])["normalBalanceType"])
account.set_field("balance", lambda obj, info: "0.00")
account.set_field("balanceInBusinessCurrency", lambda obj, info: "0.00")
account.set_field("classicId", lambda obj, info: None)


def tax_rate_on(tax: Node, on: str) -> str:
    """The rate of a sales tax effective on a date (the earliest rate when none is yet effective)."""
    rates = sorted(tax["rates"], key=lambda r: r["effective"])
    current = rates[0]["rate"]
    for r in rates:
        if r["effective"] <= on:
            current = r["rate"]
    return current


@sales_tax.field("rate")
def resolve_tax_rate(obj: Node, info: GraphQLResolveInfo, **kwargs: Any) -> str:
    return tax_rate_on(obj, kwargs.get("for") or today())


# ---------------------------------------------------------------- Invoice


def _money_field(key: str) -> Any:
    return lambda obj, info: money(obj[key], obj["currency"])


for _key in ("amountPaid", "subtotal", "taxTotal", "total"):
    invoice.set_field(_key, _money_field(_key))
invoice.set_field("amountDue", lambda obj, info: money(amount_due(obj), obj["currency"]))
invoice.set_field("discountTotal", lambda obj, info: money(Decimal(0), obj["currency"]))
invoice.set_field("currency", lambda obj, info: currency(obj["currency"]))
invoice.set_field("status", lambda obj, info: effective_status(obj))
invoice.set_field("customer", lambda obj, info: loader_of(info).get(obj["_bid"], "Customer", obj["customerN"]))
for _field in ("invoiceReminders", "attachments", "discounts"):
    invoice.set_field(_field, lambda obj, info: [])
invoice.set_field("source", lambda obj, info: None)


@invoice.field("anonymousId")
def resolve_anonymous_id(obj: Node, info: GraphQLResolveInfo) -> str:
    return encode_id(("PublicInvoice", f"{obj['_bid']}:{obj['_n']}"))


@invoice.field("pdfUrl")
def resolve_pdf_url(obj: Node, info: GraphQLResolveInfo) -> str:
    return f"https://wave-simulator.invalid/invoices/{resolve_anonymous_id(obj, info)}.pdf"


@invoice.field("viewUrl")
def resolve_view_url(obj: Node, info: GraphQLResolveInfo) -> str:
    return f"https://wave-simulator.invalid/invoices/{resolve_anonymous_id(obj, info)}/view"


@invoice.field("items")
def resolve_items(obj: Node, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    items = obj.get("items") or []
    loader_of(info).want(obj["_bid"], "Product", (item["productN"] for item in items))
    return [{**item, "_bid": obj["_bid"], "_invoice": obj, "_index": i} for i, item in enumerate(items, 1)]


@invoice.field("payments")
def resolve_payments(obj: Node, info: GraphQLResolveInfo) -> list[Node]:
    """The invoice's payments: only on a single invoice, never in a listing (as Wave does)."""
    if "edges" in info.path.as_list():
        return []
    nodes = loader_of(info).store.select(obj["_bid"], "InvoicePayment", "ref = ?", (obj["_n"],), "n ASC")
    loader_of(info).prime(nodes)
    return nodes


@invoice_item.field("id")
def resolve_item_id(obj: dict[str, Any], info: GraphQLResolveInfo) -> str:
    inv = obj["_invoice"]
    return encode_id(("Business", inv["_bid"]), ("Invoice", inv["_n"]), ("InvoiceItem", obj["_index"]))


invoice_item.set_field("product", lambda obj, info: loader_of(info).get(obj["_bid"], "Product", obj["productN"]))
invoice_item.set_field("account", lambda obj, info: _account(info, obj["_bid"], obj["accountN"]))
invoice_item.set_field("price", lambda obj, info: obj["unitPrice"])
invoice_item.set_field("subtotal", lambda obj, info: money(obj["subtotal"], obj["_invoice"]["currency"]))
invoice_item.set_field("total", lambda obj, info: money(obj["total"], obj["_invoice"]["currency"]))


@invoice_item.field("taxes")
def resolve_item_taxes(obj: dict[str, Any], info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    taxes = loader_of(info).all(obj["_bid"], "SalesTax")
    code = obj["_invoice"]["currency"]
    return [{"amount": money(t["amount"], code), "rate": t["rate"], "salesTax": taxes[t["salesTaxN"]]}
            for t in obj.get("taxes") or [] if t["salesTaxN"] in taxes]


# ---------------------------------------------------------------- InvoicePayment


def _payment_invoice(obj: Node, info: GraphQLResolveInfo) -> Node | None:
    return loader_of(info).get(obj["_bid"], "Invoice", obj["invoiceN"])


def _payment_currency(obj: Node, info: GraphQLResolveInfo) -> dict[str, Any] | None:
    inv = _payment_invoice(obj, info)
    return currency(inv["currency"]) if inv else None


invoice_payment.set_field("invoice", _payment_invoice)
invoice_payment.set_field("customer", lambda obj, info: loader_of(info).get(obj["_bid"], "Customer", obj["customerN"]))
invoice_payment.set_field("account", lambda obj, info: _account(info, obj["_bid"], obj["accountN"]))
invoice_payment.set_field("businessCurrency", lambda obj, info: currency(_business_currency(info, obj["_bid"])))
invoice_payment.set_field("invoiceCurrency", _payment_currency)
invoice_payment.set_field("paymentCurrency", _payment_currency)
invoice_payment.set_field("displayExchangeRate", lambda obj, info: obj["exchangeRate"])
invoice_payment.set_field("exchangeRate", lambda obj, info: to_decimal(obj["exchangeRate"]))
invoice_payment.set_field("originInvoicePayment", lambda obj, info: None)
invoice_payment.set_field("paymentDetails", lambda obj, info: None)

BINDABLES = [customer, address, country_type, product, invoice, invoice_item, invoice_payment, account, sales_tax]
