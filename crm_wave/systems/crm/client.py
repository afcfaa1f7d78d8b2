"""The httpx client the sync uses to talk to the Custom CRM (REST contract v1).

Retries, `Retry-After`, backoff and the request-rate limit come from the shared
`RetryingSender`. Every call here is safe to retry: reads are idempotent, creates
carry an `Idempotency-Key`, a PATCH whose lost first attempt was applied is
recognised on the retry's `412`, and a retried DELETE that finds nothing is done.
Bodies use the contract's canonical PascalCase names; `CrmNaming` translates them
for a CRM that names things differently. A CRM shaped otherwise is described by a
profile (`profile.py`, docs/custom-crm.md) and served by `ProfileConnector` behind the
same methods; creates without an idempotency key are then sent once (never retried once
they may have reached the server) and found again by the intent's key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any
from urllib.parse import quote

import json
import logging
import re

import httpx

from crm_wave.systems.http import ApiError, HttpPolicy, RequestStats, RetryingSender, tls_context

from .connector import ProfileConnector
from .naming import CrmNaming
from .profile import Profile, ProfileError

__all__ = [
    "CrmAuthError",
    "CrmClient",
    "CrmError",
    "CrmNaming",
    "CrmNotFound",
    "CrmNothingToWrite",
    "CrmPage",
    "CrmValidationError",
    "CrmVersionMismatch",
]

_ATTEMPTS = "crm_wave.attempts"


class CrmError(ApiError):
    """The CRM answered with an error; `field` names the offending field when known."""

    def __init__(self, message: str, *, status: int, code: str | None = None, field: str | None = None,
                 detail: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field
        self.message = detail if detail is not None else message


class CrmValidationError(CrmError):
    """400 bad_request, 409 conflict or 422 validation_failed: the request itself is wrong."""


class CrmVersionMismatch(CrmError):
    """412: the `If-Match` version is not current; re-read and decide again."""


class CrmNotFound(CrmError):
    """404: the entity is absent or deleted."""


class CrmNothingToWrite(CrmError):
    """An update only of fields this CRM does not store (its profile maps them nowhere): nothing was sent."""


class CrmAuthError(CrmError):
    """401/403: missing or wrong token."""


@dataclass(frozen=True)
class CrmPage:
    """One page of a listing."""

    items: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None
    has_more: bool = False


class _RedactQuerySecret(logging.Filter):
    """Masks the token in httpx's request log lines for profiles that send it as a query parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.params: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.params and isinstance(record.args, tuple):
            pattern = re.compile(r"([?&](?:" + "|".join(map(re.escape, sorted(self.params))) + r")=)[^&#\s]*")
            record.args = tuple(pattern.sub(r"\1[redacted]", str(a)) if isinstance(a, (str, httpx.URL)) else a
                                for a in record.args)
        return True


_REDACT = _RedactQuerySecret()
logging.getLogger("httpx").addFilter(_REDACT)


def _count_attempt(request: httpx.Request) -> None:
    request.extensions[_ATTEMPTS] = request.extensions.get(_ATTEMPTS, 0) + 1


def _attempts(response: httpx.Response) -> int:
    return int(response.request.extensions.get(_ATTEMPTS, 1))


