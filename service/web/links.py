"""The pages behind the links in a reader's mails: confirm, unsubscribe, erase (the regimen page
is service.web.regimen). GET never changes anything: mail scanners open every link in a mail, so
only a button press (a POST) confirms, unsubscribes or erases.

Each link names one subscription (an address's to one regimen), and its pages are about that
regimen: its title, its units. A regimen the author has since removed answers with a page that
says so (410); unsubscribing and erasing still work then."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal, NamedTuple

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException

from service.core.content import Regimen
from service.core.lessons import promise
from service.core.models import EventKind, Subscriber, SubscriberStatus, utcnow
from service.funnel import events
from service.readers import privacy, progress, signup
from service.readers.tokens import Claims, Purpose
from service.runtime import Runtime
from service.web.dependencies import RuntimeDep, form_fields, origin_of, per_ip
from service.web.pages import RegimenGone, offered, render
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
)
from service.web.texts import consent_version

router = APIRouter(default_response_class=Response, responses=CRASHED)

LINK_LIMIT = per_ip("link")
# A wording version as the confirm page writes it (service.web.texts.consent_version).
WORDING = re.compile(r"[0-9a-f]{12}")
# The query of the regimen link shown right after confirming, to tell it from the mail's link.
VIA_PAGE = "via=page"

Token = Annotated[str, Path(description="The signed token from the reader's link (confirm, "
                                        "regimen, unsubscribe or erase: each route accepts only "
                                        "its own).")]

TOKEN_PAGE_ANSWERS: Answers = {400: BAD_LINK, 404: UNKNOWN_LINK, 429: TOO_MANY}
GONE = "the author no longer offers the link's regimen (a page saying so)"
GONE_PAGE = error("The author no longer offers the link's regimen: a page says so.")


class ButtonPress(BaseModel):
    """What a page's button sends: an empty form."""

    model_config = ConfigDict(extra="forbid")


class Unsubscribe(BaseModel):
    """The page's buttons, or RFC 8058 one-click unsubscribe (whose body is not needed)."""

    one_click: Literal["One-Click"] | SkipJsonSchema[None] = Field(None,
                                                                   alias="List-Unsubscribe")
    everything: Literal["1"] | SkipJsonSchema[None] = Field(
        None, description="The page's “Stop everything” button: unsubscribe every regimen of "
                          "the address, not only the link's. Without it (as in a one-click "
                          "unsubscribe), only the link's regimen.")


BUTTON = request_body(ButtonPress, FORM)


class Confirmation(BaseModel):
    """The confirmation page's button."""

    model_config = ConfigDict(extra="forbid")

    also: str = Field("", description="Space-separated public ids of the address's other "
                                      "waiting regimens that the page named; only those are "
                                      "confirmed with the link's.")
    lessons: str = Field("", description="Space-separated public ids of the subscriptions "
                                         "whose lessons the page said would follow; only "
                                         "those get lessons.")
    wording: str = Field("", description="The version of the page's wording, kept with the "
                                         "consent.")

Others = Callable[[AsyncSession, Subscriber], Awaitable[list[Subscriber]]]


class Holder(NamedTuple):
    subscriber: Subscriber
    # The link's regimen as served now; None once the author removed it.
    regimen: Regimen | None
    # The address's other subscriptions a page mentions (see token_holder's `others`).
    others: list[Subscriber]
    # The steps of the regimen the reader marked done, when the page asked (`with_progress`).
    done: frozenset[str] = frozenset()


def read_token(runtime: Runtime, purpose: Purpose, token: str) -> Claims:
    max_age = runtime.settings.confirm_max_age if purpose is Purpose.CONFIRM else None
    return runtime.tokens.read(purpose, token, max_age=max_age)


async def token_holder(runtime: Runtime, purpose: Purpose, token: str,
                       counted: EventKind | None = None, exercise: str | None = None,
                       from_mail: bool = True, *, program: str | None = None,
                       lesson: str | None = None,
                       offered_only: bool = False,
                       others: Others | None = None, with_progress: bool = False) -> Holder:
    """The subscription a link belongs to, for pages that only show something; the opening
    is counted for the author's funnel when `counted` says as what (service.funnel.events).
    `offered_only`: the page needs the regimen (RegimenGone, before anything is counted, once
    the author removed it); with `exercise` or `program`, one of that regimen's (else 404), which
    the counted event names, as it names `lesson` when the link was a lesson's (one of the
    regimen's: a link of a lesson since removed still works, uncredited). `others` finds
    the address's other subscriptions the page mentions; `with_progress` reads the steps the
    reader marked done."""
    claims = read_token(runtime, purpose, token)
    async with runtime.db.transaction() as session:
        subscriber = await signup.subscriber_for(session, claims)
        if purpose is Purpose.REGIMEN and subscriber.confirmed_at is None:
            raise signup.UnknownSubscriber()
        regimen = runtime.catalog.get(subscriber.regimen)
        if offered_only and regimen is None:
            raise RegimenGone(subscriber.regimen)
        if exercise is not None and (
                regimen is None or all(e.slug != exercise for e in regimen.exercises())):
            raise HTTPException(404)
        if program is not None and (regimen is None or program not in regimen.programs):
            raise HTTPException(404)
        if counted is not None:
            await events.record(session, counted, subscriber, exercise or program,
                                lesson=lesson if regimen is not None
                                and regimen.lesson(lesson or "") is not None else None,
                                scanner_window=runtime.settings.scanner_window,
                                from_mail=from_mail)
        return Holder(subscriber, regimen,
                      await others(session, subscriber) if others is not None else [],
                      await progress.done_steps(session, subscriber) if with_progress
                      else frozenset())


