"""The four dataflows of mappings.md as data: field tables, merge keys and directions.

Everything else reads these tables: the canonical mapping (`canonical.py`), the merge,
the share diffs, and the generated docs (`docs/mappings.md`, checked by a test), so
the product decision lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["FieldMap", "Flow", "MergeKey", "FLOWS", "ENTITIES", "flows_for"]

Direction = Literal["both", "wave_to_crm"]


@dataclass(frozen=True)
class FieldMap:
    """One row of a property table.

    `name` is the canonical name (the CRM field, PascalCase); `wave` the dotted path
    read from a Wave node; `wave_input` the dotted input paths written (several when
    one CRM value fills two Wave fields); `kind` the normaliser (see normalize.py).
    """

    name: str
    wave: str
    wave_type: str
    kind: str = "text"
    wave_input: tuple[str, ...] = ()
    direction: Direction = "both"
    crm_label: str | None = None
    wave_label: str | None = None
    note: str = ""

    @property
    def inputs(self) -> tuple[str, ...]:
        """Wave input paths this field writes."""
        return self.wave_input or (self.wave,)


@dataclass(frozen=True)
class MergeKey:
    """An equality rule that links pre-existing records (`crm` = `wave` after `kind`)."""

    crm: str
    wave: str
    kind: str = "text"


@dataclass(frozen=True)
class Flow:
    """One dataflow: which CRM records it applies to, how they merge, which fields sync."""

    key: str
    title: str
    entity: str  # customer | product | order: the stem of every dataset name
    wave_entity: str  # customer | product | invoice
    applies_to: str
    merge_keys: tuple[MergeKey, ...]
    fields: tuple[FieldMap, ...]
    notes: tuple[str, ...] = field(default=())


def _addr(name: str, sub: str, wave_type: str = "String", kind: str = "text", label: str | None = None) -> FieldMap:
    return FieldMap(
        name,
        f"address.{sub}",
        wave_type,
        kind,
        wave_input=(f"address.{label or sub}", f"shippingDetails.address.{label or sub}"),
        wave_label=f"`address.{sub}` (`{label or sub}`), same under `shippingDetails.address`",
    )


_CONTACT = (
    FieldMap("CustomerNumber", "displayId", "String"),
    FieldMap("Email", "email", "String", "email"),
    FieldMap("Phone", "phone", "String"),
    FieldMap("Mobile", "mobile", "String"),
    FieldMap("Fax", "fax", "String"),
    FieldMap("Website", "website", "String"),
    FieldMap("Description", "internalNotes", "String"),
)
_ADDRESS = (
    FieldMap("Currency", "currency.code", "CurrencyCode", "code", wave_input=("currency",)),
    _addr("StreetAddress1", "addressLine1"),
    _addr("StreetAddress2", "addressLine2"),
    _addr("City", "city"),
    _addr("ZipCode", "postalCode"),
    _addr("State", "province.code", "String (ISO 3166-2)", "code", label="provinceCode"),
    _addr("Country", "country.code", "CountryCode", "code", label="countryCode"),
)
_CUSTOMER_KEYS = (MergeKey("Email", "email", "email"), MergeKey("CustomerNumber", "displayId", "text"))

CUSTOMER_ORGANIZATION = Flow(
    key="customer_organization",
    title="Custom CRM Customer <-> Wave Customer (organisation data)",
    entity="customer",
    wave_entity="customer",
    applies_to='CRM customers with `Type = "organization"`',
    merge_keys=_CUSTOMER_KEYS,
    fields=(
        FieldMap("Name", "name", "String!"),
        *_CONTACT,
        FieldMap("FirstName", "firstName", "String", crm_label="`FirstName` (contact person)"),
        FieldMap("LastName", "lastName", "String", crm_label="`LastName` (contact person)"),
        *_ADDRESS,
    ),
    notes=("Wave -> CRM reads `address.*` (the billing address); `shippingDetails.address` is written, never read back.",),
)

CUSTOMER_PERSON = Flow(
    key="customer_person",
    title="Custom CRM Customer <-> Wave Customer (human data)",
    entity="customer",
    wave_entity="customer",
    applies_to='CRM customers with `Type = "person"`',
    merge_keys=_CUSTOMER_KEYS,
    fields=(
        FieldMap("FirstName", "firstName", "String"),
        FieldMap("LastName", "lastName", "String"),
        FieldMap("Name", "name", "String!", crm_label='`FirstName` + " " + `LastName` (derived)',
                 note="derived: written to Wave from the names; written to the CRM only on create"),
        *_CONTACT,
        *_ADDRESS,
    ),
    notes=(
        'A Wave customer new to the CRM becomes `Type = "person"` when it has a `firstName` or `lastName` '
        'and its `name` is empty or equal to "`firstName` `lastName`" (`crm_wave.mapping.canonical.customer_type_from_wave`); '
        'otherwise `Type = "organization"`.',
    ),
)

ORDER = Flow(
    key="order",
    title="Custom CRM Order <-> Wave Invoice",
    entity="order",
    wave_entity="invoice",
    applies_to="every CRM order (a `cancelled` order is not created in Wave)",
    merge_keys=(MergeKey("OrderNumber", "invoiceNumber", "text"),),
    fields=(
        FieldMap("OrderNumber", "invoiceNumber", "String!"),
        FieldMap("CustomerId", "customer.id", "ID!", "ref:customer", wave_input=("customerId",),
                 crm_label="`CustomerId` (via customer link)", wave_label="`customer.id` (`customerId`)"),
        FieldMap("Title", "title", "String!"),
        FieldMap("OrderDate", "invoiceDate", "Date!", "date"),
        FieldMap("DueDate", "dueDate", "Date!", "date"),
        FieldMap("Currency", "currency.code", "CurrencyCode", "code", wave_input=("currency",)),
        FieldMap("PoNumber", "poNumber", "String"),
        FieldMap("Memo", "memo", "String"),
        FieldMap("Lines", "items", "[InvoiceItem!]!", "lines",
                 crm_label="`Lines[]`: `ProductId` (via product link), `Description`, `Quantity`, `UnitPrice`",
                 wave_label="`items[]`: `product.id` (`productId`), `description`, `quantity`, `unitPrice`",
                 note="`items`, when patched, replace all lines"),
        FieldMap("Status", "status", "InvoiceStatus", "order_status",
                 crm_label="`Status`: `draft` / `confirmed`", wave_label="`status`: `DRAFT` / `SAVED` (`invoiceApprove`)"),
        FieldMap("Total", "total.value", "Money!", "decimal2", direction="wave_to_crm",
                 note="checked equal, never written"),
        FieldMap("AmountPaid", "amountPaid.value", "Money!", "decimal2", direction="wave_to_crm"),
        FieldMap("AmountDue", "amountDue.value", "Money!", "decimal2", direction="wave_to_crm"),
        FieldMap("PaymentStatus", "status", "InvoiceStatus", "payment_status", direction="wave_to_crm",
                 wave_label="`status` (lower-cased; `SAVED` -> `unpaid`)"),
    ),
    notes=("An order is pushed only after its customer and every line's product are linked; until then it waits, visibly, with the reason.",),
)

PRODUCT = Flow(
    key="product",
    title="Custom CRM Product <-> Wave Product",
    entity="product",
    wave_entity="product",
    applies_to="every CRM product",
    merge_keys=(MergeKey("Name", "name", "casefold"),),
    fields=(
        FieldMap("Name", "name", "String!"),
        FieldMap("Description", "description", "String"),
        FieldMap("UnitPrice", "unitPrice", "Decimal!", "decimal5"),
        FieldMap("IsArchived", "isArchived", "Boolean!", "bool", wave_label="`isArchived` (`productArchive`; Wave has no un-archive)"),
    ),
)

FLOWS: tuple[Flow, ...] = (CUSTOMER_ORGANIZATION, CUSTOMER_PERSON, ORDER, PRODUCT)

#: The entity stems, in dependency order (orders need customers and products).
ENTITIES: tuple[str, ...] = ("customer", "product", "order")

WAVE_ENTITY = {"customer": "customer", "product": "product", "order": "invoice"}
CRM_RESOURCE = {"customer": "customers", "product": "products", "order": "orders"}


def flows_for(entity: str) -> tuple[Flow, ...]:
    """The flows that sync entity stem `entity`."""
    return tuple(f for f in FLOWS if f.entity == entity)
