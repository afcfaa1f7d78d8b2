"""The Custom CRM reference server: Starlette routes over the SQLite store.

Handlers are `async` only to read the request body; the work itself runs in the
thread pool (`run_in_threadpool`), each thread with its own SQLite connection.
Every write runs in one `BEGIN IMMEDIATE` transaction that checks `If-Match`,
references and uniqueness, stamps the next change sequence and commits.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crm_wave.model.values import show_value
from crm_wave.systems.faults import FaultInjector

from .openapi import build_openapi
from .resources import RESOURCES, ResourceSpec, SimError, bad_request, check_body, coerce_fields, finalize, invalid
from .store import FIRST_ID, Store, utc_now

__all__ = ["API_PREFIX", "CrmService", "create_app", "decode_cursor", "encode_cursor"]

API_PREFIX = "/api/v1"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_INT64 = 2**63 - 1
_IF_MATCH_RE = re.compile(r'^(?:W/)?"?(\d{1,18})"?$')
_LIMIT_RE = re.compile(r"^\d{1,9}$")
_CURSOR_RE = re.compile(r"^[A-Za-z0-9_-]{11}$")
_IDEMPOTENCY_KEY_RE = re.compile(r"^[!-~]{1,255}$")
_JSON = "application/json"


def encode_cursor(seq: int) -> str:
    """Opaque cursor for change sequence `seq`: 11 characters of base64url."""
    return base64.urlsafe_b64encode(seq.to_bytes(8, "big")).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The change sequence in `cursor`; ValueError when it is not one of ours."""
    if not _CURSOR_RE.match(cursor):
        raise ValueError(f"{show_value(cursor)} is not a cursor returned by this API")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=")
    except (binascii.Error, ValueError):  # pragma: no cover - the pattern admits only valid text
        raise ValueError(f"{show_value(cursor)} is not a cursor returned by this API") from None
    return min(int.from_bytes(raw[:8], "big"), MAX_INT64)


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> object:
    """Decode a request body; 400 bad_request when it is not JSON."""
    if not raw.strip():
        raise bad_request("request body is empty; expected a JSON object")
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise bad_request(f"request body is not valid JSON: {str(exc)[:120]}") from None
    try:
        _dumps(value).encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request("request body is not valid JSON: a string holds an unpaired surrogate escape") from None
    return value


def parse_if_match(value: str | None) -> int | None:
    """`If-Match: 3` (also `"3"`, `W/"3"`); `*` or absent -> None; else 400."""
    if value is None or value.strip() == "*":
        return None
    m = _IF_MATCH_RE.match(value.strip())
    if not m:
        raise bad_request(f"If-Match: {show_value(value)} is not an entity Version", "If-Match")
    return int(m.group(1))


