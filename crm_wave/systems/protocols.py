"""What the sync needs from each system's client: the typed boundary between `sync/` and `systems/`.

`CrmClient` and `WaveClient` satisfy these structurally; the stages (`sync/collect.py`,
`sync/push.py`, `sync/heads.py`) are typed against them, so a test double or another
client only has to provide these methods.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from crm_wave.systems.crm.client import CrmPage
from crm_wave.systems.wave.client import Mutation, MutationResult

__all__ = ["CrmApi", "WaveApi", "Client"]


class CrmApi(Protocol):
    """The CRM as the sync reads and writes it (REST, by resource: customers, products, orders)."""

    def read_changes(self, resource: str, since: str | None, *, limit: int = ...) -> Iterator[CrmPage]:
        """Pages of records (and tombstones) changed after `since` (None: everything)."""
        ...

    def always_full(self, resource: str) -> bool:
        """True when every read of `resource` is a full read (the CRM has no change feed)."""
        ...

    def get(self, resource: str, id: str) -> dict[str, Any] | None:
        """One record, or None when it is not there."""
        ...

    def create(self, resource: str, body: Mapping[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        """Create a record; a resend with the same key must not create a second one."""
        ...

    def patch(self, resource: str, id: str, body: Mapping[str, Any], *, if_match: int | None) -> dict[str, Any]:
        """Change the given fields of a record (optimistically, where the CRM can)."""
        ...

    def delete(self, resource: str, id: str, *, if_match: int | None) -> None:
        """Delete a record (only ever after an operator approved it)."""
        ...


class WaveApi(Protocol):
    """Wave as the sync reads and writes it (GraphQL, one business)."""

    @property
    def business_id(self) -> str:
        """The business every read and write is about."""
        ...

    def iter_customers(self, *, modified_after: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """Pages of customers modified after `modified_after` (None: all)."""
        ...

    def iter_products(self, *, modified_after: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """Pages of products, archived ones included."""
        ...

    def iter_invoices(self, *, modified_after: str | None = None,
                      status: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """Pages of invoices (only those of Wave's `status` filter, when given)."""
        ...

    def list_customers(self, *, modified_after: str | None = None) -> list[dict[str, Any]]:
        """Every customer modified after `modified_after`."""
        ...

    def list_products(self, *, modified_after: str | None = None) -> list[dict[str, Any]]:
        """Every product modified after `modified_after`."""
        ...

    def list_invoices(self, *, modified_after: str | None = None) -> list[dict[str, Any]]:
        """Every invoice modified after `modified_after`."""
        ...

    def get_invoice(self, invoice_id: str) -> dict[str, Any] | None:
        """One invoice with its payments, or None when Wave does not know it."""
        ...

    def get_invoices(self, invoice_ids: Sequence[str], *, per_request: int = ...) -> dict[str, dict[str, Any] | None]:
        """Several invoices by id (batched lookups): `id -> invoice`, None for an id Wave does not know."""
        ...

    def change_heads(self) -> dict[str, dict[str, Any]]:
        """Per listing, the most recently modified record and the count (see `sync/heads.py`)."""
        ...

    def mutate(self, ops: Sequence[Mutation]) -> list[MutationResult]:
        """Send mutations (aliased in batches); one result per op, in order."""
        ...


#: Either system's client.
Client = CrmApi | WaveApi
