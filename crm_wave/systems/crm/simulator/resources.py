"""The three resources of the Custom CRM contract: their fields and validation rules.

Pure Python (no SQLite, no HTTP): `check_body` rejects what is malformed (400),
`coerce_fields` validates and normalises each field of a request body (422), and
`finalize` applies the rules that span fields or need the stored entity (required
fields, a person's derived `Name`, `State` within `Country`, `DueDate >= OrderDate`,
the order `Total`). Reference and uniqueness checks need the database and live in
the app, inside the write transaction.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from crm_wave.model.money import currency_exponent, lines_total
from crm_wave.model.values import (
    format_decimal,
    normalize_country,
    normalize_currency,
    normalize_email,
    normalize_subdivision,
    parse_decimal,
    show_value,
)

__all__ = [
    "CUSTOMER_TYPES",
    "ORDER_STATUSES",
    "PAYMENT_STATUSES",
    "RESOURCES",
    "FieldSpec",
    "ResourceSpec",
    "SimError",
    "check_body",
    "coerce_fields",
    "finalize",
    "order_total",
]

CUSTOMER_TYPES = ("organization", "person")
ORDER_STATUSES = ("draft", "confirmed", "cancelled")
PAYMENT_STATUSES = ("unpaid", "partial", "paid", "overpaid", "overdue", "sent", "viewed", "draft")
#: Fields every entity carries and no client may set.
SYSTEM_FIELDS = ("Id", "Version", "UpdatedAt")
LINE_FIELDS = ("ProductId", "Description", "Quantity", "UnitPrice")
MAX_LINES = 500
#: Decimal bounds: at most 15 integer digits and 6 decimal places.
MAX_DECIMAL = Decimal("1e15")
MAX_DECIMAL_PLACES = 6

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class SimError(Exception):
    """An error response: HTTP status, contract error code, message naming the field, field."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "field": self.field}


def bad_request(message: str, field: str | None = None) -> SimError:
    return SimError(400, "bad_request", message, field)


def invalid(field: str, message: str) -> SimError:
    """422 validation_failed; the message is prefixed with the field name."""
    return SimError(422, "validation_failed", f"{field}: {message}", field)


@dataclass(frozen=True)
class FieldSpec:
    """One field of a resource as the API exposes it."""

    name: str
    kind: str  # string, enum, decimal, bool, date, email, country, subdivision, currency, ref, lines
    description: str = ""
    required: bool = False  # must be present (non-null) once the entity is stored
    nullable: bool = True  # may be sent as null (null clears the field)
    read_only: bool = False
    enum: tuple[str, ...] = ()
    max_length: int = 255
    ref: str | None = None  # resource a `ref` points into
    unique: bool = False
    minimum: Decimal | None = None
    exclusive_minimum: bool = False
    min_scale: int = 0  # decimals are stored with at least this many places


@dataclass(frozen=True)
class ResourceSpec:
    """A resource: its path segment, entity name, id prefix and fields (in output order)."""

    name: str
    entity: str
    id_prefix: str
    fields: tuple[FieldSpec, ...]

    @property
    def by_name(self) -> dict[str, FieldSpec]:
        return {f.name: f for f in self.fields}

    @property
    def writable(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if not f.read_only)

    @property
    def unique_field(self) -> str | None:
        return next((f.name for f in self.fields if f.unique), None)


def _s(name: str, description: str = "", max_length: int = 255, **kw: Any) -> FieldSpec:
    return FieldSpec(name, "string", description, max_length=max_length, **kw)


CUSTOMER = ResourceSpec(
    name="customers",
    entity="Customer",
    id_prefix="C",
    fields=(
        FieldSpec("Type", "enum", "organization or person", required=True, nullable=False, enum=CUSTOMER_TYPES),
        _s("Name", "Required for organizations; for persons defaults to 'FirstName LastName'"),
        _s("FirstName", "Person's (or an organization's contact person's) first name"),
        _s("LastName", "Person's (or an organization's contact person's) last name"),
        _s("CustomerNumber", "Unique when present", unique=True),
        FieldSpec("Email", "email", "A valid email address"),
        _s("Phone"),
        _s("Mobile"),
        _s("Fax"),
        _s("Website"),
        _s("Description", max_length=4000),
        _s("StreetAddress1"),
        _s("StreetAddress2"),
        _s("City"),
        _s("ZipCode"),
        FieldSpec("State", "subdivision", "ISO 3166-2 subdivision code, e.g. US-CA"),
        FieldSpec("Country", "country", "ISO 3166-1 alpha-2 country code, e.g. NO"),
        FieldSpec("Currency", "currency", "ISO 4217 currency code, e.g. NOK"),
    ),
)