class CrmClient:
    """A Custom CRM API client; thread-safe (one httpx connection pool)."""

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        policy: HttpPolicy | None = None,
        naming: CrmNaming | None = None,
        transport: httpx.BaseTransport | None = None,
        profile: Profile | None = None,
        token_var: str | None = None,
        naming_var: str = "CRM_NAMING",
    ) -> None:
        """`token_var`, `naming_var`: the variables that configure this client, as its messages name them
        (the tenant's, e.g. `ACME_CRM_API_TOKEN`; `crm_wave.config.clients` passes them)."""
        if not base_url:
            raise ValueError("base_url: must not be empty")
        if not token:
            raise ValueError("token: must not be empty")
        self.base_url = base_url.rstrip("/")
        self.policy = policy or HttpPolicy()
        self.profile = profile
        #: The variable that holds this tenant's token, as its profile names it (`ACME_CRM_API_TOKEN`).
        self.token_var = token_var or (profile.token_env if profile is not None else "CRM_API_TOKEN")
        if naming is not None and profile is not None and not profile.contract_shaped:
            raise ProfileError(f"{naming_var}: applies to contract-shaped profiles only; put the renames into the "
                               f"`fields` of profile {profile.name!r} (docs/custom-crm.md)")
        if naming is None and profile is not None and profile.contract_shaped:
            naming = _naming_of(profile)
        self.naming = naming or CrmNaming()
        #: The profile-driven reads and writes; None for the contract's own shape.
        self.connector = ProfileConnector(self, profile) if profile is not None and not profile.contract_shaped else None
        self.__token = token
        auth = profile.auth if profile is not None else None
        if auth is not None and auth.kind == "query":
            _REDACT.params.add(auth.param)  # the token is in every URL: never in a log line
        self._http = httpx.Client(
            verify=tls_context(),
            timeout=self.policy.timeout_s,
            transport=transport,
            event_hooks={"request": [_count_attempt]},
            auth=httpx.BasicAuth(auth.username, token) if auth is not None and auth.kind == "basic" else None,
        )
        self._sender = RetryingSender(self._http, self.policy, name="crm")

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        policy: HttpPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> CrmClient:
        """From the CRM's typed settings (`crm_wave.config.settings.CrmSettings`): `CRM_PROFILE` (a shipped
        profile name or a TOML path; default `contract`), the variables it names (`CRM_BASE_URL`,
        `CRM_API_TOKEN` by default) and optionally `CRM_NAMING`; ConfigError names what is missing."""
        from crm_wave.config.settings import CrmSettings  # settings build on this package, not the other way

        s = CrmSettings.load(environ)
        return cls(base_url=s.base_url, token=s.api_token.get_secret_value(), policy=policy, naming=s.naming,
                   transport=transport, profile=s.profile)

    def __repr__(self) -> str:
        return f"CrmClient(base_url={self.base_url!r})"

    @property
    def stats(self) -> RequestStats:
        """Request counters of this client (requests, retries, rate_limited, ...)."""
        return self._sender.stats

    def close(self) -> None:
        self._http.close()
        self._sender.close()

    def __enter__(self) -> CrmClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ reads

    def probe(self, resource: str) -> None:
        """One cheap request to `resource` (one record): raises as a sync would on a wrong URL, token or shape."""
        if self.connector is not None:
            self.connector.probe(resource)
        else:
            next(iter(self.read_changes(resource, None, limit=1)))

    def read_changes(self, resource: str, since: str | None, *, limit: int = 1000) -> Iterator[CrmPage]:
        """Pages of changes after cursor `since` (None: from the start), until `has_more` is false.

        With a cursor, deleted entities appear as tombstones `{"Id", "Deleted": True, "Version", "UpdatedAt"}`.
        The last page's `next_cursor` is where the next call should continue.
        """
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit: {limit} is not from 1 to 1000")
        if self.connector is not None:
            yield from self.connector.read_changes(resource, since)
            return
        n = self.naming
        url = self._url(resource)
        cursor = since
        while True:
            params: dict[str, Any] = {n.limit_param: limit}
            if cursor is not None:
                params[n.since_param] = cursor
            response = self._send("GET", url, params=params)
            data = self._json(response)
            if not isinstance(data, dict) or not isinstance(data.get(n.items_key), list):
                raise CrmError(f"CRM GET {url}: the response is not a page", status=response.status_code)
            page = CrmPage(
                items=[n.to_canonical(item) for item in data[n.items_key]],
                next_cursor=data.get(n.next_cursor_key),
                has_more=bool(data.get(n.has_more_key)),
            )
            yield page
            if not page.has_more:
                return
            if not page.next_cursor or page.next_cursor == cursor:
                raise CrmError(f"CRM GET {url}: has_more without a new next_cursor", status=response.status_code)
            cursor = page.next_cursor

    def read_all(self, resource: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        """Every current entity (no tombstones), for full rescans that detect deletes.

        Pages after the first continue by cursor and so may repeat an entity changed
        during the listing (the newer copy wins) or name one deleted meanwhile (dropped).
        """
        if self.connector is not None:
            return self.connector.read_all(resource)
        current: dict[str, dict[str, Any]] = {}
        for page in self.read_changes(resource, None, limit=limit):
            for item in page.items:
                if item.get("Deleted"):
                    current.pop(item.get("Id"), None)  # type: ignore[arg-type]
                else:
                    current[item["Id"]] = item
        return list(current.values())

    def get(self, resource: str, id: str) -> dict[str, Any] | None:
        """One entity, or None when it is absent or deleted."""
        if self.connector is not None:
            return self.connector.get(resource, id)
        response = self._send("GET", self._url(resource, id), allow={404})
        if response.status_code == 404:
            return None
        return self.naming.to_canonical(self._json(response))

    # ------------------------------------------------------------------ writes

    def create(self, resource: str, body: Mapping[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        """Create an entity; retrying with the same `idempotency_key` never makes a second one."""
        if not idempotency_key:
            raise ValueError("idempotency_key: must not be empty")
        if self.connector is not None:
            return self.connector.create(resource, body, idempotency_key)
        response = self._send("POST", self._url(resource), json=self.naming.to_remote(dict(body)),
                              headers={self.naming.idempotency_header: idempotency_key})
        return self.naming.to_canonical(self._json(response))

    def patch(self, resource: str, id: str, body: Mapping[str, Any], *, if_match: int | None) -> dict[str, Any]:
        """Partly update an entity; `CrmVersionMismatch` when `if_match` is stale.

        A retried PATCH whose first attempt was applied (its response lost) meets its own
        new Version and gets `412`; then the entity is read back, and when its Version is
        exactly `if_match + 1` and every patched field holds the patched value, that
        entity is returned instead of an error.
        """
        if self.connector is not None:
            return self.connector.patch(resource, id, body, if_match)
        headers = {self.naming.if_match_header: str(if_match)} if if_match is not None else {}
        url = self._url(resource, id)
        response = self._send("PATCH", url, json=self.naming.to_remote(dict(body)), headers=headers, allow={412})
        if response.status_code == 412:
            error = self._error(response)
            if if_match is not None and _attempts(response) > 1:
                current = self.get(resource, id)
                if current is not None and current.get("Version") == if_match + 1 and all(
                    _same(current.get(k), v) for k, v in body.items()
                ):
                    return current
            raise error
        return self.naming.to_canonical(self._json(response))

    def delete(self, resource: str, id: str, *, if_match: int | None) -> None:
        """Delete an entity; a retried delete that finds it gone counts as done."""
        if self.connector is not None:
            return self.connector.delete(resource, id)
        headers = {self.naming.if_match_header: str(if_match)} if if_match is not None else {}
        response = self._send("DELETE", self._url(resource, id), headers=headers, allow={404})
        if response.status_code == 404:
            if _attempts(response) > 1:
                return
            raise self._error(response)

    def always_full(self, resource: str) -> bool:
        """Whether every read of `resource` is a full read (the CRM cannot list changes only)."""
        return self.connector is not None and self.connector.always_full(resource)

    # ------------------------------------------------------------------ plumbing

    def _url(self, resource: str, id: str | None = None) -> str:
        url = f"{self.base_url}/{self.naming.path(resource)}"
        return url if id is None else f"{url}/{quote(str(id), safe='')}"

    def _send(self, method: str, url: str, *, params: Mapping[str, Any] | None = None, json: Any = None,
              headers: Mapping[str, str] | None = None, allow: frozenset[int] | set[int] = frozenset(),
              idempotent: bool = True) -> httpx.Response:
        all_headers = {"Accept": "application/json"}
        auth = self.profile.auth if self.profile is not None and self.connector is not None else None
        if auth is None:
            all_headers[self.naming.auth_header] = self.naming.auth_value(self.__token)
        elif auth.kind == "bearer":
            all_headers["Authorization"] = f"Bearer {self.__token}"
        elif auth.kind == "header":
            all_headers[auth.header] = f"{auth.scheme} {self.__token}" if auth.scheme else self.__token
        elif auth.kind == "query":
            params = {**(params or {}), auth.param: self.__token}
        all_headers.update(headers or {})
        request = self._http.build_request(method, url, params=params, json=json, headers=all_headers)
        response = self._sender.send(request, idempotent=idempotent)
        response.read()
        if response.is_success or response.status_code in allow:
            return response
        raise self._error(response)

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise CrmError(f"CRM {response.request.method} {response.request.url.path}: response is not JSON",
                           status=response.status_code) from None

    def _error(self, response: httpx.Response) -> CrmError:
        status = response.status_code
        code = field_name = None
        detail = response.text[:300]
        try:
            data = response.json()
        except ValueError:
            data = None
        if self.connector is not None:
            field_name, detail = _error_parts(data, self.profile, detail, response)  # type: ignore[arg-type]
        elif isinstance(data, dict):
            code = data.get("error") if isinstance(data.get("error"), str) else None
            detail = str(data.get("message") or detail)
            field_name = self.naming.field_to_canonical(data.get("field") if isinstance(data.get("field"), str) else None)
        if status in (401, 403):
            detail = f"{detail} (check the CRM token: {self.token_var})"
        cls: type[CrmError]
        if status in (400, 409, 422):
            cls = CrmValidationError
        elif status == 412:
            cls = CrmVersionMismatch
        elif status == 404:
            cls = CrmNotFound
        elif status in (401, 403):
            cls = CrmAuthError
        else:
            cls = CrmError
        where = f"{response.request.method} {response.request.url.path}"
        named = f"{field_name}: " if field_name and self.connector is not None else ""
        text = f"CRM {where}: HTTP {status}{' ' + code if code else ''}: {named}{detail}"
        return cls(text, status=status, code=code, field=field_name, detail=detail)


def _error_parts(data: Any, profile: Profile, text: str, response: httpx.Response) -> tuple[str | None, str]:
    """(remote field, message) of any error body: `{"field", "message"}`, Django REST framework's
    `{"errors": {"name": ["..."]}}` or `{"name": ["..."]}`, `{"detail": "..."}`, or an HTML page."""
    from .connector import get_path

    if not isinstance(data, dict):
        content_type = response.headers.get("content-type", "")
        if "html" in content_type or text.lstrip().startswith("<"):
            return None, f"the CRM answered an HTML page ({response.reason_phrase or 'error'}), not JSON"
        return None, text.strip()[:300] or (response.reason_phrase or "error")
    field = get_path(data, profile.error_field) if profile.error_field else None
    message = next((m for m in (get_path(data, p) for p in profile.error_message) if isinstance(m, str) and m), None)
    errors = get_path(data, profile.error_fields) if profile.error_fields else None
    if not isinstance(errors, dict) and not isinstance(field, str):
        # DRF's bare `{"name": ["This field is required."]}`.
        listed = {k: v for k, v in data.items()
                  if isinstance(v, list) and v and all(isinstance(m, (str, dict)) for m in v)}
        errors = listed or None
    if isinstance(errors, dict) and errors:
        key, value = next(iter(errors.items()))
        while isinstance(value, dict) and value:  # nested, e.g. {"line_items": {"0": {"quantity": [...]}}}
            sub, value = next(iter(value.items()))
            key = f"{key}.{sub}"
        if isinstance(value, list) and value and isinstance(value[0], dict):
            index, inner = next(((i, v) for i, v in enumerate(value) if v), (0, {}))
            sub, value = next(iter(inner.items()), ("", []))
            key = f"{key}.{index}.{sub}" if sub else key
        first = value[0] if isinstance(value, list) and value else value
        return (key if key not in ("non_field_errors", "__all__", "detail") else None), f"{first}"
    if isinstance(errors, str) and not message:
        message = errors
    return (field if isinstance(field, str) and field else None), message or json.dumps(data)[:300]


def _naming_of(profile: Profile) -> CrmNaming:
    """The `CrmNaming` of a contract-shaped profile (paths, listing keys, headers)."""
    paths = {r: profile.sources(r)[0].path.strip("/") for r in ("customers", "products", "orders")}
    s = profile.customers[0]
    auth = profile.auth
    header = "Authorization" if auth.kind == "bearer" else auth.header
    scheme = "Bearer" if auth.kind == "bearer" else auth.scheme
    return CrmNaming(paths=paths, auth_header=header, auth_scheme=scheme, items_key=s.paging.records[0],
                     next_cursor_key=s.paging.next_cursor, has_more_key=s.paging.has_more,
                     since_param=s.paging.cursor_param, limit_param=s.paging.limit_param,
                     idempotency_header=s.writes.idempotency_header or "Idempotency-Key",
                     if_match_header=s.writes.if_match_header or "If-Match")


def _same(current: Any, wanted: Any) -> bool:
    """Whether a stored value already equals a patched one, allowing for the server's normalisation."""
    if isinstance(wanted, list) and isinstance(current, list):
        return len(wanted) == len(current) and all(_same(c, w) for c, w in zip(current, wanted))
    if isinstance(wanted, dict) and isinstance(current, dict):
        # A line's omitted (null) UnitPrice is filled in by the server.
        return all(v is None or _same(current.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, str) and isinstance(current, str):
        if wanted.strip() == current.strip() or wanted.strip().upper() == current.strip().upper() == current:
            return True
        try:
            return Decimal(wanted) == Decimal(current)
        except InvalidOperation:
            return False
    if isinstance(wanted, str) and not wanted.strip() and current is None:
        return True
    return current == wanted
