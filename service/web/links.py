"""The pages behind the links in a reader's mails: confirm, the regimen and its exercise links,
unsubscribe, erase. GET never changes anything: mail scanners open every link in a mail, so
only a button press (a POST) confirms, unsubscribes or erases."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from starlette.exceptions import HTTPException

from service.core.models import EventKind, Subscriber, utcnow
from service.funnel import events
from service.readers import privacy, signup
from service.readers.tokens import Claims, Purpose
from service.runtime import Runtime
from service.web.dependencies import RuntimeDep, origin_of, per_ip
from service.web.pages import PRIVATE_HEADERS, render
from service.web.schemas import (
    BAD_LINK,
    CRASHED,
    FORM,
    MULTIPART,
    TOO_LARGE,
    TOO_MANY,
    UNKNOWN_LINK,
    Answers,
    error,
    page,
    request_body,
    see_other,
)

router = APIRouter(default_response_class=Response, responses=CRASHED)

LINK_LIMIT = per_ip("link")
# The query of the regimen link shown right after confirming, to tell it from the mail's link.
VIA_PAGE = "via=page"

Token = Annotated[str, Path(description="The signed token from the reader's link (confirm, "
                                        "regimen, unsubscribe or erase: each route accepts only "
                                        "its own).")]
Slug = Annotated[str, Path(description="An exercise of the regimen, as named in the content "
                                       "file.")]

TOKEN_PAGE_ANSWERS: Answers = {400: BAD_LINK, 404: UNKNOWN_LINK, 429: TOO_MANY}


class ButtonPress(BaseModel):
    """What a page's button sends: an empty form."""

    model_config = ConfigDict(extra="forbid")


class OneClickUnsubscribe(BaseModel):
    """RFC 8058 one-click unsubscribe; the body is not needed."""

    one_click: Literal["One-Click"] | SkipJsonSchema[None] = Field(None,
                                                                   alias="List-Unsubscribe")


BUTTON = request_body(ButtonPress, FORM)


def read_token(runtime: Runtime, purpose: Purpose, token: str) -> Claims:
    max_age = runtime.settings.confirm_max_age if purpose is Purpose.CONFIRM else None
    return runtime.tokens.read(purpose, token, max_age=max_age)


async def token_holder(runtime: Runtime, purpose: Purpose, token: str,
                       counted: EventKind | None = None, exercise: str | None = None,
                       from_mail: bool = True) -> Subscriber:
    """The reader a link belongs to, for pages that only show something; the opening is
    counted for the author's funnel when `counted` says as what (service.funnel.events)."""
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


@router.get(
    "/confirm/{token}", dependencies=[LINK_LIMIT],
    summary="The confirmation page, with its one button",
    description="Opening it changes nothing: mail scanners open every link.",
    responses={200: page("One button: Yes, send me the regimen."), **TOKEN_PAGE_ANSWERS,
               410: page("The link has expired; the page offers to send a new one.")},
)
async def confirm_page(request: Request, token: Token, runtime: RuntimeDep) -> Response:
    await token_holder(runtime, Purpose.CONFIRM, token, counted=EventKind.CONFIRM_PAGE_OPENED)
    return render(request, "confirm.html", runtime.regimen, private=True,
                  action=f"/confirm/{token}")


@router.post(
    "/confirm/{token}", dependencies=[LINK_LIMIT],
    summary="Confirm: record consent and queue the regimen mail",
    description="Pressing it again changes nothing.",
    responses={200: page("Confirmed; the page shows the regimen link."), **TOKEN_PAGE_ANSWERS,
               410: error("The link has expired (a page offering a new one), or the reader "
                          "has unsubscribed since (the error page)."),
               413: TOO_LARGE},
    openapi_extra=BUTTON,
)
async def confirm(request: Request, token: Token, runtime: RuntimeDep) -> Response:
    claims = read_token(runtime, Purpose.CONFIRM, token)
    async with runtime.db.transaction() as session:
        subscriber = await signup.confirm(session, claims, origin_of(request), utcnow())
    # Marked as this page's link: no mail scanner sees this page, so its openings all count.
    regimen_url = f"{runtime.links.for_subscriber(Purpose.REGIMEN, subscriber)}?{VIA_PAGE}"
    return render(request, "confirmed.html", runtime.regimen, private=True,
                  regimen_url=regimen_url)


@router.post(
    "/confirm/{token}/resend", dependencies=[LINK_LIMIT],
    summary="Send a fresh confirmation for an expired link",
    description="The token's age is not checked here, only its signature.",
    responses={200: page("A new mail is on its way (if one is due)."), **TOKEN_PAGE_ANSWERS,
               413: TOO_LARGE},
    openapi_extra=BUTTON,
)
async def resend_confirmation(request: Request, token: Token, runtime: RuntimeDep) -> Response:
    # Only the age may be past: the signature must still be ours.
    claims = runtime.tokens.read(Purpose.CONFIRM, token)
    async with runtime.db.transaction() as session:
        await signup.resend(session, claims, utcnow(), runtime.mail_windows)
    return render(request, "check_inbox.html", runtime.regimen, private=True)


