"""Wave reads only the tests need: look records up by email, number, name or id.

The sync never looks a Wave record up this way (it reads listings, and `WaveClient.get_invoice`
/ `get_invoices`), so these live with the tests. They go through the client's own paging and
lookup (`_pages`, `_get`), so they send exactly the requests the client would.
"""

from __future__ import annotations

from typing import Any

from crm_wave.systems.wave.client import WaveClient

__all__ = ["find_customers_by_email", "find_invoices_by_number", "find_products_by_name", "get_customer",
           "get_product"]


def find_customers_by_email(client: WaveClient, email: str) -> list[dict[str, Any]]:
    """Customers whose email equals `email`, trimmed and case-insensitively."""
    wanted = email.strip().casefold()
    if not wanted:
        return []
    found: dict[str, dict[str, Any]] = {}
    for probe in dict.fromkeys([email.strip(), email.strip().lower()]):
        for page in client._pages("list_customers", "customers", {"modifiedAtAfter": None, "email": probe}):
            for node in page:
                if (node.get("email") or "").strip().casefold() == wanted:
                    found.setdefault(node["id"], node)
    return list(found.values())


def find_invoices_by_number(client: WaveClient, number: str) -> list[dict[str, Any]]:
    """Invoices whose `invoiceNumber` is exactly `number` (Wave's filter only narrows it down)."""
    if not number:
        return []
    return [
        node
        for page in client._pages("list_invoices", "invoices", {"modifiedAtAfter": None, "invoiceNumber": number})
        for node in page
        if node.get("invoiceNumber") == number
    ]


def find_products_by_name(client: WaveClient, name: str) -> list[dict[str, Any]]:
    """Products (archived included) whose name equals `name`, trimmed and case-insensitively."""
    wanted = name.strip().casefold()
    if not wanted:
        return []
    return [p for p in client.list_products() if (p.get("name") or "").strip().casefold() == wanted]


def get_customer(client: WaveClient, customer_id: str) -> dict[str, Any] | None:
    """One customer by id, or None when there is none."""
    return client._get("get_customer", "customer", customer_id)


def get_product(client: WaveClient, product_id: str) -> dict[str, Any] | None:
    """One product by id, or None when there is none."""
    return client._get("get_product", "product", product_id)
