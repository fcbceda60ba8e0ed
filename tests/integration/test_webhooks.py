"""Bounce and complaint webhooks from Postmark and Mailgun, with their documented payloads, on a
real database: who may call them, what they suppress, and that a suppressed address stays
unmailed without anyone learning so."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, NamedTuple

import httpx
import pytest
from sqlalchemy import func, select

from service.core.database import Database
from service.core.models import OutboxMessage, OutboxStatus, Subscriber, SubscriberStatus, utcnow
from service.core.settings import Settings
from service.readers import signup
from service.readers.signup import RequestOrigin
from service.readers.tokens import Claims
from service.runtime import build_runtime
from service.web.app import create_app
from tests.helpers import BASE_URL, OTHER_REGIMEN, a_signup

SECRET = "s3cret"
SIGNING_KEY = "key-abc"
READER = "reader@example.org"
ORIGIN = RequestOrigin(ip=None, user_agent=None)


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    runtime = build_runtime(settings)
    app = create_app(runtime, run_worker=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url=BASE_URL) as http:
            yield http
    finally:
        await runtime.db.dispose()


@pytest.fixture
async def http(settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    configured = settings.model_copy(update={"webhook_secret": SECRET,
                                             "mailgun_signing_key": SIGNING_KEY})
    async with serving(configured) as client:
        yield client


async def confirmed_reader(db: Database) -> None:
    """A confirmed reader with a confirmation and a regimen mail still queued."""
    async with db.transaction() as session:
        await session.run_sync(signup.subscribe, [a_signup(READER, ORIGIN)],
                               utcnow())
    async with db.transaction() as session:
        subscriber = await session.scalar(select(Subscriber).where(Subscriber.email == READER))
        assert subscriber is not None
        await signup.confirm(session, Claims(subscriber.public_id, subscriber.token_version),
                             ORIGIN, utcnow())


class Reader(NamedTuple):
    status: SubscriberStatus
    suppressed_at: datetime | None
    suppressed_reason: str | None
    outbox: list[OutboxStatus]


async def state(db: Database) -> Reader:
    async with db.transaction() as session:
        subscriber = await session.scalar(select(Subscriber).where(Subscriber.email == READER))
        assert subscriber is not None
        outbox = await session.scalars(select(OutboxMessage.status)
                                       .where(OutboxMessage.subscriber_id == subscriber.id)
                                       .order_by(OutboxMessage.id))
        # Suppression belongs to the address (its reader row), whatever the regimen.
        return Reader(subscriber.status, subscriber.reader.suppressed_at,
                      subscriber.reader.suppressed_reason, list(outbox))


def assert_suppressed(reader: Reader, reason: str, status: SubscriberStatus) -> None:
    assert reader.status is status
    assert reader.suppressed_at is not None
    assert reader.suppressed_reason == reason
    assert reader.outbox == [OutboxStatus.CANCELLED, OutboxStatus.CANCELLED]


def postmark_event(record: str, kind: object, email: str = "Reader@Example.org") -> dict[str, Any]:
    """Shaped like Postmark's bounce and spam-complaint webhooks."""
    return {"RecordType": record, "MessageStream": "outbound", "ID": 4323372036854775807,
            "Type": kind, "TypeCode": 1, "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "ServerID": 23, "Description": "The server was unable to deliver your message.",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
            "Email": email, "From": "regimen@regimen.example.org",
            "BouncedAt": "2024-05-01T16:33:54.9070259Z", "Inactive": True, "CanActivate": True,
            "Subject": "Your regimen"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# As Postmark sends it from a webhook URL such as https://postmark:SECRET@host/webhooks/postmark.
POSTMARK_AUTH = basic("postmark", SECRET)


async def test_postmark_is_off_without_a_secret(settings: Settings, db: Database) -> None:
    async with serving(settings) as client:
        answer = await client.post("/webhooks/postmark", headers=POSTMARK_AUTH,
                                   json=postmark_event("Bounce", "HardBounce"))
    assert answer.status_code == 404


@pytest.mark.parametrize("headers", [
    pytest.param({}, id="none"),
    pytest.param(basic("postmark", "wrong"), id="wrong"),
    pytest.param(basic("postmark", ""), id="empty"),
    pytest.param(basic(SECRET, ""), id="secret-as-user"),
    pytest.param({"Authorization": f"Bearer {SECRET}"}, id="bearer"),
    pytest.param({"Authorization": "Basic !!!"}, id="not-base64"),
    pytest.param({"Authorization": "Basic " + base64.b64encode(b"\xff:\xfe").decode()},
                 id="not-utf8"),
    pytest.param({"Authorization": "Basic " + base64.b64encode(SECRET.encode()).decode()},
                 id="no-colon"),
])
async def test_postmark_needs_the_secret(
    http: httpx.AsyncClient, db: Database, headers: dict[str, str],
) -> None:
    await confirmed_reader(db)
    before = await state(db)
    answer = await http.post("/webhooks/postmark", headers=headers,
                             json=postmark_event("Bounce", "HardBounce"))
    # The provider's own refusal, not the error page, however the header is malformed.
    assert answer.status_code == 401
    assert answer.json() == {"error": "unauthorized"}
    assert answer.headers["www-authenticate"] == 'Basic realm="webhooks"'
    assert await state(db) == before


async def test_postmark_hard_bounce_suppresses(http: httpx.AsyncClient, db: Database) -> None:
    await confirmed_reader(db)
    answer = await http.post("/webhooks/postmark", headers=POSTMARK_AUTH,
                             json=postmark_event("Bounce", "HardBounce"))
    assert answer.status_code == 200
    assert_suppressed(await state(db), "bounce", SubscriberStatus.CONFIRMED)


async def test_postmark_complaint_suppresses_and_unsubscribes(
    http: httpx.AsyncClient, db: Database,
) -> None:
    await confirmed_reader(db)
    answer = await http.post("/webhooks/postmark", headers=POSTMARK_AUTH,
                             json=postmark_event("SpamComplaint", "SpamComplaint"))
    assert answer.status_code == 200
    assert_suppressed(await state(db), "complaint", SubscriberStatus.UNSUBSCRIBED)


@pytest.mark.parametrize("event", [
    pytest.param(postmark_event("Bounce", "SoftBounce"), id="soft-bounce"),
    pytest.param(postmark_event("Bounce", "HardBounce", "stranger@example.org"), id="unknown"),
])
async def test_postmark_other_events_change_nothing(
    http: httpx.AsyncClient, db: Database, event: dict[str, Any],
) -> None:
    await confirmed_reader(db)
    before = await state(db)
    answer = await http.post("/webhooks/postmark", headers=POSTMARK_AUTH, json=event)
    assert answer.status_code == 200
    assert await state(db) == before
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Subscriber)) == 1


