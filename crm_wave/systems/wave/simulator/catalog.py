"""Fixed reference data: account types and subtypes, and the seed of a new business.

A new business gets a small chart of accounts (cash, receivables, two income accounts,
cost of goods sold, an expense account, sales tax payable) and one sales tax
("Sales Tax", 8 %). The default business is created on the first open of an empty
database with the fixed uuid `store.DEFAULT_BUSINESS_UUID`.
"""

from __future__ import annotations

from typing import Any

from .store import DEFAULT_BUSINESS_UUID, Node, Store, Tx

__all__ = ["ACCOUNT_TYPES", "SUBTYPE_TYPE", "ensure_default_business", "create_business",
           "INCOME_SUBTYPES", "EXPENSE_SUBTYPES"]

#: AccountTypeValue -> (display name, normal balance).
ACCOUNT_TYPES: dict[str, tuple[str, str]] = {
    "ASSET": ("Assets", "DEBIT"),
    "EQUITY": ("Equity", "CREDIT"),
    "EXPENSE": ("Expenses", "DEBIT"),
    "INCOME": ("Income", "CREDIT"),
    "LIABILITY": ("Liabilities & Credit Cards", "CREDIT"),
}

#: AccountSubtypeValue -> AccountTypeValue.
SUBTYPE_TYPE: dict[str, str] = {
    **dict.fromkeys(["CASH_AND_BANK", "INVENTORY", "MONEY_IN_TRANSIT", "OTHER_CURRENT_ASSETS",
                     "OTHER_LONG_TERM_ASSETS", "PROPERTY_PLANT_EQUIPMENT", "RECEIVABLE", "RECEIVABLE_INVOICES",
                     "RECEIVABLE_OTHER", "DEPRECIATION_AND_AMORTIZATION", "VENDOR_PREPAYMENTS_AND_CREDITS",
                     "TRANSFERS", "UNKNOWN_ACCOUNT"], "ASSET"),
    **dict.fromkeys(["CREDIT_CARD", "CUSTOMER_PREPAYMENTS_AND_CREDITS", "DUE_FOR_PAYROLL",
                     "DUE_TO_YOU_AND_OTHER_OWNERS", "LOANS", "OTHER_CURRENT_LIABILITY", "OTHER_LONG_TERM_LIABILITY",
                     "PAYABLE", "PAYABLE_BILLS", "PAYABLE_OTHER", "SALES_TAX", "SYSTEM_CUSTOMER_CREDITS"],
                    "LIABILITY"),
    **dict.fromkeys(["NON_RETAINED_EARNINGS", "RETAINED_EARNINGS"], "EQUITY"),
    **dict.fromkeys(["INCOME", "DISCOUNTS", "OTHER_INCOME", "GAIN_ON_FOREIGN_EXCHANGE", "UNCATEGORIZED_INCOME"],
                    "INCOME"),
    **dict.fromkeys(["COST_OF_GOODS_SOLD", "EXPENSE", "LOSS_ON_FOREIGN_EXCHANGE", "PAYMENT_PROCESSING_FEES",
                     "PAYROLL_EXPENSES", "UNCATEGORIZED_EXPENSE"], "EXPENSE"),
}

#: Subtypes allowed for a product's income / expense account (productCreate docs).
INCOME_SUBTYPES = frozenset({"INCOME", "DISCOUNTS", "OTHER_INCOME"})
EXPENSE_SUBTYPES = frozenset({"EXPENSE", "COST_OF_GOODS_SOLD", "PAYMENT_PROCESSING_FEES", "PAYROLL_EXPENSES"})
SYSTEM_SUBTYPES = frozenset({"RECEIVABLE_INVOICES", "PAYABLE_BILLS", "SALES_TAX", "SYSTEM_CUSTOMER_CREDITS",
                             "RETAINED_EARNINGS", "UNCATEGORIZED_INCOME", "UNCATEGORIZED_EXPENSE", "TRANSFERS",
                             "GAIN_ON_FOREIGN_EXCHANGE", "LOSS_ON_FOREIGN_EXCHANGE", "UNKNOWN_ACCOUNT"})

_SEED_ACCOUNTS = [
    ("Cash on Hand", "CASH_AND_BANK", "Cash you haven't deposited in the bank."),
    ("Accounts Receivable", "RECEIVABLE_INVOICES", None),
    ("Sales", "INCOME", "Payments from your customers for products and services."),
    ("Consulting Income", "INCOME", None),
    ("Cost of Goods Sold", "COST_OF_GOODS_SOLD", None),
    ("Office Supplies", "EXPENSE", None),
    ("Sales Tax Payable", "SALES_TAX", None),
]


def _business_body(name: str, currency: str) -> dict[str, Any]:
    return {
        "name": name, "currency": currency, "isArchived": False, "isClassicAccounting": False,
        "isClassicInvoicing": False, "isPersonal": False, "emailSendEnabled": True, "timezone": "UTC",
        "organizationalType": None, "phone": None, "fax": None, "mobile": None, "tollFree": None, "website": None,
    }


def seed_business(tx: Tx, bid: str, currency: str) -> None:
    for name, subtype, description in _SEED_ACCOUNTS:
        tx.insert(bid, "Account", {"name": name, "subtype": subtype, "description": description,
                                   "displayId": None, "isArchived": False, "currency": currency, "sequence": 1})
    tx.insert(bid, "SalesTax", {
        "name": "Sales Tax", "abbreviation": "ST", "description": "Default sales tax", "isArchived": False,
        "isCompound": False, "isRecoverable": False, "showTaxNumberOnInvoices": False, "taxNumber": None,
        "rates": [{"effective": "2000-01-01", "rate": "0.08"}],
    })


def create_business(store: Store, name: str, currency: str = "USD", *, bid: str | None = None,
                    is_default: bool = False) -> Node:
    """Create a business with its seed accounts and sales tax (used by tests for a second business)."""
    with store.write() as tx:
        node = tx.create_business(_business_body(name, currency), bid=bid, is_default=is_default)
        seed_business(tx, node["_bid"], currency)
    return node


def ensure_default_business(store: Store) -> None:
    """Create the default business on the first open of an empty database."""
    with store.write() as tx:
        if tx.rows("SELECT 1 FROM businesses LIMIT 1"):
            return
        tx.create_business(_business_body("Wave Simulator Inc.", "USD"), bid=DEFAULT_BUSINESS_UUID, is_default=True)
        seed_business(tx, DEFAULT_BUSINESS_UUID, "USD")


def income_account_n(accounts: dict[int, Node]) -> int | None:
    """The default income account (the first non-archived INCOME account)."""
    for n, acc in accounts.items():
        if acc["subtype"] == "INCOME" and not acc["isArchived"]:
            return n
    return None
