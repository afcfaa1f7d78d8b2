"""The Wave client used by the sync: GraphQL over httpx, with retries, rate limit and batching.

`WaveClient` speaks Wave's public GraphQL API (or the simulator's copy of it) and nothing
else: it reads customers, products and invoices page by page, looks records up for the
safe-create pattern, and sends writes as batched aliased mutations. Mapping between CRM
records and Wave inputs lives elsewhere.

Every request goes through `crm_wave.systems.http.RetryingSender`: 429/503 and network
errors are retried with backoff (honouring `Retry-After`), the request rate follows
`HttpPolicy.requests_per_minute`, and a request that is not idempotent (a batch holding a
create, a delete or a payment) is never retried once it may have reached Wave; a lost
response then raises `OutcomeUnknown` and the caller looks the records up before retrying.

Errors form a small hierarchy (all `crm_wave.systems.http.ApiError`):

- `WaveError`: Wave refused or could not answer (bad configuration, bad response);
  - `WaveGraphQLError`: top-level GraphQL `errors` (`errors`, `codes`, `support_ids`);
    - `WaveAuthError`: the token was refused (`UNAUTHENTICATED`, HTTP 401/403);
    - `WaveNotFound`: an id Wave does not know (`NOT_FOUND`; a deleted or stale record);
    - `WaveRateLimited`: still rate limited after every wait (also a `TransientError`);
  - `WaveRejected`: a mutation's business-rule failure (`inputErrors`);
- `WaveBatchInterrupted` (a `TransientError`): `mutate` stopped part-way at transport
  level, with `keys`, `unsent_keys` and `results`; `WaveBatchOutcomeUnknown` is also an
  `OutcomeUnknown` (some writes may have happened).

Per record, `MutationResult.error` holds the typed error of a failed mutation
(`WaveNotFound`, `WaveRejected`, `WaveRateLimited` or `WaveGraphQLError`).

Rate limits are waited out in both of Wave's forms: HTTP 429 with `Retry-After` (by the
sender) and HTTP 200 with a GraphQL error coded `RATE_LIMITED` (field-level `@rateLimit`;
only the refused fields are sent again). At most `max_in_flight` requests (2) are on the
wire at once. A create answered `NOT_FOUND` (Wave sometimes does so for ids that exist;
nothing was created) is sent again up to `not_found_retries` times.

The query documents live in `queries/*.graphql` beside this module. Values are only ever
sent as GraphQL variables; the one piece of query text built at run time is the batched
mutation, composed from alias names (`m0`, `m1`, ...) and the fixed mutation allow-list.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from typing import Any

import httpx

from crm_wave.systems.http import (
    ApiError,
    HttpPolicy,
    OutcomeUnknown,
    RequestStats,
    RetryingSender,
    TransientError,
)

__all__ = [
    "MUTATION_NAMES",
    "InputError",
    "Mutation",
    "MutationResult",
    "WaveAuthError",
    "WaveBatchInterrupted",
    "WaveBatchOutcomeUnknown",
    "WaveClient",
    "WaveError",
    "WaveGraphQLError",
    "WaveNotFound",
    "WaveRateLimited",
    "WaveRejected",
]

# --------------------------------------------------------------------------- errors


class WaveError(ApiError):
    """Wave refused or could not answer a request (bad configuration, bad response...)."""


class WaveGraphQLError(WaveError):
    """Wave answered with top-level GraphQL `errors`.

    `errors` holds the error objects as sent; `codes` their `extensions.code` values
    (for example `GRAPHQL_VALIDATION_FAILED`), in order, without duplicates.
    """

    def __init__(self, message: str, errors: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.errors: list[dict[str, Any]] = [dict(e) for e in errors]
        codes: list[str] = []
        for e in self.errors:
            code = (e.get("extensions") or {}).get("code")
            if isinstance(code, str) and code not in codes:
                codes.append(code)
        self.codes: list[str] = codes


    @property
    def support_ids(self) -> list[str]:
        """The support `id` of each error (give them to Wave Support when asking about one)."""
        return [str(i) for e in self.errors if (i := (e.get("extensions") or {}).get("id"))]


class WaveAuthError(WaveGraphQLError):
    """The token was refused (`UNAUTHENTICATED`, HTTP 401/403)."""


class WaveNotFound(WaveGraphQLError):
    """Wave does not know an id (`NOT_FOUND`): the record was deleted, or the id is stale."""


class WaveRateLimited(WaveGraphQLError, TransientError):
    """Wave kept answering "rate limited" as a GraphQL error after every wait; nothing was done."""

    def __init__(self, message: str, errors: Sequence[Mapping[str, Any]] = (), *,
                 retry_after: float | None = None) -> None:
        WaveGraphQLError.__init__(self, message, errors)
        self.status = 200
        self.retry_after = retry_after


class WaveRejected(WaveError):
    """A mutation's business-rule failure: Wave's `inputErrors` (`didSucceed: false`)."""

    def __init__(self, message: str, input_errors: Sequence[InputError] = ()) -> None:
        super().__init__(message)
        self.input_errors = list(input_errors)


class WaveBatchInterrupted(TransientError):
    """`mutate` stopped part-way at transport level: nothing more was sent after the failure.

    `keys` are the ops of the failed batches, `unsent_keys` the ops never sent, and
    `results` the results of the batches that did complete."""

    def __init__(self, message: str, *, keys: list[str], unsent_keys: list[str], results: list[MutationResult],
                 status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status, retry_after=retry_after)
        self.keys = keys
        self.unsent_keys = unsent_keys
        self.results = results


class WaveBatchOutcomeUnknown(WaveBatchInterrupted, OutcomeUnknown):
    """`mutate` stopped part-way and some writes of the failed batches may have happened:
    look them up before sending them again."""


#: GraphQL error codes that mean "rate limited: wait and send again" (Wave's `@rateLimit`).
_RATE_LIMIT_CODES = frozenset({"RATE_LIMITED", "RATE_LIMIT_EXCEEDED", "TOO_MANY_REQUESTS", "THROTTLED"})


def _code(error: Mapping[str, Any]) -> str | None:
    code = (error.get("extensions") or {}).get("code")
    return code if isinstance(code, str) else None


def _error_class(codes: Sequence[str]) -> type[WaveGraphQLError]:
    if "UNAUTHENTICATED" in codes:
        return WaveAuthError
    if codes and all(c in _RATE_LIMIT_CODES for c in codes):
        return WaveRateLimited
    if codes and all(c == "NOT_FOUND" for c in codes):
        return WaveNotFound
    return WaveGraphQLError


# --------------------------------------------------------------------------- mutations


@dataclass(frozen=True)
class _MutationSpec:
    input_type: str
    entity_field: str | None
    idempotent: bool


_MUTATIONS: dict[str, _MutationSpec] = {
    "customerCreate": _MutationSpec("CustomerCreateInput", "customer", False),
    "customerPatch": _MutationSpec("CustomerPatchInput", "customer", True),
    "customerDelete": _MutationSpec("CustomerDeleteInput", None, False),
    "productCreate": _MutationSpec("ProductCreateInput", "product", False),
    "productPatch": _MutationSpec("ProductPatchInput", "product", True),
    "productArchive": _MutationSpec("ProductArchiveInput", "product", True),
    "invoiceCreate": _MutationSpec("InvoiceCreateInput", "invoice", False),
    "invoicePatch": _MutationSpec("InvoicePatchInput", "invoice", True),
    "invoiceDelete": _MutationSpec("InvoiceDeleteInput", None, False),
    "invoiceApprove": _MutationSpec("InvoiceApproveInput", "invoice", True),
    "invoiceMarkSent": _MutationSpec("InvoiceMarkSentInput", "invoice", True),
    "invoicePaymentCreateManual": _MutationSpec("InvoicePaymentCreateManualInput", "invoicePayment", False),
}

#: The mutations `WaveClient.mutate` accepts.
MUTATION_NAMES: frozenset[str] = frozenset(_MUTATIONS)


@dataclass(frozen=True)
class Mutation:
    """One write: `name` is a Wave mutation (see `MUTATION_NAMES`), `input` its input object
    exactly as Wave's schema spells it, and `key` the caller's identifier, echoed in the result."""

    name: str
    input: dict[str, Any]
    key: str

    def __post_init__(self) -> None:
        if self.name not in _MUTATIONS:
            raise ValueError(f"unknown Wave mutation {self.name!r}; expected one of {sorted(_MUTATIONS)}")

    @property
    def idempotent(self) -> bool:
        """Whether sending this mutation twice is harmless (patch, archive, approve, mark sent)."""
        return _MUTATIONS[self.name].idempotent


@dataclass(frozen=True)
class InputError:
    """One of Wave's `inputErrors` (a business-rule failure of one mutation)."""

    code: str | None
    message: str | None
    path: list[str] = field(default_factory=list)


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


