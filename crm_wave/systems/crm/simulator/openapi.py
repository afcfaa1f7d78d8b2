"""The OpenAPI 3.0 document of the Custom CRM contract, built from the resource specs.

Request schemas say what is well formed (types, enums, lengths, decimal and code
patterns); rules that need data (existing references, unique numbers, ISO code
tables, `DueDate >= OrderDate`) are documented in descriptions and enforced by the
server with `422`/`409`.
"""

from __future__ import annotations

from typing import Any

from .resources import LINE_FIELDS, MAX_LINES, RESOURCES, FieldSpec, ResourceSpec

__all__ = ["build_openapi"]

DECIMAL_PATTERN = r"^-?\d{1,15}(\.\d{1,6})?$"
NON_NEGATIVE_DECIMAL_PATTERN = r"^\d{1,15}(\.\d{1,6})?$"
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{11}$"

_REQUIRED_ON_CREATE = {
    "customers": ["Type"],
    "products": ["Name", "UnitPrice"],
    "orders": ["OrderNumber", "CustomerId"],
}

_ERRORS = {
    "400": ("bad_request", "Malformed JSON, an unknown or read-only field, or a bad query/header parameter"),
    "401": ("unauthorized", "Missing or wrong bearer token"),
    "404": ("not_found", "No such entity (absent or deleted)"),
    "409": ("conflict", "A uniqueness rule is broken (OrderNumber, CustomerNumber)"),
    "412": ("version_mismatch", "The If-Match version is not the current Version"),
    "422": ("validation_failed", "A field is invalid; `field` names it"),
    "429": ("rate_limited", "Too many requests; retry after `Retry-After` seconds"),
    "500": ("internal_error", "Transient server error; the request may or may not have been carried out"),
    "502": ("bad_gateway", "Transient: the response was lost; the request may have been carried out"),
    "503": ("unavailable", "Transient: nothing was done; retry later"),
}
_TRANSIENT = ["429", "500", "502", "503"]


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _field_schema(f: FieldSpec, *, response: bool) -> dict[str, Any]:
    kind = f.kind
    s: dict[str, Any]
    if kind == "string":
        # Responses carry no maxLength: a person's derived Name may exceed what may be sent.
        s = {"type": "string"} if response else {"type": "string", "maxLength": f.max_length}
    elif kind == "enum":
        s = {"type": "string", "enum": list(f.enum)}
    elif kind == "decimal":
        pattern = NON_NEGATIVE_DECIMAL_PATTERN if f.minimum is not None and f.minimum >= 0 else DECIMAL_PATTERN
        s = {"type": "string", "pattern": pattern}
    elif kind == "bool":
        s = {"type": "boolean"}
    elif kind == "date":
        s = {"type": "string", "format": "date"}
    elif kind == "email":
        s = {"type": "string", "maxLength": 254}
    elif kind == "country":
        s = {"type": "string", "pattern": r"^[A-Z]{2}$"} if response else {"type": "string", "maxLength": 8}
    elif kind == "subdivision":
        s = {"type": "string", "pattern": r"^[A-Z]{2}-[A-Z0-9]{1,3}$"} if response else {"type": "string", "maxLength": 12}
    elif kind == "currency":
        s = {"type": "string", "pattern": r"^[A-Z]{3}$"} if response else {"type": "string", "maxLength": 8}
    elif kind == "ref":
        s = {"type": "string", "maxLength": 64}
    elif kind == "lines":
        item = "OrderLine" if response else "OrderLineInput"
        s = {"type": "array", "items": _ref("schemas", item)}
        if not response:
            s["maxItems"] = MAX_LINES
    else:  # pragma: no cover
        raise AssertionError(kind)
    if f.description:
        s["description"] = f.description
    nullable = f.nullable if not response else not f.required and kind not in ("bool", "lines") and f.name != "Status"
    if f.read_only and f.name == "Total":
        nullable = False
    if nullable:
        s["nullable"] = True
        if "enum" in s:
            s["enum"] = [*s["enum"], None]
    return s


