"""Per-request batching cache (no N+1 SQL per listed node) and offset-paginated listings."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from graphql import GraphQLError

from .store import Node, Store
from .values import parse_datetime_us, to_decimal, today, us_to_ms

__all__ = ["Loader", "ListSpec", "list_connection", "effective_status", "amount_due"]


def amount_due(inv: Node) -> Decimal:
    """Total less amount paid ("Invoice total less amount already paid": negative when overpaid)."""
    return to_decimal(inv["total"]) - to_decimal(inv["amountPaid"])


def effective_status(inv: Node, on: str | None = None) -> str:
    """InvoiceStatus from the stored base status (DRAFT/SAVED/SENT/VIEWED), payments and dates.

    DRAFT stays DRAFT; with payments: PARTIAL / PAID / OVERPAID; an approved invoice of
    total 0 is PAID; unpaid and past its due date: OVERDUE; else the base status.
    """
    base = inv["status"]
    if base == "DRAFT":
        return "DRAFT"
    total, paid = to_decimal(inv["total"]), to_decimal(inv["amountPaid"])
    if paid > 0 or total <= 0:
        if paid > total:
            return "OVERPAID"
        return "PAID" if paid == total else "PARTIAL"
    if inv["dueDate"] < (on or today()):
        return "OVERDUE"
    return base


#: Statuses matched by the `status: UNPAID` filter.
UNPAID_STATUSES = frozenset({"SAVED", "SENT", "VIEWED", "OVERDUE", "PARTIAL"})


class Loader:
    """Caches nodes for one request and loads the nodes a page refers to in one query."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._nodes: dict[tuple[str, str, int], Node | None] = {}
        self._pending: dict[tuple[str, str], set[int]] = defaultdict(set)
        self._businesses: dict[str, Node | None] = {}
        self._all: dict[tuple[str, str], dict[int, Node]] = {}
        self._amounts: dict[tuple[str, int], tuple[Decimal, Decimal]] = {}
        self._pending_amounts: dict[str, set[int]] = defaultdict(set)

    def prime(self, nodes: Iterable[Node]) -> None:
        for node in nodes:
            self._nodes[(node["_bid"], node["_type"], node["_n"])] = node

    def want(self, bid: str, kind: str, ns: Iterable[int | None]) -> None:
        """Announce nodes that resolvers are about to ask for (loaded together on first use)."""
        self._pending[(bid, kind)].update(n for n in ns if n is not None and (bid, kind, n) not in self._nodes)

    def get(self, bid: str, kind: str, n: int | None) -> Node | None:
        if n is None:
            return None
        key = (bid, kind, n)
        if key not in self._nodes:
            if (bid, kind) in self._all:
                return self._all[(bid, kind)].get(n)
            ns = self._pending.pop((bid, kind), set()) | {n}
            found = self.store.get_many(bid, kind, ns)
            for m in ns:
                self._nodes[(bid, kind, m)] = found.get(m)
        return self._nodes[key]

    def all(self, bid: str, kind: str) -> dict[int, Node]:
        """Every node of a small type (accounts, sales taxes), by n, in creation order."""
        if (bid, kind) not in self._all:
            self._all[(bid, kind)] = {node["_n"]: node for node in self.store.select(bid, kind, order="n ASC")}
        return self._all[(bid, kind)]

    def business(self, bid: str) -> Node | None:
        if bid not in self._businesses:
            self._businesses[bid] = self.store.business(bid)
        return self._businesses[bid]

    def want_amounts(self, bid: str, ns: Iterable[int]) -> None:
        self._pending_amounts[bid].update(ns)

    def customer_amounts(self, bid: str, n: int) -> tuple[Decimal, Decimal]:
        """(outstanding, overdue) of a customer over its approved invoices, batched per page."""
        if (bid, n) not in self._amounts:
            ns = sorted(self._pending_amounts.pop(bid, set()) | {n})
            sums = {m: [Decimal(0), Decimal(0)] for m in ns}
            on = today()
            for i in range(0, len(ns), 500):
                chunk = ns[i:i + 500]
                marks = ",".join("?" * len(chunk))
                rows = self.store.rows(
                    "SELECT ref, json_extract(body, '$.total'), json_extract(body, '$.amountPaid'),"
                    " json_extract(body, '$.dueDate') FROM entities WHERE business=? AND type='Invoice'"
                    f" AND ref IN ({marks}) AND json_extract(body, '$.status') != 'DRAFT'",
                    (bid, *chunk),
                )
                for ref, total, paid, due_date in rows:
                    due = max(to_decimal(total) - to_decimal(paid), Decimal(0))
                    sums[ref][0] += due
                    if due_date < on:
                        sums[ref][1] += due
            for m, (outstanding, overdue) in sums.items():
                self._amounts[(bid, m)] = (outstanding, overdue)
        return self._amounts[(bid, n)]


# ---------------------------------------------------------------- listings

