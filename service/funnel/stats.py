"""The author's numbers: the funnel over time, where signups came from, which exercises readers
open, and how the outbox is doing. One module for `/admin`, its CSV and `regimen stats`.

How far each reader got is kept on their row when it happens (service.funnel.events): the first
opening of the confirmation page by a person, the first regimen opening, the first exercise
click. So the numbers are range counts on indexed columns of `subscribers`, fast on a million
readers: the totals count, of the readers who signed up in the period, those who reached each
step; the daily series count the readers who reached a step for the first time on that day
(and every exercise click of that day).

How opens of the confirmation page are counted. Mail security scanners (Safe Links, Mimecast,
Proofpoint...) fetch every link of a mail within seconds of its delivery, so a raw count of
`GET /confirm/...` would mostly count machines. A reader *opened the confirmation page* when:

- they pressed the button (a POST; scanners do not press buttons), or
- they opened the page more than `scanner_window` seconds after the latest confirmation or
  reminder mail sent to them: an open within that window of a mail's sending is taken to be a
  scanner. This is decided when the opening is recorded, with the window configured then.

Each reader counts once, however often the page was opened. The drop-off at the button is the
readers who opened the page (so counted) and never confirmed. A real reader who opens the page
within the window and leaves is not counted: the number is a floor, not a ceiling.

Regimen opens are discounted the same way: an opening of the regimen mail's link within the
window of that mail's sending is a scanner's. The link on the page shown right after
confirming always counts (no scanner sees that page), so readers who go straight on from the
button are not missed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Date, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from service.core.content import Regimen
from service.core.models import (
    Consent,
    Event,
    EventKind,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
)
from service.readers.addresses import mask

DEFAULT_DAYS = 30
RECENT_SIGNUPS = 15
TOP_SOURCES = 10
FUNNEL_COLUMNS = ("day", "signups", "confirm_page_opened", "confirmed", "regimen_opened",
                  "exercise_clicks")


@dataclass
class Day:
    day: date
    signups: int = 0
    confirm_page_opened: int = 0
    confirmed: int = 0
    regimen_opened: int = 0
    exercise_clicks: int = 0

    def row(self) -> tuple[str | int, ...]:
        return (self.day.isoformat(), self.signups, self.confirm_page_opened, self.confirmed,
                self.regimen_opened, self.exercise_clicks)


@dataclass
class Totals:
    """Of the readers who signed up in the period: how far each of them got."""

    signups: int = 0
    confirm_page_opened: int = 0
    confirmed: int = 0
    stopped_at_button: int = 0
    regimen_opened: int = 0
    clicked: int = 0

    @property
    def confirmation_rate(self) -> float | None:
        return self.confirmed / self.signups if self.signups else None

    @property
    def button_drop_off(self) -> float | None:
        """Of those who saw the button, the share who never pressed it."""
        return self.stopped_at_button / self.confirm_page_opened \
            if self.confirm_page_opened else None


@dataclass
class Source:
    url: str
    signups: int
    confirmed: int


@dataclass
class ExerciseClicks:
    slug: str
    title: str
    free: bool
    clicks: int
    readers: int


@dataclass
class OutboxHealth:
    queued: int
    failed: int
    oldest_queued_age: timedelta | None


@dataclass
class RecentSignup:
    masked_email: str
    status: str
    created_at: datetime
    source_url: str | None


@dataclass
class Report:
    since: datetime
    until: datetime
    scanner_window: timedelta
    days: list[Day]
    totals: Totals
    sources: list[Source] = field(default_factory=list)
    exercises: list[ExerciseClicks] = field(default_factory=list)
    outbox: OutboxHealth | None = None
    recent: list[RecentSignup] = field(default_factory=list)


def _day(session: AsyncSession, column: Any) -> ColumnElement[Any]:
    """The UTC calendar day of a timestamp, on either database."""
    if session.get_bind().dialect.name == "sqlite":
        return func.date(column)
    return cast(func.timezone("UTC", column), Date)


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


async def funnel(session: AsyncSession, now: datetime, days: int,
                 scanner_window: timedelta) -> Report:
    """The daily funnel and the period's totals (the cheap part: `regimen stats`, the CSV).

    `scanner_window` is only reported: it was applied when each opening was recorded."""
    since = datetime.combine(now.date() - timedelta(days=days - 1), datetime.min.time(),
                             tzinfo=now.tzinfo)
    series = {since.date() + timedelta(days=n): Day(since.date() + timedelta(days=n))
              for n in range(days)}

    async def per_day(attribute: str, column: Any, *where: Any) -> None:
        day = _day(session, column)
        rows = await session.execute(select(day, func.count()).where(column >= since, *where)
                                     .group_by(day))
        for key, number in rows:
            entry = series.get(_as_date(key))
            if entry is not None:
                setattr(entry, attribute, number)

    # Each an index range on one column: the readers who reached that step on that day for
    # the first time (and the clicks of that day).
    await per_day("signups", Subscriber.created_at)
    await per_day("confirmed", Subscriber.confirmed_at)
    await per_day("confirm_page_opened", Subscriber.confirm_page_opened_at)
    await per_day("regimen_opened", Subscriber.regimen_opened_at)
    await per_day("exercise_clicks", Event.created_at, Event.kind == EventKind.EXERCISE_CLICKED)
    totals = await _totals(session, since)
    return Report(since=since, until=now, scanner_window=scanner_window,
                  days=list(series.values()), totals=totals)


async def _totals(session: AsyncSession, since: datetime) -> Totals:
    row = (await session.execute(
        select(
            func.count(),
            func.count(Subscriber.confirmed_at),
            func.count().filter(Subscriber.confirm_page_opened_at.is_not(None),
                                Subscriber.confirmed_at.is_(None)),
            func.count(Subscriber.regimen_opened_at),
            func.count(Subscriber.first_click_at),
        ).where(Subscriber.created_at >= since)
    )).one()
    signups, confirmed, stopped, regimen_opened, clicked = row
    return Totals(signups=signups, confirmed=confirmed, stopped_at_button=stopped,
                  # Pressing the button proves the page was opened by a person.
                  confirm_page_opened=confirmed + stopped,
                  regimen_opened=regimen_opened, clicked=clicked)


async def report(session: AsyncSession, regimen: Regimen, now: datetime,
                 days: int, scanner_window: timedelta) -> Report:
    """Everything the admin page shows."""
    result = await funnel(session, now, days, scanner_window)
    result.sources = await _sources(session, result.since)
    result.exercises = await _exercises(session, regimen, result.since)
    result.outbox = await outbox_health(session, now)
    result.recent = await _recent(session)
    return result


async def _sources(session: AsyncSession, since: datetime) -> list[Source]:
    url = func.coalesce(Consent.source_url, "")
    rows = await session.execute(
        select(url, func.count(), func.count(Consent.confirmed_at))
        .where(Consent.signed_up_at >= since)
        .group_by(url).order_by(func.count().desc(), url).limit(TOP_SOURCES)
    )
    return [Source(url=u, signups=n, confirmed=c) for u, n, c in rows]


async def _exercises(session: AsyncSession, regimen: Regimen,
                     since: datetime) -> list[ExerciseClicks]:
    # Per (exercise, reader) first, then per exercise: hashing beats a sort for DISTINCT.
    per_reader = (
        select(Event.exercise, func.count().label("clicks"))
        .where(Event.kind == EventKind.EXERCISE_CLICKED, Event.created_at >= since)
        .group_by(Event.exercise, Event.subscriber_id).subquery()
    )
    rows = await session.execute(
        select(per_reader.c.exercise, func.sum(per_reader.c.clicks), func.count())
        .group_by(per_reader.c.exercise)
    )
    counted = {slug: (int(clicks), readers) for slug, clicks, readers in rows}
    # In the regimen's order, every exercise listed even with no clicks.
    return [ExerciseClicks(slug=e.slug, title=e.title, free=e.is_free,
                           clicks=counted.get(e.slug, (0, 0))[0],
                           readers=counted.get(e.slug, (0, 0))[1])
            for e in regimen.exercises()]


async def outbox_health(session: AsyncSession, now: datetime) -> OutboxHealth:
    queued, oldest = (await session.execute(
        select(func.count(), func.min(OutboxMessage.created_at))
        .where(OutboxMessage.status == OutboxStatus.QUEUED)
    )).one()
    failed = await session.scalar(
        select(func.count()).where(OutboxMessage.status == OutboxStatus.FAILED)
    ) or 0
    return OutboxHealth(queued=queued, failed=failed,
                        oldest_queued_age=now - oldest if oldest is not None else None)


async def _recent(session: AsyncSession) -> list[RecentSignup]:
    latest_source = (
        select(Consent.source_url).where(Consent.subscriber_id == Subscriber.id)
        .order_by(Consent.id.desc()).limit(1).correlate(Subscriber).scalar_subquery()
    )
    rows = await session.execute(
        select(Subscriber.email, Subscriber.status, Subscriber.created_at, latest_source)
        .order_by(Subscriber.id.desc()).limit(RECENT_SIGNUPS)
    )
    return [RecentSignup(masked_email=mask(email), status=status.value, created_at=created,
                         source_url=source) for email, status, created, source in rows]


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def table(report: Report) -> list[str]:
    """The funnel as lines of text, for `regimen stats`."""
    heads = ("day", "signups", "confirm page", "confirmed", "regimen", "clicks")
    lines = [f"{report.since:%Y-%m-%d} to {report.until:%Y-%m-%d %H:%M} UTC",
             "{:<10} {:>8} {:>12} {:>9} {:>8} {:>7}".format(*heads)]
    lines += ["{:<10} {:>8} {:>12} {:>9} {:>8} {:>7}".format(*day.row()) for day in report.days]
    t = report.totals
    lines += [
        "",
        "Of the readers who signed up in these days:",
        f"  signed up                          {t.signups:>8}",
        f"  opened the confirmation page       {t.confirm_page_opened:>8}",
        f"  confirmed                          {t.confirmed:>8}  "
        f"{percent(t.confirmation_rate)} of signups",
        f"  opened the page, never confirmed   {t.stopped_at_button:>8}  "
        f"{percent(t.button_drop_off)} of those who saw the button",
        f"  opened the regimen                 {t.regimen_opened:>8}",
        f"  clicked an exercise                {t.clicked:>8}",
        "",
        f"Opens of a mail's link within {report.scanner_window.total_seconds():g} s of that "
        "mail's sending "
        "(confirmation page, regimen) are taken for mail scanners and not counted; pressing "
        "the button, and the regimen link shown after it, always count.",
    ]
    return lines
