"""Fault injection shared by both simulators: an ASGI middleware and its settings.

`GET /_sim/faults` returns the current settings, `PUT /_sim/faults` replaces them
with a JSON body of the same shape (fields left out take the app's start-up values).
The settings are kept per simulator process and reset at start-up: "no faults", or for
the Wave simulator in strict mode its harsh defaults (`WaveFaultSettings.strict()`);
tests of the sync switch faults on over HTTP, exactly as an operator would against a
running simulator. Rate limits count per token (the `Authorization` header).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["FaultSettings", "FaultInjector", "FAULTS_PATH", "WaveFaultSettings", "RateLimitedBody"]

#: Builds the body of a rate-limit refusal answered as HTTP 200 with GraphQL errors:
#: `(request body, seconds to wait) -> JSON body`.
RateLimitedBody = Callable[[bytes, float], dict[str, Any]]

FAULTS_PATH = "/_sim/faults"


@dataclass(frozen=True)
class FaultSettings:
    """What the simulator should do wrong, and how often."""

    rate_limit_per_minute: int | None = None
    error_rate: float = 0.0
    lost_response_rate: float = 0.0
    latency_ms: int = 0
    seed: int | None = None

    @classmethod
    def from_json(cls, body: object, defaults: FaultSettings | None = None) -> FaultSettings:
        """Validate a JSON body; raise ValueError naming the bad field. Fields left out take
        their values from `defaults` (the app's start-up settings) when given."""
        if not isinstance(body, dict):
            raise ValueError("body: expected a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown field")
        if defaults is not None:
            body = {**asdict(defaults), **body}
        rl = body.get("rate_limit_per_minute")
        if rl is not None and (not isinstance(rl, int) or isinstance(rl, bool) or rl <= 0):
            raise ValueError("rate_limit_per_minute: expected a positive integer or null")
        for name in ("error_rate", "lost_response_rate"):
            v = body.get(name, 0.0)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}: expected a number from 0 to 1")
        lat = body.get("latency_ms", 0)
        if not isinstance(lat, int) or isinstance(lat, bool) or lat < 0:
            raise ValueError("latency_ms: expected a non-negative integer")
        seed = body.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError("seed: expected an integer or null")
        return cls(
            rate_limit_per_minute=rl,
            error_rate=float(body.get("error_rate", 0.0)),
            lost_response_rate=float(body.get("lost_response_rate", 0.0)),
            latency_ms=lat,
            seed=seed,
            **cls._more_from_json(body),
        )

    @classmethod
    def _more_from_json(cls, body: dict[str, Any]) -> dict[str, Any]:
        """The validated fields a subclass adds."""
        return {}


@dataclass(frozen=True)
class WaveFaultSettings(FaultSettings):
    """The Wave simulator's settings: the shared ones, plus how rate limits are answered, the
    in-flight limit per token and creates that spuriously answer NOT_FOUND."""

    #: `rate_limit_per_minute` counts the requests of this many seconds (60; tests use less).
    rate_limit_window_s: float = 60.0
    #: How a refusal is answered: "http" (429 + Retry-After), "graphql" (HTTP 200, a GraphQL
    #: error per top-level field coded RATE_LIMITED, as field-level @rateLimit), or "both" (alternately).
    rate_limit_form: str = "http"
    #: At most this many requests of one token at once; one more gets 429 (None: no limit).
    max_in_flight: int | None = None
    #: Probability that a create answers a top-level NOT_FOUND ("Node could not be found.").
    not_found_rate: float = 0.0

    @classmethod
    def strict(cls) -> WaveFaultSettings:
        """Strict mode's start-up settings: 60 requests a minute per token answered in both
        forms, and at most 2 requests in flight per token."""
        return cls(rate_limit_per_minute=60, rate_limit_form="both", max_in_flight=2)

    @classmethod
    def _more_from_json(cls, body: dict[str, Any]) -> dict[str, Any]:
        window = body.get("rate_limit_window_s", 60.0)
        if not isinstance(window, (int, float)) or isinstance(window, bool) or not 0 < window <= 3600:
            raise ValueError("rate_limit_window_s: expected a number of seconds above 0, at most 3600")
        form = body.get("rate_limit_form", "http")
        if form not in ("http", "graphql", "both"):
            raise ValueError("rate_limit_form: expected one of 'http', 'graphql', 'both'")
        flight = body.get("max_in_flight")
        if flight is not None and (not isinstance(flight, int) or isinstance(flight, bool) or flight <= 0):
            raise ValueError("max_in_flight: expected a positive integer or null")
        rate = body.get("not_found_rate", 0.0)
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0.0 <= rate <= 1.0:
            raise ValueError("not_found_rate: expected a number from 0 to 1")
        return {"rate_limit_window_s": float(window), "rate_limit_form": form, "max_in_flight": flight,
                "not_found_rate": float(rate)}


