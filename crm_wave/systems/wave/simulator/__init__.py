"""A local stand-in for Wave's public GraphQL API (`POST /graphql/public`).

Schema-first: `schema.graphql` is Wave's schema as returned by introspection, served
verbatim through ariadne; resolvers live in `query`, `types`, `mutations` and
`invoices`, persistence in `store` (SQLite). `create_app` wraps the GraphQL app in the
shared `FaultInjector` (`GET/PUT /_sim/faults`).

Errors:
- a missing or wrong `Authorization: Bearer <token>` answers HTTP 200 with
  `{"data": null, "errors": [{"extensions": {"code": "UNAUTHENTICATED"}}]}`
  (introspection needs the token too);
- schema violations (unknown field, bad enum or scalar value, missing argument, also in
  variables) answer HTTP 400 with `extensions.code = "GRAPHQL_VALIDATION_FAILED"`,
  syntax errors `GRAPHQL_PARSE_FAILED`; an error raised while resolving keeps its own
  code (`BAD_USER_INPUT` for a bad page number) or gets `INTERNAL_SERVER_ERROR`.
"""

from __future__ import annotations

import hmac
import logging
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

from ...faults import FaultInjector
from . import invoices as _invoices  # noqa: F401  (binds the invoice mutations)
from .catalog import create_business, ensure_default_business
from .loader import Loader
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
    """Apollo-style error codes in `extensions.code`."""
    formatted = dict(error.formatted)
    extensions = dict(formatted.get("extensions") or {})
    if "code" not in extensions:
        if isinstance(error, GraphQLSyntaxError):
            extensions["code"] = "GRAPHQL_PARSE_FAILED"
        elif not error.path:
            extensions["code"] = "GRAPHQL_VALIDATION_FAILED"
        else:
            extensions["code"] = "INTERNAL_SERVER_ERROR"
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
    if len(_validated) > 512:
        _validated.clear()
    _validated[id(document)] = (document, errors)
    return errors


class _ClientErrorFilter(logging.Filter):
    """Log only errors raised while resolving, not the client's own schema violations."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, GraphQLError) and not record.msg.path)


_logger = logging.getLogger("crm_wave.wave_simulator")
_logger.addFilter(_ClientErrorFilter())


class _AuthenticatedHandler(GraphQLHTTPHandler):
    def __init__(self, token: str) -> None:
        super().__init__()
        self._token = token.encode()

    async def handle_request_override(self, request: Request) -> Response | None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), self._token):
            return None
        return JSONResponse({"data": None, "errors": [{
            "message": "You must be logged in with a valid access token.",
            "extensions": {"code": "UNAUTHENTICATED"},
        }]})


def create_app(*, db_path: Path, token: str) -> FaultInjector:
    """The simulator as an ASGI app; its SQLite database is `db_path` (created when missing).

    The returned app has a `store` attribute (the `Store`) for tests and tools.
    """
    store = Store(db_path)
    ensure_default_business(store)

    def context(request: Any, data: Any) -> dict[str, Any]:
        return {"request": request, "loader": Loader(store)}

    graphql_app = GraphQL(build_schema(), context_value=context, error_formatter=format_error, logger=_logger,
                          query_parser=_parse_query, query_validator=_validate_query,
                          execution_context_class=SyncExecutionContext,
                          http_handler=_AuthenticatedHandler(token))
    app = Starlette(routes=[Route(GRAPHQL_PATH, graphql_app.handle_request, methods=["GET", "POST", "OPTIONS"])])
    injector = FaultInjector(app)
    injector.store = store  # type: ignore[attr-defined]
    return injector
