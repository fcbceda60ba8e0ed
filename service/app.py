"""The web application: wiring, the in-process worker, and the error pages.

Whatever goes wrong, a reader gets a page that says what happened and what to do, never a
stack trace; a JSON client gets the same as JSON.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from service import admin, logs, metrics, webhooks
from service.embed import router as embed_router
from service.openapi import install_openapi
from service.pages import render
from service.routes import router
from service.runtime import Runtime
from service.security import SecurityHeaders, add_missing, security_headers
from service.signup import NoLongerPending, UnknownSubscriber
from service.texts import ERROR_TEXT, TEXTS
from service.tokens import ExpiredToken, InvalidToken

log = logging.getLogger(__name__)

def create_app(runtime: Runtime, *, run_worker: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.worker().run(stop)) if run_worker else None
        try:
            yield
        finally:
            logs.flush_each_line()
            stop.set()
            if task is not None:
                await task
            await runtime.rate_limits.close()
            await runtime.db.dispose()

    # The reader's routes sit on the app itself: an included router's routes are matched
    # through a layer of FastAPI's own, which cost a signup 6 % (bench/signup.py).
    app = FastAPI(title="regimen-delivery", lifespan=lifespan, docs_url=None, redoc_url=None,
                  routes=list(router.routes))
    app.state.runtime = runtime
    app.include_router(webhooks.router)
    app.include_router(embed_router)
    app.include_router(admin.router)
    app.include_router(metrics.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    if runtime.settings.allowed_origins:
        app.add_middleware(CORSMiddleware, allow_origins=runtime.settings.allowed_origins,
                           allow_methods=["POST"], allow_headers=["Content-Type"])
    app.add_middleware(BodyLimit, max_bytes=runtime.settings.max_body_bytes)
    # The reader's IP (rate limits, consent records) comes from X-Forwarded-For only when
    # the connection is from one of our own proxies.
    app.add_middleware(ProxyHeadersMiddleware,
                       trusted_hosts=runtime.settings.trusted_proxies)
    app.add_middleware(SecurityHeaders, headers=security_headers(runtime.settings))
    app.add_middleware(logs.RequestContext)
    _add_error_pages(app, runtime)
    install_openapi(app)
    return app


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


def wants_json(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    accept = request.headers.get("accept", "")
    return content_type.startswith("application/json") or (
        "application/json" in accept and "text/html" not in accept
    )


def _add_error_pages(app: FastAPI, runtime: Runtime) -> None:
    regimen = runtime.regimen
    link = TEXTS.link

    def error_page(request: Request, status: int, heading: str, text: str,
                   offer_signup: bool = False) -> Response:
        if wants_json(request):
            return JSONResponse({"error": heading, "detail": text}, status_code=status)
        return render(request, "message.html", regimen, status_code=status, private=True,
                      heading=heading, text=text, offer_signup=offer_signup)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        heading, text = ERROR_TEXT.get(exc.status_code, ERROR_TEXT[400])
        response = error_page(request, exc.status_code, heading, text,
                              offer_signup=exc.status_code == 404)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_page(request, 400, *ERROR_TEXT[400])

    @app.exception_handler(InvalidToken)
    async def invalid_token(request: Request, exc: InvalidToken) -> Response:
        return error_page(request, 400, link.invalid_heading, link.invalid_text,
                          offer_signup=True)

    @app.exception_handler(UnknownSubscriber)
    async def unknown_subscriber(request: Request, exc: UnknownSubscriber) -> Response:
        return error_page(request, 404, link.unknown_heading, link.unknown_text,
                          offer_signup=True)

    @app.exception_handler(NoLongerPending)
    async def no_longer_pending(request: Request, exc: NoLongerPending) -> Response:
        return error_page(request, 410, link.left_heading, link.left_text, offer_signup=True)

    @app.exception_handler(ExpiredToken)
    async def expired_token(request: Request, exc: ExpiredToken) -> Response:
        token = request.path_params.get("token", "")
        return render(request, "link_expired.html", regimen, status_code=410, private=True,
                      action=f"/confirm/{token}/resend",
                      valid_days=max(1, runtime.settings.confirm_max_age // 86400))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        response = error_page(request, 500, *ERROR_TEXT[500])
        # Starlette answers a crash outside the middleware stack: add the headers here.
        add_missing(response.headers, security_headers(runtime.settings))
        return response
