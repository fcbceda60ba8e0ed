"""Telling the author's figures that something of a reader changed.

The author's numbers are kept per regimen and signup day once that day is over
(service.funnel.rollups): a day is counted once, and again only when something of one of its
readers changes later: a confirmation, a click, a step done, a lesson settled or cancelled, a
stop, an erasure. Whatever makes such a change calls one of these in the same transaction, so
the note commits (or not) with the change itself and the worker counts the day again.

Today's signups need no note: today is always counted from the raw rows. That is also why a
signup, the hot path, costs nothing here.
"""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import Date, cast, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from service.core.models import Consent, StaleFigureDay, Subscriber


def day_of(session: AsyncSession, column: ColumnElement[datetime] | object) -> ColumnElement[date]:
    """The UTC calendar day of a timestamp column, in SQL, on either database."""
    if session.get_bind().dialect.name == "sqlite":
        return func.date(column)
    return cast(func.timezone("UTC", column), Date)


def midnight(now: datetime) -> datetime:
    """The start of `now`'s UTC day: signups before it are on closed days."""
    return datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)


def note(session: AsyncSession, regimen: str, *signed_up: datetime | None,
         now: datetime) -> None:
    """The days of `signed_up` (a subscription's signup, a consent's) that are closed at `now`
    must be counted again for `regimen`. Added to the session: flushed with the change."""
    for day in sorted({at.date() for at in signed_up if at is not None and at < midnight(now)}):
        session.add(StaleFigureDay(regimen=regimen, day=day))


def note_reader(session: AsyncSession, subscriber: Subscriber, now: datetime) -> None:
    """`note` for one subscription's signup day."""
    note(session, subscriber.regimen, subscriber.created_at, now=now)


async def note_readers(session: AsyncSession, which: ColumnElement[bool], now: datetime, *,
                       consents: bool = False) -> None:
    """`note` for the signup days of every subscription matching `which` (a condition on
    `subscribers`), in one statement: for changes made to many readers at once. `consents`:
    the days of their consents too (they are going: each day's sources change)."""
    closed = midnight(now)
    signups = select(Subscriber.regimen, day_of(session, Subscriber.created_at)) \
        .where(which, Subscriber.created_at < closed)
    days = signups.union(
        select(Subscriber.regimen, day_of(session, Consent.signed_up_at))
        .join(Consent, Consent.subscriber_id == Subscriber.id)
        .where(which, Consent.signed_up_at < closed)) if consents else signups.distinct()
    await session.execute(insert(StaleFigureDay).from_select(["regimen", "day"], days))
