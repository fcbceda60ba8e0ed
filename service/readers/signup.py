"""The reader's states and how they move: subscribe, confirm, unsubscribe.

Every function takes the caller's session and only flushes; the caller commits. Mail is never
sent here, only queued in the outbox within the same transaction.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from service.abuse.mail_budget import MailBudget, MailWindow
from service.core import stale_figures
from service.core.bulk import among, insert_rows
from service.core.models import (
    Consent,
    MailKind,
    Reader,
    Subscriber,
    SubscriberStatus,
    table_of,
)
from service.core.outbox import cancel_queued, queue_mail, queue_mails
from service.readers.tokens import Claims


@dataclass(frozen=True)
class RequestOrigin:
    """Where a click came from, kept as consent evidence."""

    ip: str | None
    user_agent: str | None


class UnknownSubscriber(Exception):
    """The link names nobody we hold, or a token version that has since been revoked."""


class NoLongerPending(Exception):
    """A confirmation link for a reader who has since unsubscribed."""


@dataclass(frozen=True)
class Signup:
    """One submission of the form, already checked: the normalised address, the regimen asked
    for, and where it came from."""

    email: str
    origin: RequestOrigin
    source_url: str | None
    # A fingerprint of the wording the reader saw and agreed to, kept with their consent.
    consent_version: str
    # The regimen's key (one the content holds: the caller checked).
    regimen: str


def subscribe(session: Session, signups: Sequence[Signup], now: datetime,
              mail_windows: Sequence[MailWindow] = ()) -> None:
    """Start (or restart) the double opt-in for each signup, in order.

    A handful of statements however many signups there are, so that the signups of concurrent
    requests can be written together (service.readers.writer). Plain, not async: the writer runs
    it on a thread in one hand-off, where each statement of an async session would wait for its turn
    on the busy event loop. The caller answers the same whatever happens here, so nobody learns
    who is subscribed.
    """
    emails = {item.email for item in signups}
    # Most signups are new addresses: their reader row is made here, and nothing else about
    # them needs looking up (no subscription, no suppression, no mail sent lately).
    held = emails - _new_readers(session, emails, now)
    suppressed = _suppressed_among(session, held) if held else set()
    readers = _subscription_states(session, held) if held else {}
    budget = MailBudget.load(session, held, mail_windows, now)
    fresh = {(item.email, item.regimen) for item in signups} - readers.keys()
    if fresh:
        readers |= _create_pending(session, fresh, now)
    reopened: set[int] = set()
    consents: list[dict[str, object]] = []
    mails: list[tuple[int, MailKind]] = []
    for item in signups:
        reader = readers[item.email, item.regimen]
        if item.email in suppressed:
            continue  # bounced or complained: never mailed again, and the answer is the same
        new = (item.email, item.regimen) in fresh
        fresh.discard((item.email, item.regimen))
        if not budget.spend(item.email):
            # Mailed too often lately: no mail, and the answer does not show it. A regimen the
            # address asks for the first time is still recorded as asked for, so the button of
            # the confirmation mail already on its way can confirm it too (and says so).
            if new:
                consents.append(_consent(reader.id, item, now))
            continue
        if reader.status is SubscriberStatus.CONFIRMED:
            # Readers lose mails: a confirmed reader signing up again gets the regimen again.
            mails.append((reader.id, MailKind.REGIMEN))
            continue
        if reader.status is SubscriberStatus.UNSUBSCRIBED:
            reopened.add(reader.id)
        consents.append(_consent(reader.id, item, now))
        mails.append((reader.id, MailKind.CONFIRM))
    if reopened:
        session.execute(update(Subscriber).where(Subscriber.id.in_(reopened))
                        .values(status=SubscriberStatus.PENDING))
    if consents:
        insert_rows(session, table_of(Consent), consents)
    queue_mails(session, mails)


def _consent(subscriber_id: int, item: Signup, now: datetime) -> dict[str, object]:
    return {"subscriber_id": subscriber_id, "signed_up_at": now, "signup_ip": item.origin.ip,
            "signup_user_agent": item.origin.user_agent, "source_url": item.source_url,
            "consent_text_version": item.consent_version}


async def confirm(
    session: AsyncSession, claims: Claims, origin: RequestOrigin, now: datetime,
    also: Collection[str] = (), *, lessons: Collection[str] = (), wording: str | None = None,
) -> list[Subscriber]:
    """Record the reader's confirmation and queue the regimen mail; return the subscriptions
    confirmed (the link's first). Confirming twice does nothing more than confirming once.

    `also`: the public ids of the address's other waiting subscriptions that the page showed
    the reader (`still_waiting`); those still waiting are confirmed with it, each with its own
    consent record and regimen mail. Nothing the reader was not shown is confirmed.
    `lessons`: the public ids of those whose lessons the page said would follow: only they
    get lessons (service.delivery.lessons looks at them from now on). `wording`: the version
    of the page's words, kept with each consent."""
    subscriber = await subscriber_for(session, claims)
    if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
        raise NoLongerPending()
    if subscriber.status is SubscriberStatus.CONFIRMED:
        return [subscriber]
    together = [subscriber, *(waiting for waiting in await still_waiting(session, subscriber)
                              if waiting.public_id in also)]
    for waiting in together:
        waiting.status = SubscriberStatus.CONFIRMED
        waiting.confirmed_at = now
        consent = await session.scalar(
            select(Consent).where(Consent.subscriber_id == waiting.id)
            .order_by(Consent.id.desc()).limit(1)
        )
        stale_figures.note(session, waiting.regimen, waiting.created_at,
                           consent.signed_up_at if consent is not None else None)
        if consent is not None:
            consent.confirmed_at = now
            consent.confirm_ip = origin.ip
            consent.confirm_user_agent = origin.user_agent
            consent.confirm_text_version = wording
        if waiting.public_id in lessons:
            waiting.lessons_consented_at = waiting.next_lesson_at = now
        await queue_mail(session, waiting, MailKind.REGIMEN)
    return together


async def still_waiting(session: AsyncSession, subscriber: Subscriber) -> list[Subscriber]:
    """The address's other subscriptions that wait for the confirmation button: pending, and
    asked for (a consent record says who asked, from where, when)."""
    return list(await session.scalars(
        select(Subscriber).where(Subscriber.email == subscriber.email,
                                 Subscriber.id != subscriber.id,
                                 Subscriber.status == SubscriberStatus.PENDING,
                                 Subscriber.id.in_(select(Consent.subscriber_id)))
        .order_by(Subscriber.id)))


async def resend(session: AsyncSession, claims: Claims, now: datetime,
                 mail_windows: Sequence[MailWindow] = ()) -> None:
    """For a reader holding an expired confirmation link: a fresh confirmation if they are
    still pending, the regimen again if they confirmed meanwhile; nothing if they left. The
    per-address limit holds here too: the button can be pressed again and again."""
    subscriber = await subscriber_for(session, claims)
    budget = await session.run_sync(MailBudget.load, {subscriber.email}, mail_windows, now)
    if not budget.spend(subscriber.email):
        return
    if subscriber.status is SubscriberStatus.PENDING:
        await queue_mail(session, subscriber, MailKind.CONFIRM)
    elif subscriber.status is SubscriberStatus.CONFIRMED:
        await queue_mail(session, subscriber, MailKind.REGIMEN)


async def unsubscribe(session: AsyncSession, claims: Claims, now: datetime, *,
                      everything: bool = False) -> None:
    """Stop this regimen's mail; with `everything`, the mail of every regimen of the address."""
    subscriber = await subscriber_for(session, claims)
    for each in [subscriber, *(await _all_of(session, subscriber.email) if everything else [])]:
        if each.status is not SubscriberStatus.UNSUBSCRIBED:
            each.status = SubscriberStatus.UNSUBSCRIBED
            each.unsubscribed_at = now
        stale_figures.note_reader(session, each)
        each.next_lesson_at = None
        await cancel_queued(session, each.id)


async def stop_lessons(session: AsyncSession, claims: Claims, now: datetime) -> Subscriber:
    """Stop the lessons of the link's regimen (a lesson's one-click unsubscribe); the regimen
    page and any other mail the reader asks for keep working. Pressing it twice changes
    nothing more."""
    subscriber = await subscriber_for(session, claims)
    if subscriber.lessons_stopped_at is None:
        subscriber.lessons_stopped_at = now
    stale_figures.note_reader(session, subscriber)
    subscriber.next_lesson_at = None
    await cancel_queued(session, subscriber.id, MailKind.LESSON)
    return subscriber


async def subscriber_for(session: AsyncSession, claims: Claims) -> Subscriber:
    subscriber = await session.scalar(
        select(Subscriber).where(Subscriber.public_id == claims.public_id)
    )
    if subscriber is None or subscriber.token_version != claims.version:
        raise UnknownSubscriber()
    return subscriber


async def _all_of(session: AsyncSession, email: str) -> list[Subscriber]:
    return list(await session.scalars(select(Subscriber).where(Subscriber.email == email)))


class _ReaderState(NamedTuple):
    id: int
    status: SubscriberStatus


def _new_readers(session: Session, emails: set[str], now: datetime) -> set[str]:
    """Make sure each address has its reader row; return the addresses that had none."""
    # One we held already, or that another process inserts a moment before us, is skipped,
    # not failed. Sorted, so that two processes inserting the same addresses lock in the same
    # order.
    table = table_of(Reader)
    return set(insert_rows(session, table, [
        {"email": email, "created_at": now} for email in sorted(emails)],
        returning=[table.c.email], skip_duplicates_of=("email",)).scalars())


def _suppressed_among(session: Session, emails: set[str]) -> set[str]:
    """Those of these addresses never to be mailed again."""
    return set(session.scalars(select(Reader.email).where(
        among(session, Reader.email, emails), Reader.suppressed_at.is_not(None))))


def _subscription_states(session: Session,
                         emails: set[str]) -> dict[tuple[str, str], _ReaderState]:
    rows = session.execute(
        select(Subscriber.email, Subscriber.regimen, Subscriber.id, Subscriber.status)
        .where(among(session, Subscriber.email, emails))
    )
    return {(email, regimen): _ReaderState(id_, status)
            for email, regimen, id_, status in rows}


def _create_pending(session: Session, wanted: set[tuple[str, str]],
                    now: datetime) -> dict[tuple[str, str], _ReaderState]:
    """New pending subscriptions for these (address, regimen) pairs, and the state of each."""
    # As for readers: one inserted by another process meanwhile is skipped, and read back.
    table = table_of(Subscriber)
    inserted = insert_rows(session, table, [
        {"email": email, "regimen": regimen, "status": SubscriberStatus.PENDING,
         "created_at": now}
        for email, regimen in sorted(wanted)],
        returning=[table.c.email, table.c.regimen, table.c.id],
        skip_duplicates_of=("email", "regimen"))
    created = {(email, regimen): _ReaderState(id_, SubscriberStatus.PENDING)
               for email, regimen, id_ in inserted}
    if raced := wanted - created.keys():
        created |= {pair: state for pair, state in _subscription_states(
            session, {email for email, _ in raced}).items() if pair in raced}
    return created


class SuppressionReason(enum.StrEnum):
    BOUNCE = "bounce"
    COMPLAINT = "complaint"


async def suppress(
    session: AsyncSession, email: str, reason: SuppressionReason, now: datetime,
) -> bool:
    """Never mail this (normalised) address again, for any regimen: a hard bounce or a spam
    complaint; a complaint also unsubscribes. Returns whether the address was known."""
    reader = await session.scalar(select(Reader).where(Reader.email == email))
    if reader is None:
        return False
    if reader.suppressed_at is None:
        reader.suppressed_at = now
        reader.suppressed_reason = reason.value
    for subscriber in await _all_of(session, email):
        if reason is SuppressionReason.COMPLAINT and \
                subscriber.status is not SubscriberStatus.UNSUBSCRIBED:
            subscriber.status = SubscriberStatus.UNSUBSCRIBED
            subscriber.unsubscribed_at = now
        stale_figures.note_reader(session, subscriber)
        await cancel_queued(session, subscriber.id)
    return True