def _entity_schemas(spec: ResourceSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    props: dict[str, Any] = {"Id": {"type": "string", "description": "Server-assigned, never reused"}}
    props.update({f.name: _field_schema(f, response=True) for f in spec.fields})
    props["Version"] = {"type": "integer", "minimum": 1, "description": "+1 on every change"}
    props["UpdatedAt"] = {"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN,
                          "description": "RFC 3339 UTC with milliseconds"}
    out[spec.entity] = {"type": "object", "additionalProperties": False, "required": list(props), "properties": props}

    writable = {f.name: _field_schema(f, response=False) for f in spec.writable}
    out[f"{spec.entity}Create"] = {
        "type": "object",
        "additionalProperties": False,
        "required": _REQUIRED_ON_CREATE[spec.name],
        "properties": writable,
        "description": f"A new {spec.entity}: no Id/Version/UpdatedAt"
        + (" and no Total (read-only: sending it is a 400)" if spec.name == "orders" else ""),
    }
    out[f"{spec.entity}Patch"] = {
        "type": "object",
        "additionalProperties": False,
        "properties": writable,
        "description": "Partial update: absent fields are untouched, null clears a field",
    }
    out[f"{spec.entity}Page"] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["items", "next_cursor", "has_more"],
        "properties": {
            "items": {"type": "array", "items": {"anyOf": [_ref("schemas", spec.entity), _ref("schemas", "Tombstone")]}},
            "next_cursor": {"type": "string", "pattern": CURSOR_PATTERN},
            "has_more": {"type": "boolean"},
        },
    }
    return out


def _shared_schemas() -> dict[str, Any]:
    line_decimal = {"type": "string", "pattern": NON_NEGATIVE_DECIMAL_PATTERN}
    return {
        "Error": {
            "type": "object",
            "additionalProperties": False,
            "required": ["error", "message", "field"],
            "properties": {
                "error": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string", "nullable": True},
            },
        },
        "Tombstone": {
            "type": "object",
            "additionalProperties": False,
            "required": ["Id", "Deleted", "Version", "UpdatedAt"],
            "properties": {
                "Id": {"type": "string"},
                "Deleted": {"type": "boolean", "enum": [True]},
                "Version": {"type": "integer", "minimum": 1},
                "UpdatedAt": {"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN},
            },
        },
        "OrderLine": {
            "type": "object",
            "additionalProperties": False,
            "required": list(LINE_FIELDS),
            "properties": {
                "ProductId": {"type": "string"},
                "Description": {"type": "string", "nullable": True},
                "Quantity": line_decimal,
                "UnitPrice": line_decimal,
            },
        },
        "OrderLineInput": {
            "type": "object",
            "additionalProperties": False,
            "required": ["ProductId", "Quantity"],
            "properties": {
                "ProductId": {"type": "string", "maxLength": 64, "description": "An existing product Id"},
                "Description": {"type": "string", "maxLength": 4000, "nullable": True},
                "Quantity": {**line_decimal, "description": "> 0"},
                "UnitPrice": {**line_decimal, "nullable": True, "description": "Default: the product's UnitPrice"},
            },
        },
        "FaultSettings": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "rate_limit_per_minute": {"type": "integer", "minimum": 1, "nullable": True},
                "error_rate": {"type": "number", "minimum": 0, "maximum": 1},
                "lost_response_rate": {"type": "number", "minimum": 0, "maximum": 1},
                "latency_ms": {"type": "integer", "minimum": 0},
                "seed": {"type": "integer", "nullable": True},
            },
        },
    }


