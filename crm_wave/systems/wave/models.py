"""The writes the Wave client sends and their outcomes: `Mutation`, `MutationResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crm_wave.systems.wave.errors import InputError, WaveError, WaveNotFound

__all__ = ["MUTATION_NAMES", "MUTATIONS", "Mutation", "MutationResult", "MutationSpec"]


@dataclass(frozen=True)
class MutationSpec:
    """What the client must know of one Wave mutation: its input type, the field of its
    result that holds the entity, and whether sending it twice is harmless."""

    input_type: str
    entity_field: str | None
    idempotent: bool


#: The mutation allow-list: the only mutations the client composes into a batch.
MUTATIONS: dict[str, MutationSpec] = {
    "customerCreate": MutationSpec("CustomerCreateInput", "customer", False),
    "customerPatch": MutationSpec("CustomerPatchInput", "customer", True),
    "customerDelete": MutationSpec("CustomerDeleteInput", None, False),
    "productCreate": MutationSpec("ProductCreateInput", "product", False),
    "productPatch": MutationSpec("ProductPatchInput", "product", True),
    "productArchive": MutationSpec("ProductArchiveInput", "product", True),
    "invoiceCreate": MutationSpec("InvoiceCreateInput", "invoice", False),
    "invoicePatch": MutationSpec("InvoicePatchInput", "invoice", True),
    "invoiceDelete": MutationSpec("InvoiceDeleteInput", None, False),
    "invoiceApprove": MutationSpec("InvoiceApproveInput", "invoice", True),
    "invoiceMarkSent": MutationSpec("InvoiceMarkSentInput", "invoice", True),
    "invoicePaymentCreateManual": MutationSpec("InvoicePaymentCreateManualInput", "invoicePayment", False),
}

#: The mutations `WaveClient.mutate` accepts.
MUTATION_NAMES: frozenset[str] = frozenset(MUTATIONS)


@dataclass(frozen=True)
class Mutation:
    """One write: `name` is a Wave mutation (see `MUTATION_NAMES`), `input` its input object
    exactly as Wave's schema spells it, and `key` the caller's identifier, echoed in the result."""

    name: str
    input: dict[str, Any]
    key: str

    def __post_init__(self) -> None:
        if self.name not in MUTATIONS:
            raise ValueError(f"unknown Wave mutation {self.name!r}; expected one of {sorted(MUTATIONS)}")

    @property
    def idempotent(self) -> bool:
        """Whether sending this mutation twice is harmless (patch, archive, approve, mark sent)."""
        return MUTATIONS[self.name].idempotent


@dataclass(frozen=True)
class MutationResult:
    """The outcome of one `Mutation`: `ok` is Wave's `didSucceed`; `entity` the customer,
    product, invoice or invoice payment Wave returned (None for deletes and failures);
    `errors` Wave's input errors and top-level errors of this op, as `InputError`s; `error`
    the typed error of a failed op (None when `ok`)."""

    key: str
    name: str
    ok: bool
    entity: dict[str, Any] | None
    errors: list[InputError] = field(default_factory=list)
    error: WaveError | None = None

    @property
    def not_found(self) -> bool:
        """Whether Wave answered NOT_FOUND: the record this op acts on (or refers to) is gone."""
        return isinstance(self.error, WaveNotFound)
