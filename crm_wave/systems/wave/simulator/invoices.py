"""Invoice and invoice-payment mutations, and invoice totals.

Choices where Wave's documentation is silent:

- `invoiceNumber` must be unique per business: a duplicate (create or patch) fails with
  `DUPLICATE` at `["input", "invoiceNumber"]`. The default is the largest number + 1
  keeping its prefix and padding (schema: "will find the current largest invoice number
  and add 1"; "1" for the first invoice).
- `dueDate` defaults to `invoiceDate` (payment terms of 0 days); a due date before the
  invoice date is `INVALID`.
- Item `quantity` defaults to 1, `unitPrice` to the product's, `description` to the
  product's; both numbers are rounded to 8 places (ties away from zero). Item
  `taxes` omitted/null -> the product's default sales taxes; `[]` -> none. An item's
  subtotal is quantity x unit price rounded to the currency's minor unit; each tax is
  rate x item subtotal, rounded likewise (compound taxes are treated as simple).
  `discounts` are not supported (`UNSUPPORTED`).
- The stored status is DRAFT, SAVED (approved) or SENT; the status returned is derived
  (see `loader.effective_status`). `invoiceApprove` of an approved invoice succeeds
  without a change. `invoiceMarkSent`/`invoiceSend` approve a draft on the way.
  `invoicePatch` may approve (`status: SAVED`) but never returns an invoice to DRAFT.
- A manual payment needs an approved invoice, an amount > 0 (rounded to the invoice
  currency) and an account of the business; `amountPaid` is the sum of the invoice's
  payments and every payment change bumps the invoice's `modifiedAt` (not in strict mode).
- Strict mode: a SENT/VIEWED/PAID/PARTIAL/OVERDUE/OVERPAID invoice refuses `invoiceDelete`
  and an `invoicePatch` of `items`, `customerId` or `currency` (`INVALID` at that field).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from graphql import GraphQLResolveInfo

from crm_wave.model.money import currency_exponent, line_amount

from .catalog import income_account_n
from .loader import effective_status
from .mode import LOCKED_STATUSES, mode_of
from .mutations import fail, require_business, require_node, require_target, wave_mutation
from .query import loader_of
from .store import Node, Tx
from .types import tax_rate_on
from .values import ITEM_PLACES, fmt_decimal, now_ms, round_money, round_places, to_decimal, today, us_to_ms

__all__ = ["compute_totals"]

_DEFAULTS: dict[str, Any] = {
    "title": "Invoice", "subhead": None, "footer": None, "memo": None, "poNumber": None,
    "amountTitle": "Amount", "itemTitle": "Items", "priceTitle": "Price", "unitTitle": "Quantity",
    "hideAmount": False, "hideDescription": False, "hideName": False, "hidePrice": False, "hideUnit": False,
    "disableAmexPayments": False, "disableBankPayments": False, "disableCreditCardPayments": False,
    "requireTermsOfServiceAgreement": False, "exchangeRate": "1.00", "lastSentAt": None, "lastSentVia": None,
    "lastViewedAt": None, "amountPaid": "0", "items": [],
}
_OPTIONAL_STRINGS = ("subhead", "footer", "memo", "poNumber")
_REQUIRED_STRINGS = ("title", "amountTitle", "itemTitle", "priceTitle", "unitTitle")
_BOOLEANS = ("hideAmount", "hideDescription", "hideName", "hidePrice", "hideUnit", "disableAmexPayments",
             "disableBankPayments", "disableCreditCardPayments", "requireTermsOfServiceAgreement")


_TRAILING_DIGITS = re.compile(r"^(.*?)(\d+)$")


def _next_number(tx: Tx, bid: str) -> str:
    """The largest invoice number + 1, keeping its prefix and zero padding (after INV-0042
    comes INV-0043; after 9 comes 10); "1" when no number ends in digits. Largest is by the
    trailing number, the most recently created winning a tie."""
    best: tuple[int, int, str, int] | None = None
    for number, n in tx.rows("SELECT lookup, n FROM entities WHERE business=? AND type='Invoice'"
                             " AND lookup GLOB '*[0-9]'", (bid,)):
        m = _TRAILING_DIGITS.match(number)
        if m is None:
            continue
        key = (int(m.group(2)), n, m.group(1), len(m.group(2)))
        if best is None or key[:2] > best[:2]:
            best = key
    if best is None:
        return "1"
    value, _, prefix, width = best
    return f"{prefix}{value + 1:0{width}d}"


def _items(tx: Tx, bid: str, items: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    out = []
    default_income: int | None = None
    for i, item in enumerate(items or []):
        product = require_node(tx, "Product", item.get("productId"), "items", i, "productId", bid=bid)
        quantity = item.get("quantity")
        quantity = Decimal(1) if quantity is None else to_decimal(quantity)
        price = item.get("unitPrice")
        price = to_decimal(product["unitPrice"]) if price is None else to_decimal(price)
        if item.get("taxes") is None:
            tax_ns = list(product.get("defaultSalesTaxNs") or [])
        else:
            tax_ns = [require_node(tx, "SalesTax", t["salesTaxId"], "items", i, "taxes", j, "salesTaxId", bid=bid)["_n"]
                      for j, t in enumerate(item["taxes"])]
        account_n = product.get("incomeAccountN")
        if account_n is None:
            if default_income is None:
                default_income = income_account_n({a["_n"]: a for a in tx.select(bid, "Account", order="n ASC")})
            account_n = default_income
        out.append({
            "productN": product["_n"],
            "description": item["description"] if "description" in item else product.get("description"),
            "quantity": fmt_decimal(round_places(quantity, ITEM_PLACES)),
            "unitPrice": fmt_decimal(round_places(price, ITEM_PLACES)),
            "taxNs": tax_ns,
            "accountN": account_n,
        })
    return out


def compute_totals(tx: Tx, bid: str, body: dict[str, Any]) -> dict[str, Any]:
    """Fill item subtotals/taxes/totals and the invoice's subtotal, taxTotal and total."""
    code = body["currency"]
    taxes = {t["_n"]: t for t in tx.select(bid, "SalesTax", order="n ASC")}
    subtotal = tax_total = Decimal(0)
    for item in body["items"]:
        sub = line_amount(item["quantity"], item["unitPrice"], currency_exponent(code))
        item_taxes = []
        for n in item["taxNs"]:
            if n not in taxes:
                continue
            rate = to_decimal(tax_rate_on(taxes[n], body["invoiceDate"]))
            amount = round_money(sub * rate, code)
            item_taxes.append({"salesTaxN": n, "rate": fmt_decimal(rate), "amount": str(amount)})
            tax_total += amount
        item["subtotal"] = str(sub)
        item["taxes"] = item_taxes
        item["total"] = str(sub + sum((to_decimal(t["amount"]) for t in item_taxes), Decimal(0)))
        subtotal += sub
    body["subtotal"], body["taxTotal"], body["total"] = str(subtotal), str(tax_total), str(subtotal + tax_total)
    return body


