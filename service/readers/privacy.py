"""A reader's personal data: everything we hold about them, forgetting them on request, and
not keeping signups that were never confirmed.

Like the rest of the domain, these take the caller's session and only flush.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.core import stale_figures
from service.core.database import rowcount
from service.core.models import (
    Consent,
    ErasedAddress,
    Event,
    LessonDelivery,
    OutboxMessage,
    Progress,
    Reader,
    Subscriber,
    SubscriberStatus,
)


def address_hash(secret: str, email: str) -> str:
    return hmac.new(secret.encode(), b"erased:" + email.encode(), hashlib.sha256).hexdigest()


async def export(session: AsyncSession, email: str) -> dict[str, Any] | None:
    """Everything held about one (normalised) address, every regimen's subscription with its
    consents, mail and events, as plain JSON-ready data."""
    reader = await session.scalar(select(Reader).where(Reader.email == email))
    if reader is None:
        return None
    subscriptions = await session.scalars(
        select(Subscriber).where(Subscriber.email == email).order_by(Subscriber.id))
    return {
        "email": reader.email,
        "suppressed": {"at": _when(reader.suppressed_at), "reason": reader.suppressed_reason}
        if reader.suppressed_at else None,
        "subscriptions": [await _subscription(session, each) for each in subscriptions],
    }


async def _subscription(session: AsyncSession, reader: Subscriber) -> dict[str, Any]:
    consents = await session.scalars(
        select(Consent).where(Consent.subscriber_id == reader.id).order_by(Consent.id))
    mails = await session.scalars(
        select(OutboxMessage).where(OutboxMessage.subscriber_id == reader.id)
        .order_by(OutboxMessage.id))
    events = await session.scalars(
        select(Event).where(Event.subscriber_id == reader.id).order_by(Event.id))
    lessons = await session.scalars(
        select(LessonDelivery).where(LessonDelivery.subscriber_id == reader.id)
        .order_by(LessonDelivery.at, LessonDelivery.lesson))
    progress = await session.scalars(
        select(Progress).where(Progress.subscriber_id == reader.id)
        .order_by(Progress.done_at, Progress.step))
    return {
        "regimen": reader.regimen,
        "status": reader.status.value,
        "signed_up_at": _when(reader.created_at),
        "confirmed_at": _when(reader.confirmed_at),
        "unsubscribed_at": _when(reader.unsubscribed_at),
        "reminded_at": _when(reader.reminded_at),
        "consents": [{
            "signed_up_at": _when(c.signed_up_at), "signup_ip": c.signup_ip,
            "signup_user_agent": c.signup_user_agent, "source_url": c.source_url,
            "consent_text_version": c.consent_text_version,
            "confirmed_at": _when(c.confirmed_at), "confirm_ip": c.confirm_ip,
            "confirm_user_agent": c.confirm_user_agent,
            "confirm_text_version": c.confirm_text_version,
        } for c in consents],
        "mails": [{"kind": m.kind.value, "status": m.status.value,
                   "queued_at": _when(m.created_at), "sent_at": _when(m.sent_at)}
                  for m in mails],
        "events": [{"kind": e.kind.value, "exercise": e.exercise, "at": _when(e.created_at)}
                   for e in events],
        "lessons": {
            "agreed_at": _when(reader.lessons_consented_at),
            "stopped_at": _when(reader.lessons_stopped_at),
            "settled": [{"lesson": d.lesson, "outcome": d.outcome.value, "reason": d.reason,
                         "at": _when(d.at)} for d in lessons],
        },
        # The steps marked done on the regimen page.
        "progress": [{"step": p.step, "done_at": _when(p.done_at)} for p in progress],
    }


async def erase(session: AsyncSession, email: str, secret: str, now: datetime) -> None:
    """Delete the address and everything tied to it, every regimen's; keep only a keyed hash
    of the address, so that importing an old list later cannot mail them."""
    digest = address_hash(secret, email)
    if await session.get(ErasedAddress, digest) is None:
        session.add(ErasedAddress(address_hash=digest, erased_at=now))
    # Subscriptions go with the reader, and consents, queued mail, events and progress with
    # them (ON DELETE CASCADE all the way): the author's figures of their days lose them.
    await stale_figures.note_readers(session, Subscriber.email == email, consents=True)
    await session.execute(delete(Reader).where(Reader.email == email))
    await session.flush()


async def was_erased(session: AsyncSession, secret: str, email: str) -> bool:
    return await session.get(ErasedAddress, address_hash(secret, email)) is not None


async def forget_unconfirmed(session: AsyncSession, now: datetime,
                             retention: timedelta) -> int:
    """Delete readers who signed up but never confirmed, once their latest signup is older
    than `retention`: we have no permission to keep their address."""
    recent = (select(Consent.subscriber_id).group_by(Consent.subscriber_id)
              .having(func.max(Consent.signed_up_at) > now - retention))
    forgotten = (Subscriber.status == SubscriberStatus.PENDING,
                 Subscriber.confirmed_at.is_(None),
                 Subscriber.created_at <= now - retention,
                 Subscriber.id.not_in(recent))
    await stale_figures.note_readers(session, and_(*forgotten), consents=True)
    result = await session.execute(
        delete(Subscriber).where(*forgotten).execution_options(synchronize_session=False))
    # An address left with no subscription goes too, unless it bounced or complained: that
    # "never mail it" is kept for the address's own sake.
    await session.execute(
        delete(Reader)
        .where(Reader.suppressed_at.is_(None),
               ~exists().where(Subscriber.email == Reader.email))
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
