"""The reader's routes. GET never changes anything: mail scanners open every link in a mail,
so only a button press (a POST) confirms or unsubscribes."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import func, select
from starlette.exceptions import HTTPException

from service import events, privacy, signup
from service.addresses import InvalidAddress, normalize_address
from service.bots import MIN_FILL_SECONDS
from service.embed import back_to_post
from service.models import EventKind, Subscriber, WorkerHeartbeat, utcnow
from service.pages import PRIVATE_HEADERS, render
from service.runtime import Runtime
from service.texts import ACCEPTED_MESSAGE, TEXTS
from service.tokens import Claims, Purpose

router = APIRouter()

HEARTBEAT_STALE_SECONDS = 60
ACCEPTED = {"status": "accepted", "message": ACCEPTED_MESSAGE}
# The form's honeypot: a field people never see. Bots that fill it get the usual answer, so they
# learn nothing, but nothing is stored or mailed.
HONEYPOT = "website"
# The query of the regimen link shown right after confirming, to tell it from the mail's link.
VIA_PAGE = "via=page"


async def get_runtime(request: Request) -> Runtime:
    # async: FastAPI runs a plain-def dependency in its thread pool, a thread hop per request.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def limit_per_ip(request: Request, runtime: Runtime, kind: str) -> None:
    """Count the request against its client IP; 429 when over the limit."""
    ip = request.client.host if request.client else "unknown"
    refused = await runtime.rate_limits.check_ip(kind, ip)
    if refused is not None:
        raise HTTPException(429, headers={"Retry-After": str(refused.retry_after)})


def per_ip(kind: str) -> Any:
    """`limit_per_ip` as a route dependency."""

    async def check(request: Request, runtime: RuntimeDep) -> None:
        await limit_per_ip(request, runtime, kind)

    return Depends(check)


LINK_LIMIT = per_ip("link")


def origin_of(request: Request) -> signup.RequestOrigin:
    user_agent = request.headers.get("user-agent")
    return signup.RequestOrigin(
        ip=request.client.host if request.client else None,
        user_agent=user_agent[:512] if user_agent else None,
    )


def read_token(runtime: Runtime, purpose: Purpose, token: str) -> Claims:
    max_age = runtime.settings.confirm_max_age if purpose is Purpose.CONFIRM else None
    return runtime.tokens.read(purpose, token, max_age=max_age)


async def token_holder(runtime: Runtime, purpose: Purpose, token: str,
                       counted: EventKind | None = None, exercise: str | None = None,
                       from_mail: bool = True) -> Subscriber:
    """The reader a link belongs to, for pages that only show something; the opening is
    counted for the author's funnel when `counted` says as what (service.events)."""
    claims = read_token(runtime, purpose, token)
    async with runtime.db.transaction() as session:
        subscriber = await signup.subscriber_for(session, claims)
        if purpose is Purpose.REGIMEN and subscriber.confirmed_at is None:
            raise signup.UnknownSubscriber()
        if counted is not None:
            await events.record(session, counted, subscriber, exercise,
                                scanner_window=runtime.settings.scanner_window,
                                from_mail=from_mail)
        return subscriber


@router.get("/")
async def home(request: Request, runtime: RuntimeDep) -> Response:
    return signup_page(request, runtime, started=runtime.tokens.form_stamp())


def signup_page(request: Request, runtime: Runtime, *, started: str, status_code: int = 200,
                source: str = "", email: str = "", error: str = "") -> Response:
    return render(request, "signup.html", runtime.regimen, status_code=status_code,
                  action="/subscribe", source=source, email=email, error=error,
                  started=started, captcha=runtime.captcha)


async def _checked_address(runtime: Runtime, request: Request,
                           fields: dict[str, str]) -> tuple[str, str]:
    """The normalised address, or what the reader must fix (shown next to the field)."""
    try:
        email = normalize_address(fields.get("email", ""))
    except InvalidAddress as exc:
        return "", str(exc)
    if runtime.blocklist is not None and runtime.blocklist.blocks(email):
        return "", TEXTS.address.disposable
    if runtime.mx_check is not None and not await runtime.mx_check.deliverable(email):
        return "", TEXTS.address.no_mail
    if runtime.captcha is not None and \
            not await runtime.captcha.solved(fields, origin_of(request).ip):
        return "", TEXTS.address.captcha
    return email, ""


