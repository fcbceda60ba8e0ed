"""People or scripts: the form's time stamp, a CAPTCHA verified against a local stand-in for
the provider, the disposable-domain list, and the MX lookup against a local DNS server."""

from __future__ import annotations

import html
import json
import re
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import func, select

from service.core.database import Database
from service.core.models import Subscriber
from service.core.settings import Settings
from service.web.texts import TEXTS
from tests.helpers import DEFAULT_REGIMEN, app_client


async def readers(db: Database) -> int:
    async with db.transaction() as session:
        return await session.scalar(select(func.count()).select_from(Subscriber)) or 0


def stamp_made_at(settings: Settings, when: datetime) -> str:
    class Backdated(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(when.timestamp())

    serializer = URLSafeTimedSerializer(list(reversed(settings.secret_keys)),
                                        salt="regimen.form", signer=Backdated)
    return str(serializer.dumps(0))


async def test_a_form_sent_back_within_seconds_is_dropped_silently(
    settings: Settings, db: Database,
) -> None:
    async with app_client(settings) as http:
        page = await http.get(f"/{DEFAULT_REGIMEN}")
        [fresh] = re.findall(r'name="started" value="([^"]+)"', page.text)
        quick = await http.post("/subscribe", data={"email": "bot@example.org",
                                                    "started": fresh})
        forged = await http.post("/subscribe", data={"email": "forger@example.org",
                                                     "started": "made-up"})
        assert await readers(db) == 0
        person = await http.post("/subscribe", data={
            "email": "person@example.org",
            "started": stamp_made_at(settings, datetime.now(UTC) - timedelta(seconds=20))})
        blog = await http.post("/subscribe", data={"email": "blog@example.org"})
    # All four get the same answer; only the person and the blog's static form count.
    assert {(r.status_code, r.headers["location"]) for r in (quick, forged, person, blog)} == \
        {(303, "/check-inbox")}
    assert await readers(db) == 2


@pytest.fixture
def disposable_list(tmp_path: Path) -> Path:
    path = tmp_path / "disposable.txt"
    path.write_text("# throw-away mailboxes\nmailinator.com\n\nyopmail.com  # and its aliases\n")
    return path


async def test_disposable_domains_are_refused_with_a_message(
    settings: Settings, db: Database, disposable_list: Path,
) -> None:
    async with app_client(settings, disposable_domains_path=disposable_list) as http:
        for address in ("x@mailinator.com", "x@eu.mailinator.com", "x@YOPMAIL.com"):
            page = await http.post("/subscribe", data={"email": address})
            assert page.status_code == 400
            assert TEXTS.address.disposable in html.unescape(page.text)
            answer = await http.post("/subscribe", json={"email": address})
            assert answer.json()["errors"]["email"] == TEXTS.address.disposable
        ok = await http.post("/subscribe", data={"email": "x@notmailinator.com"})
    assert ok.status_code == 303
    assert await readers(db) == 1


class Verifier(BaseHTTPRequestHandler):
    """Cloudflare's siteverify as documented: a form with secret, response and remoteip in,
    `{"success": ...}` out."""

    seen: list[dict[str, list[str]]] = []

    def do_POST(self) -> None:  # noqa: N802 (the http.server API)
        form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        Verifier.seen.append(form)
        solved = form.get("secret") == ["captcha-secret"] and form.get("response") == ["solved"]
        body = json.dumps({"success": solved, "error-codes": [] if solved else
                           ["invalid-input-response"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def verifier() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Verifier)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/turnstile/v0/siteverify"
    server.shutdown()
    server.server_close()
    thread.join()


# Each provider's widget, script, CSP sources and form field, as its documentation gives them.
CAPTCHAS = {
    "turnstile": ("cf-turnstile", "https://challenges.cloudflare.com/turnstile/v0/api.js",
                  "https://challenges.cloudflare.com", "cf-turnstile-response"),
    "hcaptcha": ("h-captcha", "https://js.hcaptcha.com/1/api.js",
                 "https://hcaptcha.com https://*.hcaptcha.com", "h-captcha-response"),
}


@pytest.mark.parametrize("provider", list(CAPTCHAS))
async def test_with_a_captcha_every_signup_must_pass_it(
    settings: Settings, db: Database, verifier: str, provider: str,
) -> None:
    widget, script, origin, field = CAPTCHAS[provider]
    captcha = {"captcha_provider": provider, "captcha_site_key": "site-key-1",
               "captcha_secret": "captcha-secret", "captcha_verify_url": verifier}
    async with app_client(settings, **captcha) as http:
        page = await http.get(f"/{DEFAULT_REGIMEN}")
        assert f'class="{widget}" data-sitekey="site-key-1"' in page.text
        assert script in page.text
        policy = page.headers["content-security-policy"]
        for directive in ("script-src 'self'", "style-src 'self'", "connect-src 'self'",
                          "frame-src"):
            assert f"{directive} {origin};" in policy

        unsolved = await http.post("/subscribe", data={"email": "a@example.org",
                                                       field: "guessed"})
        assert unsolved.status_code == 400
        assert TEXTS.address.captcha in html.unescape(unsolved.text)
        missing = await http.post("/subscribe", json={"email": "a@example.org"})
        assert missing.status_code == 422
        assert await readers(db) == 0

        solved = await http.post("/subscribe", data={"email": "a@example.org",
                                                     field: "solved"},
                                 headers={"x-forwarded-for": "198.51.100.4"})
        assert solved.status_code == 303
    assert await readers(db) == 1
    assert Verifier.seen[-1]["remoteip"] == ["198.51.100.4"]


@pytest.fixture
def nameserver() -> Iterator[str]:
    """A DNS server on a local UDP port: only mail-ok.regimen-dns.org exists, with an MX."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                wire, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            answer = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text()
            if name == "mail-ok.regimen-dns.org." and question.rdtype == dns.rdatatype.MX:
                answer.answer.append(dns.rrset.from_text(name, 300, "IN", "MX",
                                                         "10 mx.mail-ok.regimen-dns.org."))
            elif not name.endswith("mail-ok.regimen-dns.org."):
                answer.set_rcode(dns.rcode.NXDOMAIN)
            sock.sendto(answer.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    sock.close()


async def test_mx_check_refuses_domains_that_take_no_mail(
    settings: Settings, db: Database, nameserver: str,
) -> None:
    async with app_client(settings, check_mx=True, mx_nameserver=nameserver) as http:
        refused = await http.post("/subscribe", data={"email": "reader@no-mail.regimen-dns.org"})
        assert refused.status_code == 400
        assert TEXTS.address.no_mail in html.unescape(refused.text)
        accepted = await http.post("/subscribe", data={"email": "reader@mail-ok.regimen-dns.org"})
        assert accepted.status_code == 303
    assert await readers(db) == 1
