"""Fault injection shared by both simulators: an ASGI middleware and its settings.

`GET /_sim/faults` returns the current settings, `PUT /_sim/faults` replaces them
with a JSON body of the same shape. The settings are kept per simulator process and
reset to "no faults" at start-up; tests of the sync switch faults on over HTTP,
exactly as an operator would against a running simulator.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
import time
from dataclasses import asdict, dataclass, fields

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["FaultSettings", "FaultInjector", "FAULTS_PATH"]

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
    def from_json(cls, body: object) -> FaultSettings:
        """Validate a JSON body; raise ValueError naming the bad field."""
        if not isinstance(body, dict):
            raise ValueError("body: expected a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown field")
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
        )


class FaultInjector:
    """ASGI middleware that injects latency, 503s, lost responses and 429s.

    Order per request: latency; rate limit (429 with Retry-After, nothing done);
    error (503, nothing done); then the request runs, and with probability
    `lost_response_rate` its response is replaced by a 502 after the work was done.
    The `/_sim/faults` endpoint itself is never faulted.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._lock = threading.Lock()
        self.configure(FaultSettings())

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def configure(self, settings: FaultSettings) -> None:
        """Replace the settings and restart the random stream and the rate window."""
        with self._lock:
            self._settings = settings
            self._rng = random.Random(settings.seed)
            self._window: list[float] = []

    def _roll(self, p: float) -> bool:
        if p <= 0.0:
            return False
        with self._lock:
            return self._rng.random() < p

    def _rate_limited(self) -> float | None:
        """Sliding 60 s window; return seconds to wait when over the limit."""
        limit = self._settings.rate_limit_per_minute
        if limit is None:
            return None
        now = time.monotonic()
        with self._lock:
            self._window = [t for t in self._window if now - t < 60.0]
            if len(self._window) >= limit:
                return max(0.0, 60.0 - (now - self._window[0]))
            self._window.append(now)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == FAULTS_PATH:
            await self._serve_settings(scope, receive, send)
            return
        s = self._settings
        if s.latency_ms:
            await asyncio.sleep(s.latency_ms / 1000.0)
        wait = self._rate_limited()
        if wait is not None:
            retry_after = str(max(1, math.ceil(wait)))
            await _send_json(send, 429, {"error": "rate_limited", "message": "too many requests", "field": None},
                             [(b"retry-after", retry_after.encode())])
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
                self.configure(FaultSettings.from_json(json.loads(body or b"null")))
            except (ValueError, json.JSONDecodeError) as exc:
                field = str(exc).split(":", 1)[0] if isinstance(exc, ValueError) else None
                await _send_json(send, 422, {"error": "validation_failed", "message": str(exc), "field": field})
                return
        elif method != "GET":
            await _send_json(send, 405, {"error": "method_not_allowed", "message": method, "field": None})
            return
        await _send_json(send, 200, asdict(self._settings))


async def _send_json(send: Send, status: int, body: object, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = json.dumps(body).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        + (headers or []),
    })
    await send({"type": "http.response.body", "body": payload})
