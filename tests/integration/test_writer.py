"""Group commit: concurrent signups share one transaction, and each is answered only after it
has committed; one the database refuses fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from service.abuse.mail_budget import MailWindow
from service.core.database import Database
from service.core.models import (
    Consent,
    MailKind,
    OutboxMessage,
    Reader,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from service.readers import signup
from service.readers.writer import SignupWriter
from tests.helpers import DEFAULT_REGIMEN, a_signup, new_subscription

ORIGIN = signup.RequestOrigin(ip="198.51.100.7", user_agent="Phone/2")


def counting_commits(db: Database) -> list[int]:
    commits: list[int] = []
    event.listen(db.blocking_engine, "commit", lambda _conn: commits.append(1))
    return commits


async def mails_by_reader(db: Database) -> dict[str, list[MailKind]]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(Subscriber.email, OutboxMessage.kind).join(OutboxMessage)
            .order_by(OutboxMessage.id))
        found: dict[str, list[MailKind]] = {}
        for email, kind in rows:
            found.setdefault(email, []).append(kind)
        return found


async def test_concurrent_signups_share_one_commit(db: Database) -> None:
    writer = SignupWriter(db)
    commits = counting_commits(db)
    emails = [f"reader{n}@example.org" for n in range(50)]

    await asyncio.gather(*(writer.write(a_signup(e, ORIGIN, "https://blog.test/p"))
                           for e in emails))

    assert len(commits) == 1
    assert await mails_by_reader(db) == {e: [MailKind.CONFIRM] for e in emails}
    async with db.transaction() as session:
        consents = list(await session.scalars(select(Consent)))
        pending = await session.scalar(select(func.count()).select_from(Subscriber).where(
            Subscriber.status == SubscriberStatus.PENDING))
    assert pending == 50
    assert {(c.signup_ip, c.signup_user_agent, c.source_url) for c in consents} == {
        ("198.51.100.7", "Phone/2", "https://blog.test/p")}


async def test_a_batch_treats_each_state_as_one_signup_at_a_time_would(db: Database) -> None:
    now = utcnow()
    async with db.transaction() as session:
        session.add_all([
            *new_subscription("kept@example.org", status=SubscriberStatus.CONFIRMED,
                              confirmed_at=now),
            *new_subscription("left@example.org", status=SubscriberStatus.UNSUBSCRIBED,
                              unsubscribed_at=now),
            Reader(email="bounced@example.org", suppressed_at=now, suppressed_reason="bounce"),
            Subscriber(email="bounced@example.org", regimen=DEFAULT_REGIMEN,
                       status=SubscriberStatus.PENDING),
        ])
    # Two mails an hour per address: the third signup of "often" within the batch is not
    # mailed, exactly as if the three had come one after another.
    writer = SignupWriter(db, [MailWindow(2, timedelta(hours=1))])

    await asyncio.gather(*(writer.write(a_signup(email, ORIGIN)) for email in [
        "kept@example.org", "left@example.org", "bounced@example.org",
        "often@example.org", "often@example.org", "often@example.org",
    ]))

    assert await mails_by_reader(db) == {
        "kept@example.org": [MailKind.REGIMEN],
        "left@example.org": [MailKind.CONFIRM],
        "often@example.org": [MailKind.CONFIRM, MailKind.CONFIRM],
    }
    async with db.transaction() as session:
        states = dict((await session.execute(select(Subscriber.email, Subscriber.status))).all())
    assert states == {
        "kept@example.org": SubscriberStatus.CONFIRMED,
        "left@example.org": SubscriberStatus.PENDING,
        "bounced@example.org": SubscriberStatus.PENDING,
        "often@example.org": SubscriberStatus.PENDING,
    }


async def test_the_per_address_limit_counts_mails_queued_earlier(db: Database) -> None:
    writer = SignupWriter(db, [MailWindow(1, timedelta(minutes=5)),
                               MailWindow(3, timedelta(days=1))])
    await writer.write(a_signup("victim@example.org", ORIGIN))
    await writer.write(a_signup("victim@example.org", ORIGIN))
    assert await mails_by_reader(db) == {"victim@example.org": [MailKind.CONFIRM]}

    # Move the first mail 6 minutes into the past: the 5-minute window lets one more through,
    # then the day's three are used up however the minutes fall.
    for _ in range(4):
        async with db.transaction() as session:
            for mail in await session.scalars(select(OutboxMessage)):
                mail.created_at -= timedelta(minutes=6)
        await writer.write(a_signup("victim@example.org", ORIGIN))
    assert await mails_by_reader(db) == {"victim@example.org": [MailKind.CONFIRM] * 3}


async def test_a_refused_signup_fails_alone(db: Database, monkeypatch: pytest.MonkeyPatch,
                                            ) -> None:
    real_subscribe = signup.subscribe

    def refuse_one(session: Any, signups: Sequence[signup.Signup], now: datetime,
                   *windows: Any) -> None:
        if any(item.email == "refused@example.org" for item in signups):
            raise RuntimeError("the database refused this row")
        real_subscribe(session, signups, now, *windows)

    monkeypatch.setattr(signup, "subscribe", refuse_one)
    writer = SignupWriter(db)

    results = await asyncio.gather(
        *(writer.write(a_signup(e, ORIGIN)) for e in
          ["a@example.org", "refused@example.org", "b@example.org"]),
        return_exceptions=True)

    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], RuntimeError)
    assert await mails_by_reader(db) == {"a@example.org": [MailKind.CONFIRM],
                                         "b@example.org": [MailKind.CONFIRM]}


async def test_two_processes_signing_up_the_same_addresses(database_url: str,
                                                           db: Database) -> None:
    # Two web processes, each with its own writer and connections, racing on new addresses.
    other = Database(database_url)
    try:
        emails = [f"race{n}@example.org" for n in range(20)]
        first, second = SignupWriter(db), SignupWriter(other)
        await asyncio.gather(*(writer.write(a_signup(e, ORIGIN))
                               for e in emails for writer in (first, second)))
    finally:
        await other.dispose()

    assert await mails_by_reader(db) == {e: [MailKind.CONFIRM] * 2 for e in emails}


async def test_an_unreachable_database_fails_the_batch_at_once(
    database_url: str, tmp_path: Path,
) -> None:
    # Nothing listens on port 1; a directory is no SQLite database file.
    unreachable = ("postgresql+asyncpg://postgres@127.0.0.1:1/regimen"
                   if database_url.startswith("postgresql") else f"sqlite+aiosqlite:///{tmp_path}")
    db = Database(unreachable)
    attempts: list[int] = []
    event.listen(db.blocking_engine, "do_connect", lambda *_: attempts.append(1))
    try:
        writer = SignupWriter(db)
        results = await asyncio.gather(
            *(writer.write(a_signup(f"r{n}@example.org", ORIGIN))
              for n in range(8)),
            return_exceptions=True)
    finally:
        await db.dispose()
    assert all(isinstance(result, OperationalError) for result in results)
    assert len(attempts) == 1  # not once more for each of the eight