def _looks_like_a_bot(runtime: Runtime, fields: dict[str, str]) -> bool:
    """Bots get the usual answer, so they learn nothing; but nothing is stored or mailed."""
    if fields.get(HONEYPOT):
        return True
    stamp = fields.get("started")
    if stamp is None:
        return False  # the pasted blog snippet is static: it carries no stamp
    age = runtime.tokens.form_age(stamp)
    return age is None or age < MIN_FILL_SECONDS


@router.post("/subscribe")
async def subscribe(request: Request) -> Response:
    # The busiest route takes no FastAPI dependencies: solving them cost more than the rest of
    # the handler (bench/signup.py).
    runtime = await get_runtime(request)
    await limit_per_ip(request, runtime, "signup")
    content_type = request.headers.get("content-type", "").lower()
    as_json = content_type.startswith("application/json")
    fields = await _json_fields(request) if as_json else await _form_fields(request, content_type)
    email, problem = await _checked_address(runtime, request, fields)
    if problem:
        if as_json:
            return JSONResponse({"errors": {"email": problem}}, status_code=422)
        # The first showing's stamp again (or none, from the blog's static form): a reader
        # fixing one letter is quick, and has been on the form all along.
        return signup_page(request, runtime, started=fields.get("started", ""),
                           status_code=400, source=fields.get("source", ""),
                           email=fields.get("email", ""), error=problem)
    source = _source_url(fields.get("source") or request.headers.get("referer"))
    if not _looks_like_a_bot(runtime, fields):
        await runtime.signups.write(signup.Signup(email, origin_of(request), source))
    # The same answer whatever the address's state, so nobody learns who is subscribed.
    if as_json:
        return JSONResponse(ACCEPTED, status_code=202)
    after = back_to_post(_source_url(fields.get("source")), runtime.settings.allowed_origins)
    return RedirectResponse(after or "/check-inbox", status_code=303)


@router.get("/check-inbox")
async def check_inbox(request: Request, runtime: RuntimeDep) -> Response:
    return render(request, "check_inbox.html", runtime.regimen)


@router.get("/confirm/{token}", dependencies=[LINK_LIMIT])
async def confirm_page(request: Request, token: str, runtime: RuntimeDep) -> Response:
    await token_holder(runtime, Purpose.CONFIRM, token, counted=EventKind.CONFIRM_PAGE_OPENED)
    return render(request, "confirm.html", runtime.regimen, private=True,
                  action=f"/confirm/{token}")


@router.post("/confirm/{token}", dependencies=[LINK_LIMIT])
async def confirm(request: Request, token: str, runtime: RuntimeDep) -> Response:
    claims = read_token(runtime, Purpose.CONFIRM, token)
    async with runtime.db.transaction() as session:
        subscriber = await signup.confirm(session, claims, origin_of(request), utcnow())
    # Marked as this page's link: no mail scanner sees this page, so its openings all count.
    regimen_url = f"{runtime.links.for_subscriber(Purpose.REGIMEN, subscriber)}?{VIA_PAGE}"
    return render(request, "confirmed.html", runtime.regimen, private=True,
                  regimen_url=regimen_url)


@router.post("/confirm/{token}/resend", dependencies=[LINK_LIMIT])
async def resend_confirmation(request: Request, token: str, runtime: RuntimeDep) -> Response:
    # Only the age may be past: the signature must still be ours.
    claims = runtime.tokens.read(Purpose.CONFIRM, token)
    async with runtime.db.transaction() as session:
        await signup.resend(session, claims, utcnow(), runtime.mail_windows)
    return render(request, "check_inbox.html", runtime.regimen, private=True)


@router.get("/r/{token}", dependencies=[LINK_LIMIT])
async def regimen_page(request: Request, token: str, runtime: RuntimeDep) -> Response:
    subscriber = await token_holder(runtime, Purpose.REGIMEN, token,
                                    counted=EventKind.REGIMEN_OPENED,
                                    from_mail=request.url.query != VIA_PAGE)
    return render(request, "regimen.html", runtime.regimen, private=True,
                  go_base=f"/r/{token}/go/",
                  unsubscribe_url=runtime.links.for_subscriber(Purpose.UNSUBSCRIBE, subscriber))


