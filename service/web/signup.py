"""Signing up: the hosted pages (`/` lists the regimens, or is the form when there is one;
`/{key}` is each regimen's form), POST /subscribe (from those forms, the blog's snippet or JSON),
and the "check your inbox" page.

Each form names its regimen in a `regimen` field; a form without one (a snippet pasted before
there were several) signs up for the site's default regimen."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException

from service.abuse.bots import MIN_FILL_SECONDS
from service.core.content import KEY_PATTERN, Regimen
from service.core.lessons import promise
from service.core.urls import is_web_address
from service.delivery.outgoing import can_deliver
from service.readers.addresses import MAX_LENGTH, InvalidAddress, normalize_address
from service.readers.signup import Signup
from service.runtime import Runtime
from service.web.dependencies import (
    RuntimeDep,
    form_fields,
    get_runtime,
    limit_per_ip,
    origin_of,
)
from service.web.embed import back_to_post
from service.web.pages import render
from service.web.schemas import (
    CRASHED,
    FORM,
    HTML,
    JSON,
    MULTIPART,
    TEXT,
    TOO_LARGE,
    TOO_MANY,
    Error,
    Sent,
    error,
    page,
    request_body,
    see_other,
)
from service.web.texts import ACCEPTED_MESSAGE, TEXTS, consent_version

router = APIRouter(default_response_class=Response, responses=CRASHED)
# `/{key}` matches any one-segment path: create_app adds this router after every other route
# (and /static), so that it never hides one of them.
hosted = APIRouter(default_response_class=Response, responses=CRASHED)


class RegimenKey(Convertor[str]):
    """A path segment that can be a regimen's key. In the route's path itself, so that anything
    else (/favicon.ico, /embed.js) is left to the other routes, or to the 404 page."""

    regex = KEY_PATTERN.removeprefix("^").removesuffix("$")

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("regimen_key", RegimenKey())

ACCEPTED = {"status": "accepted", "message": ACCEPTED_MESSAGE}


class SignupForm(BaseModel):
    """With a CAPTCHA configured, the provider's answer field comes too (cf-turnstile-response
    or h-captcha-response)."""

    # Required for a signup, but a form without it is answered like an empty address: the form
    # again, saying what is missing. Other fields (the CAPTCHA's answer) pass through.
    model_config = ConfigDict(extra="allow", json_schema_extra={"required": ["email"]})

    email: str = Field("", description="The reader's address. Surrounding spaces are ignored; "
                                       "it is checked and stored lower-cased.",
                       json_schema_extra={"format": "email", "maxLength": MAX_LENGTH})
    source: str = Field("", description="The blog post the form is in. Kept as consent "
                                        "evidence when it is an http(s) address; a form signup "
                                        "from a blog in REGIMEN_ALLOWED_ORIGINS is sent back "
                                        "to it.",
                        json_schema_extra={"format": "uri"})
    regimen: str = Field("", description="The key of the regimen signed up for (its file's "
                                         "name in content/regimens/). Absent or empty: the "
                                         "site's default regimen. One the site does not offer "
                                         "is refused, and nothing is stored.",
                         json_schema_extra={"examples": ["neck-and-shoulders"]})
    # The form's honeypot: a field people never see.
    website: str = Field("", description="Honeypot, hidden from people: leave it empty. When "
                                         "filled the answer is the same, but nothing is stored "
                                         "or mailed.",
                         json_schema_extra={"maxLength": 0})
    # None, not "": the blog's static snippet sends no stamp, while an empty one is no stamp
    # of ours.
    started: str | SkipJsonSchema[None] = Field(
        None, description="The hosted form's signed time stamp (the blog snippet has none). "
                          "One not ours, or too fresh to have been typed by a person, is "
                          "treated like a filled honeypot.")


class Accepted(Sent):
    status: Literal["accepted"]
    message: str


class Problems(Sent):
    """What is wrong, by field: one of the two."""

    email: str | SkipJsonSchema[None] = Field(None, description="Why the address is refused.")
    regimen: str | SkipJsonSchema[None] = Field(None, description="The regimen named is not "
                                                                  "offered.")


class FieldErrors(Sent):
    errors: Problems


@router.get("/", summary="The hosted signup page",
            description="The form itself when the site offers one regimen; with several, each "
                        "regimen's title and introduction with a link to its own form, /{key}.",
            responses={200: page("The signup form, or the list of regimens.")})
async def home(request: Request, runtime: RuntimeDep) -> Response:
    return front_page(request, runtime)


def front_page(request: Request, runtime: Runtime, *, status_code: int = 200,
               error: str = "", email: str = "", source: str = "",
               started: str | None = None) -> Response:
    """`started`: the stamp of a form shown before (see `subscribe`), else a fresh one."""
    catalog = runtime.catalog
    if len(catalog.regimens) == 1:
        return signup_page(request, runtime, catalog.default, status_code=status_code,
                           started=runtime.tokens.form_stamp() if started is None else started,
                           email=email, source=source, error=error)
    return render(request, "regimens.html", catalog.default, status_code=status_code,
                  regimens=list(catalog.regimens.values()), error=error)


@hosted.get("/{key:regimen_key}", summary="A regimen's own hosted signup form",
            responses={200: page("The regimen's signup form."),
                       404: error("The site offers no regimen with this key.")})
async def regimen_form(
    request: Request, runtime: RuntimeDep,
    key: Annotated[str, Path(description="The regimen's key: its file's name in "
                                         "content/regimens/.", pattern=KEY_PATTERN)],
) -> Response:
    regimen = runtime.catalog.get(key)
    if regimen is None:
        raise HTTPException(404)
    return signup_page(request, runtime, regimen, started=runtime.tokens.form_stamp())


def signup_page(request: Request, runtime: Runtime, regimen: Regimen, *, started: str,
                status_code: int = 200, source: str = "", email: str = "",
                error: str = "") -> Response:
    return render(request, "signup.html", regimen, status_code=status_code,
                  action="/subscribe", regimen_key=regimen.key, source=source, email=email,
                  error=error, started=started, captcha=runtime.captcha,
                  lessons_promise=promise(regimen.lessons))


async def _checked_address(runtime: Runtime, request: Request,
                           form: SignupForm) -> tuple[str, str]:
    """The normalised address, or what the reader must fix (shown next to the field)."""
    try:
        email = normalize_address(form.email)
    except InvalidAddress as exc:
        return "", TEXTS.address.explain(exc)
    # Accepted means sendable: never a mail that can only fail (issue 13).
    if not await can_deliver(runtime.transport, email):
        return "", TEXTS.address.not_sendable
    if runtime.blocklist is not None and runtime.blocklist.blocks(email):
        return "", TEXTS.address.disposable
    if runtime.mx_check is not None and not await runtime.mx_check.deliverable(email):
        return "", TEXTS.address.no_mail
    if runtime.captcha is not None and \
            not await runtime.captcha.solved(form.model_extra or {}, origin_of(request).ip):
        return "", TEXTS.address.captcha
    return email, ""


def _looks_like_a_bot(runtime: Runtime, form: SignupForm) -> bool:
    """Bots get the usual answer, so they learn nothing; but nothing is stored or mailed."""
    if form.website:
        return True
    if form.started is None:
        return False  # the pasted blog snippet is static: it carries no stamp
    age = runtime.tokens.form_age(form.started)
    return age is None or age < MIN_FILL_SECONDS


@router.post(
    "/subscribe", summary="Sign up for the regimen (double opt-in)",
    description="The same answer whether the address is new, waiting, confirmed or "
                "unsubscribed, so nobody learns who is subscribed. A form post is answered "
                "with pages and redirects, JSON with JSON.",
    status_code=202,
    responses={
        202: {"description": "JSON: accepted; a confirmation mail is on its way if one is due.",
              "model": Accepted},
        303: see_other("Form: accepted; on to the blog post (when its blog is in "
                       "REGIMEN_ALLOWED_ORIGINS) or to /check-inbox."),
        400: {"description": "Form: the address is not usable (malformed, a throw-away or "
                             "mailless domain, an unsolved CAPTCHA): the regimen's form again, "
                             "saying why; or the regimen named is not offered: the hosted page "
                             "`/` again (the list of regimens, or the one form), saying so. "
                             "Also a form body that cannot be parsed (the error page).",
              "model": Error, "content": {HTML: {"schema": TEXT}}},
        413: TOO_LARGE,
        422: {"description": "JSON: as for 400, `errors.regimen` when the regimen named is not "
                             "offered (checked first), otherwise `errors.email` when the address "
                             "is not usable (or the body is not a JSON object).",
              "model": FieldErrors},
        429: TOO_MANY,
    },
    openapi_extra=request_body(SignupForm, FORM, MULTIPART, JSON, required=True),
)
async def subscribe(request: Request) -> Response:
    # The busiest route takes no FastAPI dependencies: solving them cost more than the rest of
    # the handler (bench/signup.py).
    runtime = await get_runtime(request)
    await limit_per_ip(request, runtime, "signup")
    content_type = request.headers.get("content-type", "").lower()
    as_json = content_type.startswith("application/json")
    fields = await _json_fields(request) if as_json else await form_fields(request, content_type)
    form = SignupForm.model_validate(fields)
    regimen = runtime.catalog.get(form.regimen) if form.regimen else runtime.regimen
    if regimen is None:
        # Said before anything else is checked: whatever the address, nothing can be stored.
        if as_json:
            return JSONResponse({"errors": {"regimen": TEXTS.listing.unknown}}, status_code=422)
        return front_page(request, runtime, status_code=400, error=TEXTS.listing.unknown,
                          email=form.email, source=form.source, started=form.started or "")
    email, problem = await _checked_address(runtime, request, form)
    if problem:
        if as_json:
            return JSONResponse({"errors": {"email": problem}}, status_code=422)
        # The first showing's stamp again (or none, from the blog's static form): a reader
        # fixing one letter is quick, and has been on the form all along.
        return signup_page(request, runtime, regimen, started=form.started or "",
                           status_code=400, source=form.source, email=form.email,
                           error=problem)
    source = _source_url(form.source or request.headers.get("referer"))
    if not _looks_like_a_bot(runtime, form):
        await runtime.signups.write(Signup(email, origin_of(request), source,
                                           consent_version(promise(regimen.lessons)),
                                           regimen.key))
    # The same answer whatever the address's state, so nobody learns who is subscribed.
    if as_json:
        return JSONResponse(ACCEPTED, status_code=202)
    after = back_to_post(_source_url(form.source), runtime.settings.allowed_origins)
    return RedirectResponse(after or "/check-inbox", status_code=303)


@router.get("/check-inbox", summary="After a form signup: check your inbox",
            responses={200: page("What happens next.")})
async def check_inbox(request: Request, runtime: RuntimeDep) -> Response:
    return render(request, "check_inbox.html", runtime.regimen)


async def _json_fields(request: Request) -> dict[str, str]:
    try:
        data: Any = json.loads(await request.body())
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        data = None
    if not isinstance(data, dict):
        return {}
    # A name that is not text (a lone surrogate from JSON's \ud800) is no field of ours, and
    # SignupForm would refuse it. A null is a field left out; a number or a list is read as its
    # JSON text, so that `"regimen": 42` is refused like any regimen not offered, not taken
    # for no regimen at all.
    return {key: value if isinstance(value, str) else _json_text(value)
            for key, value in data.items() if value is not None and _is_text(key)}


def _json_text(value: Any) -> str:
    try:
        return json.dumps(value)
    except RecursionError:
        return "[…]"


def _source_url(value: str | None) -> str | None:
    """Keep where the signup came from only if it is a plain web address."""
    if not value or len(value) > 2048 or any(ord(char) < 32 for char in value):
        return None
    return value if _is_text(value) and is_web_address(value) else None


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from JSON's \ud800: not storable text
        return False
    return True