# --------------------------------------------------------------------------- documents

_SPREAD = re.compile(r"\.\.\.\s*(?!on\b)([_A-Za-z][_0-9A-Za-z]*)")
_FRAGMENT_DEF = re.compile(r"^fragment\s+([_A-Za-z][_0-9A-Za-z]*)\s", re.MULTILINE)


def _load_documents() -> tuple[dict[str, str], dict[str, str]]:
    """Read `queries/*.graphql`: operations by file stem, fragments by fragment name."""
    operations: dict[str, str] = {}
    fragments: dict[str, str] = {}
    folder = resources.files(__package__).joinpath("queries")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".graphql"):
            continue
        text = entry.read_text(encoding="utf-8")
        starts = [m.start() for m in _FRAGMENT_DEF.finditer(text)]
        if starts:
            for i, start in enumerate(starts):
                chunk = text[start : starts[i + 1] if i + 1 < len(starts) else len(text)].strip()
                name = _FRAGMENT_DEF.match(chunk)
                assert name is not None
                fragments[name.group(1)] = chunk
        else:
            operations[entry.name.removesuffix(".graphql")] = text.strip()
    return operations, fragments


_OPERATIONS, _FRAGMENTS = _load_documents()


def _with_fragments(body: str) -> str:
    """`body` followed by every fragment it spreads, transitively (and no unused one)."""
    needed: list[str] = []
    pending = _SPREAD.findall(body)
    while pending:
        name = pending.pop(0)
        if name in needed:
            continue
        if name not in _FRAGMENTS:
            raise KeyError(f"unknown GraphQL fragment {name!r}")
        needed.append(name)
        pending.extend(_SPREAD.findall(_FRAGMENTS[name]))
    return "\n\n".join([body, *(_FRAGMENTS[n] for n in needed)])