PRODUCT = ResourceSpec(
    name="products",
    entity="Product",
    id_prefix="P",
    fields=(
        _s("Name", required=True, nullable=False),
        _s("Description", max_length=4000),
        FieldSpec("UnitPrice", "decimal", "Decimal string, >= 0", required=True, nullable=False,
                  minimum=Decimal(0), min_scale=2),
        _s("Sku", "Stock keeping unit (CRM only)"),
        FieldSpec("IsArchived", "bool", "Default false", nullable=False),
    ),
)

ORDER = ResourceSpec(
    name="orders",
    entity="Order",
    id_prefix="O",
    fields=(
        _s("OrderNumber", "Unique", required=True, nullable=False, unique=True),
        FieldSpec("CustomerId", "ref", "Id of an existing customer", required=True, nullable=False, ref="customers"),
        _s("Title"),
        FieldSpec("OrderDate", "date", "YYYY-MM-DD"),
        FieldSpec("DueDate", "date", "YYYY-MM-DD, not before OrderDate"),
        FieldSpec("Currency", "currency", "ISO 4217 currency code"),
        _s("PoNumber"),
        _s("Memo", max_length=4000),
        FieldSpec("Status", "enum", "Default draft", nullable=False, enum=ORDER_STATUSES),
        FieldSpec("Lines", "lines", "Order lines; replaced as a whole when patched", nullable=False),
        FieldSpec("Total", "decimal", "Read-only: sum of Quantity * UnitPrice, 2 decimals", read_only=True),
        FieldSpec("AmountPaid", "decimal", "Written by the sync from the accounting system", min_scale=2),
        FieldSpec("AmountDue", "decimal", "Written by the sync from the accounting system", min_scale=2),
        FieldSpec("PaymentStatus", "enum", "Written by the sync from the accounting system", enum=PAYMENT_STATUSES),
    ),
)

RESOURCES: dict[str, ResourceSpec] = {r.name: r for r in (CUSTOMER, PRODUCT, ORDER)}

_DEFAULTS: dict[str, dict[str, Any]] = {
    "customers": {},
    "products": {"IsArchived": False},
    "orders": {"Status": "draft", "Lines": []},
}


# --------------------------------------------------------------------------- body shape (400)


def check_body(spec: ResourceSpec, body: object) -> dict[str, Any]:
    """400 unless `body` is a JSON object of known, writable fields."""
    if not isinstance(body, dict):
        raise bad_request(f"request body must be a JSON object, got {_json_type(body)}")
    for key in body:
        if key in SYSTEM_FIELDS or (key in spec.by_name and spec.by_name[key].read_only):
            raise bad_request(f"{key}: field is read-only and cannot be set", key)
        if key not in spec.by_name:
            raise bad_request(f"{show_value(key)}: unknown field of {spec.entity}", str(key)[:100])
    return body


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _wrong_type(field: str, expected: str, value: object) -> SimError:
    return invalid(field, f"expected {expected}, got {_json_type(value)} {show_value(value)}")


# --------------------------------------------------------------------------- field values (422)


def _decimal(field: str, value: object, *, minimum: Decimal | None, exclusive: bool, min_scale: int) -> str:
    if not isinstance(value, str):
        raise _wrong_type(field, "a decimal string such as \"149.90\"", value)
    try:
        d = parse_decimal(value)
    except ValueError as exc:
        raise invalid(field, str(exc)) from None
    if abs(d) >= MAX_DECIMAL:
        raise invalid(field, f"{show_value(value)} is too large (max 15 integer digits)")
    exponent = d.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_DECIMAL_PLACES:
        raise invalid(field, f"{show_value(value)} has more than {MAX_DECIMAL_PLACES} decimal places")
    if minimum is not None and (d <= minimum if exclusive else d < minimum):
        raise invalid(field, f"{show_value(value)} must be {'>' if exclusive else '>='} {minimum}")
    scale = max(min_scale, -exponent if isinstance(exponent, int) and exponent < 0 else 0)
    return format_decimal(d, scale)


