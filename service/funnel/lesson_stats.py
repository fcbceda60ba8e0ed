"""The author's numbers per lesson: of the readers who signed up in a period, per lesson
(service.delivery.lessons writes one `LessonDelivery` row per reader and lesson), how many were
sent or skipped, and what readers did after one came.

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

`count` counts them from the raw rows for the readers of some signup days, each figure one
statement for all the lessons at once; service.funnel.rollups keeps each closed day's counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
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
from service.funnel.figures import Figures, Key

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


FIGURES = ("lesson_queued", "lesson_undelivered", "lesson_skipped", "lesson_opened",
           "lesson_clicked", "lesson_stopped")


def lessons(regimens: list[Regimen], figures: Mapping[str, Figures]) -> list[RegimenLessons]:
    """Each of `regimens` that has lessons, each lesson in its file's order, from the counts
    (service.funnel.rollups.read) of the readers who signed up in the period."""
    out: list[RegimenLessons] = []
    for regimen in regimens:
        if not regimen.lessons:
            continue
        counts = figures.get(regimen.key, Figures())
        out.append(RegimenLessons(key=regimen.key, title=regimen.title, lessons=[
            LessonFigures(key=lesson.key, subject=lesson.subject, after_days=lesson.after,
                          sent=counts["lesson_queued", lesson.key]
                          - counts["lesson_undelivered", lesson.key],
                          skipped=counts["lesson_skipped", lesson.key],
                          opened=counts["lesson_opened", lesson.key],
                          clicked_within_7_days=counts["lesson_clicked", lesson.key],
                          stopped_after=counts["lesson_stopped", lesson.key])
            for lesson in regimen.lessons]))
    return out


async def count(session: AsyncSession, regimen: str, keys: list[str], since: datetime,
                until: datetime, scanner_window: timedelta) -> Counter[Key]:
    """Each figure's count per lesson (of `keys`, the regimen's lessons now), of the regimen's
    readers who signed up in [since, until)."""
    if not keys:
        return Counter()
    lesson = LessonDelivery.lesson
    # A range of the deliveries' own index (regimen, signed_up_at).
    settled = (LessonDelivery.regimen == regimen, LessonDelivery.signed_up_at >= since,
               LessonDelivery.signed_up_at < until, lesson.in_(keys))
    queued = (*settled, LessonDelivery.outcome == LessonOutcome.QUEUED)
    counts: Counter[Key] = Counter()

    async def per_lesson(figure: str, query: Select[str, int]) -> None:
        for key, number in await session.execute(query.group_by(lesson)):
            counts[figure, key] = number

    for key, outcome, number in await session.execute(
            select(lesson, LessonDelivery.outcome, func.count()).where(*settled)
            .group_by(lesson, LessonDelivery.outcome)):
        counts[f"lesson_{LessonOutcome(outcome).value}", key] = number
    if not any(figure == "lesson_queued" for figure, _ in counts):
        # Every other figure is of lessons sent: none to these readers (the usual case for
        # today's, who signed up hours or minutes ago), so four queries spared (~20 ms).
        return +counts
    await per_lesson("lesson_undelivered", select(lesson, func.count()).where(
        *queued, exists().where(
            OutboxMessage.subscriber_id == LessonDelivery.subscriber_id,
            OutboxMessage.kind == MailKind.LESSON, OutboxMessage.lesson == lesson,
            OutboxMessage.status.in_([OutboxStatus.CANCELLED, OutboxStatus.FAILED]))))
    # The second bound follows from the first (a reader's lesson comes after signing up).
    after_scanners = (Event.created_at > _later(session, LessonDelivery.at, scanner_window),
                      Event.created_at > since + scanner_window)
    await per_lesson("lesson_opened", select(lesson, func.count()).where(*queued, exists().where(
        Event.subscriber_id == LessonDelivery.subscriber_id, Event.lesson == lesson,
        *after_scanners)))
    # A join counted once per delivery (one row per reader and lesson) rather than EXISTS:
    # the database can then keep the deliveries at hand and read the clicks past them once.
    await per_lesson("lesson_clicked",
                     select(lesson, func.count(distinct(LessonDelivery.subscriber_id)))
                     .join(Event, Event.subscriber_id == LessonDelivery.subscriber_id)
                     .where(*queued, Event.kind.in_(CLICK_KINDS), *after_scanners,
                            Event.created_at <= _later(session, LessonDelivery.at, FOLLOW_UP)))
    later = LessonDelivery.__table__.alias("later")
    stopped_at = func.coalesce(Subscriber.lessons_stopped_at, Subscriber.unsubscribed_at)
    await per_lesson(
        "lesson_stopped",
        select(lesson, func.count()).select_from(LessonDelivery)
        .join(Subscriber, Subscriber.id == LessonDelivery.subscriber_id)
        .where(*queued, or_(Subscriber.lessons_stopped_at >= LessonDelivery.at,
                            Subscriber.unsubscribed_at >= LessonDelivery.at),
               ~exists().where(later.c.subscriber_id == LessonDelivery.subscriber_id,
                               later.c.outcome == LessonOutcome.QUEUED,
                               later.c.at > LessonDelivery.at, later.c.at <= stopped_at)))
    return +counts


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
        out += ["", f"Lessons of {regimen.title} ({regimen.key}), to the readers who signed up "
                "in these days:",
                ROW.format("lesson", "day", "sent", "skipped", "opened", "clicked (7d)",
                           "stopped")]
        out += [ROW.format(each.key[:24], each.after_days, each.sent, each.skipped,
                           each.opened, each.clicked_within_7_days, each.stopped_after)
                for each in regimen.lessons]
    return out
