"""Map raw CRM and Wave records to canonical records, and canonical records back out.

A canonical record is a flat dict keyed by the CRM field names of `flows.py`, every
value normalised. References (`CustomerId`, line `ProductId`) stay in the source
system's ids here; the global step translates them through the link tables.
"""

from __future__ import annotations

from typing import Any

from crm_wave.mapping.flows import FieldMap, flows_for
from crm_wave.mapping.normalize import canonical

__all__ = [
    "canonical_fields",
    "crm_to_canonical",
    "wave_to_canonical",
    "customer_type_from_wave",
    "person_name",
    "canonical_to_crm",
    "canonical_to_wave_input",
]

_LINE_KINDS = {"ProductId": "text", "Description": "text", "Quantity": "decimal8", "UnitPrice": "decimal8"}


def canonical_fields(entity: str) -> dict[str, FieldMap]:
    """Every canonical field of entity stem `entity`, first flow's row winning."""
    out: dict[str, FieldMap] = {}
    for flow in flows_for(entity):
        for f in flow.fields:
            out.setdefault(f.name, f)
    return out


def _path(node: dict[str, Any] | None, dotted: str) -> Any:
    cur: Any = node
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def person_name(first: str | None, last: str | None) -> str | None:
    """`FirstName` + " " + `LastName`, the derived name of a person customer."""
    return " ".join(p for p in (first, last) if p) or None


def customer_type_from_wave(node: dict[str, Any]) -> str:
    """The CRM `Type` for a Wave customer new to the CRM (mappings.md, flow 2).

    "person" when it has a first or last name and its name is empty or equal to
    "firstName lastName"; otherwise "organization".
    """
    first = canonical("text", node.get("firstName"))
    last = canonical("text", node.get("lastName"))
    name = canonical("text", node.get("name"))
    if (first or last) and (name is None or name == person_name(first, last)):
        return "person"
    return "organization"


def _norm_lines(lines: Any) -> list[dict[str, Any]]:
    out = []
    for line in lines or []:
        out.append({k: canonical(kind, line.get(k)) for k, kind in _LINE_KINDS.items()})
    return out


def _special(kind: str, value: Any, system: str) -> Any:
    if kind.startswith("ref:"):
        return canonical("text", value)
    if kind == "order_status":
        s = canonical("text", value)
        if system == "wave":
            return None if s is None else ("draft" if s.upper() == "DRAFT" else "confirmed")
        return s.lower() if s else "draft"
    if kind == "payment_status":
        s = canonical("text", value)
        if s is None:
            return None
        s = s.lower()
        return "unpaid" if s == "saved" else s
    return canonical(kind, value)


def crm_to_canonical(entity: str, body: dict[str, Any]) -> dict[str, Any]:
    """Canonical record of a CRM entity body."""
    out: dict[str, Any] = {}
    for name, f in canonical_fields(entity).items():
        if f.kind == "lines":
            out[name] = _norm_lines(body.get("Lines"))
        else:
            out[name] = _special(f.kind, body.get(name), "crm")
    if entity == "customer":
        out["Type"] = canonical("text", body.get("Type")) or "organization"
    return out


def wave_to_canonical(entity: str, node: dict[str, Any]) -> dict[str, Any]:
    """Canonical record of a Wave node (customer, product or invoice)."""
    out: dict[str, Any] = {}
    for name, f in canonical_fields(entity).items():
        if f.kind == "lines":
            out[name] = _norm_lines(
                {"ProductId": _path(i, "product.id"), "Description": i.get("description"),
                 "Quantity": i.get("quantity"), "UnitPrice": i.get("unitPrice")}
                for i in (node.get("items") or [])
            )
        else:
            out[name] = _special(f.kind, _path(node, f.wave), "wave")
    if entity == "customer":
        out["Type"] = customer_type_from_wave(node)
    return out


def canonical_to_crm(entity: str, values: dict[str, Any]) -> dict[str, Any]:
    """CRM body for the canonical `values` given (references already in CRM ids)."""
    body: dict[str, Any] = {}
    for name, v in values.items():
        if name == "Lines":
            body["Lines"] = [dict(line) for line in v]
        else:
            body[name] = v
    return body


def _set(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        target = target.setdefault(p, {})
    target[parts[-1]] = value


def canonical_to_wave_input(entity: str, values: dict[str, Any]) -> dict[str, Any]:
    """Wave mutation input fields for canonical `values` (references already in Wave ids).

    Only fields of direction "both" are written; `Status` is not an input field (it is
    moved by `invoiceApprove`), and one-way fields are read-only to the sync in Wave.
    """
    fields = canonical_fields(entity)
    out: dict[str, Any] = {}
    for name, v in values.items():
        f = fields.get(name)
        if f is None or f.direction != "both" or f.kind == "order_status":
            continue
        if f.kind == "lines":
            out["items"] = [
                {"productId": line["ProductId"], "description": line["Description"],
                 "quantity": line["Quantity"], "unitPrice": line["UnitPrice"]}
                for line in v
            ]
        elif name == "IsArchived":
            continue  # productArchive, never an input field
        else:
            for path in f.inputs:
                _set(out, path, v)
    return out
