"""Telling the author's figures that something of a reader changed.

The author's numbers are counted per regimen and signup day and kept (service.funnel.rollups):
a day is counted again only when something of one of its readers changes after it was counted:
a confirmation, a click, a step done, a lesson settled or cancelled, a stop, an erasure.
Whatever makes such a change calls one of these in the same transaction, so the note commits
(or not) with the change itself and the worker counts the day again.

A signup itself needs no note: the new reader signed up after the worker last counted their
day, so a view counts them from the raw rows until the worker counts the day again. That is
also why a signup, the hot path, costs nothing here.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, cast, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from service.core.models import Consent, StaleFigureDay, Subscriber


def day_of(session: AsyncSession, column: ColumnElement[datetime] | object) -> ColumnElement[date]:
    """The UTC calendar day of a timestamp column, in SQL, on either database."""
    if session.get_bind().dialect.name == "sqlite":
        return func.date(column)
    return cast(func.timezone("UTC", column), Date)


def note(session: AsyncSession, regimen: str, *signed_up: datetime | None) -> None:
    """The days of `signed_up` (a subscription's signup, a consent's) must be counted again for
    `regimen`. Added to the session: flushed with the change."""
    for day in sorted({at.date() for at in signed_up if at is not None}):
        session.add(StaleFigureDay(regimen=regimen, day=day))


def note_reader(session: AsyncSession, subscriber: Subscriber) -> None:
    """`note` for one subscription's signup day."""
    note(session, subscriber.regimen, subscriber.created_at)


async def note_readers(session: AsyncSession, which: ColumnElement[bool], *,
                       consents: bool = False) -> None:
    """`note` for the signup days of every subscription matching `which` (a condition on
    `subscribers`), in one statement: for changes made to many readers at once. `consents`:
    the days of their consents too (they are going: each day's sources change)."""
    signups = select(Subscriber.regimen, day_of(session, Subscriber.created_at)).where(which)
    days = signups.union(
        select(Subscriber.regimen, day_of(session, Consent.signed_up_at))
        .join(Consent, Consent.subscriber_id == Subscriber.id)
        .where(which)) if consents else signups.distinct()
    await session.execute(insert(StaleFigureDay).from_select(["regimen", "day"], days))