async def still_mailed(session: AsyncSession, subscriber: Subscriber) -> list[Subscriber]:
    """The address's other subscriptions that have not been unsubscribed."""
    return list(await session.scalars(
        select(Subscriber).where(Subscriber.email == subscriber.email,
                                 Subscriber.id != subscriber.id,
                                 Subscriber.status != SubscriberStatus.UNSUBSCRIBED)
        .order_by(Subscriber.id)))


def still_offered(runtime: Runtime, subscriptions: list[Subscriber]
                  ) -> list[tuple[Regimen, Subscriber]]:
    """Those of `subscriptions` whose regimen is still offered, with it."""
    catalog = runtime.catalog
    return [(regimen, each) for each in subscriptions
            if (regimen := catalog.get(each.regimen)) is not None]


@router.get(
    "/confirm/{token}", dependencies=[LINK_LIMIT],
    summary="The confirmation page, with its one button",
    description="Opening it changes nothing: mail scanners open every link.",
    responses={200: page("One button: Yes, send me the regimen. When the address waits for "
                         "other regimens too, one line names them: the button confirms them "
                         "all."),
               **TOKEN_PAGE_ANSWERS,
               410: error("The link has expired (a page offering to send a new one), or "
                          + GONE + ".")},
)
async def confirm_page(request: Request, token: Token, runtime: RuntimeDep) -> Response:
    holder = await token_holder(runtime, Purpose.CONFIRM, token,
                                counted=EventKind.CONFIRM_PAGE_OPENED, offered_only=True,
                                others=signup.still_waiting)
    assert holder.regimen is not None
    shown = still_offered(runtime, holder.others)
    # Each regimen confirmed that has lessons says so, in one line: only readers who pressed
    # the button under that line get them.
    with_lessons = [(regimen, each) for regimen, each in
                    [(holder.regimen, holder.subscriber), *shown] if regimen.lessons]
    promises = [promise(regimen.lessons) if len(with_lessons) == 1 and not shown
                else f"{regimen.title}: {promise(regimen.lessons)}"
                for regimen, _ in with_lessons]
    # The button confirms exactly what the page names: the form says which, since a regimen
    # asked for between this page and the press must not ride along unseen.
    return render(request, "confirm.html", holder.regimen, private=True,
                  action=f"/confirm/{token}", also=[regimen.title for regimen, _ in shown],
                  also_ids=" ".join(each.public_id for _, each in shown), promises=promises,
                  lessons_ids=" ".join(each.public_id for _, each in with_lessons),
                  wording=consent_version(*promises))


@router.post(
    "/confirm/{token}", dependencies=[LINK_LIMIT],
    summary="Confirm: record consent and queue the regimen mail",
    description="Confirms the link's regimen and those other regimens the address still waits "
                "for that the page named (`also`), each with its consent and its regimen mail. "
                "Pressing it again changes nothing.",
    responses={200: page("Confirmed; the page shows the link of each regimen confirmed."),
               **TOKEN_PAGE_ANSWERS,
               410: error("The link has expired (a page offering a new one), the reader has "
                          "unsubscribed since (the error page), or " + GONE + "."),
               413: TOO_LARGE},
    openapi_extra=request_body(Confirmation, FORM),
)
async def confirm(request: Request, token: Token, runtime: RuntimeDep) -> Response:
    claims = read_token(runtime, Purpose.CONFIRM, token)
    fields = await form_fields(request, request.headers.get("content-type", "").lower())
    wording = fields.get("wording", "")
    async with runtime.db.transaction() as session:
        held = await signup.subscriber_for(session, claims)
        offered(runtime.catalog, held.regimen)
        confirmed = still_offered(runtime, await signup.confirm(
            session, claims, origin_of(request), utcnow(),
            also=set(fields.get("also", "").split()),
            lessons=set(fields.get("lessons", "").split()),
            wording=wording if WORDING.fullmatch(wording) else None))
    regimen = confirmed[0][0]
    # Marked as this page's links: no mail scanner sees this page, so their openings all count.
    links = [(each_regimen.title,
              f"{runtime.links.for_subscriber(Purpose.REGIMEN, each)}?{VIA_PAGE}")
             for each_regimen, each in confirmed]
    return render(request, "confirmed.html", regimen, private=True, links=links)