MAILGUN_TOKEN = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"


def mailgun_signature(timestamp: str | None = None, token: str = MAILGUN_TOKEN,
                      key: str = SIGNING_KEY) -> dict[str, str]:
    timestamp = timestamp or str(int(time.time()))
    digest = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": digest}


def mailgun_event(event: str, severity: str | None = None,
                  signature: object = None) -> dict[str, Any]:
    """Shaped like Mailgun's webhook payloads (signature plus event-data); signed now unless
    told otherwise."""
    data = {"event": event, "id": "G9Bn5sl1TC6nu79C8C0bwg", "timestamp": 1714553634.375624,
            "log-level": "error", "recipient": "Reader@Example.org",
            "recipient-domain": "example.org", "reason": "bounce",
            "delivery-status": {"code": 550, "message": "5.1.1 No such user"},
            "message": {"headers": {"to": READER, "from": "regimen@regimen.example.org",
                                    "message-id": "20240501.k3y@regimen.example.org",
                                    "subject": "Your regimen"}}}
    if severity is not None:
        data["severity"] = severity
    return {"signature": signature or mailgun_signature(), "event-data": data}


async def test_mailgun_is_off_without_a_key(settings: Settings, db: Database) -> None:
    async with serving(settings) as client:
        answer = await client.post("/webhooks/mailgun", json=mailgun_event("failed", "permanent"))
    assert answer.status_code == 404


@pytest.mark.parametrize(("event", "severity", "reason", "status"), [
    ("failed", "permanent", "bounce", SubscriberStatus.CONFIRMED),
    ("complained", None, "complaint", SubscriberStatus.UNSUBSCRIBED),
])
async def test_mailgun_bounce_and_complaint_suppress(
    http: httpx.AsyncClient, db: Database, event: str, severity: str | None, reason: str,
    status: SubscriberStatus,
) -> None:
    await confirmed_reader(db)
    answer = await http.post("/webhooks/mailgun", json=mailgun_event(event, severity))
    assert answer.status_code == 200
    assert_suppressed(await state(db), reason, status)


