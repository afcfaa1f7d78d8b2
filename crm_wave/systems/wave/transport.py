"""One Wave GraphQL endpoint over httpx: POST a document, decode the answer, raise typed errors.

`GraphQLTransport` sits between `WaveClient` (and `batch`) and `crm_wave.systems.http.RetryingSender`
(which retries 429/503 and network errors and keeps the request rate): it adds what is
GraphQL-specific, that is the JSON envelope, HTTP 401/403 as `WaveAuthError`, rate limits
answered as GraphQL errors (HTTP 200, code `RATE_LIMITED`) waited out and sent again, and
top-level `errors` raised as the typed errors of `errors`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from crm_wave.systems.http import HttpPolicy, RequestStats, RetryingSender
from crm_wave.systems.wave.errors import (
    RATE_LIMIT_CODES,
    WaveAuthError,
    WaveError,
    WaveGraphQLError,
    WaveRateLimited,
    error_class,
    error_code,
    result_error,
)

__all__ = ["GraphQLTransport"]


class GraphQLTransport:
    """Sends GraphQL requests to `url` through `sender` (whose policy and counters it shares)."""

    def __init__(self, http: httpx.Client, sender: RetryingSender, url: str) -> None:
        self._http = http
        self._sender = sender
        self.url = url

    @property
    def policy(self) -> HttpPolicy:
        """The sender's policy (attempts, backoff, longest wait)."""
        return self._sender.policy

    @property
    def stats(self) -> RequestStats:
        """The sender's request counters."""
        return self._sender.stats

    def post(self, query: str, variables: Mapping[str, Any] | None, *, idempotent: bool,
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
    def raise_for_errors(errors: Sequence[Mapping[str, Any]]) -> None:
        """Raise the typed error for a response's top-level GraphQL `errors`."""
        err = WaveGraphQLError("", errors)
        messages = "; ".join(str(e.get("message")) for e in err.errors[:5])
        codes = f" [{', '.join(err.codes)}]" if err.codes else ""
        text = f"Wave GraphQL error{codes}: {messages}"
        cls = error_class(err.codes)
        if cls is WaveRateLimited:
            raise result_error(err.errors, [])
        raise cls(text, errors)

    @staticmethod
    def rate_limited(errors: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The errors that say "rate limited: wait and send again"."""
        return [e for e in errors if error_code(e) in RATE_LIMIT_CODES]

    def pause(self, attempt: int, errors: Sequence[Mapping[str, Any]]) -> None:
        """Wait out a rate limit answered as GraphQL errors (their `retryAfter`, else backoff)."""
        self.stats.add("rate_limited")
        self.stats.add("retries")
        after = [a for e in errors if isinstance(a := (e.get("extensions") or {}).get("retryAfter"), (int, float))]
        if after:
            wait = min(max(after), self.policy.max_retry_after_s)
        else:
            wait = min(self.policy.backoff_max_s, self.policy.backoff_initial_s * 2 ** attempt)
        time.sleep(wait)

    def post_served(self, query: str, variables: Mapping[str, Any] | None, *, idempotent: bool,
                    operation_name: str | None = None) -> dict[str, Any]:
        """`post`, with GraphQL-level rate limits waited out and the whole request sent again (a refused
        field ran nothing): the first body not rate limited, or the last one when the attempts ran out."""
        body: dict[str, Any] = {}  # set by the first attempt (`HttpPolicy.max_attempts` is at least 1)
        for attempt in range(self.policy.max_attempts):
            body = self.post(query, variables, idempotent=idempotent, operation_name=operation_name)
            limited = self.rate_limited(body.get("errors") or [])
            if not limited:
                break
            if attempt + 1 < self.policy.max_attempts:
                self.pause(attempt, limited)
        return body

    def execute(self, query: str, variables: Mapping[str, Any] | None, *, idempotent: bool = True,
                operation_name: str | None = None) -> dict[str, Any]:
        """Run one document and return its `data` (`post_served`: rate limits waited out); other errors
        are raised typed."""
        body = self.post_served(query, variables, idempotent=idempotent, operation_name=operation_name)
        if body.get("errors"):
            self.raise_for_errors(body["errors"])
        data = body.get("data")
        if not isinstance(data, dict):
            raise WaveError("Wave: response without data")
        return data
