"""Stopping a regimen's lessons: the page behind each lesson's "stop the lessons" link, and the
one-click unsubscribe (RFC 8058) of its List-Unsubscribe header, which stops the lessons only:
the reader still wants their regimen, and its page keeps working. Unsubscribing from the
regimen (service.web.links) stops everything, the lessons with it."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from service.core.models import utcnow
from service.readers import signup
from service.readers.tokens import Purpose
from service.web.dependencies import RuntimeDep
from service.web.links import (
    LINK_LIMIT,
    TOKEN_PAGE_ANSWERS,
    Token,
    read_token,
    token_holder,
)
from service.web.pages import render
from service.web.schemas import (
    CRASHED,
    FORM,
    MULTIPART,
    TOO_LARGE,
    UNKNOWN_LINK,
    error,
    page,
    request_body,
)

router = APIRouter(default_response_class=Response, responses=CRASHED)


class StopLessons(BaseModel):
    """The page's button, or RFC 8058 one-click unsubscribe (whose body is not needed)."""

    one_click: Literal["One-Click"] | SkipJsonSchema[None] = Field(None,
                                                                   alias="List-Unsubscribe")

STOP_PAGE = page("One button: stop the lessons of the link's regimen.")


@router.get("/lessons/stop/{token}", dependencies=[LINK_LIMIT],
            summary="The stop-the-lessons page, with its button",
            responses={200: STOP_PAGE, **TOKEN_PAGE_ANSWERS})
@router.head("/lessons/stop/{token}", dependencies=[LINK_LIMIT],
             summary="The stop-the-lessons page's headers, as GET; changes nothing",
             responses={200: STOP_PAGE, **TOKEN_PAGE_ANSWERS})
async def stop_page(request: Request, token: Token, runtime: RuntimeDep) -> Response:
    holder = await token_holder(runtime, Purpose.LESSONS, token)
    return render(request, "lessons_stop.html", holder.regimen or runtime.regimen,
                  private=True, about=holder.regimen, action=f"/lessons/stop/{token}")


# No IP limit, as for unsubscribing: mailbox providers send many readers' one-click requests
# from a few addresses, and stopping twice changes nothing.
@router.post(
    "/lessons/stop/{token}",
    summary="Stop the lessons (the page's button and RFC 8058 one-click)",
    description="Stops the lessons of the link's regimen; its page and the reader's other mail "
                "are untouched. No cookies needed and never a redirect, as RFC 8058 asks.",
    responses={200: page("Stopped (again, if pressed twice)."),
               400: error("The link is not one of ours (mistyped, cut short or tampered "
                          "with)."),
               404: UNKNOWN_LINK, 413: TOO_LARGE},
    openapi_extra=request_body(StopLessons, FORM, MULTIPART),
)
async def stop(request: Request, token: Token, runtime: RuntimeDep) -> Response:
    claims = read_token(runtime, Purpose.LESSONS, token)
    async with runtime.db.transaction() as session:
        subscriber = await signup.stop_lessons(session, claims, utcnow())
    regimen = runtime.catalog.get(subscriber.regimen)
    return render(request, "lessons_stopped.html", regimen or runtime.regimen, private=True,
                  about=regimen,
                  regimen_url=runtime.links.for_subscriber(Purpose.REGIMEN, subscriber)
                  if regimen is not None and subscriber.confirmed_at is not None else None)
