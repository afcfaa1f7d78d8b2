"""ASGI helpers for crash tests: hold one write's answer after the server did it, and a loopback proxy.

`HoldAnswer` lets the `nth` matching request reach the app (the write is done and committed) and
then holds its answer until `release` is set: a sync killed meanwhile has sent the create and
never recorded it, the window a crash test must hit. `proxy` forwards to another server (BottleCRM),
so the same hold works in front of a real CRM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from typing import Any

import httpx

__all__ = ["HoldAnswer", "kill_when_held", "proxy"]


class HoldAnswer:
    """ASGI middleware holding the answer of the `nth` `method` request whose path ends in `suffix`."""

    def __init__(self, app: Any, method: str, suffix: str, nth: int = 1) -> None:
        self.app, self.method, self.suffix, self.nth = app, method, suffix.rstrip("/"), nth
        self.seen = 0
        #: Set once the held request was done by the app (its answer not yet sent).
        self.held = threading.Event()
        #: Set to send the held answer (and let every later request through).
        self.release = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (scope["type"] == "http" and not self.release.is_set() and scope["method"] == self.method
                and scope["path"].rstrip("/").endswith(self.suffix)):
            self.seen += 1
            if self.seen == self.nth:
                messages: list[Any] = []

                async def capture(message: Any) -> None:
                    messages.append(message)

                await self.app(scope, receive, capture)
                self.held.set()
                while not self.release.is_set():
                    await asyncio.sleep(0.05)
                for message in messages:
                    await send(message)
                return
        await self.app(scope, receive, send)


def kill_when_held(proc: subprocess.Popen, hold: HoldAnswer, what: str, wait_s: float) -> None:
    """SIGKILL `proc` once `hold` holds its answer (the write is done, the sync never hears of it);
    then let the answer go. Fails if the sync ends, or `wait_s` pass, before it gets there."""
    try:
        deadline = time.monotonic() + wait_s
        while not hold.held.wait(0.1):
            assert proc.poll() is None, f"the sync finished before {what}"
            assert time.monotonic() < deadline, f"the sync never reached {what}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        hold.release.set()
        if proc.poll() is None:
            proc.kill()


def proxy(base_url: str) -> Any:
    """An ASGI app forwarding every request to `base_url` (same path and query) and its answer back."""
    client = httpx.AsyncClient(base_url=base_url, timeout=300)
    hop = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        query = scope.get("query_string", b"").decode()
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k.decode().lower() not in hop]
        r = await client.request(scope["method"], scope["path"] + (f"?{query}" if query else ""), headers=headers,
                                 content=body)
        out = [(k.encode(), v.encode()) for k, v in r.headers.items() if k.lower() not in hop]
        await send({"type": "http.response.start", "status": r.status_code,
                    "headers": out + [(b"content-length", str(len(r.content)).encode())]})
        await send({"type": "http.response.body", "body": r.content})

    return app