def _apply(tx: Tx, biz: Node, body: dict[str, Any], data: dict[str, Any], node: Node | None) -> dict[str, Any]:
    bid = biz["_bid"]
    for key in ("customerId", "currency", "invoiceDate", "dueDate", "invoiceNumber", *_REQUIRED_STRINGS):
        if key in data and data[key] is None:
            raise fail("REQUIRED", f"{key} cannot be null", key)
    if "customerId" in data:
        body["customerN"] = require_node(tx, "Customer", data["customerId"], "customerId", bid=bid)["_n"]
    for key in ("currency", "invoiceDate", "dueDate", *_REQUIRED_STRINGS):
        if key in data:
            body[key] = data[key]
    for key in _OPTIONAL_STRINGS:
        if key in data:
            body[key] = None if data[key] == "" else data[key]
    for key in _BOOLEANS:
        if key in data:
            body[key] = bool(data[key])
    if node is None:
        body.setdefault("invoiceDate", today())
        body.setdefault("dueDate", body["invoiceDate"])
    if body["dueDate"] < body["invoiceDate"]:
        raise fail("INVALID", "Due date cannot be before the invoice date", "dueDate")
    if "invoiceNumber" in data:
        number = data["invoiceNumber"].strip()
        if not number:
            raise fail("REQUIRED", "Invoice number is required", "invoiceNumber")
        clash = tx.select(bid, "Invoice", "lookup = ?", (number,), "n ASC", 1)
        if clash and (node is None or clash[0]["_n"] != node["_n"]):
            raise fail("DUPLICATE", f"Invoice number {number!r} is already used", "invoiceNumber")
        body["invoiceNumber"] = number
    elif node is None:
        body["invoiceNumber"] = _next_number(tx, bid)
    if data.get("status") is not None:
        if data["status"] == "DRAFT" and body.get("status", "DRAFT") != "DRAFT":
            raise fail("INVALID", "An approved invoice cannot return to draft", "status")
        if data["status"] == "SAVED" and body.get("status", "DRAFT") == "DRAFT":
            body["status"] = "SAVED"
        body.setdefault("status", data["status"])
    body.setdefault("status", "DRAFT")
    if data.get("exchangeRate") is not None:
        if to_decimal(data["exchangeRate"]) <= 0:
            raise fail("INVALID", "Exchange rate must be positive", "exchangeRate")
        body["exchangeRate"] = fmt_decimal(data["exchangeRate"])
    if data.get("discounts"):
        raise fail("UNSUPPORTED", "Invoice discounts are not supported by the Wave simulator", "discounts")
    if "items" in data:
        body["items"] = _items(tx, bid, data["items"])
    return compute_totals(tx, bid, body)


