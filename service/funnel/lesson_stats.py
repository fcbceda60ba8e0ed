"""The author's numbers per lesson: of the lessons settled in a period (service.delivery.lessons
writes one `LessonDelivery` row per reader and lesson), how many were sent or skipped, and what
readers did after one came.

- sent: queued for the reader, less those whose mail was then cancelled (the reader stopped,
  left or bounced first) or failed for good;
- skipped: left out because of the reader's progress (the lesson's exercise done, its unit
  finished, or its program's purchase link followed);
- opened its links: readers who followed a link of the lesson (each link names it);
- clicked within 7 days: readers who followed an exercise's or a program's link, from anywhere,
  in the 7 days after the lesson was queued;
- stopped after it: readers for whom it was the last lesson before they stopped the lessons or
  unsubscribed.

Openings and clicks within `scanner_window` of the lesson's queueing are left out, as mail
scanners follow every link of a mail within seconds of its delivery: the numbers are a floor.
Each figure reads the period's delivery rows from their index, and each reader's events from
the events' index by reader: nothing scans all readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Interval, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from service.core.content import Regimen
from service.core.models import (
    Event,
    LessonDelivery,
    LessonOutcome,
    MailKind,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
)
from service.funnel.progress_stats import CLICKS

FOLLOW_UP = timedelta(days=7)


@dataclass(frozen=True)
class LessonFigures:
    key: str
    subject: str
    after_days: int
    sent: int
    skipped: int
    opened: int
    clicked_within_7_days: int
    stopped_after: int


@dataclass(frozen=True)
class RegimenLessons:
    key: str
    title: str
    lessons: list[LessonFigures]


async def lessons(session: AsyncSession, regimens: list[Regimen], since: datetime,
                  scanner_window: timedelta) -> list[RegimenLessons]:
    """Each of `regimens` that has lessons, each lesson in its file's order."""
    return [RegimenLessons(key=regimen.key, title=regimen.title, lessons=[
        await _figures(session, regimen.key, lesson.key, lesson.subject, lesson.after, since,
                       scanner_window)
        for lesson in regimen.lessons]) for regimen in regimens if regimen.lessons]


async def _figures(session: AsyncSession, regimen: str, lesson: str, subject: str,
                   after_days: int, since: datetime,
                   scanner_window: timedelta) -> LessonFigures:
    settled = (LessonDelivery.regimen == regimen, LessonDelivery.lesson == lesson,
               LessonDelivery.at >= since)
    queued = (*settled, LessonDelivery.outcome == LessonOutcome.QUEUED)
    counts = dict((await session.execute(
        select(LessonDelivery.outcome, func.count()).where(*settled)
        .group_by(LessonDelivery.outcome))).all())
    undelivered = await session.scalar(select(func.count()).where(*queued, exists().where(
        OutboxMessage.subscriber_id == LessonDelivery.subscriber_id,
        OutboxMessage.kind == MailKind.LESSON, OutboxMessage.lesson == lesson,
        OutboxMessage.status.in_([OutboxStatus.CANCELLED, OutboxStatus.FAILED])))) or 0
    after_scanners = Event.created_at > _later(session, LessonDelivery.at, scanner_window)
    opened = await session.scalar(select(func.count()).where(*queued, exists().where(
        Event.subscriber_id == LessonDelivery.subscriber_id, Event.lesson == lesson,
        after_scanners))) or 0
    clicked = await session.scalar(select(func.count()).where(*queued, exists().where(
        Event.subscriber_id == LessonDelivery.subscriber_id, Event.kind.in_(CLICKS),
        after_scanners,
        Event.created_at <= _later(session, LessonDelivery.at, FOLLOW_UP)))) or 0
    later = LessonDelivery.__table__.alias("later")
    stopped_at = func.coalesce(Subscriber.lessons_stopped_at, Subscriber.unsubscribed_at)
    stopped = await session.scalar(
        select(func.count()).select_from(LessonDelivery)
        .join(Subscriber, Subscriber.id == LessonDelivery.subscriber_id)
        .where(*queued, or_(Subscriber.lessons_stopped_at >= LessonDelivery.at,
                            Subscriber.unsubscribed_at >= LessonDelivery.at),
               ~exists().where(later.c.subscriber_id == LessonDelivery.subscriber_id,
                               later.c.outcome == LessonOutcome.QUEUED,
                               later.c.at > LessonDelivery.at, later.c.at <= stopped_at))) or 0
    return LessonFigures(key=lesson, subject=subject, after_days=after_days,
                         sent=counts.get(LessonOutcome.QUEUED, 0) - undelivered,
                         skipped=counts.get(LessonOutcome.SKIPPED, 0), opened=opened,
                         clicked_within_7_days=clicked, stopped_after=stopped)


COLUMNS = ("regimen", "lesson", "day", "sent", "skipped", "opened_its_links",
           "clicked_within_7_days", "stopped_after")


def rows(figures: list[RegimenLessons]) -> list[tuple[str | int, ...]]:
    """The figures as CSV rows (`COLUMNS`)."""
    return [(each.key, lesson.key, lesson.after_days, lesson.sent, lesson.skipped,
             lesson.opened, lesson.clicked_within_7_days, lesson.stopped_after)
            for each in figures for lesson in each.lessons]


ROW = "{:<24} {:>5} {:>6} {:>8} {:>7} {:>12} {:>8}"


def _later(session: AsyncSession, column: InstrumentedAttribute[datetime],
           delta: timedelta) -> ColumnElement[Any]:
    """`column` plus `delta`, in SQL, on either database (SQLite keeps times as ISO text,
    which compares in time order)."""
    if session.get_bind().dialect.name == "sqlite":
        return func.strftime("%Y-%m-%d %H:%M:%f", column,
                             f"+{delta.total_seconds():.6f} seconds")
    return column + literal(delta, Interval())


def lines(figures: list[RegimenLessons]) -> list[str]:
    """The figures as text, for `regimen stats`."""
    out: list[str] = []
    for regimen in figures:
        out += ["", f"Lessons of {regimen.title} ({regimen.key}), settled in these days:",
                ROW.format("lesson", "day", "sent", "skipped", "opened", "clicked (7d)",
                           "stopped")]
        out += [ROW.format(each.key[:24], each.after_days, each.sent, each.skipped,
                           each.opened, each.clicked_within_7_days, each.stopped_after)
                for each in regimen.lessons]
    return out