@router.post(
    "/confirm/{token}/resend", dependencies=[LINK_LIMIT],
    summary="Send a fresh confirmation for an expired link",
    description="The token's age is not checked here, only its signature.",
    responses={200: page("A new mail is on its way (if one is due)."), **TOKEN_PAGE_ANSWERS,
               410: GONE_PAGE, 413: TOO_LARGE},
    openapi_extra=BUTTON,
)
async def resend_confirmation(request: Request, token: Token, runtime: RuntimeDep) -> Response:
    # Only the age may be past: the signature must still be ours.
    claims = runtime.tokens.read(Purpose.CONFIRM, token)
    async with runtime.db.transaction() as session:
        offered(runtime.catalog, (await signup.subscriber_for(session, claims)).regimen)
        await signup.resend(session, claims, utcnow(), runtime.mail_windows)
    return render(request, "check_inbox.html", runtime.regimen, private=True)


# HEAD too, answered like GET and changing nothing as GET does: mail scanners and mailbox
# providers probe the List-Unsubscribe address with HEAD, and a 405 there looks broken.
UNSUBSCRIBE_PAGE = page("One button: unsubscribe (from the link's regimen). When the address "
                        "gets other regimens too, a second: stop everything.")


@router.get("/unsubscribe/{token}", dependencies=[LINK_LIMIT],
            summary="The unsubscribe page, with its button",
            responses={200: UNSUBSCRIBE_PAGE, **TOKEN_PAGE_ANSWERS})
@router.head("/unsubscribe/{token}", dependencies=[LINK_LIMIT],
             summary="The unsubscribe page's headers, as GET; changes nothing",
             responses={200: UNSUBSCRIBE_PAGE, **TOKEN_PAGE_ANSWERS})
async def unsubscribe_page(request: Request, token: Token, runtime: RuntimeDep) -> Response:
    holder = await token_holder(runtime, Purpose.UNSUBSCRIBE, token, others=still_mailed)
    # A regimen the author removed can still be left: the page then speaks for the site.
    return render(request, "unsubscribe.html", holder.regimen or runtime.regimen, private=True,
                  about=holder.regimen, action=f"/unsubscribe/{token}",
                  offer_everything=bool(holder.others))


# No IP limit here: mailbox providers send many readers' one-click unsubscribes from a few
# addresses, and unsubscribing twice changes nothing.
@router.post(
    "/unsubscribe/{token}",
    summary="Unsubscribe (the page's buttons and RFC 8058 one-click)",
    description="Stops the mail of the link's regimen; with `everything=1` (the page's “Stop "
                "everything” button), of every regimen of the address. No cookies needed and "
                "never a redirect, as RFC 8058 asks; not rate limited, since mailbox providers "
                "send many readers' one-click unsubscribes from a few addresses.",
    responses={200: page("Unsubscribed (again, if pressed twice)."),
               400: error("The link is not one of ours (mistyped, cut short or tampered "
                          "with), or a multipart body that cannot be read."),
               404: UNKNOWN_LINK, 413: TOO_LARGE},
    openapi_extra=request_body(Unsubscribe, FORM, MULTIPART),
)
async def unsubscribe(request: Request, token: Token, runtime: RuntimeDep) -> Response:
    claims = read_token(runtime, Purpose.UNSUBSCRIBE, token)
    content_type = request.headers.get("content-type", "").lower()
    everything = (await form_fields(request, content_type)).get("everything") == "1"
    async with runtime.db.transaction() as session:
        subscriber = await signup.subscriber_for(session, claims)
        await signup.unsubscribe(session, claims, utcnow(), everything=everything)
    regimen = runtime.catalog.get(subscriber.regimen)
    return render(request, "unsubscribed.html", regimen or runtime.regimen, private=True,
                  about=regimen, everything=everything)


@router.get("/erase/{token}", dependencies=[LINK_LIMIT],
            summary="The erase-my-data page, with its button",
            responses={200: page("One button: delete everything held about me."),
                       **TOKEN_PAGE_ANSWERS})
async def erase_page(request: Request, token: Token, runtime: RuntimeDep) -> Response:
    # The address's data, every regimen's: the page speaks for the site.
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
            await privacy.erase(session, reader.email, runtime.settings.secret_keys[0],
                                utcnow())
    except signup.UnknownSubscriber:
        pass  # pressed twice, or erased already: the outcome the reader asked for
    return render(request, "erased.html", runtime.regimen, private=True)