class CrmService:
    """The contract's operations over a `Store`; every method runs synchronously."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ------------------------------------------------------------------ reads

    def list(self, spec: ResourceSpec, since: str | None, limit: int) -> bytes:
        after = 0 if since is None else decode_cursor(since)
        with self.store.read() as tx:
            rows = tx.page(spec.name, after, limit + 1, include_deleted=since is not None)
            has_more = len(rows) > limit
            rows = rows[:limit]
            if has_more:
                last = rows[-1][0]
            else:
                # Everything up to now was returned: continue after the newest change,
                # including tombstones a full listing leaves out.
                last = max(after, tx.max_seq(spec.name))
        items = ",".join(body for _, body in rows)
        tail = _dumps({"next_cursor": encode_cursor(last), "has_more": has_more})
        return ('{"items":[' + items + "]," + tail[1:]).encode()

    def get(self, spec: ResourceSpec, id: str) -> str:
        with self.store.read() as tx:
            row = tx.get(spec.name, id)
        if row is None or row.deleted:
            raise _not_found(spec, id)
        return row.body

    # ------------------------------------------------------------------ writes

    def create(self, spec: ResourceSpec, body: object, idempotency_key: str | None) -> tuple[int, str, bool]:
        """(status, body, replayed) of a create."""
        changes = coerce_fields(spec, check_body(spec, body))
        with self.store.write() as tx:
            if idempotency_key is not None:
                earlier = tx.idempotent_result(spec.name, idempotency_key)
                if earlier is not None:
                    return earlier[0], earlier[1], True
            entity = self._finalize(tx, spec, changes, None)
            n = tx.next_value(f"id:{spec.name}", FIRST_ID)
            id_ = f"{spec.id_prefix}{n}"
            self._check_unique(tx, spec, entity, id_)
            text = self._store(tx, spec, id_, entity, version=1)
            if idempotency_key is not None:
                tx.remember(spec.name, idempotency_key, 201, text)
        return 201, text, False

    def patch(self, spec: ResourceSpec, id: str, body: object, if_match: int | None) -> str:
        changes = coerce_fields(spec, check_body(spec, body))
        with self.store.write() as tx:
            row = tx.get(spec.name, id)
            if row is None or row.deleted:
                raise _not_found(spec, id)
            _check_version(row.version, if_match)
            old = json.loads(row.body)
            try:
                entity = self._finalize(tx, spec, changes, old)
            except (TypeError, AttributeError, KeyError, ValueError, ArithmeticError) as exc:
                # Legacy data (stored before validation) the derived values cannot take: refused, not a 500.
                raise SimError(422, "validation_failed", f"{spec.entity} {show_value(id)} holds values stored before "
                               f"validation that this update cannot keep ({type(exc).__name__}: {exc}); send "
                               f"valid values for them too") from None
            if all(entity[k] == old.get(k) for k in entity):
                return row.body  # nothing changed: no new Version, no change event
            self._check_unique(tx, spec, entity, id)
            return self._store(tx, spec, id, entity, version=row.version + 1)

    def delete(self, spec: ResourceSpec, id: str, if_match: int | None) -> None:
        with self.store.write() as tx:
            row = tx.get(spec.name, id)
            if row is None or row.deleted:
                raise _not_found(spec, id)
            _check_version(row.version, if_match)
            version = row.version + 1
            tomb = _dumps({"Id": id, "Deleted": True, "Version": version, "UpdatedAt": utc_now()})
            tx.put(spec.name, id, seq=tx.next_seq(spec.name), version=version, deleted=True, ukey=None, body=tomb)

    # ------------------------------------------------------------------ helpers

    def _finalize(self, tx: Any, spec: ResourceSpec, changes: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        if spec.name == "orders":
            if "CustomerId" in changes and not tx.exists("customers", changes["CustomerId"]):
                raise invalid("CustomerId", f"{show_value(changes['CustomerId'])} is not an existing customer Id")
            prices: dict[str, str | None] = {}
            if "Lines" in changes and changes["Lines"]:
                bodies = tx.bodies("products", [line["ProductId"] for line in changes["Lines"]])
                prices = {pid: json.loads(b)["UnitPrice"] for pid, b in bodies.items()}
            return finalize(spec, changes, old, prices.get)
        return finalize(spec, changes, old)

    def _check_unique(self, tx: Any, spec: ResourceSpec, entity: dict[str, Any], id_: str) -> None:
        field = spec.unique_field
        if field is None or _ukey(entity.get(field)) is None:
            return
        owner = tx.unique_owner(spec.name, entity[field], id_)
        if owner is not None:
            raise SimError(409, "conflict", f"{field}: {show_value(entity[field])} is already used by {spec.entity} {owner}", field)

    def _store(self, tx: Any, spec: ResourceSpec, id_: str, entity: dict[str, Any], *, version: int) -> str:
        full = {"Id": id_, **entity, "Version": version, "UpdatedAt": utc_now()}
        text = _dumps(full)
        field = spec.unique_field
        tx.put(spec.name, id_, seq=tx.next_seq(spec.name), version=version, deleted=False,
               ukey=_ukey(entity.get(field)) if field else None, body=text)
        return text


def _ukey(value: Any) -> str | int | float | None:
    """A unique field's value as the index holds it: legacy data stored before validation may hold a list or
    an object there, which is no key (a patch of the record's other fields must still apply)."""
    return value if isinstance(value, (str, int, float)) else None


def _not_found(spec: ResourceSpec, id: str) -> SimError:
    return SimError(404, "not_found", f"Id: {spec.entity} {show_value(id)} does not exist", "Id")


def _check_version(current: int, if_match: int | None) -> None:
    if if_match is not None and if_match != current:
        raise SimError(412, "version_mismatch",
                       f"Version: If-Match {if_match} is not the current Version {current}", "Version")


# ---------------------------------------------------------------------- HTTP layer


def _error_response(err: SimError) -> Response:
    return Response(_dumps(err.body()).encode(), status_code=err.status, media_type=_JSON, headers=err.headers)


class _Api:
    def __init__(self, service: CrmService, token: str) -> None:
        self.service = service
        self._token = f"Bearer {token}".encode()

    def _authorize(self, request: Request) -> None:
        given = request.headers.get("authorization", "")
        scheme, _, credentials = given.strip().partition(" ")
        normalized = f"Bearer {credentials.strip()}".encode() if scheme.lower() == "bearer" else b""
        if not hmac.compare_digest(normalized, self._token):
            what = "missing" if not given else "invalid"
            raise SimError(401, "unauthorized", f"Authorization: {what} bearer token", "Authorization",
                           {"WWW-Authenticate": 'Bearer realm="crm"'})

    async def collection(self, spec: ResourceSpec, request: Request) -> Response:
        try:
            self._authorize(request)
            if request.method in ("GET", "HEAD"):
                since, limit = _list_params(request)
                content = await run_in_threadpool(self.service.list, spec, since, limit)
                return Response(content, media_type=_JSON)
            _check_query(request, ())
            body = parse_json(await request.body())
            key = request.headers.get("idempotency-key")
            if key is not None and not _IDEMPOTENCY_KEY_RE.match(key):
                raise bad_request(f"Idempotency-Key: {show_value(key)} is not 1 to 255 visible ASCII characters",
                                  "Idempotency-Key")
            status, text, replayed = await run_in_threadpool(self.service.create, spec, body, key)
            headers = {"Location": f"{API_PREFIX}/{spec.name}/{json.loads(text)['Id']}"}
            if replayed:
                headers["Idempotent-Replayed"] = "true"
            return Response(text.encode(), status_code=status, media_type=_JSON, headers=headers)
        except SimError as err:
            return _error_response(err)

    async def item(self, spec: ResourceSpec, request: Request) -> Response:
        id_ = request.path_params["id"]
        try:
            self._authorize(request)
            _check_query(request, ())
            if request.method in ("GET", "HEAD"):
                text = await run_in_threadpool(self.service.get, spec, id_)
                return Response(text.encode(), media_type=_JSON)
            if_match = parse_if_match(request.headers.get("if-match"))
            if request.method == "PATCH":
                body = parse_json(await request.body())
                text = await run_in_threadpool(self.service.patch, spec, id_, body, if_match)
                return Response(text.encode(), media_type=_JSON)
            await run_in_threadpool(self.service.delete, spec, id_, if_match)
            return Response(status_code=204)
        except SimError as err:
            return _error_response(err)


def _check_query(request: Request, allowed: tuple[str, ...]) -> None:
    """400 for a query parameter the operation does not define (a typo must not pass silently)."""
    for name in request.query_params.keys():
        if name not in allowed:
            raise bad_request(f"{show_value(name)}: unknown query parameter", name[:100] or None)


def _list_params(request: Request) -> tuple[str | None, int]:
    _check_query(request, ("since", "limit"))
    params = request.query_params
    raw_limit = params.get("limit")
    if raw_limit is None:
        limit = DEFAULT_LIMIT
    else:
        if not _LIMIT_RE.match(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise bad_request(f"limit: {show_value(raw_limit)} is not an integer from 1 to {MAX_LIMIT}", "limit")
        limit = int(raw_limit)
    since = params.get("since")
    if since is not None:
        try:
            decode_cursor(since)
        except ValueError as exc:
            raise bad_request(f"since: {exc}", "since") from None
    return since, limit


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return Response(_dumps({"error": code, "message": message, "field": None}).encode(),
                    status_code=exc.status_code, media_type=_JSON, headers=dict(exc.headers or {}))


async def _server_error(request: Request, exc: Exception) -> Response:  # pragma: no cover - a bug
    return Response(_dumps({"error": "internal_error", "message": f"{type(exc).__name__}", "field": None}).encode(),
                    status_code=500, media_type=_JSON)


def create_app(*, db_path: Path, token: str, style: str = "contract") -> FaultInjector:
    """The CRM simulator as an ASGI app (wrapped in `FaultInjector`), storing into `db_path`;
    `style` picks the API's shape (`contract`, `offset`, `paged`, ...: see `styles.py`)."""
    from .styles import ALL_STYLES, styled_routes

    if style not in ALL_STYLES:
        raise ValueError(f"style: {style!r} is not one of {', '.join(ALL_STYLES)}")
    store = Store(Path(db_path))
    api = _Api(CrmService(store), token)
    document = _dumps(build_openapi()).encode()

    async def openapi(request: Request) -> Response:
        return Response(document, media_type=_JSON)

    def bind(handler: Any, spec: ResourceSpec) -> Any:
        async def endpoint(request: Request) -> Response:
            return await handler(spec, request)

        return endpoint

    routes = [Route("/openapi.json", openapi, methods=["GET"])]
    if style != "contract":
        routes = styled_routes(api.service, token, style, API_PREFIX)
    for name, spec in RESOURCES.items() if style == "contract" else ():
        routes.append(Route(f"{API_PREFIX}/{name}", bind(api.collection, spec), methods=["GET", "POST"]))
        routes.append(Route(f"{API_PREFIX}/{name}/{{id}}", bind(api.item, spec), methods=["GET", "PATCH", "DELETE"]))
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _server_error})
    app.state.store = store
    wrapped = FaultInjector(app)
    wrapped.store = store  # type: ignore[attr-defined]
    return wrapped