class FaultInjector:
    """ASGI middleware that injects latency, 503s, lost responses and 429s.

    Order per request: in-flight limit (429, nothing done); latency; rate limit (429 with
    Retry-After, or HTTP 200 with GraphQL errors when the settings and `rate_limited_body`
    say so; nothing done); error (503, nothing done); then the request runs, and with
    probability `lost_response_rate` its response is replaced by a 502 after the work was
    done. The `/_sim/faults` endpoint itself is never faulted.
    """

    def __init__(self, app: ASGIApp, *, defaults: FaultSettings | None = None,
                 rate_limited_body: RateLimitedBody | None = None) -> None:
        self.app = app
        self._lock = threading.Lock()
        self.defaults = defaults or FaultSettings()
        self._rate_limited_body = rate_limited_body
        self._in_flight: dict[bytes, int] = {}
        self.configure(self.defaults)

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def configure(self, settings: FaultSettings) -> None:
        """Replace the settings and restart the random stream and the rate windows."""
        with self._lock:
            self._settings = settings
            self._rng = random.Random(settings.seed)
            self._windows: dict[bytes, deque[float]] = {}
            self._refusals = 0

    def roll(self, p: float) -> bool:
        """True with probability `p`, from the seeded stream."""
        if p <= 0.0:
            return False
        with self._lock:
            return self._rng.random() < p

    _roll = roll

    def _rate_limited(self, token: bytes) -> float | None:
        """Sliding window per token; return seconds to wait when over the limit."""
        limit = self._settings.rate_limit_per_minute
        if limit is None:
            return None
        span = getattr(self._settings, "rate_limit_window_s", 60.0)
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault(token, deque())
            while window and now - window[0] >= span:
                window.popleft()
            if len(window) >= limit:
                return max(0.0, span - (now - window[0]))
            window.append(now)
        return None

    def _graphql_form(self) -> bool:
        """Whether this refusal is answered as GraphQL errors ("both" alternates, HTTP first)."""
        form = getattr(self._settings, "rate_limit_form", "http")
        if self._rate_limited_body is None or form == "http":
            return False
        if form == "graphql":
            return True
        with self._lock:
            self._refusals += 1
            return self._refusals % 2 == 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == FAULTS_PATH:
            await self._serve_settings(scope, receive, send)
            return
        token = dict(scope.get("headers") or []).get(b"authorization", b"")
        limit = getattr(self._settings, "max_in_flight", None)
        with self._lock:
            busy = self._in_flight.get(token, 0)
            if limit is None or busy < limit:
                self._in_flight[token] = busy + 1
                busy = -1
        if busy >= 0:
            await _send_json(send, 429, {"error": "too_many_in_flight", "field": None,
                                         "message": f"at most {limit} requests of one token at once"},
                             [(b"retry-after", b"1")])
            return
        try:
            await self._faulted(scope, receive, send, token)
        finally:
            with self._lock:
                self._in_flight[token] -= 1

    async def _faulted(self, scope: Scope, receive: Receive, send: Send, token: bytes) -> None:
        s = self._settings
        if s.latency_ms:
            await asyncio.sleep(s.latency_ms / 1000.0)
        wait = self._rate_limited(token)
        if wait is not None:
            # Whole seconds on a real minute; a short test window keeps its fractions.
            retry_after = max(1, math.ceil(wait)) if getattr(s, "rate_limit_window_s", 60.0) >= 60 else max(0.05, round(wait, 3))
            if self._graphql_form():
                assert self._rate_limited_body is not None
                await _send_json(send, 200, self._rate_limited_body(await _read_body(receive), float(retry_after)))
                return
            await _send_json(send, 429, {"error": "rate_limited", "message": "too many requests", "field": None},
                             [(b"retry-after", str(retry_after).encode())])
            return
        if self._roll(s.error_rate):
            await _send_json(send, 503, {"error": "unavailable", "message": "injected fault", "field": None})
            return
        if self._roll(s.lost_response_rate):
            async def discard(message: Message) -> None:
                return None

            await self.app(scope, receive, discard)
            await _send_json(send, 502, {"error": "bad_gateway", "message": "injected lost response", "field": None})
            return
        await self.app(scope, receive, send)

    async def _serve_settings(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "PUT":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            try:
                self.configure(type(self.defaults).from_json(json.loads(body or b"null"), self.defaults))
            except (ValueError, json.JSONDecodeError) as exc:
                field = str(exc).split(":", 1)[0] if isinstance(exc, ValueError) else None
                await _send_json(send, 422, {"error": "validation_failed", "message": str(exc), "field": field})
                return
        elif method != "GET":
            await _send_json(send, 405, {"error": "method_not_allowed", "message": method, "field": None})
            return
        await _send_json(send, 200, asdict(self._settings))


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _send_json(send: Send, status: int, body: object, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = json.dumps(body).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        + (headers or []),
    })
    await send({"type": "http.response.body", "body": payload})
