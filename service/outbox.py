"""The outbox table: queue a mail inside the caller's transaction; claim, settle and retry it in
the worker's.

Claims are leases. PostgreSQL skips rows another worker holds (`FOR UPDATE SKIP LOCKED`);
SQLite, which has one writer at a time, gets the same effect from the conditional UPDATE.
A worker that dies mid-send loses its lease and the row is taken again: delivery is
at-least-once, and the row's key becomes the Message-ID so a repeat is recognisable.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import OUTBOX_QUEUED
from service.models import MailKind, OutboxMessage, OutboxStatus, Subscriber

LEASE = timedelta(minutes=5)
FIRST_RETRY = timedelta(seconds=10)
LONGEST_RETRY = timedelta(minutes=10)


async def queue_mail(session: AsyncSession, subscriber: Subscriber, kind: MailKind) -> None:
    await session.flush()  # the subscriber needs its id
    session.add(OutboxMessage(kind=kind, subscriber_id=subscriber.id))
    await session.flush()
    session.info[OUTBOX_QUEUED] = True


async def cancel_queued(session: AsyncSession, subscriber: Subscriber) -> None:
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.subscriber_id == subscriber.id,
               OutboxMessage.status == OutboxStatus.QUEUED)
        .values(status=OutboxStatus.CANCELLED, locked_until=None)
    )


async def claim_due(session: AsyncSession, now: datetime, limit: int) -> list[OutboxMessage]:
    """Lease up to `limit` messages that are due and not held by a live lease."""
    due = (
        OutboxMessage.status == OutboxStatus.QUEUED,
        OutboxMessage.next_attempt_at <= now,
        or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now),
    )
    candidates = (
        select(OutboxMessage.id).where(*due).order_by(OutboxMessage.id).limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = await session.scalars(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(candidates.scalar_subquery()), *due)
        .values(locked_until=now + LEASE, attempts=OutboxMessage.attempts + 1)
        .returning(OutboxMessage)
        .execution_options(synchronize_session=False)
    )
    return sorted(result.all(), key=lambda message: message.id)


async def mark_sent(session: AsyncSession, message_id: int, now: datetime) -> None:
    await _settle(session, message_id, status=OutboxStatus.SENT, sent_at=now, last_error=None)


async def mark_cancelled(session: AsyncSession, message_id: int, reason: str) -> None:
    await _settle(session, message_id, status=OutboxStatus.CANCELLED, last_error=reason)


async def mark_failed(session: AsyncSession, message_id: int, error: str) -> None:
    await _settle(session, message_id, status=OutboxStatus.FAILED, last_error=error)


async def mark_retry(
    session: AsyncSession, message_id: int, attempts: int, error: str, now: datetime,
) -> None:
    await _settle(session, message_id, next_attempt_at=now + retry_delay(attempts),
                  last_error=error)


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff with jitter, so a crowd of failed mails does not retry in step."""
    ceiling = min(LONGEST_RETRY, FIRST_RETRY * (1 << max(attempts - 1, 0)))
    return ceiling * random.uniform(0.5, 1.0)


async def _settle(session: AsyncSession, message_id: int, **values: object) -> None:
    await session.execute(
        update(OutboxMessage).where(OutboxMessage.id == message_id)
        .values(locked_until=None, **values)
    )

