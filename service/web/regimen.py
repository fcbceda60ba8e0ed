"""The reader's regimen page (`/r/{token}`) and what it links to: each exercise's video or
purchase page and each next step's program, counted for the author on the way; and the
"Done" buttons that keep the reader's progress.

The page knows where its reader stands: the step to continue with, each unit's count, and the
author's next steps once a unit is done (service.readers.progress). Progress changes only by a
button press (a POST): opening the page, as mail scanners do, marks nothing. Each button is a
plain form that works without JavaScript (the answer is the page again, at that step); the
page's own script (static/regimen.js) sends it with `Accept: application/json` instead and
updates the page in place from the answer. Nothing is kept in the browser: the link is the key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from starlette.exceptions import HTTPException

from service.core.content import READ_THROUGH, Regimen
from service.core.models import EventKind, utcnow
from service.readers import progress, signup
from service.readers.tokens import Purpose
from service.web.dependencies import RuntimeDep, form_fields
from service.web.errors import wants_json
from service.web.links import (
    GONE_PAGE,
    LINK_LIMIT,
    TOKEN_PAGE_ANSWERS,
    VIA_PAGE,
    Token,
    read_token,
    token_holder,
)
from service.web.pages import PRIVATE_HEADERS, fragment, offered, render
from service.web.schemas import (
    CRASHED,
    FORM,
    MULTIPART,
    TOO_LARGE,
    error,
    page,
    request_body,
    see_other,
)
from service.web.texts import TEXTS

router = APIRouter(default_response_class=Response, responses=CRASHED)

# The query of the page a Done button comes back to (without the page's script): the reader
# is on the page already, so this showing is not counted as another opening.
AFTER_DONE = "after=done"

Slug = Annotated[str, Path(description="An exercise of the regimen, as named in the content "
                                       "file.")]
Step = Annotated[str, Path(description="An exercise of the regimen, by its slug in the content "
                                       f"file, or `{READ_THROUGH}` (the page's first "
                                       "step: reading the regimen through).")]
ProgramKey = Annotated[str, Path(description="A program of the regimen, by its key in the "
                                             "content file.")]
FromLesson = Annotated[str | None, Query(
    max_length=80, description="The lesson whose link this is (its key): credited to it in "
                               "the author's numbers.")]


class MarkDone(BaseModel):
    """A step's button."""

    model_config = ConfigDict(extra="forbid")

    done: Literal["1", "0"] | SkipJsonSchema[None] = Field(
        None, description="`1` marks the step done, `0` not done; absent: the other of what it "
                          "is now (pressing the button again undoes it).")


def page_links(token: str) -> dict[str, Any]:
    """The bases of the page's own links, for its templates."""
    return {"go_base": f"/r/{token}/go/", "program_base": f"/r/{token}/program/",
            "done_base": f"/r/{token}/done/"}


@router.get("/r/{token}", dependencies=[LINK_LIMIT], summary="The reader's regimen page",
            description="Opening it changes no progress: only its buttons (POST) do.",
            responses={200: page("The link's regimen: the reader's progress and the step to "
                                 "continue with, then its units in order, each exercise with "
                                 "its link and its Done button."),
                       **TOKEN_PAGE_ANSWERS, 410: GONE_PAGE})
async def regimen_page(request: Request, token: Token, runtime: RuntimeDep,
                       lesson: FromLesson = None) -> Response:
    holder = await token_holder(runtime, Purpose.REGIMEN, token,
                                counted=None if request.url.query == AFTER_DONE
                                else EventKind.REGIMEN_OPENED,
                                from_mail=request.url.query != VIA_PAGE, offered_only=True,
                                with_progress=True, lesson=lesson)
    assert holder.regimen is not None
    return render(request, "regimen.html", holder.regimen, private=True,
                  standing=progress.standing(holder.regimen, holder.done),
                  unsubscribe_url=runtime.links.for_subscriber(Purpose.UNSUBSCRIBE,
                                                               holder.subscriber),
                  **page_links(token))


MARKED = {"description": "For the page's script (`Accept: application/json`): the step's new "
                         "state, its button's label, and the progress box to show.",
          "content": {"application/json": {"schema": {"type": "object", "properties": {
              "step": {"type": "string"}, "done": {"type": "boolean"},
              "button": {"type": "string"}, "summary": {"type": "string"},
              "status": {"type": "string"}}}}}}


