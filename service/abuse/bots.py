"""Telling people from scripts at the signup form, without bothering the people.

Silent checks (the bot gets the usual answer and learns nothing): the honeypot field, and a
form sent back faster than a person can type (the hosted form carries a signed time stamp).
Checks a person can fix get a message: a CAPTCHA (Cloudflare Turnstile or hCaptcha, when keys
are set), a blocklist of disposable-address domains, and an optional MX lookup.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import httpx
from email_validator import EmailNotValidError, caching_resolver, validate_email

from service.core.settings import Settings

# Nobody types an address and presses the button within this many seconds of the page loading.
MIN_FILL_SECONDS = 2.0


@dataclass(frozen=True)
class CaptchaProvider:
    verify_url: str
    response_field: str
    script_url: str
    widget_class: str
    # Where its widget loads scripts, frames, styles and requests from (its CSP documentation).
    csp_sources: str


PROVIDERS = {
    "turnstile": CaptchaProvider(
        verify_url="https://challenges.cloudflare.com/turnstile/v0/siteverify",
        response_field="cf-turnstile-response",
        script_url="https://challenges.cloudflare.com/turnstile/v0/api.js",
        widget_class="cf-turnstile",
        csp_sources="https://challenges.cloudflare.com",
    ),
    "hcaptcha": CaptchaProvider(
        verify_url="https://api.hcaptcha.com/siteverify",
        response_field="h-captcha-response",
        script_url="https://js.hcaptcha.com/1/api.js",
        widget_class="h-captcha",
        csp_sources="https://hcaptcha.com https://*.hcaptcha.com",
    ),
}


class Captcha:
    """Server-side verification, as both providers document it: POST secret, response and
    the reader's IP as a form; the JSON answer's `success` says whether a person solved it."""

    def __init__(self, provider: str, site_key: str, secret: str, verify_url: str = "") -> None:
        self.provider = PROVIDERS[provider]
        self.site_key = site_key
        self.secret = secret
        self.verify_url = verify_url or self.provider.verify_url
        # One client for every check, opened at the first: its connection pool is reused.
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Captcha | None:
        if not settings.captcha_provider:
            return None
        return cls(settings.captcha_provider, settings.captcha_site_key,
                   settings.captcha_secret, settings.captcha_verify_url)

    async def solved(self, fields: dict[str, str], ip: str | None) -> bool:
        answer = fields.get(self.provider.response_field, "")
        if not answer:
            return False
        form = {"secret": self.secret, "response": answer}
        if ip:
            form["remoteip"] = ip
        try:
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=10)
            response = await self._client.post(self.verify_url, data=form)
            return response.status_code == 200 and response.json().get("success") is True
        except (httpx.HTTPError, ValueError, AttributeError):
            # The verifier is unreachable or talks nonsense: refuse, the reader can retry.
            return False


    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

class Blocklist:
    """Domains of throw-away mailboxes, one per line (# comments allowed); a domain also
    blocks its subdomains."""

    def __init__(self, path: Path) -> None:
        lines = path.read_text(encoding="utf-8").splitlines()
        self.domains = {line.split("#", 1)[0].strip().lower() for line in lines} - {""}

    def blocks(self, address: str) -> bool:
        parts = address.rpartition("@")[2].split(".")
        return any(".".join(parts[i:]) in self.domains for i in range(len(parts) - 1))


class MxCheck:
    """Whether the address's domain accepts mail at all (MX, or A/AAAA as fallback), looked
    up off the event loop; `nameserver` ("host" or "host:port") overrides the system's."""

    def __init__(self, nameserver: str = "") -> None:
        self.resolver = caching_resolver(timeout=5)
        if nameserver:
            host, _, port = nameserver.partition(":")
            self.resolver.nameservers = [host]
            self.resolver.port = int(port or 53)

    async def deliverable(self, address: str) -> bool:
        def look_up() -> bool:
            try:
                validate_email(address, check_deliverability=True,
                               dns_resolver=self.resolver)
            except EmailNotValidError:
                return False
            return True

        return await asyncio.to_thread(look_up)