_SQL_SORTS = {"CREATED_AT": "created_ms", "MODIFIED_AT": "modified_ms", "NAME": "sort_name", "INVOICE_DATE": "day"}

SortKey = Callable[[Node], Any]


class ListSpec:
    """One listing: SQL filters, optional Python filter and Python sort keys."""

    def __init__(self) -> None:
        self.where: list[str] = []
        self.params: list[Any] = []
        self.py_filter: Callable[[Node], bool] | None = None
        self.py_sorts: dict[str, SortKey] = {}
        self.empty = False

    def add(self, clause: str, *params: Any) -> None:
        self.where.append(clause)
        self.params.extend(params)

    def modified(self, after: int | None, before: int | None) -> None:
        """`modifiedAtAfter` / `modifiedAtBefore`, both strict (inputs in microseconds)."""
        if after is not None:
            self.add("modified_ms > ?", us_to_ms(after, up=False))
        if before is not None:
            self.add("modified_ms < ?", us_to_ms(before, up=True))


#: Larger `pageSize` values are capped (docs/wave-behaviour.md says why); pageInfo counts pages of this size.
MAX_PAGE_SIZE = 200


def _check_page(page: int | None, page_size: int | None) -> tuple[int, int]:
    page = 1 if page is None else page
    page_size = 45 if page_size is None else min(page_size, MAX_PAGE_SIZE)
    if page < 1:
        raise GraphQLError("page must be 1 or more", extensions={"code": "BAD_USER_INPUT"})
    if page_size < 1:
        raise GraphQLError("pageSize must be 1 or more", extensions={"code": "BAD_USER_INPUT"})
    return page, page_size


def _page_info(page: int, page_size: int, total: int) -> dict[str, int]:
    return {"currentPage": page, "totalPages": math.ceil(total / page_size), "totalCount": total}


def list_connection(loader: Loader, bid: str, kind: str, spec: ListSpec, sorts: list[str],
                    page: int | None, page_size: int | None) -> dict[str, Any]:
    """`{edges: [{node}], pageInfo}` of one page; SQL does the work unless a Python rule is needed."""
    page, page_size = _check_page(page, page_size)
    if spec.empty:
        return {"edges": [], "pageInfo": _page_info(page, page_size, 0)}
    parsed = [(s.rsplit("_", 1)[0], s.endswith("_DESC")) for s in sorts] or [("CREATED_AT", True)]
    where, params = " AND ".join(spec.where), spec.params
    if spec.py_filter is None and all(field in _SQL_SORTS and field not in spec.py_sorts for field, _ in parsed):
        order = ", ".join(f"{_SQL_SORTS[f]} {'DESC' if d else 'ASC'}" for f, d in parsed)
        order += f", n {'DESC' if parsed[0][1] else 'ASC'}"
        total = loader.store.count(bid, kind, where, params)
        nodes = loader.store.select(bid, kind, where, params, order, page_size, (page - 1) * page_size)
    else:
        nodes = loader.store.select(bid, kind, where, params, order="n ASC")
        if spec.py_filter is not None:
            nodes = [n for n in nodes if spec.py_filter(n)]
        if parsed[0][1]:
            nodes.reverse()
        for field, desc in reversed(parsed):
            key = spec.py_sorts.get(field) or _default_key(field)
            nodes.sort(key=key, reverse=desc)
        total = len(nodes)
        nodes = nodes[(page - 1) * page_size: page * page_size]
    loader.prime(nodes)
    return {"edges": [{"node": n} for n in nodes], "pageInfo": _page_info(page, page_size, total)}


def _default_key(field: str) -> SortKey:
    if field == "CREATED_AT":
        return lambda n: n["createdAt"]
    if field == "MODIFIED_AT":
        return lambda n: n["modifiedAt"]
    if field == "NAME":
        return lambda n: (n.get("name") or "").strip().lower()
    if field == "INVOICE_DATE":
        return lambda n: n.get("invoiceDate") or ""
    raise GraphQLError(f"unsupported sort {field}", extensions={"code": "BAD_USER_INPUT"})


def paginate_list(items: list[Any], page: int | None, page_size: int | None) -> dict[str, Any]:
    """A connection over an in-memory list (businesses, accounts)."""
    page, page_size = _check_page(page, page_size)
    chunk = items[(page - 1) * page_size: page * page_size]
    return {"edges": [{"node": n} for n in chunk], "pageInfo": _page_info(page, page_size, len(items))}


def parse_modified(args: dict[str, Any]) -> tuple[int | None, int | None]:
    """The parsed (microsecond) modifiedAtAfter/Before arguments (already parsed by the scalar)."""
    def conv(v: Any) -> int | None:
        if v is None:
            return None
        return v if isinstance(v, int) else parse_datetime_us(v)
    return conv(args.get("modifiedAtAfter")), conv(args.get("modifiedAtBefore"))
