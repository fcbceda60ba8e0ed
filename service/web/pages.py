"""Rendering the reader's pages: one Jinja environment, the wording from service.web.texts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from service.core.content import Regimen
from service.web.texts import TEXTS

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.globals["t"] = TEXTS

# Pages reached through a reader's personal link: never indexed, cached, or leaked as Referer.
PRIVATE_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "Cache-Control": "no-store",
}


def render(request: Request, name: str, regimen: Regimen, *, status_code: int = 200,
           private: bool = False, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, name, {"regimen": regimen, "private": private, **context},
        status_code=status_code,
    )
    if private:
        response.headers.update(PRIVATE_HEADERS)
    return response

