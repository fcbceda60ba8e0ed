"""The error pages, and what a failed request leaves in the log.

Whatever goes wrong, a reader gets a page that says what happened and what to do, never a
stack trace; a JSON client gets the same as JSON. The pages speak with the site's wording (its
default regimen's), whichever regimen the request was about. A database that cannot be used
right now (down, restarting, its disk full) is a 503 with `Retry-After`, not a 500: nothing is
wrong with the request, and it will work again. Each failed request is one log line; a
traceback is logged for the first failure of a kind in a minute, and the others only count (a
30-second database outage made 34,892 log lines before, issue 13).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from service.core.database import is_unavailable
from service.readers.signup import NoLongerPending, UnknownSubscriber
from service.readers.tokens import ExpiredToken, InvalidToken
from service.runtime import Runtime
from service.web.dependencies import Refusal
from service.web.pages import RegimenGone, render
from service.web.security_headers import add_missing, security_headers
from service.web.texts import ERROR_TEXT, TEXTS

log = logging.getLogger(__name__)

# Seconds a client is asked to wait while the database cannot be used.
RETRY_AFTER_OUTAGE = 30
TRACEBACK_EVERY = 60.0  # seconds: one traceback per kind of failure in this window


def wants_json(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    accept = request.headers.get("accept", "")
    return content_type.startswith("application/json") or (
        "application/json" in accept and "text/html" not in accept
    )


class FailureLog:
    """One ERROR line per failed request, with the traceback only for the first failure of
    its kind (exception type and route) in `TRACEBACK_EVERY` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._first: dict[tuple[str, str], tuple[float, int]] = {}

    def failed(self, method: str, route: str, exc: Exception) -> None:
        kind = (type(exc).__qualname__, route)
        first, repeats = self._first.get(kind, (-TRACEBACK_EVERY, 0))
        now = self.clock()
        what = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        if now - first >= TRACEBACK_EVERY:
            self._first[kind] = (now, 0)
            log.error("%s %s failed: %s", method, route, what, exc_info=exc)
        else:
            self._first[kind] = (first, repeats + 1)
            log.error("%s %s failed: %s (%d more like it since the traceback %.0f s ago)",
                      method, route, what, repeats + 1, now - first)


def add_error_pages(app: FastAPI, runtime: Runtime) -> Callable[[Request, Exception], Response]:
    """Register the pages for every failure a route may raise; return the one for a crash,
    which the request's outermost middleware answers with (service.web.middleware)."""
    link = TEXTS.link
    failures = FailureLog()

    def error_page(request: Request, status: int, heading: str, text: str,
                   offer_signup: bool = False) -> Response:
        if wants_json(request):
            return JSONResponse({"error": heading, "detail": text}, status_code=status)
        return render(request, "message.html", runtime.regimen, status_code=status, private=True,
                      heading=heading, text=text, offer_signup=offer_signup)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        heading, text = ERROR_TEXT.get(exc.status_code, ERROR_TEXT[400])
        response = error_page(request, exc.status_code, heading, text,
                              offer_signup=exc.status_code == 404)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Refusal)
    async def refusal(request: Request, exc: Refusal) -> Response:
        return exc.response

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

    @app.exception_handler(RegimenGone)
    async def regimen_gone(request: Request, exc: RegimenGone) -> Response:
        return error_page(request, 410, link.gone_heading, link.gone_text, offer_signup=True)

    @app.exception_handler(ExpiredToken)
    async def expired_token(request: Request, exc: ExpiredToken) -> Response:
        token = request.path_params.get("token", "")
        return render(request, "link_expired.html", runtime.regimen, status_code=410,
                      private=True,
                      action=f"/confirm/{token}/resend",
                      valid_days=max(1, runtime.settings.confirm_max_age.days))

    def crashed(request: Request, exc: Exception) -> Response:
        route = getattr(request.scope.get("route"), "path", "unmatched")
        failures.failed(request.method, route, exc)
        if is_unavailable(exc):
            response = error_page(request, 503, *ERROR_TEXT[503])
            response.headers["Retry-After"] = str(RETRY_AFTER_OUTAGE)
        else:
            response = error_page(request, 500, *ERROR_TEXT[500])
        # Answered outside the middleware that adds them: add the headers here.
        add_missing(response.headers, security_headers(runtime.settings))
        return response

    return crashed