@wave_mutation("invoiceCreate", "invoice")
def invoice_create(info: GraphQLResolveInfo, data: dict[str, Any]) -> Node:
    with loader_of(info).store.write() as tx:
        biz = require_business(tx, data["businessId"], "businessId")
        body = {**_DEFAULTS, "items": [], "currency": biz["currency"]}
        return tx.insert(biz["_bid"], "Invoice", _apply(tx, biz, body, data, None))


_LOCKED_FIELDS = ("items", "customerId", "currency")


def _refuse_if_locked(info: GraphQLResolveInfo, node: Node, data: dict[str, Any] | None) -> None:
    """Strict mode: a sent, viewed, paid or overdue invoice keeps its lines, customer and currency
    and cannot be deleted (`data` None); an `inputErrors` entry names the field."""
    if not mode_of(info).strict:
        return
    status = effective_status(node)
    if status not in LOCKED_STATUSES:
        return
    number = node["invoiceNumber"]
    if data is None:
        raise fail("INVALID", f"Invoice {number} is {status} and can no longer be deleted", "invoiceId")
    for key in _LOCKED_FIELDS:
        if key in data:
            raise fail("INVALID", f"Invoice {number} is {status}; its {key} can no longer be changed", key)


@wave_mutation("invoicePatch", "invoice")
def invoice_patch(info: GraphQLResolveInfo, data: dict[str, Any]) -> Node:
    with loader_of(info).store.write() as tx:
        node = require_target(tx, "Invoice", data["id"])
        _refuse_if_locked(info, node, data)
        biz = tx.business(node["_bid"])
        assert biz is not None
        return tx.update(node, _apply(tx, biz, dict(node), data, node))


@wave_mutation("invoiceDelete", None)
def invoice_delete(info: GraphQLResolveInfo, data: dict[str, Any]) -> None:
    with loader_of(info).store.write() as tx:
        node = require_target(tx, "Invoice", data["invoiceId"])
        _refuse_if_locked(info, node, None)
        for payment in tx.select(node["_bid"], "InvoicePayment", "ref = ?", (node["_n"],)):
            tx.delete(payment)
        tx.delete(node)
    return None


@wave_mutation("invoiceApprove", "invoice")
def invoice_approve(info: GraphQLResolveInfo, data: dict[str, Any]) -> Node:
    with loader_of(info).store.write() as tx:
        node = require_target(tx, "Invoice", data["invoiceId"])
        if node["status"] != "DRAFT":
            return node
        return tx.update(node, {**node, "status": "SAVED"})


def _mark_sent(info: GraphQLResolveInfo, invoice_id: Any, via: str, sent_ms: int) -> Node:
    with loader_of(info).store.write() as tx:
        node = require_target(tx, "Invoice", invoice_id)
        return tx.update(node, {**node, "status": "SENT", "lastSentAt": sent_ms, "lastSentVia": via})


@wave_mutation("invoiceMarkSent", "invoice")
def invoice_mark_sent(info: GraphQLResolveInfo, data: dict[str, Any]) -> Node:
    sent = data.get("sentAt")
    return _mark_sent(info, data["invoiceId"], data["sendMethod"], now_ms() if sent is None else us_to_ms(sent, up=False))