@router.get("/r/{token}/go/{slug}", dependencies=[LINK_LIMIT])
async def exercise_link(token: str, slug: str, runtime: RuntimeDep) -> Response:
    """Count the click, then send the reader on to the exercise's video or purchase page: only
    to an address from the content file, so this is no open redirect."""
    exercise = next((e for e in runtime.regimen.exercises() if e.slug == slug), None)
    if exercise is None:
        raise HTTPException(404)
    await token_holder(runtime, Purpose.REGIMEN, token, counted=EventKind.EXERCISE_CLICKED,
                       exercise=slug)
    return RedirectResponse(runtime.regimen.destination(exercise), status_code=303,
                            headers=PRIVATE_HEADERS)


@router.get("/unsubscribe/{token}", dependencies=[LINK_LIMIT])
async def unsubscribe_page(request: Request, token: str, runtime: RuntimeDep) -> Response:
    await token_holder(runtime, Purpose.UNSUBSCRIBE, token)
    return render(request, "unsubscribe.html", runtime.regimen, private=True,
                  action=f"/unsubscribe/{token}")


# No IP limit here: mailbox providers send many readers' one-click unsubscribes from a few
# addresses, and unsubscribing twice changes nothing.
@router.post("/unsubscribe/{token}")
async def unsubscribe(request: Request, token: str, runtime: RuntimeDep) -> Response:
    """The page's button and RFC 8058 one-click (`List-Unsubscribe=One-Click`) alike: no
    cookies needed, and a plain 200, never a redirect."""
    claims = read_token(runtime, Purpose.UNSUBSCRIBE, token)
    async with runtime.db.transaction() as session:
        await signup.unsubscribe(session, claims, utcnow())
    return render(request, "unsubscribed.html", runtime.regimen, private=True)


@router.get("/erase/{token}", dependencies=[LINK_LIMIT])
async def erase_page(request: Request, token: str, runtime: RuntimeDep) -> Response:
    await token_holder(runtime, Purpose.ERASE, token)
    return render(request, "erase.html", runtime.regimen, private=True, action=f"/erase/{token}")


@router.post("/erase/{token}", dependencies=[LINK_LIMIT])
async def erase(request: Request, token: str, runtime: RuntimeDep) -> Response:
    claims = read_token(runtime, Purpose.ERASE, token)
    try:
        async with runtime.db.transaction() as session:
            reader = await signup.subscriber_for(session, claims)
            await privacy.erase(session, reader, runtime.settings.secret_keys[0], utcnow())
    except signup.UnknownSubscriber:
        pass  # pressed twice, or erased already: the outcome the reader asked for
    return render(request, "erased.html", runtime.regimen, private=True)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> Response:
    """Ready when the database answers and some worker has beaten recently."""
    checks: dict[str, str] = {}
    try:
        async with runtime.db.transaction() as session:
            last_beat = await session.scalar(select(func.max(WorkerHeartbeat.beat_at)))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        last_beat = None
    if last_beat is None:
        checks["worker"] = "no worker has started"
    elif (utcnow() - last_beat).total_seconds() > HEARTBEAT_STALE_SECONDS:
        checks["worker"] = f"last seen {last_beat.isoformat()}"
    else:
        checks["worker"] = "ok"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


async def _form_fields(request: Request, content_type: str) -> dict[str, str]:
    if content_type.startswith("application/x-www-form-urlencoded"):
        # What the blog's form sends. parse_qsl decodes it as request.form() does (Latin-1,
        # then %-escapes as UTF-8) in less than half the time; request.form() had been a tenth
        # of a signup's time (bench/signup.py). Multipart bodies still go there.
        body = (await request.body()).decode("latin-1")
        return dict(parse_qsl(body, keep_blank_values=True))
    async with request.form() as form:  # closes the temporary files of any uploads
        return {key: value for key, value in form.items() if isinstance(value, str)}


async def _json_fields(request: Request) -> dict[str, str]:
    try:
        data: Any = json.loads(await request.body())
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        data = None
    if not isinstance(data, dict):
        return {}
    return {key: value for key, value in data.items() if isinstance(value, str)}


def _source_url(value: str | None) -> str | None:
    """Keep where the signup came from only if it is a plain web address."""
    if not value or len(value) > 2048 or any(ord(char) < 32 for char in value):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from JSON's \ud800: not storable text
        return None
    parts = urlsplit(value)
    return value if parts.scheme in ("http", "https") and parts.netloc else None
