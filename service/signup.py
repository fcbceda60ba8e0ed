"""The reader's states and how they move: subscribe, confirm, unsubscribe.

Every function takes the caller's session and only flushes; the caller commits. Mail is never
sent here, only queued in the outbox within the same transaction.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import Consent, MailKind, Subscriber, SubscriberStatus
from service.outbox import cancel_queued, queue_mail
from service.texts import CONSENT_VERSION
from service.tokens import Claims


@dataclass(frozen=True)
class RequestOrigin:
    """Where a click came from, kept as consent evidence."""

    ip: str | None
    user_agent: str | None


class UnknownSubscriber(Exception):
    """The link names nobody we hold, or a token version that has since been revoked."""


class NoLongerPending(Exception):
    """A confirmation link for a reader who has since unsubscribed."""


async def subscribe(
    session: AsyncSession, email: str, origin: RequestOrigin, source_url: str | None,
    now: datetime, *, mail_allowed: bool = True,
) -> None:
    """Start (or restart) the double opt-in for `email`, which must already be normalised.

    The caller answers the same whatever happens here, so nobody learns who is subscribed.
    """
    subscriber = await _by_email(session, email)
    if subscriber is None:
        subscriber = await _create(session, email, now)
    if subscriber.suppressed_at is not None or not mail_allowed:
        # Bounced or complained (never mailed again), or mailed too often lately: nothing
        # happens, and the caller's answer does not show it.
        return
    if subscriber.status is SubscriberStatus.CONFIRMED:
        # Readers lose mails: a confirmed reader signing up again gets the regimen again.
        await queue_mail(session, subscriber, MailKind.REGIMEN)
        return
    subscriber.status = SubscriberStatus.PENDING
    session.add(Consent(
        subscriber_id=subscriber.id, signed_up_at=now, signup_ip=origin.ip,
        signup_user_agent=origin.user_agent, source_url=source_url,
        consent_text_version=CONSENT_VERSION,
    ))
    await queue_mail(session, subscriber, MailKind.CONFIRM)


async def confirm(
    session: AsyncSession, claims: Claims, origin: RequestOrigin, now: datetime,
) -> Subscriber:
    """Record the reader's confirmation and queue the regimen mail; confirming twice does
    nothing more than confirming once."""
    subscriber = await subscriber_for(session, claims)
    if subscriber.status is SubscriberStatus.CONFIRMED:
        return subscriber
    if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
        raise NoLongerPending()
    subscriber.status = SubscriberStatus.CONFIRMED
    subscriber.confirmed_at = now
    consent = await session.scalar(
        select(Consent).where(Consent.subscriber_id == subscriber.id)
        .order_by(Consent.id.desc()).limit(1)
    )
    if consent is not None:
        consent.confirmed_at = now
        consent.confirm_ip = origin.ip
        consent.confirm_user_agent = origin.user_agent
    await queue_mail(session, subscriber, MailKind.REGIMEN)
    return subscriber


async def resend(session: AsyncSession, claims: Claims) -> None:
    """For a reader holding an expired confirmation link: a fresh confirmation if they are
    still pending, the regimen again if they confirmed meanwhile; nothing if they left."""
    subscriber = await subscriber_for(session, claims)
    if subscriber.status is SubscriberStatus.PENDING:
        await queue_mail(session, subscriber, MailKind.CONFIRM)
    elif subscriber.status is SubscriberStatus.CONFIRMED:
        await queue_mail(session, subscriber, MailKind.REGIMEN)


async def unsubscribe(session: AsyncSession, claims: Claims, now: datetime) -> None:
    subscriber = await subscriber_for(session, claims)
    if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
        return
    subscriber.status = SubscriberStatus.UNSUBSCRIBED
    subscriber.unsubscribed_at = now
    await cancel_queued(session, subscriber.id)


async def subscriber_for(session: AsyncSession, claims: Claims) -> Subscriber:
    subscriber = await session.scalar(
        select(Subscriber).where(Subscriber.public_id == claims.public_id)
    )
    if subscriber is None or subscriber.token_version != claims.version:
        raise UnknownSubscriber()
    return subscriber


async def _by_email(session: AsyncSession, email: str) -> Subscriber | None:
    return await session.scalar(select(Subscriber).where(Subscriber.email == email))


async def _create(session: AsyncSession, email: str, now: datetime) -> Subscriber:
    subscriber = Subscriber(email=email, status=SubscriberStatus.PENDING, created_at=now)
    try:
        async with session.begin_nested():
            session.add(subscriber)
    except IntegrityError:
        # Another request inserted the same address a moment ago; carry on with that row.
        existing = await _by_email(session, email)
        if existing is None:
            raise
        return existing
    return subscriber


class SuppressionReason(enum.StrEnum):
    BOUNCE = "bounce"
    COMPLAINT = "complaint"


async def suppress(
    session: AsyncSession, email: str, reason: SuppressionReason, now: datetime,
) -> bool:
    """Never mail this (normalised) address again: a hard bounce or a spam complaint; a
    complaint also unsubscribes. Returns whether the address was known."""
    subscriber = await _by_email(session, email)
    if subscriber is None:
        return False
    if subscriber.suppressed_at is None:
        subscriber.suppressed_at = now
        subscriber.suppressed_reason = reason.value
    if reason is SuppressionReason.COMPLAINT and \
            subscriber.status is not SubscriberStatus.UNSUBSCRIBED:
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
        subscriber.unsubscribed_at = now
    await cancel_queued(session, subscriber.id)
    return True
