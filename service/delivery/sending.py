"""One mail's attempt and the settling of a pass's outcomes: what the worker does with each
mail it claimed, and how each outcome is written back to the outbox."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from service.core import outbox
from service.core.models import MailKind, OutboxMessage, Subscriber, SubscriberStatus
from service.delivery.messages import Mailer
from service.delivery.outgoing import PermanentFailure, RecipientRejected, Transport
from service.readers.signup import SuppressionReason, suppress

log = logging.getLogger(__name__)


class Result(enum.Enum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RELEASED = "released"


@dataclass(frozen=True)
class Outcome:
    message: OutboxMessage
    result: Result
    detail: str = ""
    bounced: str | None = None  # the address a hard bounce refused


def _why_stale(kind: MailKind, subscriber: Subscriber) -> str:
    """Why a queued mail no longer makes sense and is dropped rather than sent; empty if not."""
    if subscriber.reader.suppressed_at is not None:
        return f"address suppressed ({subscriber.reader.suppressed_reason})"
    wanted = SubscriberStatus.CONFIRMED if kind in (MailKind.REGIMEN, MailKind.LESSON) \
        else SubscriberStatus.PENDING
    if subscriber.status is not wanted:
        return f"reader is {subscriber.status.value}"
    if kind is MailKind.LESSON and subscriber.lessons_stopped_at is not None:
        return "reader stopped the lessons"
    return ""


async def attempt(message: OutboxMessage, reader: Subscriber | None, mailer: Mailer,
                  transport: Transport, done: frozenset[str] = frozenset()) -> Outcome:
    """Send one claimed mail, unless it no longer makes sense; never raises. `done`: the steps
    the reader marked done, for a lesson."""
    if reader is None or (stale := _why_stale(message.kind, reader)):
        return Outcome(message, Result.CANCELLED, "reader erased" if reader is None else stale)
    regimen = mailer.regimen_of(reader)
    if regimen is None:
        # Retried, not dropped: a file being renamed or saved anew, or a worker that has not
        # seen the new content yet, must lose nothing; after REGIMEN_RETRY_FOR it fails.
        return Outcome(message, Result.RETRY,
                       f"regimen {reader.regimen!r} is not in the content (now)")
    if message.kind is MailKind.LESSON and regimen.lesson(message.lesson or "") is None:
        # The author removed it: sent to nobody who has not had it.
        return Outcome(message, Result.CANCELLED, f"lesson {message.lesson!r} was removed")
    try:
        await transport.send(mailer.compose(message.kind, reader, message.key, message.lesson,
                                            done))
    except PermanentFailure as exc:
        log.warning("outbox %s: refused for good: %s", message.id, exc)
        bounced = reader.email if isinstance(exc, RecipientRejected) else None
        return Outcome(message, Result.FAILED, str(exc), bounced)
    except Exception as exc:  # TemporaryFailure, and anything unforeseen: nothing is lost
        return Outcome(message, Result.RETRY, str(exc) or type(exc).__name__)
    log.info("outbox %s: %s mail sent", message.id, message.kind.value)
    return Outcome(message, Result.SENT)


async def settle(session: AsyncSession, outcomes: list[Outcome], now: datetime,
                 retry_for: timedelta) -> None:
    """Write each outcome back to its outbox row; a hard bounce suppresses the address."""
    sent = [o.message.id for o in outcomes if o.result is Result.SENT]
    if sent:
        await outbox.mark_sent(session, sent, now)
    for outcome in outcomes:
        message, detail = outcome.message, outcome.detail
        if outcome.result is Result.RELEASED:
            await outbox.release(session, message.id)
        elif outcome.result is Result.CANCELLED:
            await outbox.mark_cancelled(session, message.id, detail)
        elif outcome.result is Result.FAILED:
            await outbox.mark_failed(session, message.id, detail)
            if outcome.bounced is not None:
                await suppress(session, outcome.bounced, SuppressionReason.BOUNCE, now)
        elif outcome.result is Result.RETRY and \
                now - message.created_at > retry_for:
            log.error("outbox %s: failing for %s, giving up: %s",
                      message.id, retry_for, detail)
            await outbox.mark_failed(session, message.id, f"gave up retrying: {detail}")
        elif outcome.result is Result.RETRY:
            log.warning("outbox %s: attempt %s failed, will retry: %s",
                        message.id, message.attempts, detail)
            await outbox.mark_retry(session, message.id, message.attempts, detail, now)
