"""The web application: its routes, middleware and error pages wired together, and the mail
worker inside the web process (unless it runs as `regimen worker`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from service.core import logs
from service.runtime import Runtime
from service.web import admin, embed, health, lessons, links, metrics, regimen, signup, webhooks
from service.web.errors import add_error_pages
from service.web.middleware import BodyLimit, RequestContext
from service.web.security_headers import SecurityHeaders, security_headers

log = logging.getLogger(__name__)

ABOUT = ("Double opt-in delivery of a free exercise regimen to a blog's readers. Pages are "
         "HTML; a request sent as JSON, or accepting only JSON, gets its errors as JSON.")


def create_app(runtime: Runtime, *, run_worker: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime:
            stop = asyncio.Event()
            task = asyncio.create_task(runtime.worker().run(stop)) if run_worker else None
            if task is not None:
                task.add_done_callback(_say_if_the_worker_died)
            try:
                yield
            finally:
                logs.flush_each_line()
                stop.set()
                if task is not None:
                    await task

    # The reader's routes sit on the app itself: an included router's routes are matched
    # through a layer of FastAPI's own, which cost a signup 6 % (bench/signup.py).
    app = FastAPI(title="regimen-delivery", description=ABOUT, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  routes=[*signup.router.routes, *links.router.routes, *regimen.router.routes,
                          *lessons.router.routes, *health.router.routes])
    app.state.runtime = runtime
    app.include_router(webhooks.router)
    app.include_router(embed.router)
    app.include_router(admin.router)
    app.include_router(metrics.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    # Last: `/{key}` (a regimen's own form) would match /healthz, /admin or /embed too.
    app.include_router(signup.hosted)
    if runtime.settings.allowed_origins:
        app.add_middleware(CORSMiddleware, allow_origins=runtime.settings.allowed_origins,
                           allow_methods=["POST"], allow_headers=["Content-Type"])
    app.add_middleware(BodyLimit, max_bytes=runtime.settings.max_body_bytes)
    # The reader's IP (rate limits, consent records) comes from X-Forwarded-For only when
    # the connection is from one of our own proxies.
    app.add_middleware(ProxyHeadersMiddleware,
                       trusted_hosts=runtime.settings.trusted_proxies)
    app.add_middleware(SecurityHeaders, headers=security_headers(runtime.settings))
    app.add_middleware(RequestContext, on_crash=add_error_pages(app, runtime))
    _describe_validation_errors_as_400(app)
    return app


def _say_if_the_worker_died(task: asyncio.Task[None]) -> None:
    # The web process goes on serving without it; /readyz will say so within a minute, and
    # this says why at once.
    if not task.cancelled() and task.exception() is not None:
        log.error("the mail worker inside this process stopped", exc_info=task.exception())


def _describe_validation_errors_as_400(app: FastAPI) -> None:
    """FastAPI documents a 422 HTTPValidationError on every route that has parameters, and
    offers no way to turn that off; this app answers validation errors with its 400 page,
    which the routes whose parameters can fail declare. So FastAPI's 422s are taken out of
    /openapi.json (replacing `app.openapi` is FastAPI's documented way to amend the schema)."""
    generate = app.openapi
    fastapi_422 = {"application/json": {"schema": {
        "$ref": "#/components/schemas/HTTPValidationError"}}}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for operations in schema["paths"].values():
                for operation in operations.values():
                    if operation["responses"].get("422", {}).get("content") == fastapi_422:
                        del operation["responses"]["422"]
            for unused in ("HTTPValidationError", "ValidationError"):
                schema["components"]["schemas"].pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
