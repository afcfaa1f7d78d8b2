"""Other API shapes over the same simulator data: what real CRMs look like (`create_app(style=...)`).

The storage and the rules are the contract's (one `CrmService`); only the HTTP surface differs:

- `offset`: `GET /R?limit=&offset=` -> `{"count", "results"}`, ordered by last change, newest
  first, so concurrent writes move records between pages; no change feed, no `Version`, hard
  deletes, If-Match and Idempotency-Key ignored; a customer create answers only `{"id"}` (200)
  and a customer update `{"ok": true}`; products are updated with PUT only (PATCH is 405).
- `paged`: `GET /R?page=&per_page=[&updated_after=]` -> a bare list with a `Link: <...>;
  rel="next"` header, ordered by id; an API key in `X-Api-Key`; snake_case field names; ids are
  integers and money is JSON numbers; deletes are soft (`is_deleted: true` stays listed).

- `paged-number`: the `paged` shape paged by page number alone: `GET /R?page=&per_page=` ->
  `{"data": [...], "page"}` (a short page is the last); the API key as a query parameter
  (`?api_key=`; 401 without it).
- `paged-next`: the `paged` shape with a `next` URL in the body: `{"results": [...], "next"}`;
  HTTP basic auth (user `crm-wave`, the token as password; 401 without it).
- `offset-numbered`: the `offset` shape, but the server numbers orders itself (`SO-00001`; an
  `OrderNumber` sent in a create or update is ignored, as BottleCRM ignores `invoice_number`).

Every non-contract style keeps a free-text `ExternalRef` (`external_ref` in the snake_case
shapes) on any record verbatim, as real CRMs keep a reference or custom field: where a profile's
`writes.create_key` puts the sync's own key. Every style has its profile in
`crm_wave/systems/crm/profiles/<style>.toml`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from decimal import Decimal
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crm_wave.model.values import show_value

from .resources import RESOURCES, ResourceSpec, SimError, bad_request, invalid

__all__ = ["ALL_STYLES", "BASIC_USER", "NUMBERED_STYLES", "STYLES", "styled_routes"]

#: The styles the end-to-end suite runs against (each keeps the order numbers it is given).
STYLES = ("contract", "offset", "paged", "paged-number", "paged-next")
#: Styles whose server numbers orders itself (tested on their own: the suite sends numbers).
NUMBERED_STYLES = ("offset-numbered",)
ALL_STYLES = STYLES + NUMBERED_STYLES
#: Paging of the snake_case styles: a `Link` header, page numbers alone, a `next` URL in the body.
_PAGING = {"paged": "link", "paged-number": "page", "paged-next": "next"}
#: The user name of `paged-next`'s HTTP basic auth (the token is the password).
BASIC_USER = "crm-wave"
_JSON = "application/json"
_MONEY = ("UnitPrice", "Quantity", "Total", "AmountPaid", "AmountDue")
_REFS = {"CustomerId": "C", "ProductId": "P"}
_PREFIX = {name: spec.id_prefix for name, spec in RESOURCES.items()}


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def snake(name: str) -> str:
    """PascalCase -> snake_case (`StreetAddress1` -> `street_address1`, `Id` -> `id`)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _error(err: SimError, rename: Any = None) -> Response:
    body = err.body()
    if rename and body.get("field"):
        body["field"] = rename(body["field"])
    return Response(_dumps(body).encode(), status_code=err.status, media_type=_JSON, headers=err.headers)


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise bad_request(f"{name}: {show_value(raw)} is not an integer from {low} to {high}", name)
    return int(raw)


def _check_query(request: Request, allowed: tuple[str, ...]) -> None:
    for name in request.query_params.keys():
        if name not in allowed:
            raise bad_request(f"{show_value(name)}: unknown query parameter", name[:100] or None)


async def _json_body(request: Request) -> Any:
    from .app import parse_json

    return parse_json(await request.body())


