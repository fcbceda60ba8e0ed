"""The form a blog author pastes into a post, the page that hands it out, and embed.js.

The snippet is a plain HTML form that works with JavaScript off: the form posts to
/subscribe, which redirects back to the post (when its origin is one of
REGIMEN_ALLOWED_ORIGINS) where the snippet's own CSS shows "check your inbox" through
`:target`. The optional script sends the same form with fetch so the reader never leaves the
post.

A site with several regimens hands out one snippet per regimen: its hidden `regimen` field names
the regimen's key. A snippet without the field (pasted before there were several) signs readers
up for the site's default regimen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.exceptions import HTTPException

from service.abuse.bots import Captcha
from service.core.content import KEY_MAX_LENGTH
from service.core.lessons import promise
from service.core.urls import web_origin
from service.web.dependencies import RuntimeDep
from service.web.pages import render, templates
from service.web.schemas import CRASHED, JAVASCRIPT, PLAIN, TEXT, error, page

router = APIRouter(default_response_class=Response, responses=CRASHED)

EMBED_JS = Path(__file__).parent / "static" / "embed.js"
# The element of the snippet that says "check your inbox"; a redirect back to the post targets it.
SENT_ANCHOR = "regimen-signup-sent"
MAX_SOURCE_LENGTH = 2048


def snippet(base_url: str, source: str = "", captcha: Captcha | None = None,
            regimen_key: str | None = None, lessons_promise: str = "") -> str:
    """What `regimen embed` prints and the author page shows, ready to paste; with the
    CAPTCHA's widget when one is configured, since every signup must then pass it; with a
    hidden field naming the regimen when `regimen_key` is given (without: the site's default
    regimen); and with the regimen's promise of lessons, when it has them."""
    return templates.get_template("_embed.html").render(
        base_url=base_url, source=source, sent_anchor=SENT_ANCHOR, captcha=captcha,
        regimen_key=regimen_key, lessons_promise=lessons_promise,
    ).strip() + "\n"


def back_to_post(source: str | None, allowed_origins: list[str]) -> str | None:
    """Where a form signup from a blog post returns to: the post, with the snippet's message
    in view. Only to an allowed blog, so /subscribe is no open redirect."""
    if not source or web_origin(source) not in allowed_origins:
        return None
    return source.split("#", 1)[0] + "#" + SENT_ANCHOR


@router.get(
    "/embed.js", summary="The snippet's optional script",
    responses={
        200: {"description": "The script.", "content": {JAVASCRIPT: {"schema": TEXT}}},
        206: {"description": "The ranges asked for.",
              "content": {JAVASCRIPT: {"schema": TEXT}, "multipart/byteranges": {"schema": TEXT}}},
        400: {"description": "A malformed `Range` header.", "content": {PLAIN: {"schema": TEXT}}},
        416: {"description": "A `Range` outside the script.",
              "content": {PLAIN: {"schema": TEXT}}},
    },
    # FileResponse reads the header itself.
    openapi_extra={"parameters": [{"name": "Range", "in": "header", "required": False,
                                   "schema": {"type": "string", "examples": ["bytes=0-99"]}}]},
)
async def embed_js() -> Response:
    # Loaded by <script src> from the blog; a script needs no CORS, only the right type.
    return FileResponse(EMBED_JS, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=3600"})


@router.get(
    "/embed", summary="For blog authors: the snippet to paste into a post",
    responses={200: page("The snippet, and whether the post's blog is set up."),
               400: error(f"`source` is over {MAX_SOURCE_LENGTH} characters, or `regimen` "
                          "names no regimen the site offers.")},
)
async def author_page(
    request: Request, runtime: RuntimeDep,
    source: Annotated[str, Query(max_length=MAX_SOURCE_LENGTH,
                                 description="The blog post's address, written into the "
                                             "snippet.")] = "",
    regimen: Annotated[str, Query(max_length=KEY_MAX_LENGTH,
                                  description="The key of the regimen the snippet signs "
                                              "readers up for; absent or empty: the site's "
                                              "default. Only asked for (and written into the "
                                              "snippet) when the site offers several.")] = "",
) -> Response:
    settings = runtime.settings
    catalog = runtime.catalog
    chosen = catalog.get(regimen) if regimen else catalog.default
    if chosen is None:
        raise HTTPException(400)
    post_origin = web_origin(source.strip())
    source = source.strip() if post_origin else ""
    # A one-regimen site's snippet names none: it keeps working whatever the author renames.
    several = len(catalog.regimens) > 1
    return render(request, "embed.html", chosen, private=True, source=source,
                  regimens=list(catalog.regimens.values()) if several else [],
                  snippet=snippet(settings.base_url, source, runtime.captcha,
                                  chosen.key if several else None, promise(chosen.lessons)),
                  post_origin=post_origin,
                  origin_allowed=post_origin in settings.allowed_origins,
                  origins=", ".join(settings.allowed_origins))
