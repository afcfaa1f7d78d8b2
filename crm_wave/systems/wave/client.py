"""The Wave client used by the sync: GraphQL over httpx, with retries, rate limit and batching.

`WaveClient` speaks Wave's public GraphQL API (or the simulator's copy of it) and nothing
else: it reads customers, products and invoices page by page, looks invoices up by id, and
sends writes as batched aliased mutations. Mapping between CRM records and Wave inputs lives
elsewhere. The package is split the way httpx is: this module is the client (the public
surface); `errors` the typed errors (a small hierarchy under `crm_wave.systems.http.ApiError`);
`models` the writes and their results (`Mutation`, `MutationResult`); `documents` the GraphQL
documents (`queries/*.graphql`, loaded with graphql-core); `transport` one GraphQL request
(envelope, typed errors, GraphQL-level rate limits); `batch` the batched mutations behind
`mutate`. The public names of `errors` and `models` are re-exported here.

Every request goes through `crm_wave.systems.http.RetryingSender`: 429/503 and network
errors are retried with backoff (honouring `Retry-After`), the request rate follows
`HttpPolicy.requests_per_minute`, and a request that is not idempotent (a batch holding a
create, a delete or a payment) is never retried once it may have reached Wave; a lost
response then raises `OutcomeUnknown` and the caller looks the records up before retrying.

Per record, `MutationResult.error` holds the typed error of a failed mutation
(`WaveNotFound`, `WaveRejected`, `WaveRateLimited` or `WaveGraphQLError`).

Rate limits are waited out in both of Wave's forms: HTTP 429 with `Retry-After` (by the
sender) and HTTP 200 with a GraphQL error coded `RATE_LIMITED` (field-level `@rateLimit`;
only the refused fields are sent again). At most `max_in_flight` requests (2) are on the
wire at once. A create answered `NOT_FOUND` (Wave sometimes does so for ids that exist;
nothing was created) is sent again up to `not_found_retries` times.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import httpx

from crm_wave.systems.http import HttpPolicy, RequestStats, RetryingSender, tls_context
from crm_wave.systems.wave.batch import send_mutations
from crm_wave.systems.wave.documents import DOCUMENTS, lookup_document
from crm_wave.systems.wave.errors import (
    InputError,
    WaveAuthError,
    WaveBatchInterrupted,
    WaveBatchOutcomeUnknown,
    WaveError,
    WaveGraphQLError,
    WaveNotFound,
    WaveRateLimited,
    WaveRejected,
    error_code,
)
from crm_wave.systems.wave.models import MUTATION_NAMES, Mutation, MutationResult
from crm_wave.systems.wave.transport import GraphQLTransport

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


class WaveClient:
    """A client for one Wave business.

    Construct it with the GraphQL endpoint and an access token, or from a tenant's settings
    with `crm_wave.config.clients.wave_client(settings)` (`crm_wave/config/settings.py` reads the variables and
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
        business_var: str = "WAVE_BUSINESS_ID",
    ) -> None:
        """`business_var`: the variable of the business id, as messages name it (the tenant's, e.g.
        `ACME_WAVE_BUSINESS_ID`; `crm_wave.config.clients` passes it)."""
        if not url:
            raise WaveError("WaveClient: url is required")
        if not token:
            raise WaveError("WaveClient: token is required")
        if page_size < 1 or batch_size < 1 or max_workers < 1:
            raise ValueError("page_size, batch_size and max_workers must be at least 1")
        self.url = url
        self._business_var = business_var
        self.page_size = page_size
        self.batch_size = batch_size
        self.max_workers = max_workers
        policy = policy or HttpPolicy()
        if policy.max_in_flight is None:
            policy = replace(policy, max_in_flight=max_in_flight)
        self.not_found_retries = not_found_retries
        self._configured_business_id = business_id
        self._business_id = business_id
        self._business_lock = threading.Lock()
        self._http = httpx.Client(
            verify=tls_context(),
            transport=transport,
            timeout=policy.timeout_s,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": "crm-wave",
            },
            limits=httpx.Limits(max_connections=max(10, max_workers * 2), max_keepalive_connections=max(10, max_workers * 2)),
        )
        self._sender = RetryingSender(self._http, policy, name="wave")
        self._gql = GraphQLTransport(self._http, self._sender, url)

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

    @property
    def policy(self) -> HttpPolicy:
        """Timeouts, retries and request rate (shared by every request of this client)."""
        return self._sender.policy

    @policy.setter
    def policy(self, policy: HttpPolicy) -> None:
        self._sender.policy = policy

    # ----------------------------------------------------------------- GraphQL

    def execute(self, query: str, variables: dict[str, Any] | None = None, *, idempotent: bool = True) -> dict[str, Any]:
        """Run one GraphQL document and return its `data`.

        Top-level `errors` raise `WaveGraphQLError` (`WaveAuthError` for
        `UNAUTHENTICATED`). Pass `idempotent=False` for a document with a create: a
        lost response then raises `OutcomeUnknown` instead of being retried.
        """
        return self._gql.execute(query, variables, idempotent=idempotent)

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
            data = self._gql.execute(DOCUMENTS["list_businesses"], {"page": page, "pageSize": 50},
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
            f"Wave: the token has access to {len(businesses)} businesses; set {self._business_var} "
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
            data = self._gql.execute(DOCUMENTS[document], variables, operation_name=operation_name)
        except WaveNotFound as exc:
            if any((e.get("path") or [None])[-1] == "business" for e in exc.errors):
                raise WaveNotFound(f"Wave: business {self.business_id!r} could not be found; check {self._business_var}",
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
            document = lookup_document("invoice", "InvoiceFields", len(chunk))
            variables: dict[str, Any] = {"businessId": self.business_id, **{f"id{i}": v for i, v in enumerate(chunk)}}
            body = self._gql.post_served(document, variables, idempotent=True, operation_name="GetInvoices")
            errors = body.get("errors") or []
            other = [e for e in errors if error_code(e) != "NOT_FOUND" or len(e.get("path") or []) < 2]
            if other:
                self._gql.raise_for_errors(other)
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

    def _get(self, document: str, field_name: str, entity_id: str) -> dict[str, Any] | None:
        operation_name = "".join(part.capitalize() for part in document.split("_"))
        try:
            data = self._gql.execute(DOCUMENTS[document], {"businessId": self.business_id, "id": entity_id},
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

    def get_invoice(self, invoice_id: str) -> dict[str, Any] | None:
        """One invoice by id, or None when there is none."""
        return self._get("get_invoice", "invoice", invoice_id)

    def change_heads(self) -> dict[str, dict[str, Any]]:
        """The newest change of each type, in one request (plus one to find the business when
        none is configured): `{"customers" | "products" | "invoices": {"id", "modifiedAt",
        "totalCount"}}`, `id` and `modifiedAt` None for an empty listing. Archived products count."""
        data = self._gql.execute(DOCUMENTS["change_heads"], {"businessId": self.business_id}, operation_name="ChangeHeads")
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
        return send_mutations(self._gql, ops, batch_size=self.batch_size, max_workers=self.max_workers,
                              not_found_retries=self.not_found_retries)
