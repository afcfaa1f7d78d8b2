"""Serving the simulators: in the foreground for the CLI, in a thread for tests and the demo."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

__all__ = ["free_port", "serve_forever", "serve_in_thread"]


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the OS for a free TCP port on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _config(app: ASGIApp, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")


def serve_forever(app: ASGIApp, host: str, port: int) -> None:
    """Serve until interrupted (the `crm-wave sim ...` commands)."""
    uvicorn.Server(_config(app, host, port)).run()


@contextlib.contextmanager
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1", port: int | None = None) -> Iterator[str]:
    """Serve `app` on a loopback port in a daemon thread; yield its base URL `http://host:port`."""
    port = port or free_port(host)
    server = uvicorn.Server(_config(app, host, port))
    thread = threading.Thread(target=server.run, name=f"sim-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"simulator did not start on {host}:{port}")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