def _responses(*codes: str) -> dict[str, Any]:
    return {code: _ref("responses", _ERRORS[code][0]) for code in codes}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _paths(spec: ResourceSpec) -> dict[str, Any]:
    e = spec.entity
    one = {"description": f"The stored {e}", "content": _json(_ref("schemas", e))}
    collection = {
        "get": {
            "operationId": f"list{e}s",
            "summary": f"List {spec.name}, or their changes after a cursor",
            "description": "Oldest change first. Without `since`: current entities only (no tombstones). "
            "With `since`: every change after the cursor; deleted entities appear as tombstones.",
            "parameters": [_ref("parameters", "since"), _ref("parameters", "limit")],
            "responses": {"200": {"description": "A page", "content": _json(_ref("schemas", f"{e}Page"))},
                          **_responses("400", "401", *_TRANSIENT)},
        },
        "post": {
            "operationId": f"create{e}",
            "summary": f"Create a {e}",
            "parameters": [_ref("parameters", "IdempotencyKey")],
            "requestBody": {"required": True, "content": _json(_ref("schemas", f"{e}Create"))},
            "responses": {
                "201": {**one, "headers": {
                    "Location": {"schema": {"type": "string"}, "description": "URL of the new entity"},
                    "Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]},
                                            "description": "Present when this is the stored result of an earlier create"},
                }},
                **_responses("400", "401", "409", "422", *_TRANSIENT),
            },
        },
    }
    item = {
        "parameters": [_ref("parameters", "Id")],
        "get": {
            "operationId": f"get{e}",
            "summary": f"One {e}",
            "responses": {"200": one, **_responses("401", "404", *_TRANSIENT)},
        },
        "patch": {
            "operationId": f"patch{e}",
            "summary": f"Partly update a {e}",
            "parameters": [_ref("parameters", "IfMatch")],
            "requestBody": {"required": True, "content": _json(_ref("schemas", f"{e}Patch"))},
            "responses": {"200": one, **_responses("400", "401", "404", "409", "412", "422", *_TRANSIENT)},
        },
        "delete": {
            "operationId": f"delete{e}",
            "summary": f"Delete a {e} (a tombstone remains in the change feed)",
            "parameters": [_ref("parameters", "IfMatch")],
            "responses": {"204": {"description": "Deleted"}, **_responses("400", "401", "404", "412", *_TRANSIENT)},
        },
    }
    return {f"/api/v1/{spec.name}": collection, f"/api/v1/{spec.name}/{{Id}}": item}


def build_openapi() -> dict[str, Any]:
    """The OpenAPI 3.0.3 document served at `/openapi.json`."""
    schemas: dict[str, Any] = _shared_schemas()
    paths: dict[str, Any] = {}
    for spec in RESOURCES.values():
        schemas.update(_entity_schemas(spec))
        paths.update(_paths(spec))
    paths["/openapi.json"] = {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "OpenAPI document", "content": _json({"type": "object"})}},
        }
    }
    faults = _json(_ref("schemas", "FaultSettings"))
    paths["/_sim/faults"] = {
        "get": {
            "operationId": "getFaults",
            "summary": "Simulator only: the fault-injection settings",
            "security": [],
            "responses": {"200": {"description": "Current settings", "content": faults}},
        },
        "put": {
            "operationId": "putFaults",
            "summary": "Simulator only: replace the fault-injection settings",
            "security": [],
            "requestBody": {"required": True, "content": faults},
            "responses": {"200": {"description": "New settings", "content": faults},
                          "422": _ref("responses", "validation_failed")},
        },
    }
    responses: dict[str, Any] = {}
    for code, (name, description) in _ERRORS.items():
        resp: dict[str, Any] = {"description": description, "content": _json(_ref("schemas", "Error"))}
        if code == "429":
            resp["headers"] = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer", "minimum": 0}}}
        if code == "401":
            resp["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        responses[name] = resp
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Custom CRM",
            "version": "1.0.0",
            "description": "The Custom CRM REST contract (v1) as implemented by the crm-wave reference server. "
            "Every entity carries Id, Version (+1 per change) and UpdatedAt (RFC 3339 UTC, milliseconds). "
            "Errors are JSON {error, message, field}.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "parameters": {
                "since": {"name": "since", "in": "query", "required": False,
                          "description": "Opaque cursor from an earlier page's next_cursor",
                          "schema": {"type": "string", "pattern": CURSOR_PATTERN}},
                "limit": {"name": "limit", "in": "query", "required": False,
                          "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                "Id": {"name": "Id", "in": "path", "required": True, "schema": {"type": "string"}},
                "IfMatch": {"name": "If-Match", "in": "header", "required": False,
                            "description": "Expected current Version; 412 when stale",
                            "schema": {"type": "string", "pattern": r"^[0-9]{1,18}$"}},
                "IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": False,
                                   "description": "A retried create with the same key returns the first result",
                                   "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                                              "pattern": r"^[!-~]+$"}},
            },
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
    }
