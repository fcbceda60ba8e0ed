"""Rendering the reader's pages: one Jinja environment, the wording from service.web.texts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from service.core.content import READ_THROUGH, Catalog, Regimen
from service.web.texts import TEXTS, titles

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.globals["t"] = TEXTS
templates.env.filters["titles"] = titles
templates.env.globals["READ_THROUGH"] = READ_THROUGH

# Pages reached through a reader's personal link: never indexed, cached, or leaked as Referer.
PRIVATE_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "Cache-Control": "no-store",
}


class RegimenGone(Exception):
    """A link to a regimen the author has since removed from the content: a page says so
    (service.web.errors), never a crash."""


def offered(catalog: Catalog, key: str) -> Regimen:
    """The regimen `key` as served now; RegimenGone once the author removed it."""
    regimen = catalog.get(key)
    if regimen is None:
        raise RegimenGone(key)
    return regimen


def fragment(name: str, **context: Any) -> str:
    """A part of a page (a template named with a leading underscore) as HTML, for a page's
    script to put in place."""
    return templates.get_template(name).render(context)


def render(request: Request, name: str, regimen: Regimen, *, status_code: int = 200,
           private: bool = False, **context: Any) -> HTMLResponse:
    """`regimen` is the one the page is about (its title, intro and the site's wording); pages
    about no regimen in particular pass the site's default one."""
    response = templates.TemplateResponse(
        request, name, {"regimen": regimen, "private": private, **context},
        status_code=status_code,
    )
    if private:
        response.headers.update(PRIVATE_HEADERS)
    return response
