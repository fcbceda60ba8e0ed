"""Readers' data: the consent record, the reader's own "delete my data", the author's export
and erase, forgetting unconfirmed signups, and addresses kept out of the logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from service.cli import app
from service.core.content import load_content
from service.core.database import Database
from service.core.lessons import promise
from service.core.logs import MaskAddresses
from service.core.models import (
    Base,
    Consent,
    ErasedAddress,
    Event,
    OutboxMessage,
    Reader,
    Subscriber,
    SubscriberStatus,
)
from service.core.settings import Settings
from service.readers import import_export as subscribers
from service.readers import privacy, signup
from service.readers.tokens import Claims
from service.runtime import Runtime
from service.web.texts import CONSENT_VERSION, consent_version
from tests.helpers import (
    DEFAULT_REGIMEN,
    PROJECT_ROOT,
    MailSink,
    a_signup,
    links_in,
    new_subscription,
    path_of,
)

READER = signup.RequestOrigin(ip="203.0.113.5", user_agent="Phone/1")

SECOND = "neck-and-shoulders"  # the shipped example regimen
HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')


async def confirmed_reader(client: httpx.AsyncClient, smtp: MailSink, email: str) -> list[str]:
    """Sign up and confirm through the routes; return the links of the regimen mail."""
    await client.post("/subscribe", data={"email": email, "source": "https://blog.example/p"})
    confirmation = (await smtp.wait_for(len(smtp.messages) + 1))[-1]
    confirm = next(url for url in links_in(confirmation) if "/confirm/" in url)
    # As a browser presses the page's button: with the page's hidden fields.
    page = await client.get(path_of(confirm))
    await client.post(path_of(confirm), data=dict(HIDDEN.findall(page.text)))
    return links_in((await smtp.wait_for(len(smtp.messages) + 1))[-1])


async def count(db: Database, model: type[object]) -> int:
    async with db.transaction() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


async def test_consent_records_who_where_when_and_which_words(
    client: httpx.AsyncClient, smtp: MailSink, db: Database,
) -> None:
    await confirmed_reader(client, smtp, "reader@example.org")
    async with db.transaction() as session:
        consent = await session.scalar(select(Consent))
    assert consent is not None
    # The default regimen has lessons: its form and confirm page said so, in words of their own.
    promised = promise(load_content(PROJECT_ROOT / "content").default.lessons)
    assert consent.consent_text_version == consent_version(promised)
    assert consent.confirm_text_version == consent_version(promised)
    assert consent.consent_text_version != CONSENT_VERSION
    assert consent.source_url == "https://blog.example/p"
    assert consent.signup_ip == "127.0.0.1"
    assert consent.confirmed_at is not None
    assert consent.confirm_ip == "127.0.0.1"


async def test_delete_my_data_from_the_regimen_mail(
    client: httpx.AsyncClient, smtp: MailSink, db: Database, runtime: Runtime,
) -> None:
    links = await confirmed_reader(client, smtp, "leaving@example.org")
    [erase_url] = [url for url in links if "/erase/" in url]
    [regimen_url] = [url for url in links if "/r/" in url]
    await client.get(path_of(regimen_url))  # an event tied to the reader

    page = await client.get(path_of(erase_url))
    assert page.status_code == 200
    assert "Delete my data" in page.text
    assert await count(db, Subscriber) == 1  # opening the link deletes nothing

    done = await client.post(path_of(erase_url))
    assert done.status_code == 200
    assert "Your data is deleted" in done.text
    for model in (Subscriber, Consent, OutboxMessage, Event):
        assert await count(db, model) == 0, model
    async with db.transaction() as session:
        assert await privacy.was_erased(session, runtime.settings.secret_keys[0],
                                        "leaving@example.org")
        [kept] = await session.scalars(select(ErasedAddress.address_hash))
    assert "leaving" not in kept

    again = await client.post(path_of(erase_url))
    assert again.status_code == 200  # pressing twice is no error
    assert (await client.get(path_of(regimen_url))).status_code == 404


def test_author_exports_then_erases_one_reader(
    settings: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    asyncio.run(_one_pending_reader(settings.database_url))
    for name in ("database_url", "data_dir", "base_url", "mail_url", "content_path"):
        monkeypatch.setenv(f"REGIMEN_{name.upper()}", str(getattr(settings, name)))
    monkeypatch.setenv("REGIMEN_SECRET_KEYS", settings.secret_keys[0])
    runner = CliRunner()
    exported = runner.invoke(app, ["subscribers", "export", "--email", "Export@Example.org"])
    assert exported.exit_code == 0, exported.output
    data = json.loads(exported.output)
    assert data["email"] == "export@example.org"
    assert data["suppressed"] is None
    # Every regimen the address asked for, each with its own consent and mail.
    assert {each["regimen"] for each in data["subscriptions"]} == {DEFAULT_REGIMEN, SECOND}
    for each in data["subscriptions"]:
        assert each["status"] == "pending"
        assert each["consents"][0]["signup_ip"] == "203.0.113.5"
        assert each["consents"][0]["consent_text_version"] == CONSENT_VERSION
        assert each["mails"][0]["kind"] == "confirm"

    erased = runner.invoke(app, ["subscribers", "erase", "--email", "export@example.org"])
    assert erased.exit_code == 0
    assert "e***@example.org" in erased.output
    missing = runner.invoke(app, ["subscribers", "export", "--email", "export@example.org"])
    assert missing.exit_code == 1
    asyncio.run(_nothing_left(settings.database_url))


async def _nothing_left(url: str) -> None:
    db = Database(url)
    async with db.transaction() as session:
        for model in (Reader, Subscriber, Consent, OutboxMessage):
            assert await session.scalar(select(func.count()).select_from(model)) == 0
    await db.dispose()


async def _one_pending_reader(url: str) -> None:
    db = Database(url)
    async with db.transaction() as session:
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(table.delete())
        await session.run_sync(signup.subscribe, [
            signup.Signup("export@example.org", READER, None, CONSENT_VERSION, regimen)
            for regimen in (DEFAULT_REGIMEN, SECOND)], datetime.now(UTC))
    await db.dispose()


async def test_unconfirmed_signups_are_forgotten_after_the_retention(db: Database) -> None:
    now = datetime.now(UTC)
    month_ago = now - timedelta(days=31)
    async with db.transaction() as session:
        for email in ("stale@example.org", "fresh@example.org", "confirmed@example.org",
                      "came-back@example.org"):
            when = now if email == "fresh@example.org" else month_ago
            address, subscriber = new_subscription(email, status=SubscriberStatus.PENDING,
                                                   created_at=when)
            session.add_all([address, subscriber])
            await session.flush()
            session.add(Consent(subscriber_id=subscriber.id, signed_up_at=when))
            if email == "confirmed@example.org":
                await signup.confirm(session, Claims(subscriber.public_id, 1), READER,
                                     month_ago)
            if email == "came-back@example.org":  # signed up again yesterday
                session.add(Consent(subscriber_id=subscriber.id,
                                    signed_up_at=now - timedelta(days=1)))
        # An address that bounced keeps its "never mail it" with no subscription left.
        bounced, waiting = new_subscription("bounced@example.org",
                                            status=SubscriberStatus.PENDING, created_at=month_ago)
        bounced.suppressed_at, bounced.suppressed_reason = month_ago, "bounce"
        session.add_all([bounced, waiting])
    async with db.transaction() as session:
        forgotten = await privacy.forget_unconfirmed(session, now, timedelta(days=30))
        left = set(await session.scalars(select(Subscriber.email)))
        addresses = set(await session.scalars(select(Reader.email)))
    assert forgotten == 2
    assert left == {"fresh@example.org", "confirmed@example.org", "came-back@example.org"}
    # No permission, no address: the forgotten subscription's reader goes too.
    assert addresses == left | {"bounced@example.org"}


def test_addresses_are_masked_in_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("regimen.test.masking")
    logger.addFilter(MaskAddresses())
    with caplog.at_level(logging.INFO, logger="regimen.test.masking"):
        logger.info("refused %s and Other.One@Mail.Example.org", "reader@example.org")
    assert caplog.messages == ["refused r***@example.org and O***@Mail.Example.org"]


async def test_an_imported_list_cannot_bring_an_erased_reader_back(
    db: Database, runtime: Runtime,
) -> None:
    secret = runtime.settings.secret_keys[0]
    async with db.transaction() as session:
        await session.run_sync(signup.subscribe,
                               [a_signup("gone@example.org", READER)],
                               datetime.now(UTC))
    async with db.transaction() as session:
        reader = await session.scalar(select(Subscriber))
        assert reader is not None
        await privacy.erase(session, reader.email, secret, datetime.now(UTC))
    result = subscribers.ImportResult()
    rows = subscribers.read_rows(io.StringIO("email\nGone@Example.org\nnew@example.org\n"),
                                 result)
    await subscribers.import_rows(db, rows, datetime.now(UTC), 100, result, secret,
                                  DEFAULT_REGIMEN)
    assert (result.erased, result.mailed) == (1, 1)
    async with db.transaction() as session:
        assert set(await session.scalars(select(Subscriber.email))) == {"new@example.org"}