@router.post(
    "/r/{token}/done/{step}", dependencies=[LINK_LIMIT],
    summary="Mark a step of the regimen done, or not done",
    description="The regimen page's button. Marking a step done twice, or undoing it twice, "
                "changes nothing more.",
    status_code=303,
    responses={303: see_other("Back to the regimen page, at that step."),
               200: MARKED,
               **TOKEN_PAGE_ANSWERS,
               404: error("No such step in the link's regimen, or nobody holds this link any "
                          "more."),
               410: GONE_PAGE, 413: TOO_LARGE},
    openapi_extra=request_body(MarkDone, FORM, MULTIPART),
)
async def mark_done(request: Request, token: Token, step: Step,
                    runtime: RuntimeDep) -> Response:
    claims = read_token(runtime, Purpose.REGIMEN, token)
    asked = (await form_fields(request, request.headers.get("content-type", "").lower())
             ).get("done")
    if asked not in (None, "0", "1"):
        raise HTTPException(400)
    async with runtime.db.transaction() as session:
        subscriber = await signup.subscriber_for(session, claims)
        if subscriber.confirmed_at is None:
            raise signup.UnknownSubscriber()
        regimen = offered(runtime.catalog, subscriber.regimen)
        if not progress.is_step(regimen, step):
            raise HTTPException(404)
        done = await progress.done_steps(session, subscriber)
        now_done = step not in done if asked is None else asked == "1"
        await progress.mark(session, subscriber, step, now_done, utcnow())
    done = done | {step} if now_done else done - {step}
    if wants_json(request):
        return JSONResponse(marked(regimen, token, step, now_done, done),
                            headers=PRIVATE_HEADERS)
    return RedirectResponse(f"/r/{token}?{AFTER_DONE}#{step}", status_code=303,
                            headers=PRIVATE_HEADERS)


def marked(regimen: Regimen, token: str, step: str, done: bool,
           steps_done: frozenset[str]) -> dict[str, Any]:
    """The script's answer: what to change on the page, worded as the page words it."""
    words = TEXTS.regimen
    standing = progress.standing(regimen, steps_done)
    title = words.read_through if step == READ_THROUGH else \
        next(e.title for e in regimen.exercises() if e.slug == step)
    following = words.read_through if not standing.read_through else \
        standing.continue_with.title if standing.continue_with else None
    return {
        "step": step, "done": done,
        "button": words.marked_done if done else words.mark_done,
        "summary": fragment("_progress.html", regimen=regimen, standing=standing,
                            **page_links(token)),
        "status": words.status.format(
            title=title, state=words.state_done if done else words.state_not_done,
            next=f"{words.continue_with} {following}" if following else words.all_done),
    }


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
               404: error("No such exercise in the link's regimen, or nobody holds this link "
                          "any more."),
               410: GONE_PAGE},
)
async def exercise_link(token: Token, slug: Slug, runtime: RuntimeDep,
                        lesson: FromLesson = None) -> Response:
    # From the page (no lesson) a person clicks; a lesson's link is a mail's, which a scanner
    # may follow (service.funnel.events).
    holder = await token_holder(runtime, Purpose.REGIMEN, token,
                                counted=EventKind.EXERCISE_CLICKED, exercise=slug,
                                from_mail=lesson is not None, offered_only=True,
                                lesson=lesson)
    assert holder.regimen is not None
    exercise = next(e for e in holder.regimen.exercises() if e.slug == slug)
    return RedirectResponse(holder.regimen.destination(exercise), status_code=303,
                            headers=PRIVATE_HEADERS)


@router.get(
    "/r/{token}/program/{program}", dependencies=[LINK_LIMIT],
    summary="Follow a next step's program link (counted)",
    description="From a unit's next steps: counts the click, then sends the reader on to the "
                "program's purchase page, an address from the content file.",
    status_code=303,
    responses={303: see_other("On to the program's purchase page."),
               **TOKEN_PAGE_ANSWERS,
               404: error("No such program in the link's regimen, or nobody holds this link "
                          "any more."),
               410: GONE_PAGE},
)
async def program_link(token: Token, program: ProgramKey, runtime: RuntimeDep,
                       lesson: FromLesson = None) -> Response:
    holder = await token_holder(runtime, Purpose.REGIMEN, token,
                                counted=EventKind.PROGRAM_CLICKED, program=program,
                                from_mail=lesson is not None, offered_only=True,
                                lesson=lesson)
    assert holder.regimen is not None
    return RedirectResponse(holder.regimen.programs[program].url, status_code=303,
                            headers=PRIVATE_HEADERS)