def _code(field: str, value: object, fn: Callable[[str], str]) -> str | None:
    if not isinstance(value, str):
        raise _wrong_type(field, "a string", value)
    if not value.strip():
        return None  # blank codes clear the field
    try:
        return fn(value)
    except ValueError as exc:
        raise invalid(field, str(exc)) from None


def coerce_value(spec: FieldSpec, value: object, field: str | None = None) -> Any:
    """Validate and normalise one field value; `field` overrides the name used in errors."""
    name = field or spec.name
    if value is None:
        if not spec.nullable:
            raise invalid(name, "must not be null")
        return None
    kind = spec.kind
    if kind == "string":
        if not isinstance(value, str):
            raise _wrong_type(name, "a string", value)
        if len(value) > spec.max_length:
            raise invalid(name, f"{show_value(value)} is longer than {spec.max_length} characters")
        if spec.unique:
            return value.strip() or None
        return value
    if kind == "enum":
        if not isinstance(value, str) or value not in spec.enum:
            allowed = ", ".join(repr(e) for e in spec.enum)
            raise invalid(name, f"{show_value(value)} is not one of {allowed}")
        return value
    if kind == "decimal":
        return _decimal(name, value, minimum=spec.minimum, exclusive=spec.exclusive_minimum, min_scale=spec.min_scale)
    if kind == "bool":
        if not isinstance(value, bool):
            raise _wrong_type(name, "a boolean", value)
        return value
    if kind == "date":
        if not isinstance(value, str):
            raise _wrong_type(name, "a date string YYYY-MM-DD", value)
        try:
            if not _DATE_RE.match(value):
                raise ValueError
            _dt.date.fromisoformat(value)
        except ValueError:
            raise invalid(name, f"{show_value(value)} is not a date YYYY-MM-DD") from None
        return value
    if kind == "email":
        if not isinstance(value, str):
            raise _wrong_type(name, "a string", value)
        if not value.strip():
            return None
        try:
            normalize_email(value)
        except ValueError as exc:
            raise invalid(name, str(exc)) from None
        return value.strip()
    if kind == "country":
        return _code(name, value, normalize_country)
    if kind == "subdivision":
        return _code(name, value, normalize_subdivision)
    if kind == "currency":
        return _code(name, value, normalize_currency)
    if kind == "ref":
        if not isinstance(value, str):
            raise _wrong_type(name, "an Id string", value)
        if not value.strip():
            raise invalid(name, "must not be empty")
        if len(value) > 64:
            raise invalid(name, f"{show_value(value)} is not an existing {spec.ref} Id")
        return value.strip()
    if kind == "lines":
        return _lines(name, value)
    raise AssertionError(kind)  # pragma: no cover


_LINE_PRODUCT = FieldSpec("ProductId", "ref", nullable=False, ref="products")
_LINE_DESCRIPTION = FieldSpec("Description", "string", max_length=4000)


