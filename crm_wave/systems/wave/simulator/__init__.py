"""A local stand-in for Wave's public GraphQL API (`POST /graphql/public`).

Schema-first: `schema.graphql` is Wave's schema as returned by introspection, served
verbatim through ariadne; resolvers live in `query`, `types`, `mutations` and
`invoices`, persistence in `store` (SQLite). `create_app` wraps the GraphQL app in the
shared `FaultInjector` (`GET/PUT /_sim/faults`); `create_app(strict=True)` (`crm-wave sim
wave --strict`) plays what Wave may do but does not document (see `mode` and
docs/wave-behaviour.md).

Errors (as Wave's developer docs' Errors page shows them; every error's `extensions`
carries `code` and a support `id`):
- the document is parsed and validated before the token is looked at: a syntax error
  answers HTTP 400 `GRAPHQL_PARSE_FAILED`, a schema violation (unknown field, bad enum
  or literal) HTTP 400 `GRAPHQL_VALIDATION_FAILED`, with or without a token;
- introspection (only `__schema` / `__type` / `__typename` at the top) needs no token;
- otherwise a missing or wrong `Authorization: Bearer <token>` answers HTTP 200 with
  `{"data": null, "errors": [{"extensions": {"code": "UNAUTHENTICATED"}}]}`;
- a variable of the wrong type (or a missing required one) is `BAD_USER_INPUT`;
- an unknown, stale or malformed id, in a lookup or as the record a mutation acts on,
  is a top-level `NOT_FOUND` whose `path` is the field (an alias in a batch), with the
  data at that path null; other errors raised while resolving keep their own code or
  get `INTERNAL_SERVER_ERROR`.
"""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any

