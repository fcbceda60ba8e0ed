"""Rate limits: per client IP with a 429 page, per address without a trace in the answer,
counted in memory or in the Redis at 127.0.0.1:6379 shared by several processes."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio
from sqlalchemy import func, select

from service.core.database import Database
from service.core.models import OutboxMessage, Subscriber, utcnow
from service.core.settings import Settings
from service.readers.tokens import Claims, Purpose
from tests.helpers import app_client, token_signed_at

REDIS_URL = "redis://127.0.0.1:6379/15"

Client = Callable[..., Any]


async def outbox_rows(db: Database) -> int:
    async with db.transaction() as session:
        return await session.scalar(select(func.count()).select_from(OutboxMessage)) or 0


@pytest.mark.usefixtures("db")
async def test_too_many_signups_from_one_ip_get_a_429_page(settings: Settings) -> None:
    async with app_client(settings, signups_per_ip="3/minute") as http:
        for i in range(3):
            answer = await http.post("/subscribe", data={"email": f"r{i}@example.org"})
            assert answer.status_code == 303
        refused = await http.post("/subscribe", data={"email": "r9@example.org"})
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) > 0
        assert "Too many tries" in refused.text
        # The JSON API is held to the same count, and answers in JSON.
        as_json = await http.post("/subscribe", json={"email": "r10@example.org"})
        assert as_json.status_code == 429
        assert as_json.headers["content-type"].startswith("application/json")
        # Another reader behind our (trusted, local) proxy is not affected.
        other = await http.post("/subscribe", data={"email": "o@example.org"},
                                headers={"x-forwarded-for": "198.51.100.7"})
        assert other.status_code == 303


@pytest.mark.usefixtures("db")
async def test_forwarded_for_is_ignored_from_an_untrusted_peer(settings: Settings) -> None:
    async with app_client(settings, signups_per_ip="2/minute",
                          trusted_proxies="10.9.9.9") as http:
        answers = [await http.post("/subscribe", data={"email": f"r{i}@example.org"},
                                   headers={"x-forwarded-for": f"198.51.100.{i}"})
                   for i in range(3)]
    # A client cannot pick a fresh IP per request by writing the header itself.
    assert [a.status_code for a in answers] == [303, 303, 429]


@pytest.mark.usefixtures("db")
async def test_link_routes_are_limited_per_ip(settings: Settings) -> None:
    async with app_client(settings, link_opens_per_ip="2/minute") as http:
        statuses = [(await http.get("/r/not-a-token")).status_code for _ in range(3)]
    assert statuses == [400, 400, 429]


@pytest.mark.usefixtures("db")
async def test_done_buttons_share_the_per_ip_limit_of_the_links(settings: Settings) -> None:
    async with app_client(settings, link_opens_per_ip="2/minute") as http:
        opened = (await http.get("/r/not-a-token")).status_code
        pressed = [(await http.post("/r/not-a-token/done/gentle-back-exercise",
                                    data={"done": "1"})).status_code for _ in range(2)]
    assert [opened, *pressed] == [400, 400, 429]


async def test_an_address_gets_one_confirmation_however_often_it_is_typed(
    settings: Settings, db: Database,
) -> None:
    async with app_client(settings, mails_per_address="1/5minutes;3/day") as http:
        answers = [await http.post("/subscribe", data={"email": "victim@example.org"},
                                   headers={"x-forwarded-for": f"203.0.113.{i}"})
                   for i in range(4)]
        # The same answer every time: the refusal must not tell whether the address is known.
        assert {(a.status_code, a.headers["location"]) for a in answers} == \
            {(303, "/check-inbox")}
        assert await outbox_rows(db) == 1
        await http.post("/subscribe", data={"email": "someone-else@example.org"})
        assert await outbox_rows(db) == 2


async def test_the_resend_button_is_held_to_the_same_limit(settings: Settings,
                                                          db: Database) -> None:
    async with app_client(settings, mails_per_address="1/5minutes") as http:
        await http.post("/subscribe", data={"email": "slow@example.org"})
        async with db.transaction() as session:
            reader = await session.scalar(select(Subscriber))
        assert reader is not None
        expired = token_signed_at(settings.secret_keys[0], Purpose.CONFIRM,
                                  Claims(reader.public_id, 1), utcnow() - timedelta(days=8))
        for _ in range(3):
            assert (await http.post(f"/confirm/{expired}/resend")).status_code == 200
        assert await outbox_rows(db) == 1
        async with db.transaction() as session:
            for mail in await session.scalars(select(OutboxMessage)):
                mail.created_at -= timedelta(minutes=6)
        assert (await http.post(f"/confirm/{expired}/resend")).status_code == 200
        assert await outbox_rows(db) == 2


@pytest.fixture
async def clean_redis() -> AsyncIterator[None]:
    client = redis.asyncio.from_url(REDIS_URL)
    await client.flushdb()
    yield
    await client.flushdb()
    await client.aclose()


@pytest.mark.usefixtures("db", "clean_redis")
async def test_processes_share_their_counts_through_redis(settings: Settings) -> None:
    shared = {"rate_limit_storage": REDIS_URL, "signups_per_ip": "3/minute"}
    async with app_client(settings, **shared) as first, app_client(settings, **shared) as second:
        statuses = [(await http.post("/subscribe", data={"email": f"r{i}@example.org"}))
                    .status_code for i, http in enumerate([first, second, first, second])]
    assert statuses == [303, 303, 303, 429]


@pytest.mark.usefixtures("db", "clean_redis")
async def test_processes_share_their_counts_of_wrong_passwords(settings: Settings) -> None:
    password = "the-authors-password-" + "p" * 16
    shared = {"rate_limit_storage": REDIS_URL, "auth_failures_per_ip": "2/minute",
              "admin_password": password}
    async with app_client(settings, **shared) as first, app_client(settings, **shared) as second:
        guesses = [(await http.get("/admin", headers=_basic("guess"))).status_code
                   for http in (first, second, first)]
    # A guesser spreading guesses over several web processes is counted once.
    assert guesses == [401, 401, 429]


def _basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"author:{password}".encode()).decode()}


@pytest.mark.usefixtures("db")
async def test_a_password_guesser_is_slowed_down_and_logged(
    settings: Settings, caplog: pytest.LogCaptureFixture,
) -> None:
    password = "the-authors-password-" + "p" * 16
    async with app_client(settings, admin_password=password,
                          auth_failures_per_ip="3/minute") as http:
        # The browser's first request carries no password yet: not a guess, not counted.
        assert (await http.get("/admin")).status_code == 401
        guesses = [await http.get("/admin", headers=_basic(f"guess-{n}")) for n in range(5)]
        assert [g.status_code for g in guesses] == [401, 401, 401, 429, 429]
        assert int(guesses[-1].headers["retry-after"]) > 0
        # Locked out means locked out: the right password from there waits too, or a guesser
        # would learn which guess was right.
        assert (await http.get("/admin", headers=_basic(password))).status_code == 429
        # The author, at another address, is not locked out.
        elsewhere = {"x-forwarded-for": "198.51.100.23", **_basic(password)}
        assert (await http.get("/admin", headers=elsewhere)).status_code == 200
    refusals = [r.getMessage() for r in caplog.records if "wrong password" in r.getMessage()]
    # One line per wrong password, the client's address masked.
    assert len(refusals) == 3
    assert all("/admin from 127.0.0.x" in line for line in refusals)


@pytest.mark.usefixtures("db")
async def test_the_webhooks_count_wrong_secrets_too(settings: Settings) -> None:
    async with app_client(settings, webhook_secret="postmark-secret-" + "s" * 16,
                          mailgun_signing_key="mailgun-key-" + "k" * 16,
                          auth_failures_per_ip="2/minute") as http:
        postmark = [await http.post("/webhooks/postmark", json={}, headers=_basic("no"))
                    for _ in range(2)]
        mailgun = await http.post("/webhooks/mailgun", json={"signature": {}})
    # The count is the client's, whichever endpoint it guesses at.
    assert [p.status_code for p in postmark] == [401, 401]
    assert mailgun.status_code == 429


@pytest.mark.usefixtures("db")
async def test_metrics_may_want_a_bearer_token(settings: Settings) -> None:
    token = "metrics-token-" + "t" * 20
    async with app_client(settings, metrics_token=token) as http:
        assert (await http.get("/metrics")).status_code == 401
        refused = await http.get("/metrics", headers={"Authorization": "Bearer wrong"})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="metrics"'
        scraped = await http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert scraped.status_code == 200
        assert "regimen_signups" in scraped.text
    async with app_client(settings) as http:
        assert (await http.get("/metrics")).status_code == 200