def _lines(name: str, value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _wrong_type(name, "an array of order lines", value)
    if len(value) > MAX_LINES:
        raise invalid(name, f"at most {MAX_LINES} lines, got {len(value)}")
    lines = []
    for i, raw in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(raw, dict):
            raise _wrong_type(where, "an object", raw)
        for key in raw:
            if key not in LINE_FIELDS:
                raise bad_request(f"{where}.{show_value(key)}: unknown field of an order line", f"{where}.{str(key)[:100]}")
        if raw.get("ProductId") is None:
            raise invalid(f"{where}.ProductId", "is required")
        if raw.get("Quantity") is None:
            raise invalid(f"{where}.Quantity", "is required")
        line = {
            "ProductId": coerce_value(_LINE_PRODUCT, raw["ProductId"], f"{where}.ProductId"),
            "Description": coerce_value(_LINE_DESCRIPTION, raw.get("Description"), f"{where}.Description"),
            "Quantity": _decimal(f"{where}.Quantity", raw["Quantity"], minimum=Decimal(0), exclusive=True, min_scale=0),
            "UnitPrice": None if raw.get("UnitPrice") is None else _decimal(
                f"{where}.UnitPrice", raw["UnitPrice"], minimum=Decimal(0), exclusive=False, min_scale=2),
        }
        lines.append(line)
    return lines


def coerce_fields(spec: ResourceSpec, body: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and normalise every field present in `body` (already passed `check_body`)."""
    fields = spec.by_name
    return {key: coerce_value(fields[key], value) for key, value in body.items()}


# --------------------------------------------------------------------------- whole entity


def _person_name(entity: Mapping[str, Any]) -> str:
    return " ".join(p for p in (_str(entity.get("FirstName")), _str(entity.get("LastName"))) if p.strip()).strip()


def _str(value: Any) -> str:
    """`value` if it is text, else "": a stored record may hold legacy values of another type."""
    return value if isinstance(value, str) else ""


def order_total(lines: list[dict[str, Any]], currency: str | None = None) -> str:
    """Σ of each line's Quantity * UnitPrice rounded to the currency's minor unit (crm_wave.model.money's rule).
    Lines that cannot be summed (legacy data stored before validation) are refused, naming the field."""
    try:
        total = lines_total(((line["Quantity"], line["UnitPrice"]) for line in lines), currency_exponent(currency))
    except (TypeError, KeyError, ValueError, ArithmeticError) as exc:
        raise invalid("Lines", f"cannot be summed ({type(exc).__name__}: {show_value(str(exc))})") from None
    if total >= MAX_DECIMAL:
        raise invalid("Lines", f"the order Total {total} is too large (max 15 integer digits)")
    return format(total, "f")


def finalize(spec: ResourceSpec, changes: Mapping[str, Any], old: Mapping[str, Any] | None,
             product_price: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """The entity (fields only, in output order) after applying validated `changes` to `old`.

    `old` is None for a create. `product_price(id)` returns the current UnitPrice of an
    existing product or None; it fills a line's missing UnitPrice and checks ProductIds.
    """
    entity: dict[str, Any] = {f.name: None for f in spec.fields}
    entity.update(_DEFAULTS[spec.name])
    if old is not None:
        entity.update({k: old.get(k) for k in entity})
    entity.update(changes)

    if spec.name == "customers":
        _finalize_customer(entity, changes, old)
    elif spec.name == "orders":
        if "Lines" in changes:
            for i, line in enumerate(entity["Lines"]):
                price = product_price(line["ProductId"]) if product_price else None
                if price is None:
                    raise invalid(f"Lines[{i}].ProductId", f"{show_value(line['ProductId'])} is not an existing product Id")
                if line["UnitPrice"] is None:
                    line["UnitPrice"] = price
        if entity["OrderDate"] and entity["DueDate"] and entity["DueDate"] < entity["OrderDate"]:
            raise invalid("DueDate", f"{show_value(entity['DueDate'])} is before OrderDate {show_value(entity['OrderDate'])}")
        if old is None or "Lines" in changes or "Currency" in changes:
            entity["Total"] = order_total(entity["Lines"], entity.get("Currency"))
        else:  # the lines stand: their Total too (lines stored before validation may not sum: the patch still applies)
            with contextlib.suppress(SimError):
                entity["Total"] = order_total(entity["Lines"], entity.get("Currency"))

    for f in spec.fields:
        value = entity[f.name]
        if f.required and (value is None or (isinstance(value, str) and not value.strip())):
            raise invalid(f.name, "is required")
    return entity


def _finalize_customer(entity: dict[str, Any], changes: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    if entity["Type"] == "person":
        if not _str(changes.get("Name")).strip():
            was_derived = (
                old is None
                or "Name" in changes
                or not _str(old.get("Name")).strip()
                or old.get("Name") == _person_name(old)
            )
            if was_derived:
                entity["Name"] = _person_name(entity) or None
        if not _str(entity["Name"]).strip():
            raise invalid("Name", "is required (or FirstName/LastName) for a person")
    elif entity["Type"] == "organization":
        if not _str(entity["Name"]).strip():
            raise invalid("Name", "is required for an organization")
    state, country = _str(entity["State"]), _str(entity["Country"])
    if state and country and not state.startswith(country + "-"):
        raise invalid("State", f"{show_value(entity['State'])} is not a subdivision of Country {show_value(entity['Country'])}")