from ariadne import load_schema_from_path, make_executable_schema
from ariadne.asgi import GraphQL
from ariadne.asgi.handlers import GraphQLHTTPHandler
from graphql import (
    DocumentNode,
    ExecutionContext,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    ObjectTypeDefinitionNode,
    parse,
    validate,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ...faults import FaultInjector, FaultSettings, WaveFaultSettings
from . import invoices as _invoices  # noqa: F401  (binds the invoice mutations)
from .catalog import create_business, ensure_default_business
from .loader import Loader
from .mode import SimMode
from .mutations import BINDABLES as MUTATION_BINDABLES
from .mutations import bind_unsupported
from .query import BINDABLES as QUERY_BINDABLES
from .scalars import BINDABLES as SCALAR_BINDABLES
from .store import DEFAULT_BUSINESS_UUID, Store
from .types import BINDABLES as TYPE_BINDABLES

__all__ = ["create_app", "build_schema", "SCHEMA_PATH", "GRAPHQL_PATH", "DEFAULT_BUSINESS_UUID", "Store",
           "create_business"]

SCHEMA_PATH = Path(__file__).with_name("schema.graphql")
GRAPHQL_PATH = "/graphql/public"


@lru_cache(maxsize=1)
def build_schema() -> GraphQLSchema:
    """The executable schema (built once per process; resolvers keep no state)."""
    sdl = load_schema_from_path(SCHEMA_PATH)
    doc = parse(sdl, no_location=True)
    mutation_fields = [f.name.value for d in doc.definitions
                       if isinstance(d, ObjectTypeDefinitionNode) and d.name.value == "Mutation" for f in d.fields]
    bind_unsupported(mutation_fields)
    schema = make_executable_schema(sdl, *SCALAR_BINDABLES, *QUERY_BINDABLES, *TYPE_BINDABLES, *MUTATION_BINDABLES)
    _repair_enum_parse_value(schema)
    return schema


def _repair_enum_parse_value(schema: GraphQLSchema) -> None:
    """Work around ariadne 1.1.1 + graphql-core >= 3.2.7: ariadne replaces every enum's
    `parse_value` with a one-argument function, while graphql-core calls it with
    `(value, hide_suggestions)`, so any enum value given in variables failed. Restore
    graphql-core's signature, keeping ariadne's pass-through of already-parsed values.
    """
    for type_def in schema.type_map.values():
        if not isinstance(type_def, GraphQLEnumType):
            continue

        def parse_value(input_value: Any, hide_suggestions: bool = False, _t: GraphQLEnumType = type_def) -> Any:
            if input_value in _t._value_lookup and (isinstance(input_value, Enum) or not isinstance(input_value, str)):
                return input_value
            return GraphQLEnumType.parse_value(_t, input_value, hide_suggestions)

        type_def.parse_value = parse_value  # type: ignore[method-assign]


def format_error(error: GraphQLError, debug: bool = False) -> dict[str, Any]:
    """Apollo-style error codes in `extensions.code`, and a support `id` on every error."""
    formatted: dict[str, Any] = dict(error.formatted)
    extensions = dict(formatted.get("extensions") or {})
    if "code" not in extensions:
        if isinstance(error, GraphQLSyntaxError):
            extensions["code"] = "GRAPHQL_PARSE_FAILED"
        elif not error.path:
            # Validation errors were coded by `_validate_query`; what is left without a path
            # comes from coercing the variables ("Variable '$x' got invalid value ...").
            extensions["code"] = "BAD_USER_INPUT" if error.message.startswith("Variable '$") \
                else "GRAPHQL_VALIDATION_FAILED"
        else:
            extensions["code"] = "INTERNAL_SERVER_ERROR"
    extensions.setdefault("id", str(uuid.uuid4()))
    formatted["extensions"] = extensions
    return formatted


class SyncExecutionContext(ExecutionContext):
    """Every resolver of the simulator is synchronous (SQLite under a lock), so nothing is
    awaitable: skipping graphql-core's per-field awaitable check makes listings ~10 % faster.
    Keep resolvers synchronous (or drop this class) when adding any."""

    is_awaitable = staticmethod(lambda value: False)


@lru_cache(maxsize=256)
def _parse_cached(query: str) -> DocumentNode:
    return parse(query)


def _parse_query(context: Any, data: dict[str, Any]) -> DocumentNode:
    """Parse once per distinct query text (clients repeat the same queries with new variables)."""
    return _parse_cached(data["query"])


_validated: dict[int, tuple[DocumentNode, list[GraphQLError]]] = {}


def _validate_query(schema: GraphQLSchema, document: DocumentNode, *args: Any, **kwargs: Any) -> list[GraphQLError]:
    """graphql-core validation, remembered per parsed document (validation needs no variables)."""
    hit = _validated.get(id(document))
    if hit is not None and hit[0] is document:
        return hit[1]
    errors = validate(schema, document, *args, **kwargs)
    for error in errors:
        error.extensions = {**(error.extensions or {}), "code": "GRAPHQL_VALIDATION_FAILED"}
    if len(_validated) > 512:
        _validated.clear()
    _validated[id(document)] = (document, errors)
    return errors


class _ClientErrorFilter(logging.Filter):
    """Log only errors raised while resolving, not the client's own schema violations nor the
    answers Wave gives on purpose (NOT_FOUND, BAD_USER_INPUT)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, GraphQLError):
            return True
        code = (record.msg.extensions or {}).get("code")
        return bool(record.msg.path) and code not in ("NOT_FOUND", "BAD_USER_INPUT")


_logger = logging.getLogger("crm_wave.wave_simulator")
_logger.addFilter(_ClientErrorFilter())


_INTROSPECTION_FIELDS = frozenset({"__schema", "__type", "__typename"})


def _introspection_only(document: DocumentNode, operation_name: str | None) -> bool:
    """Whether the operation run asks for nothing but `__schema`, `__type` and `__typename`."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [d for d in operations if d.name and d.name.value == operation_name]
    if len(operations) != 1:
        return False
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}

    def only(selection_set: SelectionSetNode, seen: frozenset[str]) -> bool:
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                if sel.name.value not in _INTROSPECTION_FIELDS:
                    return False
            elif isinstance(sel, InlineFragmentNode):
                if not only(sel.selection_set, seen):
                    return False
            elif isinstance(sel, FragmentSpreadNode):
                name = sel.name.value
                if name in seen or name not in fragments or not only(fragments[name].selection_set, seen | {name}):
                    return False
        return True

    return only(operations[0].selection_set, frozenset())


def _top_level_keys(body: bytes) -> list[str]:
    """The response keys (aliases or names) of the top-level fields of a request's operation."""
    try:
        data = json.loads(body or b"null")
        document = _parse_cached(data["query"])
    except (ValueError, TypeError, KeyError, GraphQLError):
        return []
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    name = data.get("operationName")
    if name:
        operations = [d for d in operations if d.name and d.name.value == name]
    if len(operations) != 1:
        return []
    return [(sel.alias or sel.name).value for sel in operations[0].selection_set.selections if isinstance(sel, FieldNode)]


