"""The outbox table: queue a mail inside the caller's transaction; claim, settle and retry it in
the worker's.

Claims are leases. PostgreSQL skips rows another worker holds (`FOR UPDATE SKIP LOCKED`);
SQLite has one writer at a time, so its claims never overlap.
A worker that dies mid-send loses its lease and the row is taken again: delivery is
at-least-once, and the row's key becomes the Message-ID so a repeat is recognisable.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, exists, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from service.core import stale_figures
from service.core.bulk import insert_rows, on_postgresql
from service.core.database import Database, planned_with, rowcount, wake_after_commit
from service.core.models import (
    Consent,
    MailKind,
    OutboxMessage,
    OutboxStatus,
    Reader,
    Subscriber,
    SubscriberStatus,
    table_of,
)

log = logging.getLogger(__name__)

# The PostgreSQL channel a commit that queued mail notifies, and the name of the event that
# wakes this process's worker (the same string, so one LISTEN sets the one event).
MAIL_QUEUED = "regimen_outbox"

FIRST_RETRY = timedelta(seconds=10)
LONGEST_RETRY = timedelta(minutes=10)


async def queue_mail(session: AsyncSession, subscriber: Subscriber, kind: MailKind) -> None:
    await session.flush()  # the subscriber needs its id
    await session.run_sync(queue_mails, [(subscriber.id, kind)])


def queue_mails(session: Session, mails: list[tuple[int, MailKind]]) -> None:
    """Queue one mail of `kind` for each subscriber id, in one statement."""
    queue_rows(session, [{"subscriber_id": subscriber_id, "kind": kind}
                         for subscriber_id, kind in mails])


def queue_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """Queue outbox rows (all with the same columns) in one statement; one whose `key` is
    taken already is left out: a mail with a key of its own is queued once."""
    if not rows:
        return
    insert_rows(session, table_of(OutboxMessage), rows,
                skip_duplicates_of=("key",) if "key" in rows[0] else ())
    wake_after_commit(session, MAIL_QUEUED)
    if on_postgresql(session):
        # Wakes the workers of other processes at commit (core.notifications).
        session.execute(text(f"NOTIFY {MAIL_QUEUED}"))


def mail_queued(db: Database) -> asyncio.Event:
    """Set when a transaction that queued mail commits (in other processes too, on PostgreSQL,
    while the worker listens: `notifications.keep_listening(db, MAIL_QUEUED, stop)`)."""
    return db.wakeup(MAIL_QUEUED)


async def cancel_queued(session: AsyncSession, subscriber_id: int,
                        kind: MailKind | None = None) -> None:
    """Cancel the subscription's queued mail (of one kind, or all). The caller notes the
    change to the author's figures (service.core.stale_figures) with its own."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.subscriber_id == subscriber_id,
               OutboxMessage.status == OutboxStatus.QUEUED,
               *([OutboxMessage.kind == kind] if kind is not None else []))
        .values(status=OutboxStatus.CANCELLED, locked_until=None)
    )


def pick_due(now: datetime, limit: int) -> Select[int, datetime | None]:
    """The claim's pick: the ids (and leases) of up to `limit` due mails not held by a live
    lease, oldest first, read in the order of `ix_outbox_queued_oldest` (status, id): a claim
    reads its few and stops (migration 0017)."""
    return (select(OutboxMessage.id, OutboxMessage.locked_until)
            .where(OutboxMessage.status == OutboxStatus.QUEUED,
                   OutboxMessage.next_attempt_at <= now,
                   or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now))
            .order_by(OutboxMessage.id).limit(limit)
            .with_for_update(skip_locked=True))


async def claim_due(
    session: AsyncSession, now: datetime, limit: int, lease: timedelta,
) -> list[OutboxMessage]:
    """Lease up to `limit` messages that are due and not held by a live lease, oldest first.

    Two statements in the caller's transaction: the SELECT locks the rows it picks (PostgreSQL
    skips rows other workers hold; SQLite has one writer at a time anyway), the UPDATE leases
    exactly those. One UPDATE with a LIMIT subquery can lease other rows than it picked,
    because PostgreSQL may evaluate such a subquery more than once.
    """
    # In the index's order, never sorted: on a table it knows nothing of, PostgreSQL may think
    # sorting the due rows cheaper, and keep that plan as 100,000 lessons queue up.
    async with planned_with(session, "enable_sort", "off"):
        picked = (await session.execute(pick_due(now, limit))).all()
    if not picked:
        return []
    ids = [message_id for message_id, _ in picked]
    # A worker that stops cleanly gives its mail back (`release`): a lease that ran out was
    # held by one that died, and what it had not settled may go out twice.
    if taken_over := [message_id for message_id, held in picked if held is not None]:
        log.warning("took over %d mail(s) whose worker died holding them (lease ran out): %s",
                    len(taken_over), ", ".join(f"#{message_id}" for message_id in taken_over))
    result = await session.scalars(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids))
        .values(locked_until=now + lease, attempts=OutboxMessage.attempts + 1)
        .returning(OutboxMessage)
        .execution_options(synchronize_session=False)
    )
    return sorted(result.all(), key=lambda message: message.id)


