"""HTTP machinery shared by the CRM and Wave clients: retries, backoff, rate limit, counters.

Retries use tenacity (exponential backoff with jitter, `Retry-After` honoured when the
server sends it); the request rate is kept by pyrate-limiter. A request that is not
idempotent (a create without an idempotency key) is never retried once it may have
reached the server: a 502, 504 or read timeout then raises `OutcomeUnknown`, and the
caller looks the record up before trying again (the safe-create pattern).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone

import httpx
import tenacity
from pyrate_limiter import Duration, Limiter, Rate

__all__ = [
    "ApiError",
    "HttpPolicy",
    "OutcomeUnknown",
    "RequestStats",
    "RetryingSender",
    "TransientError",
]

#: Status codes that mean "nothing was done, try again later".
RETRY_SAFE_STATUSES = frozenset({429, 503})
#: Status codes after which the request may or may not have been carried out.
OUTCOME_UNKNOWN_STATUSES = frozenset({500, 502, 504})


class ApiError(Exception):
    """Base of every error a crm-wave client raises."""


class TransientError(ApiError):
    """The server kept failing (429/5xx/network) after every retry."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class OutcomeUnknown(TransientError):
    """A non-idempotent request may have been carried out; look before retrying."""


@dataclass(frozen=True, kw_only=True)
class HttpPolicy:
    """How a client talks to one system: timeouts, retries and request rate."""

    timeout_s: float = 30.0
    max_attempts: int = 8
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 10.0
    max_retry_after_s: float = 90.0
    requests_per_minute: int | None = None


@dataclass
class RequestStats:
    """Counters for one client, for progress lines, soak figures and benchmarks."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    network_errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, n: int = 1) -> None:
        """Increment counter `name` by `n` (thread-safe)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return {k: getattr(self, k) for k in ("requests", "retries", "rate_limited", "server_errors", "network_errors")}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class _Retry(Exception):
    """Internal: this attempt failed in a way that is safe to retry."""

    def __init__(self, message: str, status: int | None, retry_after: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RetryingSender:
    """Sends requests over one `httpx.Client` with retries and a request-rate limit."""

    def __init__(self, client: httpx.Client, policy: HttpPolicy, *, name: str) -> None:
        self.client = client
        self.policy = policy
        self.name = name
        self.stats = RequestStats()
        self._limiter = (
            Limiter(Rate(policy.requests_per_minute, Duration.MINUTE)) if policy.requests_per_minute else None
        )
        self._jitter = random.Random()

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(retry_after, self.policy.max_retry_after_s) + self._jitter.uniform(0, 0.05)
        base = min(self.policy.backoff_max_s, self.policy.backoff_initial_s * 2 ** (state.attempt_number - 1))
        return self._jitter.uniform(0, base)  # full jitter

    def send(self, request: httpx.Request, *, idempotent: bool) -> httpx.Response:
        """Send `request`; retry what is safe to retry; return the final non-retryable response."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.policy.max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Retry),
            before_sleep=lambda _s: self.stats.add("retries"),
            reraise=True,
        )
        try:
            return retrying(self._attempt, request, idempotent)
        except _Retry as exc:
            raise TransientError(
                f"{self.name}: gave up after {self.policy.max_attempts} attempts: {exc}",
                status=exc.status,
                retry_after=exc.retry_after,
            ) from None

    def _attempt(self, request: httpx.Request, idempotent: bool) -> httpx.Response:
        if self._limiter is not None:
            self._limiter.try_acquire(self.name)
        self.stats.add("requests")
        try:
            response = self.client.send(request)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Never reached the server: always safe to retry.
            self.stats.add("network_errors")
            raise _Retry(f"{type(exc).__name__}", None, None) from exc
        except httpx.TransportError as exc:
            self.stats.add("network_errors")
            if not idempotent:
                raise OutcomeUnknown(f"{self.name}: {type(exc).__name__}; the write may have happened") from exc
            raise _Retry(f"{type(exc).__name__}", None, None) from exc
        status = response.status_code
        if status in RETRY_SAFE_STATUSES:
            response.read()
            if status == 429:
                self.stats.add("rate_limited")
            else:
                self.stats.add("server_errors")
            raise _Retry(f"HTTP {status}", status, parse_retry_after(response.headers.get("retry-after")))
        if status in OUTCOME_UNKNOWN_STATUSES:
            response.read()
            self.stats.add("server_errors")
            if not idempotent:
                raise OutcomeUnknown(f"{self.name}: HTTP {status}; the write may have happened", status=status)
            raise _Retry(f"HTTP {status}", status, parse_retry_after(response.headers.get("retry-after")))
        return response