#: The fixed documents, fragments appended, by file stem (`list_customers`...).
DOCUMENTS: dict[str, str] = {name: _with_fragments(text) for name, text in _OPERATIONS.items()}


def _result_fragment(name: str) -> str:
    return name[0].upper() + name[1:] + "Result"


@lru_cache(maxsize=64)
def _lookup_document(field_name: str, fragment: str, count: int) -> str:
    """`count` aliased lookups (`i0: invoice(id: $id0) {...}`) of one business in one query."""
    params = "".join(f", $id{i}: ID!" for i in range(count))
    fields = "\n".join(f"    i{i}: {field_name}(id: $id{i}) {{ ...{fragment} }}" for i in range(count))
    return _with_fragments(f"query GetInvoices($businessId: ID!{params}) {{\n  business(id: $businessId) {{\n"
                           f"    id\n{fields}\n  }}\n}}")


@lru_cache(maxsize=256)
def _mutation_document(names: tuple[str, ...]) -> str:
    """The batched aliased mutation for `names` (each from the allow-list)."""
    params = ", ".join(f"$i{i}: {_MUTATIONS[n].input_type}!" for i, n in enumerate(names))
    fields = "\n".join(f"  m{i}: {n}(input: $i{i}) {{ ...{_result_fragment(n)} }}" for i, n in enumerate(names))
    return _with_fragments(f"mutation WaveBatch({params}) {{\n{fields}\n}}")


# --------------------------------------------------------------------------- client


def _input_errors(raw: Any) -> list[InputError]:
    out: list[InputError] = []
    for e in raw or []:
        path = e.get("path") or []
        out.append(InputError(code=e.get("code"), message=e.get("message"), path=[str(p) for p in path]))
    return out


def _result_error(errors: list[dict[str, Any]], input_errors: list[InputError]) -> WaveError:
    """The typed error of one failed op: its top-level errors, else its input errors."""
    if errors:
        codes = [c for e in errors if (c := _code(e))]
        text = "; ".join(str(e.get("message")) for e in errors[:3])
        cls = _error_class(codes)
        if cls is WaveRateLimited:
            after = [(e.get("extensions") or {}).get("retryAfter") for e in errors]
            return WaveRateLimited(text, errors, retry_after=max((a for a in after if isinstance(a, (int, float))),
                                                                 default=None))
        return cls(text, errors)
    text = "; ".join(f"{'.'.join(e.path) or 'input'}: {e.message}" for e in input_errors[:3]) or "refused"
    return WaveRejected(text, input_errors)


