"""HTTP machinery shared by the CRM and Wave clients: retries, backoff, rate limit, counters.

Retries use tenacity (exponential backoff with jitter, `Retry-After` honoured when the
server sends it); the request rate is kept by pyrate-limiter, counted in a SQLite file when
several processes talk to one system for one tenant (`HttpPolicy.rate_file`: the Dagster runs,
the sensors in the daemon and the CLI then share one budget). A request that is not
idempotent (a create without an idempotency key) is never retried once it may have
reached the server: a 502, 504 or read timeout then raises `OutcomeUnknown`, and the
caller looks the record up before trying again (the safe-create pattern).
"""

from __future__ import annotations

import errno
import functools
import random
import socket
import ssl
import threading
from dataclasses import dataclass, field
from datetime import datetime, UTC
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import tenacity

if TYPE_CHECKING:
    from pyrate_limiter import Limiter

__all__ = [
    "ApiError",
    "HttpPolicy",
    "OutcomeUnknown",
    "RequestStats",
    "RetryingSender",
    "TransientError",
    "UnreachableError",
    "request_limiter",
    "tls_context",
]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's one TLS context for every client (httpx's own per client: 20-40 ms each, reading the CA
    bundle; a `sync --once` builds four clients). `SSL_CERT_FILE`/`SSL_CERT_DIR` apply as in httpx."""
    return httpx.create_ssl_context()


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


class UnreachableError(TransientError):
    """The URL cannot work as written (no http:// or https://) or its host does not resolve or route:
    reported at once, since retrying cannot help. `system` and `url` say which."""

    def __init__(self, message: str, *, system: str, url: str) -> None:
        super().__init__(message)
        self.system = system
        self.url = url


def _unreachable(exc: httpx.TransportError) -> str | None:
    """Why `exc` cannot be cured by retrying (bad scheme, unknown host, no route), or None."""
    if isinstance(exc, httpx.UnsupportedProtocol):
        return "the URL needs http:// or https:// in front"
    seen = exc.__cause__ or exc.__context__
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return f"the host name does not resolve ({seen.strerror or seen})"
        if isinstance(seen, OSError) and seen.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return f"no route to the host ({seen.strerror or seen})"
        seen = seen.__cause__ or seen.__context__
    return None


@dataclass(frozen=True, kw_only=True)
class HttpPolicy:
    """How a client talks to one system: timeouts, retries and request rate."""

    timeout_s: float = 30.0
    max_attempts: int = 8
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 10.0
    max_retry_after_s: float = 90.0
    requests_per_minute: int | None = None
    #: A SQLite file counting the requests of every client and process that names it, so that
    #: `requests_per_minute` holds for all of them together (None: this client alone).
    rate_file: str | None = None
    #: Give up (`TransientError`) rather than wait longer than this for room under the rate
    #: (None: wait as long as it takes). The sensors wait briefly and look again next tick.
    max_rate_wait_s: float | None = None
    #: At most this many requests of this client on the wire at once (None: no limit); Wave
    #: answers a third concurrent request of one token with 429.
    max_in_flight: int | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"HttpPolicy.max_attempts is {self.max_attempts}: at least 1 (one request, no retry)")


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
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def request_limiter(limit: int, rate_file: str | Path | None = None, *, window_ms: int = 60_000) -> Limiter:
    """At most `limit` requests in any `window_ms` (default a minute); counted in `rate_file` (SQLite, under a
    file lock) across every process that uses the same file, or in memory for this limiter alone."""
    # Here, not at import: pyrate_limiter loads asyncio (~0.1 s), and a client without a limit needs none.
    from pyrate_limiter import Limiter, Rate, SQLiteBucket

    rate = Rate(limit, window_ms)
    if rate_file is None:
        return Limiter(rate)
    Path(rate_file).parent.mkdir(parents=True, exist_ok=True)
    return Limiter(SQLiteBucket.init_from_file([rate], db_path=str(rate_file), use_file_lock=True))


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
            request_limiter(policy.requests_per_minute, policy.rate_file) if policy.requests_per_minute else None
        )
        self._jitter = random.Random()
        self._in_flight = threading.BoundedSemaphore(policy.max_in_flight) if policy.max_in_flight else None

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(retry_after, self.policy.max_retry_after_s) + self._jitter.uniform(0, 0.05)
        base = min(self.policy.backoff_max_s, self.policy.backoff_initial_s * 2 ** (state.attempt_number - 1))
        return self._jitter.uniform(0, base)  # full jitter

    def close(self) -> None:
        """Release the limiter (its leak thread and, with a `rate_file`, its SQLite connection)."""
        if self._limiter is not None:
            self._limiter.close()

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
                f"{self.name}: gave up after {self.policy.max_attempts} attempts at {_where(request)}: {exc}",
                status=exc.status,
                retry_after=exc.retry_after,
            ) from None

    def _attempt(self, request: httpx.Request, idempotent: bool) -> httpx.Response:
        if self._limiter is not None:
            wait = self.policy.max_rate_wait_s
            if not self._limiter.try_acquire(self.name, timeout=-1 if wait is None else wait):
                raise TransientError(f"{self.name}: no room under the limit of {self.policy.requests_per_minute} "
                                     f"requests a minute within {wait:g} s")
        self.stats.add("requests")
        try:
            if self._in_flight is None:
                response = self.client.send(request)
            else:
                with self._in_flight:
                    response = self.client.send(request)
        except (httpx.UnsupportedProtocol, httpx.ConnectError) as exc:
            if (why := _unreachable(exc)) is None:
                self.stats.add("network_errors")
                raise _Retry(f"{type(exc).__name__} ({exc})", None, None) from exc
            raise UnreachableError(f"{self.name}: cannot reach {_where(request)}: {why}",
                                   system=self.name, url=_where(request)) from exc
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
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


def _where(request: httpx.Request) -> str:
    """The request's URL without its query string (cursors and filters add nothing to an error)."""
    return str(request.url.copy_with(query=None))