def rate_limited_body(body: bytes, retry_after: float) -> dict[str, Any]:
    """A rate-limit refusal as field-level `@rateLimit` answers it: HTTP 200, each top-level
    field null with an error coded RATE_LIMITED at its path (`retryAfter` in seconds)."""
    keys = _top_level_keys(body)

    def error(path: list[str] | None) -> dict[str, Any]:
        out: dict[str, Any] = {"message": f"Rate limit exceeded; retry in {retry_after:g} s.",
                               "extensions": {"code": "RATE_LIMITED", "id": str(uuid.uuid4()),
                                              "retryAfter": retry_after}}
        if path:
            out["path"] = path
        return out

    if not keys:
        return {"data": None, "errors": [error(None)]}
    return {"data": dict.fromkeys(keys), "errors": [error([k]) for k in keys]}


class _AuthenticatedHandler(GraphQLHTTPHandler):
    def __init__(self, token: str) -> None:
        super().__init__()
        self._token = token.encode()

    async def handle_request_override(self, request: Request) -> Response | None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), self._token):
            return None
        if await self._answerable_without_token(request):
            return None
        return JSONResponse({"data": None, "errors": [{
            "message": "You must be logged in with a valid access token.",
            "extensions": {"code": "UNAUTHENTICATED", "id": str(uuid.uuid4())},
        }]})

    async def _answerable_without_token(self, request: Request) -> bool:
        """A request ariadne answers without running anything the token guards: not a POST
        (no query runs), a malformed body, a document that fails to parse or validate (Wave
        validates before it checks the token), or introspection alone."""
        if request.method != "POST":
            return True
        try:
            data = await request.json()
        except ValueError:
            return True
        if not isinstance(data, dict) or not isinstance(data.get("query"), str):
            return True
        try:
            document = _parse_cached(data["query"])
        except GraphQLError:
            return True
        if _validate_query(build_schema(), document):
            return True
        name = data.get("operationName")
        return _introspection_only(document, name if isinstance(name, str) else None)


def create_app(*, db_path: Path, token: str, strict: bool = False,
               faults: FaultSettings | None = None) -> FaultInjector:
    """The simulator as an ASGI app; its SQLite database is `db_path` (created when missing).

    `strict=True` plays Wave's undocumented harsh side: locked invoices, payments that do not
    move `modifiedAt`, one-second `modifiedAt`, rate limits on from the start
    (`WaveFaultSettings.strict()`: 60 a minute per token in both forms, 2 in flight) and the
    `not_found_rate` fault. `faults` replaces the start-up fault settings (and what a PUT to
    `/_sim/faults` falls back to for fields it leaves out). The returned app has a `store`
    attribute (the `Store`) and a `mode` attribute (the `SimMode`) for tests and tools.
    """
    store = Store(db_path, second_precision=strict)
    ensure_default_business(store)
    mode = SimMode(strict=strict)

    def context(request: Any, data: Any) -> dict[str, Any]:
        return {"request": request, "loader": Loader(store), "mode": mode}

    graphql_app = GraphQL(build_schema(), context_value=context, error_formatter=format_error, logger=_logger,
                          query_parser=_parse_query, query_validator=_validate_query,  # type: ignore[arg-type]
                          execution_context_class=SyncExecutionContext,
                          http_handler=_AuthenticatedHandler(token))
    app = Starlette(routes=[Route(GRAPHQL_PATH, graphql_app.handle_request, methods=["GET", "POST", "OPTIONS"])])
    defaults = faults or (WaveFaultSettings.strict() if strict else WaveFaultSettings())
    if not isinstance(defaults, WaveFaultSettings):
        defaults = WaveFaultSettings(**{f: getattr(defaults, f) for f in ("rate_limit_per_minute", "error_rate",
                                                                         "lost_response_rate", "latency_ms", "seed")})
    injector = FaultInjector(app, defaults=defaults, rate_limited_body=rate_limited_body)
    mode.spurious_not_found = lambda: injector.roll(getattr(injector.settings, "not_found_rate", 0.0))
    injector.store = store  # type: ignore[attr-defined]
    injector.mode = mode  # type: ignore[attr-defined]
    return injector