async def test_mailgun_temporary_failure_changes_nothing(
    http: httpx.AsyncClient, db: Database,
) -> None:
    await confirmed_reader(db)
    before = await state(db)
    answer = await http.post("/webhooks/mailgun", json=mailgun_event("failed", "temporary"))
    assert answer.status_code == 200
    assert await state(db) == before


@pytest.mark.parametrize("signature", [
    pytest.param(lambda: mailgun_signature(key="key-other"), id="other-key"),
    pytest.param(lambda: mailgun_signature() | {"token": "f" * 50}, id="other-token"),
    pytest.param(lambda: mailgun_signature(str(int(time.time()) - 16 * 60)),
                 id="replayed-after-15-minutes"),
    pytest.param(lambda: mailgun_signature() | {"signature": "\u00e9" * 64},
                 id="non-ascii-signature"),
    # Superscript digits: str.isdigit() says yes, int() says no.
    pytest.param(lambda: mailgun_signature("\u00b9\u2077\u2070\u2070"),
                 id="superscript-timestamp"),
    pytest.param(lambda: "not-an-object", id="signature-not-an-object"),
    pytest.param(lambda: None, id="no-signature"),
])
async def test_mailgun_refuses_what_it_did_not_sign(
    http: httpx.AsyncClient, db: Database, signature: Callable[[], object],
) -> None:
    await confirmed_reader(db)
    before = await state(db)
    # Signed as the test runs: a signature made at collection would age with a slow suite.
    event = mailgun_event("failed", "permanent") | {"signature": signature()}
    answer = await http.post("/webhooks/mailgun", json=event)
    assert answer.status_code == 401
    assert await state(db) == before


@pytest.mark.parametrize("path", ["/webhooks/postmark", "/webhooks/mailgun"])
@pytest.mark.parametrize("body", [
    pytest.param(b'{"RecordType": "Bounce", "Type": "HardBounce", "Email": ', id="truncated"),
    pytest.param(b"\xff\xfe{}", id="not-utf8"),
    pytest.param(b'["Bounce"]', id="a-list"),
    pytest.param(b"", id="empty"),
    pytest.param(json.dumps(postmark_event("Bounce", "HardBounce", "not an address")).encode(),
                 id="bad-address"),
    pytest.param(json.dumps(postmark_event("Bounce", ["HardBounce"])).encode(), id="type-list"),
    # Under the body limit, over the JSON parser's recursion limit.
    pytest.param(b"[" * 30_000 + b"]" * 30_000, id="deeply-nested"),
])
async def test_malformed_bodies_are_no_server_error(
    http: httpx.AsyncClient, db: Database, path: str, body: bytes,
) -> None:
    await confirmed_reader(db)
    before = await state(db)
    answer = await http.post(path, content=body,
                             headers=POSTMARK_AUTH | {"Content-Type": "application/json"})
    assert answer.status_code < 500
    assert await state(db) == before


@pytest.mark.parametrize(("path", "event", "headers"), [
    ("/webhooks/postmark", lambda: postmark_event("Bounce", "HardBounce"), POSTMARK_AUTH),
    ("/webhooks/mailgun", lambda: mailgun_event("complained"), {}),
])
async def test_suppressed_address_signs_up_silently(
    http: httpx.AsyncClient, db: Database, path: str, event: Callable[[], dict[str, Any]],
    headers: dict[str, str],
) -> None:
    await confirmed_reader(db)
    assert (await http.post(path, json=event(), headers=headers)).status_code == 200

    async def outbox_rows_after_signup(email: str, regimen: str = "") -> tuple[int, str, int]:
        answer = await http.post("/subscribe", data={"email": email, "regimen": regimen})
        async with db.transaction() as session:
            rows = await session.scalar(select(func.count()).select_from(OutboxMessage))
        return answer.status_code, answer.headers["location"], rows or 0

    assert await outbox_rows_after_signup("Reader@Example.org") == (303, "/check-inbox", 2)
    # The address is suppressed, not only its subscription: another regimen mails nothing.
    assert await outbox_rows_after_signup("reader@example.org", OTHER_REGIMEN) == \
        (303, "/check-inbox", 2)
    # Anyone else is answered the same, and gets a confirmation mail.
    assert await outbox_rows_after_signup("newcomer@example.org") == (303, "/check-inbox", 3)
