"""Bad input and bad links: a clear page or JSON error, never a stack trace, nothing lost."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from service.core.database import Database
from service.core.models import OutboxMessage, Subscriber, SubscriberStatus
from service.readers.tokens import Claims, Purpose
from service.runtime import Runtime
from service.web.app import create_app
from tests.helpers import BASE_URL, MailSink, links_in, path_of, token_signed_at


async def count(db: Database, model: type[Subscriber] | type[OutboxMessage]) -> int:
    async with db.transaction() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


@pytest.mark.parametrize(("typed", "message"), [
    ("", "Please enter your email address."),
    ("not-an-address", "doesn't look like an email address"),
    ("reader@example.org\r\nBcc: victim@example.org", "line breaks"),
    ("a" * 250 + "@example.org", "longer than any email address"),
])
async def test_invalid_address_shows_the_form_again(
    client: httpx.AsyncClient, db: Database, typed: str, message: str,
) -> None:
    page = await client.post("/subscribe", data={"email": typed})
    assert page.status_code == 400
    assert message in html.unescape(page.text)
    assert '<form class="regimen-signup"' in page.text
    answer = await client.post("/subscribe", json={"email": typed})
    assert answer.status_code == 422
    assert message in answer.json()["errors"]["email"]
    assert await count(db, Subscriber) == 0


async def test_what_the_visitor_typed_is_escaped(client: httpx.AsyncClient) -> None:
    page = await client.post("/subscribe", data={"email": "<script>alert(1)</script>"})
    assert "<script>alert(1)" not in page.text
    assert "&lt;script&gt;" in page.text


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"email": 42}'])
async def test_malformed_json_is_a_field_error(client: httpx.AsyncClient, body: bytes) -> None:
    answer = await client.post("/subscribe", content=body,
                               headers={"content-type": "application/json"})
    assert answer.status_code == 422
    assert "email" in answer.json()["errors"]


@pytest.mark.parametrize("send", [
    {"data": {"email": "Multi.Part@example.org"}, "files": {"unused": ("a.txt", b"x")}},
    {"content": b"email=Multi.Part%40example.org", "headers": {
        "content-type": "application/x-www-form-urlencoded; charset=UTF-8"}},
    {"content": b"\xff=\xfe&email=multi.part%40example.org", "headers": {
        "content-type": "application/x-www-form-urlencoded"}},
])
async def test_either_form_encoding_signs_the_reader_up(
    client: httpx.AsyncClient, db: Database, send: dict[str, object],
) -> None:
    answer = await client.post("/subscribe", **send)  # type: ignore[arg-type]
    assert answer.status_code == 303, answer.text[-3000:]
    async with db.transaction() as session:
        assert await session.scalar(select(Subscriber.email)) == "multi.part@example.org"


async def test_oversized_bodies_are_refused(client: httpx.AsyncClient, db: Database) -> None:
    big = {"email": "big@example.org", "source": "x" * 70_000}
    assert (await client.post("/subscribe", data=big)).status_code == 413

    async def chunks():  # no Content-Length: the limit must hold while reading
        for _ in range(20):
            yield b"a" * 8192

    streamed = await client.post("/subscribe", content=chunks(),
                                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert streamed.status_code == 413
    assert "Too much data" in streamed.text
    assert await count(db, Subscriber) == 0


async def test_header_injection_through_source_is_dropped(
    client: httpx.AsyncClient, smtp: MailSink,
) -> None:
    source = "https://blog.example/post\r\nBcc: victim@example.org"
    await client.post("/subscribe", data={"email": "reader@example.org", "source": source})
    [mail] = await smtp.wait_for(1)
    assert "victim" not in mail.as_string()
    assert mail.get_all("Bcc") is None


async def test_nothing_the_visitor_typed_reaches_the_mail(
    client: httpx.AsyncClient, smtp: MailSink,
) -> None:
    marker = "https://spam.example/buy-now"
    await client.post("/subscribe", data={"email": "reader@example.org", "source": marker,
                                          "name": marker}, headers={"referer": marker})
    [mail] = await smtp.wait_for(1)
    assert "spam.example" not in mail.as_string()


def confirm_link(runtime: Runtime, claims: Claims) -> str:
    return "/confirm/" + runtime.tokens.make(Purpose.CONFIRM, claims)


async def signed_up(client: httpx.AsyncClient, smtp: MailSink, email: str) -> str:
    await client.post("/subscribe", data={"email": email})
    mail = (await smtp.wait_for(len(smtp.messages) + 1))[-1]
    return path_of(next(url for url in links_in(mail) if "/confirm/" in url))


async def test_tampered_link_gives_a_400_page(
    client: httpx.AsyncClient, smtp: MailSink,
) -> None:
    path = await signed_up(client, smtp, "reader@example.org")
    tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    for method in ("GET", "POST"):
        page = await client.request(method, tampered)
        assert page.status_code == 400
        assert "This link is not valid" in page.text
    assert (await client.get("/r/garbage")).status_code == 400
    assert (await client.post("/unsubscribe/garbage")).status_code == 400


async def test_link_for_another_purpose_is_refused(
    client: httpx.AsyncClient, smtp: MailSink,
) -> None:
    path = await signed_up(client, smtp, "reader@example.org")
    token = path.removeprefix("/confirm/")
    assert (await client.get(f"/r/{token}")).status_code == 400
    assert (await client.post(f"/unsubscribe/{token}")).status_code == 400


async def test_expired_link_offers_a_new_one(
    client: httpx.AsyncClient, smtp: MailSink, runtime: Runtime, db: Database,
) -> None:
    await signed_up(client, smtp, "slow@example.org")
    async with db.transaction() as session:
        reader = await session.scalar(select(Subscriber))
    assert reader is not None
    old = _token_signed_at(runtime, Purpose.CONFIRM, Claims(reader.public_id, 1),
                           datetime.now(UTC) - timedelta(days=8))
    page = await client.post(f"/confirm/{old}")
    assert page.status_code == 410
    assert "This link has expired" in page.text
    async with db.transaction() as session:
        assert (await session.get(Subscriber, reader.id)).status is SubscriberStatus.PENDING

    resend = await client.post(f"/confirm/{old}/resend")
    assert resend.status_code == 200
    fresh = (await smtp.wait_for(2))[-1]
    new_path = path_of(next(url for url in links_in(fresh) if "/confirm/" in url))
    assert (await client.post(new_path)).status_code == 200


async def test_expired_link_of_a_confirmed_reader_sends_the_regimen_again(
    client: httpx.AsyncClient, smtp: MailSink, runtime: Runtime, db: Database,
) -> None:
    await client.post(await signed_up(client, smtp, "early@example.org"))
    await smtp.wait_for(2)
    async with db.transaction() as session:
        reader = await session.scalar(select(Subscriber))
    assert reader is not None
    old = _token_signed_at(runtime, Purpose.CONFIRM, Claims(reader.public_id, 1),
                           datetime.now(UTC) - timedelta(days=30))
    assert (await client.post(f"/confirm/{old}/resend")).status_code == 200
    again = (await smtp.wait_for(3))[-1]
    assert any("/r/" in url for url in links_in(again))


def _token_signed_at(runtime: Runtime, purpose: Purpose, claims: Claims, when: datetime) -> str:
    return token_signed_at(runtime.settings.secret_keys[0], purpose, claims, when)


async def test_revoked_or_erased_reader_gets_a_404_page(
    client: httpx.AsyncClient, smtp: MailSink, runtime: Runtime,
) -> None:
    path = await signed_up(client, smtp, "reader@example.org")
    token = path.removeprefix("/confirm/")
    claims = runtime.tokens.read(Purpose.CONFIRM, token)
    stale_version = confirm_link(runtime, Claims(claims.public_id, claims.version + 1))
    assert (await client.get(stale_version)).status_code == 404
    nobody = await client.get(confirm_link(runtime, Claims("nobody-at-all", 1)))
    assert nobody.status_code == 404
    assert "no longer works" in nobody.text


async def test_unknown_page_and_wrong_method(client: httpx.AsyncClient) -> None:
    missing = await client.get("/no-such-page")
    assert missing.status_code == 404
    assert "Page not found" in missing.text
    assert (await client.delete("/subscribe")).status_code == 405


async def test_a_crash_is_a_friendly_500(runtime: Runtime) -> None:
    app = create_app(runtime, run_worker=False)

    # Two segments: a one-segment path is a regimen's own form (/{key}), added last.
    @app.get("/_test/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        page = await http.get("/_test/boom")
    assert page.status_code == 500
    assert "Something went wrong on our side" in page.text
    assert "kaboom" not in page.text
    assert "Traceback" not in page.text
    # Answered outside the middleware stack, and still with the security headers.
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
