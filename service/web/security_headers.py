"""Security headers on every response.

The pages carry no inline script or style, so the CSP can forbid both. Forms may post only to
this service and to the blogs in REGIMEN_ALLOWED_ORIGINS: a reader whose first try was refused
fills in the form again on our page, and its answer redirects back to the blog post, which
Chromium checks against `form-action` too.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.abuse.bots import PROVIDERS
from service.core.settings import Settings

HSTS_MAX_AGE = 365 * 24 * 3600
NONE = "'none'"


def security_headers(settings: Settings) -> dict[str, str]:
    form_targets = " ".join(["'self'", *settings.allowed_origins])
    # A configured CAPTCHA runs the provider's script, frame and styles: allow its sources.
    captcha = ""
    if settings.captcha_provider:
        captcha = f" {PROVIDERS[settings.captcha_provider].csp_sources}"
    policy = "; ".join([
        "default-src 'none'",
        f"script-src 'self'{captcha}",
        f"style-src 'self'{captcha}",
        "img-src 'self' data:",
        f"connect-src 'self'{captcha}",
        f"frame-src {captcha.strip() or NONE}",
        f"form-action {form_targets}",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ])
    headers = {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "strict-origin-when-cross-origin",
    }
    if settings.base_url.startswith("https://"):
        headers["Strict-Transport-Security"] = f"max-age={HSTS_MAX_AGE}"
    return headers


class SecurityHeaders:
    """Adds the headers a response has not set itself (token pages set a stricter
    Referrer-Policy)."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_missing(MutableHeaders(scope=message), self.headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def add_missing(target: MutableHeaders, headers: dict[str, str]) -> None:
    for name, value in headers.items():
        target.setdefault(name, value)
