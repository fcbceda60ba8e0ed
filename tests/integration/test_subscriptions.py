"""A reader, many subscriptions: one row per address, one subscription per (address, regimen),
each with its own state and mail; what belongs to the address (the mail budget, suppression,
erasure) acts on all of them."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from service.abuse.mail_budget import MailWindow
from service.core.database import Database
from service.core.models import (
    MailKind,
    OutboxMessage,
    OutboxStatus,
    Reader,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from service.core.outbox import queue_reminders
from service.readers import signup
from service.readers.signup import RequestOrigin, SuppressionReason
from service.readers.tokens import Claims
from tests.helpers import DEFAULT_REGIMEN, a_signup

READER = RequestOrigin(ip="203.0.113.9", user_agent="test")
SECOND = "neck-and-shoulders"


async def subscribe(db: Database, email: str, *regimens: str,
                    windows: list[MailWindow] | None = None) -> None:
    async with db.transaction() as session:
        await session.run_sync(signup.subscribe,
                               [a_signup(email, READER, regimen=r) for r in regimens],
                               utcnow(), windows or [])


async def state(db: Database) -> tuple[int, dict[str, Subscriber], list[tuple[str, MailKind]]]:
    async with db.transaction() as session:
        readers = await session.scalar(select(func.count()).select_from(Reader)) or 0
        subscriptions = {s.regimen: s for s in await session.scalars(select(Subscriber))}
        by_id = {s.id: s.regimen for s in subscriptions.values()}
        mails = [(by_id[m.subscriber_id], m.kind) for m in await session.scalars(
            select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.QUEUED)
            .order_by(OutboxMessage.id))]
    return readers, subscriptions, mails


async def test_one_reader_two_regimens_each_with_its_own_confirmation(db: Database) -> None:
    await subscribe(db, "two@example.org", DEFAULT_REGIMEN)
    await subscribe(db, "two@example.org", SECOND)
    readers, subscriptions, mails = await state(db)
    assert readers == 1
    assert set(subscriptions) == {DEFAULT_REGIMEN, SECOND}
    assert len({s.public_id for s in subscriptions.values()}) == 2
    assert sorted(mails) == sorted([(DEFAULT_REGIMEN, MailKind.CONFIRM),
                                    (SECOND, MailKind.CONFIRM)])


async def test_the_mail_budget_counts_every_mail_to_the_address(db: Database) -> None:
    once = [MailWindow(1, timedelta(minutes=5))]
    await subscribe(db, "limited@example.org", DEFAULT_REGIMEN, windows=once)
    await subscribe(db, "limited@example.org", SECOND, windows=once)
    _, subscriptions, mails = await state(db)
    # The second regimen's mail is withheld; it is recorded as asked for, so the button of the
    # confirmation already sent can name and confirm it too.
    assert set(subscriptions) == {DEFAULT_REGIMEN, SECOND}
    assert mails == [(DEFAULT_REGIMEN, MailKind.CONFIRM)]
    async with db.transaction() as session:
        waiting = await signup.still_waiting(session, subscriptions[DEFAULT_REGIMEN])
    assert [w.regimen for w in waiting] == [SECOND]


async def test_one_reminder_an_address_however_many_regimens_wait(db: Database) -> None:
    async with db.transaction() as session:
        await session.run_sync(signup.subscribe,
                               [a_signup("slow@example.org", READER, regimen=r)
                                for r in (DEFAULT_REGIMEN, SECOND)],
                               utcnow() - timedelta(days=2))
        assert await queue_reminders(session, utcnow(), timedelta(days=1)) == 1
        assert await queue_reminders(session, utcnow(), timedelta(days=1)) == 0
    _, subscriptions, mails = await state(db)
    assert [kind for _, kind in mails].count(MailKind.REMINDER) == 1
    assert all(s.reminded_at is not None for s in subscriptions.values())


async def test_one_button_confirms_everything_waiting_that_the_page_named(db: Database) -> None:
    await subscribe(db, "both@example.org", DEFAULT_REGIMEN, SECOND)
    _, subscriptions, _ = await state(db)
    first, second = subscriptions[DEFAULT_REGIMEN], subscriptions[SECOND]
    async with db.transaction() as session:
        assert [w.public_id for w in await signup.still_waiting(session, first)] == \
            [second.public_id]
    # Asked for after the page was shown: not named there, so not confirmed with it.
    await subscribe(db, "both@example.org", "a-third-one")
    async with db.transaction() as session:
        confirmed = await signup.confirm(session, Claims(first.public_id, first.token_version),
                                         READER, utcnow(), also={second.public_id})
    assert [each.regimen for each in confirmed] == [DEFAULT_REGIMEN, SECOND]
    _, subscriptions, mails = await state(db)
    assert subscriptions["a-third-one"].status is SubscriberStatus.PENDING
    del subscriptions["a-third-one"]
    assert {s.status for s in subscriptions.values()} == {SubscriberStatus.CONFIRMED}
    assert sorted(mail for mail in mails if mail[1] is MailKind.REGIMEN) == sorted(
        [(DEFAULT_REGIMEN, MailKind.REGIMEN), (SECOND, MailKind.REGIMEN)])


async def test_unsubscribing_stops_one_regimen_or_everything(db: Database) -> None:
    await subscribe(db, "leaving@example.org", DEFAULT_REGIMEN, SECOND)
    _, subscriptions, _ = await state(db)
    first = subscriptions[DEFAULT_REGIMEN]
    claims = Claims(first.public_id, first.token_version)
    async with db.transaction() as session:
        await signup.unsubscribe(session, claims, utcnow())
    _, subscriptions, mails = await state(db)
    assert subscriptions[DEFAULT_REGIMEN].status is SubscriberStatus.UNSUBSCRIBED
    assert subscriptions[SECOND].status is SubscriberStatus.PENDING
    assert mails == [(SECOND, MailKind.CONFIRM)]
    async with db.transaction() as session:
        await signup.unsubscribe(session, claims, utcnow(), everything=True)
    _, subscriptions, mails = await state(db)
    assert {s.status for s in subscriptions.values()} == {SubscriberStatus.UNSUBSCRIBED}
    assert mails == []


async def test_a_bounce_stops_every_regimen_of_the_address(db: Database) -> None:
    await subscribe(db, "gone@example.org", DEFAULT_REGIMEN, SECOND)
    async with db.transaction() as session:
        assert await signup.suppress(session, "gone@example.org", SuppressionReason.BOUNCE,
                                     utcnow())
    assert (await state(db))[2] == []
    # Asking for a third regimen later: kept quiet, nothing is mailed.
    await subscribe(db, "gone@example.org", "a-third-one")
    _, subscriptions, mails = await state(db)
    assert "a-third-one" in subscriptions
    assert mails == []