async def mark_sent(session: AsyncSession, message_ids: list[int], now: datetime) -> None:
    await session.execute(
        update(OutboxMessage).where(OutboxMessage.id.in_(message_ids))
        .values(status=OutboxStatus.SENT, sent_at=now, last_error=None, locked_until=None)
    )


async def mark_cancelled(session: AsyncSession, message_id: int, reason: str) -> None:
    await _settle(session, message_id, status=OutboxStatus.CANCELLED, last_error=reason)
    await _lesson_undelivered(session, message_id)


async def mark_failed(session: AsyncSession, message_id: int, error: str) -> None:
    await _settle(session, message_id, status=OutboxStatus.FAILED, last_error=error)
    await _lesson_undelivered(session, message_id)


async def _lesson_undelivered(session: AsyncSession, message_id: int) -> None:
    """A lesson that will not reach its reader is not counted as sent any more
    (service.funnel.lesson_stats): its reader's day of the author's figures changes."""
    await stale_figures.note_readers(session, Subscriber.id.in_(
        select(OutboxMessage.subscriber_id).where(OutboxMessage.id == message_id,
                                                  OutboxMessage.kind == MailKind.LESSON)))


async def mark_retry(
    session: AsyncSession, message_id: int, attempts: int, error: str, now: datetime,
) -> None:
    await _settle(session, message_id, next_attempt_at=now + retry_delay(attempts),
                  last_error=error)


async def release(session: AsyncSession, message_id: int) -> None:
    """Give back a claimed message that was never tried (the worker is stopping)."""
    await _settle(session, message_id, attempts=OutboxMessage.attempts - 1)


async def queue_reminders(session: AsyncSession, now: datetime, after: timedelta) -> int:
    """Queue the one reminder for readers who signed up `after` ago and never confirmed: one
    per address, however many regimens wait (its button confirms them all); every waiting
    subscription of the address counts as reminded.

    The conditional UPDATE is the claim: of two workers looking at once, one reminds.
    """
    latest_signup = (
        select(Consent.subscriber_id).group_by(Consent.subscriber_id)
        .having(func.max(Consent.signed_up_at) <= now - after)
    )
    reminded = await session.execute(
        update(Subscriber)
        .where(Subscriber.status == SubscriberStatus.PENDING,
               Subscriber.reminded_at.is_(None),
               ~exists().where(Reader.email == Subscriber.email,
                               Reader.suppressed_at.is_not(None)),
               Subscriber.id.in_(latest_signup))
        .values(reminded_at=now)
        .returning(Subscriber.id, Subscriber.email)
        .execution_options(synchronize_session=False)
    )
    # The newest subscription of each address carries the reminder.
    newest: dict[str, int] = {}
    for id_, email in reminded:
        newest[email] = max(id_, newest.get(email, id_))
    session.add_all(OutboxMessage(kind=MailKind.REMINDER, subscriber_id=id_)
                    for id_ in newest.values())
    await session.flush()
    return len(newest)


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff with jitter, so a crowd of failed mails does not retry in step."""
    ceiling = min(LONGEST_RETRY, FIRST_RETRY * (1 << max(attempts - 1, 0)))
    return ceiling * random.uniform(0.5, 1.0)


async def _settle(session: AsyncSession, message_id: int, **values: object) -> None:
    await session.execute(
        update(OutboxMessage).where(OutboxMessage.id == message_id)
        .values(locked_until=None, **values)
    )



# The author's view of the queue (`regimen outbox ...`).

async def counts(session: AsyncSession) -> dict[tuple[MailKind, OutboxStatus], int]:
    rows = await session.execute(
        select(OutboxMessage.kind, OutboxMessage.status, func.count())
        .group_by(OutboxMessage.kind, OutboxMessage.status)
    )
    return {(kind, status): number for kind, status, number in rows}


async def listing(
    session: AsyncSession, status: OutboxStatus | None, limit: int,
) -> list[tuple[OutboxMessage, str]]:
    """The newest messages (of one status), each with its reader's address."""
    query = (
        select(OutboxMessage, Subscriber.email)
        .join(Subscriber, Subscriber.id == OutboxMessage.subscriber_id)
        .order_by(OutboxMessage.id.desc()).limit(limit)
    )
    if status is not None:
        query = query.where(OutboxMessage.status == status)
    return [(message, email) for message, email in await session.execute(query)]


async def requeue_failed(session: AsyncSession, now: datetime, message_id: int | None) -> int:
    """Queue failed messages again, with a fresh retry window (it counts from created_at)."""
    query = update(OutboxMessage).where(OutboxMessage.status == OutboxStatus.FAILED)
    if message_id is not None:
        query = query.where(OutboxMessage.id == message_id)
    result = await session.execute(
        query.values(status=OutboxStatus.QUEUED, created_at=now, next_attempt_at=now,
                     locked_until=None)
    )
    wake_after_commit(session, MAIL_QUEUED)
    return rowcount(result)


async def purge(session: AsyncSession, before: datetime, statuses: list[OutboxStatus]) -> int:
    result = await session.execute(
        delete(OutboxMessage)
        .where(OutboxMessage.status.in_(statuses), OutboxMessage.created_at < before)
    )
    return rowcount(result)
