"""What the routes take from the request besides their own parameters: the runtime, the per-IP
rate limits, where a request comes from, and basic auth for the author's and the mail
providers' endpoints."""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from service.core.logs import mask_ip
from service.core.settings import Settings
from service.readers.signup import RequestOrigin
from service.runtime import Runtime

log = logging.getLogger(__name__)


async def get_runtime(request: Request) -> Runtime:
    # async: FastAPI runs a plain-def dependency in its thread pool, a thread hop per request.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def limit_per_ip(request: Request, runtime: Runtime, kind: str) -> None:
    """Count the request against its client IP; 429 when over the limit."""
    refused = await runtime.rate_limits.check_ip(kind, client_ip(request))
    if refused is not None:
        raise HTTPException(429, headers={"Retry-After": str(refused.retry_after)})


def per_ip(kind: str) -> Any:
    """`limit_per_ip` as a route dependency."""

    async def check(request: Request, runtime: RuntimeDep) -> None:
        await limit_per_ip(request, runtime, kind)

    return Depends(check)


def client_ip(request: HTTPConnection) -> str:
    return request.client.host if request.client else "unknown"


async def not_locked_out(request: HTTPConnection, runtime: Runtime) -> None:
    """429 while the client's IP has sent too many wrong passwords lately, even with the right
    one now: otherwise a guesser would learn which guess was right."""
    refused = await runtime.rate_limits.refusal("auth", client_ip(request))
    if refused is not None:
        raise HTTPException(429, headers={"Retry-After": str(refused.retry_after)})


async def count_wrong_password(request: HTTPConnection, runtime: Runtime) -> None:
    """One failure against the client's IP (shared by every process through the limits
    storage), and one log line. Counted after the comparison, so the author's own visits
    never count; the price is that guesses already in flight when the limit is reached are
    still answered (a handful, with Redis's round trip)."""
    ip = client_ip(request)
    await runtime.rate_limits.check_ip("auth", ip)
    log.warning("refused a wrong password for %s from %s", request.url.path, mask_ip(ip))


def origin_of(request: Request) -> RequestOrigin:
    user_agent = request.headers.get("user-agent")
    return RequestOrigin(
        ip=request.client.host if request.client else None,
        user_agent=user_agent[:512] if user_agent else None,
    )


async def form_fields(request: Request, content_type: str) -> dict[str, str]:
    """A form body's text fields (files are left out), whether sent urlencoded or as
    multipart."""
    if content_type.startswith("application/x-www-form-urlencoded"):
        # What the blog's form sends. parse_qsl decodes it as request.form() does (Latin-1,
        # then %-escapes as UTF-8) in less than half the time; request.form() had been a tenth
        # of a signup's time (bench/signup.py). Multipart bodies still go there.
        body = (await request.body()).decode("latin-1")
        return dict(parse_qsl(body, keep_blank_values=True))
    async with request.form() as form:  # closes the temporary files of any uploads
        return {key: value for key, value in form.items() if isinstance(value, str)}


class Refusal(Exception):
    """A dependency's own answer in place of the route's: a dependency can only raise, and
    service.web.errors sends the response as it is."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class PasswordOnly(HTTPBasic):
    """HTTP basic auth where only the password counts, any user name.

    FastAPI's own HTTPBasic answers a malformed header with its 401 even with auto_error off,
    which would bypass each endpoint's own refusal, and decodes only ASCII, where the admin
    realm asks browsers for UTF-8: so the header is read here, and anything unreadable is no
    credentials at all."""

    def __init__(self, name: str, setting: str) -> None:
        super().__init__(scheme_name=name, auto_error=False,
                         description=f"Any user name; the password is {setting}.")

    async def __call__(  # type: ignore[override]  # as HTTPBasic's own
            self, request: HTTPConnection) -> HTTPBasicCredentials | None:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except ValueError:  # not base64, or not UTF-8
            return None
        user, _, password = decoded.partition(":")
        return HTTPBasicCredentials(username=user, password=password)


def password_protected(scheme: PasswordOnly, password: Callable[[Settings], str],
                       refuse: Callable[[int], Exception]) -> Any:
    """A dependency that lets through only requests with the configured password:
    `refuse(404)` when none is configured (the endpoint is off), `refuse(401)` when the
    request's is wrong or missing. Compared in constant time."""

    # A default, not an Annotated type: annotations are strings here, and `scheme` is local.
    async def check(request: Request, runtime: RuntimeDep,
                    credentials: HTTPBasicCredentials | None = Depends(scheme)) -> None:
        expected = password(runtime.settings)
        if not expected:
            raise refuse(404)
        await not_locked_out(request, runtime)
        if credentials is None:  # a browser's first request, before it asks: no guess
            raise refuse(401)
        if not secrets.compare_digest(credentials.password.encode(), expected.encode()):
            await count_wrong_password(request, runtime)
            raise refuse(401)

    return Depends(check)