class _Styled:
    """Routes of one non-contract style over a `CrmService`."""

    def __init__(self, service: Any, token: str, style: str, prefix: str) -> None:
        self.service, self.style, self.prefix = service, style, prefix
        #: `offset`: the contract's names and ids; `snake`: snake_case, integer ids, JSON numbers.
        self.shape = "offset" if style.startswith("offset") else "snake"
        self.server_numbers = style in NUMBERED_STYLES
        self.extra = "ExternalRef" if self.shape == "offset" else "external_ref"
        self._token = token.encode()

    # ------------------------------------------------------------------ auth

    def authorize(self, request: Request) -> None:
        if self.style == "paged":
            given = request.headers.get("x-api-key", "")
            if not hmac.compare_digest(given.strip().encode(), self._token):
                raise SimError(403, "forbidden", f"X-Api-Key: {'missing' if not given else 'invalid'} API key", None)
            return
        if self.style == "paged-number":
            key = request.query_params.get("api_key", "")
            if not hmac.compare_digest(key.encode(), self._token):
                raise SimError(401, "unauthorized", f"api_key: {'missing' if not key else 'invalid'} API key", "api_key")
            return
        given = request.headers.get("authorization", "")
        scheme, _, credentials = given.strip().partition(" ")
        if self.style == "paged-next":
            try:
                user, _, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user = password = ""
            if scheme.lower() != "basic" or user != BASIC_USER or not hmac.compare_digest(password.encode(), self._token):
                raise SimError(401, "unauthorized", "Authorization: missing or invalid basic credentials", "Authorization",
                               {"WWW-Authenticate": 'Basic realm="crm"'})
            return
        if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), self._token):
            raise SimError(401, "unauthorized", "Authorization: missing or invalid bearer token", "Authorization")

    def check_query(self, request: Request, allowed: tuple[str, ...]) -> None:
        _check_query(request, allowed + (("api_key",) if self.style == "paged-number" else ()))

    # ------------------------------------------------------------------ shapes

    def out(self, spec: ResourceSpec, body: dict[str, Any], extra: str | None = None) -> dict[str, Any]:
        """A stored (contract) body in this style's shape, with the record's kept `ExternalRef`."""
        if self.shape == "offset":
            out = {k: v for k, v in body.items() if k != "Version"}
        else:
            out = {}
            for key, value in body.items():
                if key == "Version":
                    continue
                if key == "Id" or key in _REFS:
                    value = _int_id(value)
                elif key in _MONEY and value is not None:
                    value = _number(value)
                elif key == "Lines":
                    value = [self.out(spec, line) for line in value or []]
                elif key == "Deleted":
                    key = "IsDeleted"
                out[snake(key)] = value
        if extra is not None:
            out[self.extra] = extra
        return out

    def into(self, spec: ResourceSpec, body: Any) -> Any:
        """A request body in this style's shape, as the contract's."""
        if self.shape == "offset" or not isinstance(body, dict):
            return body
        names = {snake(f.name): f.name for f in spec.fields}
        lines = {snake(n): n for n in ("ProductId", "Description", "Quantity", "UnitPrice")}
        out: dict[str, Any] = {}
        for key, value in body.items():
            name = names.get(key) or key
            if name in _REFS and isinstance(value, int) and not isinstance(value, bool):
                value = f"{_REFS[name]}{value}"
            elif name in _MONEY and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)
            elif name == "Lines" and isinstance(value, list):
                value = [
                    {lines.get(k) or k: (f"P{v}" if lines.get(k) == "ProductId" and isinstance(v, int) else
                                        str(v) if lines.get(k) in _MONEY and isinstance(v, (int, float)) else v)
                     for k, v in line.items()} if isinstance(line, dict) else line
                    for line in value
                ]
            out[name] = value
        return out

    def take_extra(self, body: Any) -> tuple[Any, str | None, bool]:
        """(body without the kept reference field, its value, whether it was given)."""
        if not isinstance(body, dict) or self.extra not in body:
            return body, None, False
        body = dict(body)
        value = body.pop(self.extra)
        if value is not None and (not isinstance(value, str) or len(value) > 255):
            raise invalid(self.extra, f"{show_value(value)} is not a text of at most 255 characters")
        return body, value, True

    def keep_extra(self, spec: ResourceSpec, id_: str, value: str | None) -> None:
        with self.service.store.write() as tx:
            tx.conn.execute("INSERT INTO extras (resource, id, body) VALUES (?, ?, ?) ON CONFLICT (resource, id) "
                            "DO UPDATE SET body = excluded.body", (spec.name, id_, value))

    def extra_of(self, spec: ResourceSpec, id_: str) -> str | None:
        with self.service.store.read() as tx:
            row = tx.conn.execute("SELECT body FROM extras WHERE resource = ? AND id = ?", (spec.name, id_)).fetchone()
        return None if row is None else row[0]

    def number(self, spec: ResourceSpec, body: Any, *, create: bool) -> Any:
        """`offset-numbered`: the server's own order number on create; a sent one is ignored."""
        if not self.server_numbers or spec.name != "orders" or not isinstance(body, dict):
            return body
        body = {k: v for k, v in body.items() if k != "OrderNumber"}
        if create:
            with self.service.store.write() as tx:
                body["OrderNumber"] = f"SO-{tx.next_value('number:orders', 1):05d}"
        return body

    def rename_field(self, field: str) -> str:
        if self.shape != "snake":
            return field
        return re.sub(r"[A-Za-z]+", lambda m: snake(m.group(0)), field)

    def stored_id(self, spec: ResourceSpec, id_: str) -> str:
        if self.shape == "snake":
            if not id_.isdigit():
                raise SimError(404, "not_found", f"id: {show_value(id_)} is not an id of this API", "id")
            return f"{spec.id_prefix}{id_}"
        return id_

    # ------------------------------------------------------------------ listing

    _ROWS = ("SELECT e.body, x.body FROM entities e LEFT JOIN extras x ON x.resource = e.resource AND x.id = e.id "
             "WHERE e.resource = ?")

    def _list(self, spec: ResourceSpec, request: Request) -> Response:
        store = self.service.store
        if self.shape == "offset":
            self.check_query(request, ("limit", "offset"))
            limit = _int_param(request, "limit", 100, 1, 1000)
            offset = _int_param(request, "offset", 0, 0, 10**9)
            with store.read() as tx:
                (count,) = tx.conn.execute("SELECT count(*) FROM entities WHERE resource = ? AND deleted = 0",
                                           (spec.name,)).fetchone()
                rows = tx.conn.execute(self._ROWS + " AND e.deleted = 0 ORDER BY e.seq DESC LIMIT ? OFFSET ?",
                                       (spec.name, limit, offset)).fetchall()
            items = [self.out(spec, json.loads(b), x) for b, x in rows]
            return Response(_dumps({"count": count, "results": items}).encode(), media_type=_JSON)
        self.check_query(request, ("page", "per_page", "updated_after"))
        per_page = _int_param(request, "per_page", 50, 1, 500)
        page = _int_param(request, "page", 1, 1, 10**9)
        after = request.query_params.get("updated_after")
        sql = self._ROWS
        args: list[Any] = [spec.name]
        if after is not None:
            if not re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$", after):
                raise bad_request(f"updated_after: {show_value(after)} is not an RFC 3339 UTC time", "updated_after")
            sql += " AND json_extract(e.body, '$.UpdatedAt') > ?"
            args.append(after)
        sql += " ORDER BY CAST(substr(e.id, 2) AS INTEGER) LIMIT ? OFFSET ?"
        args += [per_page + 1, (page - 1) * per_page]
        with store.read() as tx:
            rows = tx.conn.execute(sql, args).fetchall()
        more = len(rows) > per_page
        items = [self.out(spec, json.loads(b), x) for b, x in rows[:per_page]]
        paging = _PAGING[self.style]
        if paging == "page":
            return Response(_dumps({"data": items, "page": page}).encode(), media_type=_JSON)
        if paging == "next":
            nxt = str(request.url.include_query_params(page=page + 1, per_page=per_page)) if more else None
            return Response(_dumps({"results": items, "next": nxt}).encode(), media_type=_JSON)
        headers = {}
        if more:
            query = f"page={page + 1}&per_page={per_page}" + (f"&updated_after={after}" if after else "")
            headers["Link"] = f'<{self.prefix}/{spec.name}?{query}>; rel="next"'
        return Response(_dumps(items).encode(), media_type=_JSON, headers=headers)

    # ------------------------------------------------------------------ endpoints

    async def collection(self, spec: ResourceSpec, request: Request) -> Response:
        try:
            self.authorize(request)
            if request.method == "GET":
                return await run_in_threadpool(self._list, spec, request)
            self.check_query(request, ())
            body, extra, _given = self.take_extra(await _json_body(request))
            body = await run_in_threadpool(self.number, spec, self.into(spec, body), create=True)
            _status, text, _ = await run_in_threadpool(self.service.create, spec, body, None)
            stored = json.loads(text)
            if extra is not None:
                await run_in_threadpool(self.keep_extra, spec, stored["Id"], extra)
            if self.shape == "offset" and spec.name == "customers":
                return Response(_dumps({"id": stored["Id"]}).encode(), status_code=200, media_type=_JSON)
            return Response(_dumps(self.out(spec, stored, extra)).encode(), status_code=201, media_type=_JSON)
        except SimError as err:
            return _error(err, self.rename_field)

    async def item(self, spec: ResourceSpec, request: Request) -> Response:
        try:
            self.authorize(request)
            self.check_query(request, ())
            id_ = self.stored_id(spec, request.path_params["id"])
            if request.method == "GET":
                text = await run_in_threadpool(self.service.get, spec, id_)
                extra = await run_in_threadpool(self.extra_of, spec, id_)
                return Response(_dumps(self.out(spec, json.loads(text), extra)).encode(), media_type=_JSON)
            if request.method == "DELETE":
                await run_in_threadpool(self.service.delete, spec, id_, None)
                return Response(status_code=204)
            if self.shape == "offset" and ((spec.name == "products") != (request.method == "PUT")):
                return Response(_dumps({"error": "method_not_allowed", "message": f"{request.method} is not allowed "
                                        f"on {spec.name}", "field": None}).encode(), status_code=405, media_type=_JSON)
            body, extra, given = self.take_extra(await _json_body(request))
            body = self.number(spec, self.into(spec, body), create=False)
            text = await run_in_threadpool(self.service.patch, spec, id_, body, None)
            if given:
                await run_in_threadpool(self.keep_extra, spec, id_, extra)
            else:
                extra = await run_in_threadpool(self.extra_of, spec, id_)
            if self.shape == "offset" and spec.name == "customers":
                return Response(b'{"ok":true}', media_type=_JSON)
            return Response(_dumps(self.out(spec, json.loads(text), extra)).encode(), media_type=_JSON)
        except SimError as err:
            return _error(err, self.rename_field)


def _int_id(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 1 and value[1:].isdigit():
        return int(value[1:])
    return value


def _number(value: Any) -> Any:
    d = Decimal(str(value))
    exponent = d.as_tuple().exponent
    return int(d) if d == d.to_integral_value() and isinstance(exponent, int) and exponent >= 0 else float(d)


def styled_routes(service: Any, token: str, style: str, prefix: str) -> list[Route]:
    """The routes of `style` (not `contract`) under `prefix`."""
    if style not in ALL_STYLES or style == "contract":
        raise ValueError(f"style: {style!r} is not one of {', '.join(ALL_STYLES)}")
    api = _Styled(service, token, style, prefix)

    def bind(handler: Any, spec: ResourceSpec) -> Any:
        async def endpoint(request: Request) -> Response:
            return await handler(spec, request)

        return endpoint

    routes = []
    for name, spec in RESOURCES.items():
        routes.append(Route(f"{prefix}/{name}", bind(api.collection, spec), methods=["GET", "POST"]))
        routes.append(Route(f"{prefix}/{name}/{{id}}", bind(api.item, spec), methods=["GET", "PATCH", "PUT", "DELETE"]))
    return routes