@router.get("/r/{token}", dependencies=[LINK_LIMIT], summary="The reader's regimen page",
            responses={200: page("The units in order, each exercise with its link."),
                       **TOKEN_PAGE_ANSWERS})
async def regimen_page(request: Request, token: Token, runtime: RuntimeDep) -> Response:
    subscriber = await token_holder(runtime, Purpose.REGIMEN, token,
                                    counted=EventKind.REGIMEN_OPENED,
                                    from_mail=request.url.query != VIA_PAGE)
    return render(request, "regimen.html", runtime.regimen, private=True,
                  go_base=f"/r/{token}/go/",
                  unsubscribe_url=runtime.links.for_subscriber(Purpose.UNSUBSCRIBE, subscriber))


@router.get(
    "/r/{token}/go/{slug}", dependencies=[LINK_LIMIT],
    summary="Follow an exercise's link (counted)",
    description="Counts the click, then sends the reader on to the exercise's video or "
                "purchase page: only to an address from the content file, so this is no open "
                "redirect.",
    status_code=303,
    responses={303: see_other("On to the exercise's video or purchase page, an address from "
                              "the content file."),
               **TOKEN_PAGE_ANSWERS,
               404: error("No such exercise, or nobody holds this link any more.")},
)
async def exercise_link(token: Token, slug: Slug, runtime: RuntimeDep) -> Response:
    exercise = next((e for e in runtime.regimen.exercises() if e.slug == slug), None)
    if exercise is None:
        raise HTTPException(404)
    await token_holder(runtime, Purpose.REGIMEN, token, counted=EventKind.EXERCISE_CLICKED,
                       exercise=slug)
    return RedirectResponse(runtime.regimen.destination(exercise), status_code=303,
                            headers=PRIVATE_HEADERS)


# HEAD too, answered like GET and changing nothing as GET does: mail scanners and mailbox
# providers probe the List-Unsubscribe address with HEAD, and a 405 there looks broken.
@router.get("/unsubscribe/{token}", dependencies=[LINK_LIMIT],
            summary="The unsubscribe page, with its button",
            responses={200: page("One button: unsubscribe."), **TOKEN_PAGE_ANSWERS})
@router.head("/unsubscribe/{token}", dependencies=[LINK_LIMIT],
             summary="The unsubscribe page's headers, as GET; changes nothing",
             responses={200: page("One button: unsubscribe."), **TOKEN_PAGE_ANSWERS})
async def unsubscribe_page(request: Request, token: Token, runtime: RuntimeDep) -> Response:
    await token_holder(runtime, Purpose.UNSUBSCRIBE, token)
    return render(request, "unsubscribe.html", runtime.regimen, private=True,
                  action=f"/unsubscribe/{token}")


# No IP limit here: mailbox providers send many readers' one-click unsubscribes from a few
# addresses, and unsubscribing twice changes nothing.
@router.post(
    "/unsubscribe/{token}",
    summary="Unsubscribe (the page's button and RFC 8058 one-click)",
    description="No cookies needed and never a redirect, as RFC 8058 asks; not rate limited, "
                "since mailbox providers send many readers' one-click unsubscribes from a few "
                "addresses.",
    responses={200: page("Unsubscribed (again, if pressed twice)."), 400: BAD_LINK,
               404: UNKNOWN_LINK, 413: TOO_LARGE},
    openapi_extra=request_body(OneClickUnsubscribe, FORM, MULTIPART),
)
async def unsubscribe(request: Request, token: Token, runtime: RuntimeDep) -> Response:
    claims = read_token(runtime, Purpose.UNSUBSCRIBE, token)
    async with runtime.db.transaction() as session:
        await signup.unsubscribe(session, claims, utcnow())
    return render(request, "unsubscribed.html", runtime.regimen, private=True)


@router.get("/erase/{token}", dependencies=[LINK_LIMIT],
            summary="The erase-my-data page, with its button",
            responses={200: page("One button: delete everything held about me."),
                       **TOKEN_PAGE_ANSWERS})
async def erase_page(request: Request, token: Token, runtime: RuntimeDep) -> Response:
    await token_holder(runtime, Purpose.ERASE, token)
    return render(request, "erase.html", runtime.regimen, private=True, action=f"/erase/{token}")


@router.post(
    "/erase/{token}", dependencies=[LINK_LIMIT],
    summary="Erase everything held about the reader",
    description="Pressing it again, or for a reader already erased, answers the same.",
    responses={200: page("Deleted."), 400: BAD_LINK, 429: TOO_MANY, 413: TOO_LARGE,
               404: error("Any path that is not a route, e.g. a token holding a slash.")},
    openapi_extra=BUTTON,
)
async def erase(request: Request, token: Token, runtime: RuntimeDep) -> Response:
    claims = read_token(runtime, Purpose.ERASE, token)
    try:
        async with runtime.db.transaction() as session:
            reader = await signup.subscriber_for(session, claims)
            await privacy.erase(session, reader, runtime.settings.secret_keys[0], utcnow())
    except signup.UnknownSubscriber:
        pass  # pressed twice, or erased already: the outcome the reader asked for
    return render(request, "erased.html", runtime.regimen, private=True)
