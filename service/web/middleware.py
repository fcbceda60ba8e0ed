"""The app's own ASGI middleware: a request id, access line and latency for every request, and
a limit on the size of request bodies."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.logs import GIVEN_ID, PROCESS_TAG, access_log, minted_ids, request_id
from service.web.metrics import REQUEST_SECONDS


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(413)


class BodyLimit:
    """Refuses request bodies over the limit, whether announced by Content-Length or not."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        announced_too_much = declared is not None and (
            not declared.isdigit() or len(declared) > 18 or int(declared) > self.max_bytes)
        seen = 0

        # Raised where the app reads the body, so the error pages answer it like any other.
        async def counting_receive() -> Message:
            nonlocal seen
            if announced_too_much:
                raise BodyTooLarge()
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLarge()
            return message

        await self.app(scope, counting_receive, send)


class RequestContext:
    """Gives each request an id (in the logs and the `X-Request-ID` header), logs one access
    line and times it into the latency histogram (service.web.metrics): method, route template
    (never the raw path: it holds tokens), status, time.

    It is also where a crash is answered, with `on_crash`'s page: Starlette's own last resort
    answers too but then raises the error on, and the server logs it a second time, with its
    traceback, for every failed request."""

    def __init__(self, app: ASGIApp,
                 on_crash: Callable[[Request, Exception], Response]) -> None:
        self.app = app
        self.on_crash = on_crash

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        current = given if GIVEN_ID.fullmatch(given) else f"{PROCESS_TAG}{next(minted_ids):016x}"
        token = request_id.set(current)
        started = time.perf_counter()
        status = 500
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
                answered = True
                MutableHeaders(scope=message).setdefault("X-Request-ID", current)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if answered:  # too late for a page: the server closes the connection
                raise
            await self.on_crash(Request(scope), exc)(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            method = scope["method"]
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUEST_SECONDS.labels(method, route, str(status)).observe(seconds)
            access_log.info("%s %s %s", method, route, status, extra={
                "method": method, "route": route, "status": status,
                "duration_ms": round(seconds * 1000, 2)})
            request_id.reset(token)