class WaveClient:
    """A client for one Wave business.

    Construct it with the GraphQL endpoint and an access token, or from a tenant's settings
    with `crm_wave.clients.wave_client(settings)` (`crm_wave/settings.py` reads the variables and
    the default rate). Use it as a context manager (or call `close()`).

    `policy` controls timeouts, retries and the request rate (`HttpPolicy()` by default:
    no rate limit); `transport` replaces httpx's network transport (tests use
    `httpx.MockTransport`); `page_size` is the `pageSize` of list reads (Wave allows up
    to 200); `batch_size` how many mutations go in one HTTP request; `max_workers` how
    many batches may be sent at once (the rate limit is shared by all of them);
    `max_in_flight` how many requests may be on the wire at once (Wave refuses a third
    one of a token; `policy.max_in_flight` wins when set); `not_found_retries` how many
    times a create answered NOT_FOUND is sent again.
    """

    def __init__(
        self,
        *,
        url: str,
        token: str,
        business_id: str | None = None,
        policy: HttpPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        page_size: int = 200,
        batch_size: int = 25,
        max_workers: int = 1,
        max_in_flight: int = 2,
        not_found_retries: int = 2,
    ) -> None:
        if not url:
            raise WaveError("WaveClient: url is required")
        if not token:
            raise WaveError("WaveClient: token is required")
        if page_size < 1 or batch_size < 1 or max_workers < 1:
            raise ValueError("page_size, batch_size and max_workers must be at least 1")
        self.url = url
        self.page_size = page_size
        self.batch_size = batch_size
        self.max_workers = max_workers
        self.policy = policy or HttpPolicy()
        if self.policy.max_in_flight is None:
            self.policy = replace(self.policy, max_in_flight=max_in_flight)
        self.not_found_retries = not_found_retries
        self._configured_business_id = business_id
        self._business_id = business_id
        self._business_lock = threading.Lock()
        self._http = httpx.Client(
            transport=transport,
            timeout=self.policy.timeout_s,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": "crm-wave",
            },
            limits=httpx.Limits(max_connections=max(10, max_workers * 2), max_keepalive_connections=max(10, max_workers * 2)),
        )
        self._sender = RetryingSender(self._http, self.policy, name="wave")

    def __repr__(self) -> str:
        return (
            f"WaveClient(url={self.url!r}, business_id={self._configured_business_id!r}, "
            f"page_size={self.page_size}, batch_size={self.batch_size}, max_workers={self.max_workers})"
        )

    # ----------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()
        self._sender.close()

    def __enter__(self) -> WaveClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def stats(self) -> RequestStats:
        """Request counters (requests, retries, rate_limited, server_errors, network_errors)."""
        return self._sender.stats

    # ----------------------------------------------------------------- low level

    def _post(self, query: str, variables: Mapping[str, Any] | None, *, idempotent: bool,
              operation_name: str | None = None) -> dict[str, Any]:
        """POST one GraphQL request; return the decoded response body (data and errors)."""
        payload: dict[str, Any] = {"query": query, "variables": dict(variables or {})}
        if operation_name:
            payload["operationName"] = operation_name
        request = self._http.build_request("POST", self.url, json=payload)
        response = self._sender.send(request, idempotent=idempotent)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code in (401, 403):
            errors = body.get("errors") if isinstance(body, dict) else None
            raise WaveAuthError(f"Wave refused the token (HTTP {response.status_code})", errors or [])
        if not isinstance(body, dict) or ("data" not in body and "errors" not in body):
            snippet = response.text[:200]
            raise WaveError(f"Wave: unexpected response (HTTP {response.status_code}): {snippet!r}")
        if response.status_code >= 400 and not body.get("errors"):
            raise WaveError(f"Wave: HTTP {response.status_code}: {response.text[:200]!r}")
        return body

    @staticmethod
    def _raise_for_errors(errors: Sequence[Mapping[str, Any]]) -> None:
        err = WaveGraphQLError("", errors)
        messages = "; ".join(str(e.get("message")) for e in err.errors[:5])
        codes = f" [{', '.join(err.codes)}]" if err.codes else ""
        text = f"Wave GraphQL error{codes}: {messages}"
        cls = _error_class(err.codes)
        if cls is WaveRateLimited:
            raise _result_error(err.errors, [])
        raise cls(text, errors)

    @staticmethod
    def _rate_limited(errors: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        return [e for e in errors if _code(e) in _RATE_LIMIT_CODES]

    def _pause(self, attempt: int, errors: Sequence[Mapping[str, Any]]) -> None:
        """Wait out a rate limit answered as GraphQL errors (their `retryAfter`, else backoff)."""
        self.stats.add("rate_limited")
        self.stats.add("retries")
        after = [a for e in errors if isinstance(a := (e.get("extensions") or {}).get("retryAfter"), (int, float))]
        if after:
            wait = min(max(after), self.policy.max_retry_after_s)
        else:
            wait = min(self.policy.backoff_max_s, self.policy.backoff_initial_s * 2 ** attempt)
        time.sleep(wait)

    def execute(self, query: str, variables: dict[str, Any] | None = None, *, idempotent: bool = True) -> dict[str, Any]:
        """Run one GraphQL document and return its `data`.

        Top-level `errors` raise `WaveGraphQLError` (`WaveAuthError` for
        `UNAUTHENTICATED`). Pass `idempotent=False` for a document with a create: a
        lost response then raises `OutcomeUnknown` instead of being retried.
        """
        return self._execute(query, variables, idempotent=idempotent)

    def _execute(self, query: str, variables: Mapping[str, Any] | None, *, idempotent: bool = True,
                 operation_name: str | None = None) -> dict[str, Any]:
        for attempt in range(self.policy.max_attempts):
            body = self._post(query, variables, idempotent=idempotent, operation_name=operation_name)
            limited = self._rate_limited(body.get("errors") or [])
            if not limited:
                break
            if attempt + 1 < self.policy.max_attempts:
                self._pause(attempt, limited)  # a refused field ran nothing: send it all again
        if body.get("errors"):
            self._raise_for_errors(body["errors"])
        data = body.get("data")
        if not isinstance(data, dict):
            raise WaveError("Wave: response without data")
        return data

    # ----------------------------------------------------------------- business

    @property
    def business_id(self) -> str:
        """The business the client works on: the configured one, else the token's only business.

        Raises `WaveError` when the token can see no business, or several and none was
        configured (the message lists their ids and names).
        """
        if self._business_id is not None:
            return self._business_id
        with self._business_lock:
            if self._business_id is None:
                self._business_id = self._resolve_business_id()
            return self._business_id

    def list_businesses(self) -> list[dict[str, Any]]:
        """Every business the token can access, as `{id, name}` dicts."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            data = self._execute(DOCUMENTS["list_businesses"], {"page": page, "pageSize": 50},
                                 operation_name="ListBusinesses")
            conn = data.get("businesses") or {}
            out.extend(e["node"] for e in conn.get("edges") or [] if e.get("node"))
            info = conn.get("pageInfo") or {}
            if not conn.get("edges") or page >= (info.get("totalPages") or 0):
                return out
            page += 1

    def _resolve_business_id(self) -> str:
        businesses = self.list_businesses()
        if len(businesses) == 1:
            return str(businesses[0]["id"])
        if not businesses:
            raise WaveError("Wave: the token has access to no business")
        listing = ", ".join(f"{b['id']} ({b.get('name')})" for b in businesses)
        raise WaveError(
            f"Wave: the token has access to {len(businesses)} businesses; set WAVE_BUSINESS_ID "
            f"(business_id=...) to one of: {listing}"
        )

    # ----------------------------------------------------------------- reads

    def _pages(self, document: str, connection: str, extra: Mapping[str, Any]) -> Iterator[list[dict[str, Any]]]:
        operation_name = "".join(part.capitalize() for part in document.split("_"))
        page = 1
        while True:
            variables = {"businessId": self.business_id, "page": page, "pageSize": self.page_size, **extra}
            data = self._business_data(document, variables, operation_name)
            conn = data.get(connection) or {}
            edges = conn.get("edges") or []
            yield [e["node"] for e in edges if e.get("node") is not None]
            info = conn.get("pageInfo") or {}
            total_pages = info.get("totalPages") or 0
            current = info.get("currentPage") or page
            if not edges or current >= total_pages:
                return
            page = current + 1

    def _business_data(self, document: str, variables: Mapping[str, Any], operation_name: str) -> dict[str, Any]:
        """`data.business` of a read; an unknown business is a `WaveNotFound` that says what to do."""
        try:
            data = self._execute(DOCUMENTS[document], variables, operation_name=operation_name)
        except WaveNotFound as exc:
            if any((e.get("path") or [None])[-1] == "business" for e in exc.errors):
                raise WaveNotFound(f"Wave: business {self.business_id!r} could not be found; check WAVE_BUSINESS_ID",
                                   exc.errors) from None
            raise
        business = data.get("business")
        if business is None:
            raise WaveError(f"Wave: business {self.business_id!r} not found")
        return business

    def iter_customers(self, *, modified_after: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """Customers page by page, oldest modification first (`modifiedAt > modified_after` when given)."""
        return self._pages("list_customers", "customers", {"modifiedAtAfter": modified_after})

    def iter_products(self, *, modified_after: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """Products page by page, archived ones included, oldest modification first."""
        return self._pages("list_products", "products", {"modifiedAtAfter": modified_after, "isArchived": None})

    def iter_invoices(self, *, modified_after: str | None = None,
                      status: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """Invoices page by page, oldest modification first (only those of Wave's `status`
        filter when given: "UNPAID" is every approved invoice not yet paid in full)."""
        return self._pages("list_invoices", "invoices", {"modifiedAtAfter": modified_after, "status": status})

    def get_invoices(self, invoice_ids: Sequence[str], *, per_request: int = 50) -> dict[str, dict[str, Any] | None]:
        """Several invoices by id, `per_request` aliased lookups to a request: `id -> invoice`,
        None for an id Wave answers NOT_FOUND (deleted) while the others are read."""
        ids = list(dict.fromkeys(invoice_ids))
        out: dict[str, dict[str, Any] | None] = {}
        for start in range(0, len(ids), per_request):
            chunk = ids[start:start + per_request]
            document = _lookup_document("invoice", "InvoiceFields", len(chunk))
            variables: dict[str, Any] = {"businessId": self.business_id, **{f"id{i}": v for i, v in enumerate(chunk)}}
            for attempt in range(self.policy.max_attempts):
                body = self._post(document, variables, idempotent=True, operation_name="GetInvoices")
                limited = self._rate_limited(body.get("errors") or [])
                if not limited or attempt + 1 == self.policy.max_attempts:
                    break
                self._pause(attempt, limited)
            errors = body.get("errors") or []
            other = [e for e in errors if _code(e) != "NOT_FOUND" or len(e.get("path") or []) < 2]
            if other:
                self._raise_for_errors(other)
            business = (body.get("data") or {}).get("business") or {}
            for i, invoice_id in enumerate(chunk):
                node = business.get(f"i{i}")
                out[invoice_id] = node if isinstance(node, dict) else None
        return out

    def list_customers(self, *, modified_after: str | None = None) -> list[dict[str, Any]]:
        """Every customer (or those modified after `modified_after`, a Wave DateTime string)."""
        return [node for page in self.iter_customers(modified_after=modified_after) for node in page]

    def list_products(self, *, modified_after: str | None = None) -> list[dict[str, Any]]:
        """Every product, archived ones included (or those modified after `modified_after`)."""
        return [node for page in self.iter_products(modified_after=modified_after) for node in page]

    def list_invoices(self, *, modified_after: str | None = None) -> list[dict[str, Any]]:
        """Every invoice (or those modified after `modified_after`)."""
        return [node for page in self.iter_invoices(modified_after=modified_after) for node in page]

    def find_customers_by_email(self, email: str) -> list[dict[str, Any]]:
        """Customers whose email equals `email`, trimmed and case-insensitively."""
        wanted = email.strip().casefold()
        if not wanted:
            return []
        found: dict[str, dict[str, Any]] = {}
        for probe in dict.fromkeys([email.strip(), email.strip().lower()]):
            for page in self._pages("list_customers", "customers", {"modifiedAtAfter": None, "email": probe}):
                for node in page:
                    if (node.get("email") or "").strip().casefold() == wanted:
                        found.setdefault(node["id"], node)
        return list(found.values())

    def find_invoices_by_number(self, number: str) -> list[dict[str, Any]]:
        """Invoices whose `invoiceNumber` is exactly `number` (Wave's filter only narrows it down)."""
        if not number:
            return []
        return [
            node
            for page in self._pages("list_invoices", "invoices", {"modifiedAtAfter": None, "invoiceNumber": number})
            for node in page
            if node.get("invoiceNumber") == number
        ]

    def find_products_by_name(self, name: str) -> list[dict[str, Any]]:
        """Products (archived included) whose name equals `name`, trimmed and case-insensitively.

        Wave has no name filter: this lists every product, so prefer one `list_products`
        and a local index when looking up many names.
        """
        wanted = name.strip().casefold()
        if not wanted:
            return []
        return [p for p in self.list_products() if (p.get("name") or "").strip().casefold() == wanted]

    def _get(self, document: str, field_name: str, entity_id: str) -> dict[str, Any] | None:
        operation_name = "".join(part.capitalize() for part in document.split("_"))
        try:
            data = self._execute(DOCUMENTS[document], {"businessId": self.business_id, "id": entity_id},
                                 operation_name=operation_name)
        except WaveAuthError:
            raise
        except WaveGraphQLError as exc:
            if exc.codes and set(exc.codes) <= {"NOT_FOUND", "BAD_USER_INPUT", "INVALID_ID"}:
                return None
            raise
        business = data.get("business")
        if business is None:
            raise WaveError(f"Wave: business {self.business_id!r} not found")
        return business.get(field_name)

    def get_customer(self, customer_id: str) -> dict[str, Any] | None:
        """One customer by id, or None when there is none."""
        return self._get("get_customer", "customer", customer_id)

    def get_product(self, product_id: str) -> dict[str, Any] | None:
        """One product by id, or None when there is none."""
        return self._get("get_product", "product", product_id)

    def get_invoice(self, invoice_id: str) -> dict[str, Any] | None:
        """One invoice by id, or None when there is none."""
        return self._get("get_invoice", "invoice", invoice_id)

    def change_heads(self) -> dict[str, dict[str, Any]]:
        """The newest change of each type, in one request (plus one to find the business when
        none is configured): `{"customers" | "products" | "invoices": {"id", "modifiedAt",
        "totalCount"}}`, `id` and `modifiedAt` None for an empty listing. Archived products count."""
        data = self._execute(DOCUMENTS["change_heads"], {"businessId": self.business_id}, operation_name="ChangeHeads")
        business = data.get("business")
        if business is None:
            raise WaveError(f"Wave: business {self.business_id!r} not found")
        heads: dict[str, dict[str, Any]] = {}
        for connection in ("customers", "products", "invoices"):
            conn = business.get(connection) or {}
            nodes = [e["node"] for e in conn.get("edges") or [] if e.get("node")]
            newest = nodes[0] if nodes else {}
            heads[connection] = {"id": newest.get("id"), "modifiedAt": newest.get("modifiedAt"),
                                 "totalCount": (conn.get("pageInfo") or {}).get("totalCount")}
        return heads

    # ----------------------------------------------------------------- writes

    def mutate(self, ops: Sequence[Mutation]) -> list[MutationResult]:
        """Send `ops` as batched aliased mutations; return one result per op, in order.

        `batch_size` ops go in one request; up to `max_workers` requests are sent at once
        (so ops in different batches may run in any order: put dependent writes in
        separate calls). A failure of one op is a result with `ok=False` and a typed
        `error`: `WaveRejected` (Wave's `inputErrors`), `WaveNotFound` (the record is gone;
        the other aliases of the batch still succeed) or `WaveRateLimited`; it never fails
        the batch. An input that breaks the schema fails its whole request, so such a batch
        is resent op by op and only the faulty op comes back with `ok=False` (Wave's code,
        e.g. `BAD_USER_INPUT`). Ops refused as rate limited are waited out and sent
        again; creates answered NOT_FOUND are sent again up to `not_found_retries` times.

        A batch holding a create, delete or payment is not retried once it may have
        reached Wave. If a batch fails at transport level, the remaining batches are not
        started and `WaveBatchInterrupted` (nothing was done; a `TransientError`) or
        `WaveBatchOutcomeUnknown` (some writes may have happened: look them up before
        retrying; an `OutcomeUnknown`) is raised with `keys`, `unsent_keys` and `results`.
        """
        ops = list(ops)
        for op in ops:
            if not isinstance(op, Mutation):
                raise TypeError(f"mutate() expects Mutation objects, got {type(op).__name__}")
        if not ops:
            return []
        results = self._mutate_once(ops)
        for _ in range(self.not_found_retries):
            again = [i for i, (op, res) in enumerate(zip(ops, results))
                     if res.not_found and op.name.endswith("Create")]
            if not again:
                break
            # NOT_FOUND with a null result: nothing was created, so sending it again is safe.
            self.stats.add("retries", len(again))
            try:
                retried = self._mutate_once([ops[i] for i in again])
            except WaveBatchInterrupted as exc:
                kept = [r for j, r in enumerate(results) if j not in set(again)]
                raise type(exc)(str(exc), keys=exc.keys, unsent_keys=exc.unsent_keys, results=kept + exc.results,
                                status=exc.status, retry_after=exc.retry_after) from exc
            for i, res in zip(again, retried):
                results[i] = res
        return results

    def _mutate_once(self, ops: list[Mutation]) -> list[MutationResult]:
        batches = [ops[i : i + self.batch_size] for i in range(0, len(ops), self.batch_size)]
        done: dict[int, list[MutationResult]] = {}
        failures: list[tuple[int, TransientError]] = []
        stop = threading.Event()

        def run(index: int) -> None:
            if stop.is_set():
                return
            try:
                done[index] = self._send_batch(batches[index])
            except TransientError as exc:
                failures.append((index, exc))
                stop.set()

        if self.max_workers == 1 or len(batches) == 1:
            for i in range(len(batches)):
                run(i)
        else:
            with ThreadPoolExecutor(max_workers=min(self.max_workers, len(batches)),
                                    thread_name_prefix="wave-mutate") as pool:
                for future in [pool.submit(run, i) for i in range(len(batches))]:
                    future.result()

        if failures:
            failures.sort(key=lambda f: f[0])
            failed_idx = {i for i, _ in failures}
            keys = [op.key for i, _ in failures for op in batches[i]]
            unsent = [op.key for i, b in enumerate(batches) if i not in done and i not in failed_idx for op in b]
            results = [r for i in sorted(done) for r in done[i]]
            unknown = [exc for _, exc in failures if isinstance(exc, OutcomeUnknown)]
            first = unknown[0] if unknown else failures[0][1]
            cls = WaveBatchOutcomeUnknown if unknown else WaveBatchInterrupted
            message = f"{first} (batch of {len(keys)} op(s); {len(unsent)} not sent)"
            raise cls(message, keys=keys, unsent_keys=unsent, results=results, status=first.status,
                      retry_after=first.retry_after) from first
        return [r for i in range(len(batches)) for r in done[i]]

    def _send_batch(self, batch: list[Mutation], attempt: int = 0) -> list[MutationResult]:
        names = tuple(op.name for op in batch)
        document = _mutation_document(names)
        variables = {f"i{i}": op.input for i, op in enumerate(batch)}
        idempotent = all(op.idempotent for op in batch)
        body = self._post(document, variables, idempotent=idempotent, operation_name="WaveBatch")
        data = body.get("data")
        errors = body.get("errors") or []
        last_try = attempt + 1 >= self.policy.max_attempts
        if errors and not isinstance(data, dict):
            # Nothing ran: the request as a whole was refused.
            err = WaveGraphQLError("", errors)
            if "UNAUTHENTICATED" in err.codes:
                self._raise_for_errors(errors)
            limited = self._rate_limited(errors)
            if limited and len(limited) == len(errors) and not last_try:
                self._pause(attempt, limited)
                return self._send_batch(batch, attempt + 1)
            if len(batch) > 1:
                return [r for op in batch for r in self._send_batch([op])]
            errs = [InputError(code=_code(e), message=e.get("message"), path=[str(p) for p in e.get("path") or []])
                    for e in errors]
            return [MutationResult(key=batch[0].key, name=batch[0].name, ok=False, entity=None, errors=errs,
                                   error=_result_error(list(errors), errs))]
        if not isinstance(data, dict):
            raise WaveError("Wave: mutation response without data")
        by_alias: dict[str, list[dict[str, Any]]] = {}
        for e in errors:
            path = e.get("path") or []
            by_alias.setdefault(str(path[0]) if path else "", []).append(e)
        results: list[MutationResult] = []
        refused: list[int] = []
        for i, op in enumerate(batch):
            alias = f"m{i}"
            out = data.get(alias)
            spec = _MUTATIONS[op.name]
            raw = by_alias.get(alias, [])
            tops = [InputError(code=_code(e), message=e.get("message"), path=[str(p) for p in e.get("path") or []])
                    for e in raw]
            if not isinstance(out, dict):
                raw = raw or by_alias.get("", [])
                if raw and not last_try and all(_code(e) in _RATE_LIMIT_CODES for e in raw):
                    refused.append(i)  # refused by @rateLimit: this op ran nothing; send it again
                    results.append(None)  # type: ignore[arg-type]
                    continue
                errs = [InputError(code=_code(e), message=e.get("message"), path=[str(p) for p in e.get("path") or []])
                        for e in raw] or [
                    InputError(code="NO_RESULT", message="Wave returned no result for this mutation", path=[alias])]
                raw = raw or [{"message": "Wave returned no result for this mutation",
                               "extensions": {"code": "NO_RESULT"}}]
                results.append(MutationResult(key=op.key, name=op.name, ok=False, entity=None, errors=errs,
                                              error=_result_error(raw, errs)))
                continue
            entity = out.get(spec.entity_field) if spec.entity_field else None
            ok = bool(out.get("didSucceed"))
            input_errors = _input_errors(out.get("inputErrors"))
            results.append(MutationResult(
                key=op.key,
                name=op.name,
                ok=ok,
                entity=entity if isinstance(entity, dict) else None,
                errors=input_errors + tops,
                error=None if ok else _result_error(raw, input_errors),
            ))
        if refused:
            self._pause(attempt, [e for i in refused for e in by_alias.get(f"m{i}", by_alias.get("", []))])
            for i, res in zip(refused, self._send_batch([batch[i] for i in refused], attempt + 1)):
                results[i] = res
        return results