@wave_mutation("invoiceSend", "invoice")
def invoice_send(info: GraphQLResolveInfo, data: dict[str, Any]) -> Node:
    if not [t for t in data.get("to") or [] if t and t.strip()]:
        raise fail("REQUIRED", "At least one recipient is required", "to")
    return _mark_sent(info, data["invoiceId"], "WAVE", now_ms())


@wave_mutation("invoiceClone", "invoice")
def invoice_clone(info: GraphQLResolveInfo, data: dict[str, Any]) -> Node:
    with loader_of(info).store.write() as tx:
        node = require_target(tx, "Invoice", data["invoiceId"])
        body = {**dict(node), "status": "DRAFT", "amountPaid": "0", "lastSentAt": None, "lastSentVia": None,
                "lastViewedAt": None, "invoiceNumber": _next_number(tx, node["_bid"])}
        return tx.insert(node["_bid"], "Invoice", body)


# ---------------------------------------------------------------- payments


def _refresh_paid(info: GraphQLResolveInfo, tx: Tx, invoice: Node) -> Node:
    """Sum the payments into `amountPaid`; strict mode leaves the invoice's `modifiedAt` as it was."""
    payments = tx.select(invoice["_bid"], "InvoicePayment", "ref = ?", (invoice["_n"],), "n ASC")
    paid = sum((to_decimal(p["amount"]) for p in payments), Decimal(0))
    return tx.update(invoice, {**invoice, "amountPaid": str(paid)}, touch=not mode_of(info).strict)


def _apply_payment(tx: Tx, invoice: Node, body: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    bid = invoice["_bid"]
    for key in ("amount", "exchangeRate", "paymentAccountId", "paymentDate", "paymentMethod"):
        if key in data and data[key] is None:
            raise fail("REQUIRED", f"{key} cannot be null", key)
    if "amount" in data:
        amount = round_money(to_decimal(data["amount"]), invoice["currency"])
        if amount <= 0:
            raise fail("INVALID", "Payment amount must be greater than zero", "amount")
        body["amount"] = str(amount)
    if "exchangeRate" in data:
        if to_decimal(data["exchangeRate"]) <= 0:
            raise fail("INVALID", "Exchange rate must be positive", "exchangeRate")
        body["exchangeRate"] = fmt_decimal(data["exchangeRate"])
    if "paymentAccountId" in data:
        body["accountN"] = require_node(tx, "Account", data["paymentAccountId"], "paymentAccountId", bid=bid)["_n"]
    for key in ("paymentDate", "paymentMethod", "memo"):
        if key in data:
            body[key] = data[key]
    return body


@wave_mutation("invoicePaymentCreateManual", "invoicePayment")
def payment_create(info: GraphQLResolveInfo, data: dict[str, Any]) -> Node:
    with loader_of(info).store.write() as tx:
        invoice = require_target(tx, "Invoice", data["invoiceId"])
        if invoice["status"] == "DRAFT":
            raise fail("INVALID", "Approve the invoice before recording a payment", "invoiceId")
        body = {"invoiceN": invoice["_n"], "customerN": invoice["customerN"], "memo": None, "active": True,
                "origin": "MANUAL", "state": "COMPLETED", "transactionType": "PAYMENT"}
        payment = tx.insert(invoice["_bid"], "InvoicePayment", _apply_payment(tx, invoice, body, data))
        _refresh_paid(info, tx, invoice)
        return payment


@wave_mutation("invoicePaymentPatch", "invoicePayment")
def payment_patch(info: GraphQLResolveInfo, data: dict[str, Any]) -> Node:
    with loader_of(info).store.write() as tx:
        payment = require_target(tx, "InvoicePayment", data["id"])
        invoice = tx.get(payment["_bid"], "Invoice", payment["invoiceN"])
        assert invoice is not None
        payment = tx.update(payment, _apply_payment(tx, invoice, dict(payment), data))
        _refresh_paid(info, tx, invoice)
        return payment


@wave_mutation("invoicePaymentDelete", None)
def payment_delete(info: GraphQLResolveInfo, data: dict[str, Any]) -> None:
    with loader_of(info).store.write() as tx:
        payment = require_target(tx, "InvoicePayment", data["id"])
        tx.delete(payment)
        invoice = tx.get(payment["_bid"], "Invoice", payment["invoiceN"])
        if invoice is not None:
            _refresh_paid(info, tx, invoice)
    return None
