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

Each figure is one statement for all the lessons of a regimen, counted per lesson: each table is
read once per figure, not once per lesson. Every event or stop that counts comes after a lesson
settled in the period, so each statement says so against the period's start too (`since`), a
bound the database can use where a delivery's own time is no use: the period's clicks are then
a range of the events' (kind, created_at) index, read from the index alone. The links followed
and the stops are bounded the same way, but no index holds the events' lesson or the
subscriptions' stop times, so those two figures read the whole events and subscribers tables
once each (~100 ms each at a million readers: bench/scale.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Interval, Select, distinct, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from service.core.content import Regimen
from service.core.models import (
    CLICK_KINDS,
    Event,
    LessonDelivery,
    LessonOutcome,
    MailKind,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
)

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
    out: list[RegimenLessons] = []
    for regimen in regimens:
        if not regimen.lessons:
            continue
        counts = await _counts(session, regimen.key, [lesson.key for lesson in regimen.lessons],
                               since, scanner_window)
        out.append(RegimenLessons(key=regimen.key, title=regimen.title, lessons=[
            LessonFigures(key=lesson.key, subject=lesson.subject, after_days=lesson.after,
                          sent=counts["queued"][lesson.key] - counts["undelivered"][lesson.key],
                          skipped=counts["skipped"][lesson.key],
                          opened=counts["opened"][lesson.key],
                          clicked_within_7_days=counts["clicked"][lesson.key],
                          stopped_after=counts["stopped"][lesson.key])
            for lesson in regimen.lessons]))
    return out


async def _counts(session: AsyncSession, regimen: str, keys: list[str], since: datetime,
                  scanner_window: timedelta) -> dict[str, Counter[str]]:
    """Each figure's count per lesson (of `keys`), for the lessons settled since `since`."""
    lesson = LessonDelivery.lesson
    settled = (LessonDelivery.regimen == regimen, lesson.in_(keys), LessonDelivery.at >= since)
    queued = (*settled, LessonDelivery.outcome == LessonOutcome.QUEUED)

    async def per_lesson(query: Select[str, int]) -> Counter[str]:
        return Counter(dict((await session.execute(query.group_by(lesson))).all()))

    counts: dict[str, Counter[str]] = {"queued": Counter(), "skipped": Counter()}
    for key, outcome, count in await session.execute(
            select(lesson, LessonDelivery.outcome, func.count()).where(*settled)
            .group_by(lesson, LessonDelivery.outcome)):
        counts[LessonOutcome(outcome).value][key] = count
    counts["undelivered"] = await per_lesson(select(lesson, func.count()).where(
        *queued, exists().where(
            OutboxMessage.subscriber_id == LessonDelivery.subscriber_id,
            OutboxMessage.kind == MailKind.LESSON, OutboxMessage.lesson == lesson,
            OutboxMessage.status.in_([OutboxStatus.CANCELLED, OutboxStatus.FAILED]))))
    # The second bound follows from the first (the delivery came at `since` or later).
    after_scanners = (Event.created_at > _later(session, LessonDelivery.at, scanner_window),
                      Event.created_at > since + scanner_window)
    counts["opened"] = await per_lesson(select(lesson, func.count()).where(*queued, exists().where(
        Event.subscriber_id == LessonDelivery.subscriber_id, Event.lesson == lesson,
        Event.lesson.in_(keys), *after_scanners)))
    # A join counted once per delivery (one row per reader and lesson) rather than EXISTS:
    # the database can then keep the period's deliveries at hand and read the period's clicks
    # past them once, instead of keeping every click of the period at hand.
    counts["clicked"] = await per_lesson(
        select(lesson, func.count(distinct(LessonDelivery.subscriber_id)))
        .join(Event, Event.subscriber_id == LessonDelivery.subscriber_id)
        .where(*queued, Event.kind.in_(CLICK_KINDS), *after_scanners,
               Event.created_at <= _later(session, LessonDelivery.at, FOLLOW_UP)))
    later = LessonDelivery.__table__.alias("later")
    stopped_at = func.coalesce(Subscriber.lessons_stopped_at, Subscriber.unsubscribed_at)
    counts["stopped"] = await per_lesson(
        select(lesson, func.count()).select_from(LessonDelivery)
        .join(Subscriber, Subscriber.id == LessonDelivery.subscriber_id)
        .where(*queued, or_(Subscriber.lessons_stopped_at >= LessonDelivery.at,
                            Subscriber.unsubscribed_at >= LessonDelivery.at),
               # Follows from the line above, as after_scanners' second bound does.
               or_(Subscriber.lessons_stopped_at >= since, Subscriber.unsubscribed_at >= since),
               ~exists().where(later.c.subscriber_id == LessonDelivery.subscriber_id,
                               later.c.outcome == LessonOutcome.QUEUED,
                               later.c.at > LessonDelivery.at, later.c.at <= stopped_at)))
    return counts


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
