"""Real servers for the browser tests: the app on a real port (uvicorn in a thread, as
`regimen serve` runs it, worker included), and plain HTTP sites on other ports standing in for
the blog and for the video and shop pages the regimen links to."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar
from urllib.parse import urlsplit

import uvicorn
from fastapi import FastAPI
from starlette.exceptions import HTTPException

from service.runtime import Runtime
from service.web.app import create_app

T = TypeVar("T")
STARTUP_SECONDS = 30


class _Server(uvicorn.Server):
    """Says when it is listening, and on which event loop, so tests can reach the database
    through the app's own engine."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.loop = asyncio.get_running_loop()
        self.ready.set()


def listening_socket() -> socket.socket:
    """Bound before the server starts, so the address is known (and ours) from the outset."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def with_error_routes(app: FastAPI) -> FastAPI:
    """Routes that fail on purpose, so the 429 and 500 pages can be seen in the browser: the
    rate limiter that sends 429 in earnest is not part of these tests."""

    @app.get("/_test/too-many")
    async def too_many() -> None:
        raise HTTPException(429, headers={"Retry-After": "60"})

    @app.get("/_test/crash")
    async def crash() -> None:
        raise RuntimeError("a deliberate crash")

    return app


class LiveApp:
    def __init__(self, runtime: Runtime, sock: socket.socket) -> None:
        self.runtime = runtime
        self.sock = sock
        app = with_error_routes(create_app(runtime))
        # uvicorn logs the deliberate crash's traceback; nothing else should appear.
        config = uvicorn.Config(app, log_level="warning", lifespan="on", ws="none",
                                timeout_graceful_shutdown=5)
        self.server = _Server(config)
        self.thread = threading.Thread(target=self._run, name="live-app", daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> None:
        self.thread.start()
        if not self.server.ready.wait(STARTUP_SECONDS):
            raise AssertionError("the app did not start listening")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(STARTUP_SECONDS)
        self.sock.close()
        assert not self.thread.is_alive(), "the app did not stop"

    def call(self, work: Callable[[Runtime], Awaitable[T]]) -> T:
        """Run `work` on the app's event loop (its database engine lives there)."""
        assert self.server.loop is not None
        future = asyncio.run_coroutine_threadsafe(work(self.runtime), self.server.loop)
        return future.result(STARTUP_SECONDS)


class Site:
    """A plain web site on its own port (so another origin): `pages` maps paths to HTML;
    `fallback`, when set, answers every other path. As a browser's HTTP proxy, it answers for
    every site."""

    def __init__(self, fallback: Callable[[str], str] | None = None) -> None:
        self.pages: dict[str, str] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path  # a proxy is asked for absolute URLs
                page = site.pages.get(path)
                if page is None and fallback is not None:
                    page = fallback(path)
                body = (page or "<!doctype html><title>Not found</title>").encode()
                self.send_response(200 if page else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="site",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(STARTUP_SECONDS)
