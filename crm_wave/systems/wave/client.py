"""The Wave client used by the sync: GraphQL over httpx, with retries, rate limit and batching.

`WaveClient` speaks Wave's public GraphQL API (or the simulator's copy of it) and nothing
else: it reads customers, products and invoices page by page, looks invoices up by id, and
sends writes as batched aliased mutations. Mapping between CRM records and Wave inputs lives
elsewhere. The package is split the way httpx is: this module is the client; `errors` the
typed errors (a small hierarchy under `crm_wave.systems.http.ApiError`); `models` the
writes and their results (`Mutation`, `MutationResult`); `documents` the GraphQL documents
(`queries/*.graphql`, loaded with graphql-core). Their public names are re-exported here.

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
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import httpx

from crm_wave.systems.http import HttpPolicy, OutcomeUnknown, RequestStats, RetryingSender, TransientError
from crm_wave.systems.wave.documents import DOCUMENTS, lookup_document, mutation_document
from crm_wave.systems.wave.errors import (
    RATE_LIMIT_CODES,
    InputError,
    WaveAuthError,
    WaveBatchInterrupted,
    WaveBatchOutcomeUnknown,
    WaveError,
    WaveGraphQLError,
    WaveNotFound,
    WaveRateLimited,
    WaveRejected,
    error_class,
    error_code,
    parse_input_errors,
    result_error,
)
from crm_wave.systems.wave.models import MUTATION_NAMES, MUTATIONS, Mutation, MutationResult

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

    Construct it with the GraphQL endpoint and an access token, or from a tenant's environment
    with `crm_wave.clients.wave_client(env)` (the one place that reads the variables and the
    default rate). Use it as a context manager (or call `close()`).

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
        cls = error_class(err.codes)
        if cls is WaveRateLimited:
            raise result_error(err.errors, [])
        raise cls(text, errors)

    @staticmethod
    def _rate_limited(errors: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        return [e for e in errors if error_code(e) in RATE_LIMIT_CODES]

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
            document = lookup_document("invoice", "InvoiceFields", len(chunk))
            variables: dict[str, Any] = {"businessId": self.business_id, **{f"id{i}": v for i, v in enumerate(chunk)}}
            for attempt in range(self.policy.max_attempts):
                body = self._post(document, variables, idempotent=True, operation_name="GetInvoices")
                limited = self._rate_limited(body.get("errors") or [])
                if not limited or attempt + 1 == self.policy.max_attempts:
                    break
                self._pause(attempt, limited)
            errors = body.get("errors") or []
            other = [e for e in errors if error_code(e) != "NOT_FOUND" or len(e.get("path") or []) < 2]
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
        document = mutation_document(names)
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
            errs = [InputError(code=error_code(e), message=e.get("message"), path=[str(p) for p in e.get("path") or []])
                    for e in errors]
            return [MutationResult(key=batch[0].key, name=batch[0].name, ok=False, entity=None, errors=errs,
                                   error=result_error(list(errors), errs))]
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
            spec = MUTATIONS[op.name]
            raw = by_alias.get(alias, [])
            tops = [InputError(code=error_code(e), message=e.get("message"), path=[str(p) for p in e.get("path") or []])
                    for e in raw]
            if not isinstance(out, dict):
                raw = raw or by_alias.get("", [])
                if raw and not last_try and all(error_code(e) in RATE_LIMIT_CODES for e in raw):
                    refused.append(i)  # refused by @rateLimit: this op ran nothing; send it again
                    results.append(None)  # type: ignore[arg-type]
                    continue
                errs = [InputError(code=error_code(e), message=e.get("message"), path=[str(p) for p in e.get("path") or []])
                        for e in raw] or [
                    InputError(code="NO_RESULT", message="Wave returned no result for this mutation", path=[alias])]
                raw = raw or [{"message": "Wave returned no result for this mutation",
                               "extensions": {"code": "NO_RESULT"}}]
                results.append(MutationResult(key=op.key, name=op.name, ok=False, entity=None, errors=errs,
                                              error=result_error(raw, errs)))
                continue
            entity = out.get(spec.entity_field) if spec.entity_field else None
            ok = bool(out.get("didSucceed"))
            input_errors = parse_input_errors(out.get("inputErrors"))
            results.append(MutationResult(
                key=op.key,
                name=op.name,
                ok=ok,
                entity=entity if isinstance(entity, dict) else None,
                errors=input_errors + tops,
                error=None if ok else result_error(raw, input_errors),
            ))
        if refused:
            self._pause(attempt, [e for i in refused for e in by_alias.get(f"m{i}", by_alias.get("", []))])
            for i, res in zip(refused, self._send_batch([batch[i] for i in refused], attempt + 1)):
                results[i] = res
        return results
