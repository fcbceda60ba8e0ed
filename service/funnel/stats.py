"""The author's numbers: the funnel over time, where signups came from, which exercises readers
open, and how the outbox is doing. One module for `/admin`, its CSV and `regimen stats`.

Every number but the outbox's is for one regimen or for all of them together: `regimen` is a
regimen's key, or None for all. Each subscription belongs to one regimen
(`Subscriber.regimen`), and its milestones, consents and events are its own, so a regimen's
numbers are those of its subscriptions: the same index range scans with the regimen as one more
condition (read from the same indexes), and the events and consents of those subscriptions. A
reader subscribed to two regimens counts in each, and twice in all of them together. The
outbox is one queue for every regimen, so its health is reported whole.

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

from collections import Counter
from collections.abc import Sequence
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
class RegimenClicks:
    """One regimen's exercises in its own order, each with its clicks in the period."""

    key: str
    title: str
    exercises: list[ExerciseClicks]

    @property
    def clicks(self) -> int:
        return sum(exercise.clicks for exercise in self.exercises)


@dataclass
class OutboxHealth:
    queued: int
    failed: int
    oldest_queued_age: timedelta | None


@dataclass
class RecentSignup:
    masked_email: str
    regimen: str
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
    # Whose numbers these are: a regimen's key, or None for every regimen together.
    regimen: str | None = None
    sources: list[Source] = field(default_factory=list)
    # Per regimen shown: one for a regimen's report, each regimen's for all of them.
    exercises: list[RegimenClicks] = field(default_factory=list)
    # The outbox's health, for every regimen (one queue).
    outbox: OutboxHealth | None = None
    recent: list[RecentSignup] = field(default_factory=list)


def period_start(now: datetime, days: int) -> datetime:
    """The first moment of the period of `days` days ending `now`: midnight of its first day.
    Every figure of a period (service.funnel.progress_stats, lesson_stats too) starts here."""
    return datetime.combine(now.date() - timedelta(days=days - 1), datetime.min.time(),
                            tzinfo=now.tzinfo)


def _day(session: AsyncSession, column: Any) -> ColumnElement[Any]:
    """The UTC calendar day of a timestamp, on either database."""
    if session.get_bind().dialect.name == "sqlite":
        return func.date(column)
    return cast(func.timezone("UTC", column), Date)


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _of(regimen: str | None) -> list[ColumnElement[bool]]:
    """The condition on `subscribers` for one regimen's numbers; none for all regimens'."""
    return [] if regimen is None else [Subscriber.regimen == regimen]


def _clicked_since(since: datetime) -> tuple[ColumnElement[bool], ...]:
    return Event.kind == EventKind.EXERCISE_CLICKED, Event.created_at >= since


def _offered_by(regimens: Sequence[Regimen]) -> dict[str, set[str]]:
    """Each exercise's slug, with the keys of the regimens that offer it."""
    offered: dict[str, set[str]] = {}
    for regimen in regimens:
        for exercise in regimen.exercises():
            offered.setdefault(exercise.slug, set()).add(regimen.key)
    return offered


async def funnel(session: AsyncSession, regimens: Sequence[Regimen], now: datetime, days: int,
                 scanner_window: timedelta, regimen: str | None = None) -> Report:
    """The daily funnel and the period's totals (the cheap part: `regimen stats`, the CSV),
    of the regimen whose key is `regimen`, or of every regimen together (None).

    `regimens`: the content served now, which tells whose exercise a click was (see
    `_clicks_per_day`). `scanner_window` is only reported: it was applied when each opening
    was recorded."""
    since = period_start(now, days)
    series = {since.date() + timedelta(days=n): Day(since.date() + timedelta(days=n))
              for n in range(days)}

    async def per_day(attribute: str, column: Any) -> None:
        day = _day(session, column)
        rows = await session.execute(select(day, func.count())
                                     .where(column >= since, *_of(regimen)).group_by(day))
        for key, number in rows:
            entry = series.get(_as_date(key))
            if entry is not None:
                setattr(entry, attribute, number)

    # Each an index range on one column (the regimen read from the same index): the readers
    # who reached that step on that day for the first time.
    await per_day("signups", Subscriber.created_at)
    await per_day("confirmed", Subscriber.confirmed_at)
    await per_day("confirm_page_opened", Subscriber.confirm_page_opened_at)
    await per_day("regimen_opened", Subscriber.regimen_opened_at)
    for key, number in (await _clicks_per_day(session, regimens, since, regimen)).items():
        if key in series:
            series[key].exercise_clicks = number
    totals = await _totals(session, since, regimen)
    return Report(since=since, until=now, scanner_window=scanner_window,
                  days=list(series.values()), totals=totals, regimen=regimen)


async def _clicks_per_day(session: AsyncSession, regimens: Sequence[Regimen], since: datetime,
                          regimen: str | None) -> dict[date, int]:
    """Every exercise click of each day: all of them, or one regimen's readers'.

    Whose a click was is told by its exercise where one regimen alone offers it: the clicks
    are read from the events' index alone, as fast as for all regimens, where looking up each
    click's reader would cost a second and more on a million readers. Only an exercise that
    several regimens offer, or that none offers any more, is looked up reader by reader. (A
    click on an exercise since moved to another regimen counts for the one offering it now.)"""
    day = _day(session, Event.created_at)
    rows = await session.execute(select(day, Event.exercise, func.count())
                                 .where(*_clicked_since(since)).group_by(day, Event.exercise))
    offered = _offered_by(regimens)
    counted: Counter[date] = Counter()
    unsure: set[str] = set()
    for key, slug, number in rows:
        offered_by = offered.get(slug, set())
        if regimen is None or offered_by == {regimen}:
            counted[_as_date(key)] += number
        elif regimen in offered_by or not offered_by:
            unsure.add(slug)
    if unsure:
        rows = await session.execute(
            select(day, func.count()).join(Subscriber, Subscriber.id == Event.subscriber_id)
            .where(*_clicked_since(since), Event.exercise.in_(sorted(unsure)),
                   Subscriber.regimen == regimen)
            .group_by(day))
        for key, number in rows:
            counted[_as_date(key)] += number
    return counted


async def _totals(session: AsyncSession, since: datetime, regimen: str | None) -> Totals:
    row = (await session.execute(
        select(
            func.count(),
            func.count(Subscriber.confirmed_at),
            func.count().filter(Subscriber.confirm_page_opened_at.is_not(None),
                                Subscriber.confirmed_at.is_(None)),
            func.count(Subscriber.regimen_opened_at),
            func.count(Subscriber.first_click_at),
        ).where(Subscriber.created_at >= since, *_of(regimen))
    )).one()
    signups, confirmed, stopped, regimen_opened, clicked = row
    return Totals(signups=signups, confirmed=confirmed, stopped_at_button=stopped,
                  # Pressing the button proves the page was opened by a person.
                  confirm_page_opened=confirmed + stopped,
                  regimen_opened=regimen_opened, clicked=clicked)


async def report(session: AsyncSession, regimens: Sequence[Regimen], now: datetime,
                 days: int, scanner_window: timedelta, regimen: str | None = None) -> Report:
    """Everything the admin page shows, for the regimen whose key is `regimen` or for every
    regimen together (None).

    `regimens`: the content served now, in its listing order. The clicks are listed per
    regimen, each regimen's exercises in its order, every one even with no clicks: the one
    regimen's, or each of `regimens` in turn."""
    result = await funnel(session, regimens, now, days, scanner_window, regimen)
    result.sources = await _sources(session, result.since, regimen)
    result.exercises = await _exercises(session, regimens, result.since, regimen)
    result.outbox = await outbox_health(session, now)
    result.recent = await _recent(session, result.since, regimen)
    return result


async def _sources(session: AsyncSession, since: datetime,
                   regimen: str | None) -> list[Source]:
    url = func.coalesce(Consent.source_url, "")
    query = select(url, func.count(), func.count(Consent.confirmed_at)) \
        .where(Consent.signed_up_at >= since)
    if regimen is not None:
        # Each consent's subscription looked up: the one query of a regimen's page that reads
        # more than an index range (about 0.1 s for the 80,000 signups of 30 days).
        query = query.join(Subscriber, Subscriber.id == Consent.subscriber_id) \
            .where(Subscriber.regimen == regimen)
    rows = await session.execute(
        query.group_by(url).order_by(func.count().desc(), url).limit(TOP_SOURCES))
    return [Source(url=u, signups=n, confirmed=c) for u, n, c in rows]


async def _exercises(session: AsyncSession, regimens: Sequence[Regimen], since: datetime,
                     regimen: str | None) -> list[RegimenClicks]:
    """The clicks of each exercise of the regimens shown, and how many readers clicked it;
    whose each click was is told as in `_clicks_per_day`."""
    shown = [r for r in regimens if regimen is None or r.key == regimen]
    offered = _offered_by(regimens)
    slugs = sorted({exercise.slug for r in shown for exercise in r.exercises()})
    shared = [slug for slug in slugs if len(offered[slug]) > 1]
    # Per (exercise, reader) first, then per exercise: hashing beats a sort for DISTINCT.
    per_reader = (
        select(Event.exercise, func.count().label("clicks"))
        .where(*_clicked_since(since), Event.exercise.in_(slugs))
        .group_by(Event.exercise, Event.subscriber_id).subquery()
    )
    rows = await session.execute(
        select(per_reader.c.exercise, func.sum(per_reader.c.clicks), func.count())
        .group_by(per_reader.c.exercise))
    counted = {(key, slug): (int(clicks), readers) for slug, clicks, readers in rows
               if slug not in shared for key in offered[slug]}
    if shared:
        per_reader = (
            select(Subscriber.regimen, Event.exercise, func.count().label("clicks"))
            .join(Subscriber, Subscriber.id == Event.subscriber_id)
            .where(*_clicked_since(since), Event.exercise.in_(shared), *_of(regimen))
            .group_by(Event.subscriber_id, Subscriber.regimen, Event.exercise).subquery()
        )
        rows = await session.execute(
            select(per_reader.c.regimen, per_reader.c.exercise, func.sum(per_reader.c.clicks),
                   func.count())
            .group_by(per_reader.c.regimen, per_reader.c.exercise))
        counted |= {(key, slug): (int(clicks), readers) for key, slug, clicks, readers in rows}
    return [RegimenClicks(key=r.key, title=r.title, exercises=[
        ExerciseClicks(slug=e.slug, title=e.title, free=e.is_free,
                       clicks=counted.get((r.key, e.slug), (0, 0))[0],
                       readers=counted.get((r.key, e.slug), (0, 0))[1])
        for e in r.exercises()]) for r in shown]


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


async def _recent(session: AsyncSession, since: datetime,
                  regimen: str | None) -> list[RecentSignup]:
    """The period's latest signups: a backward range on the signup time, which a regimen with
    few readers (or none yet) cannot turn into a walk through every row."""
    latest_source = (
        select(Consent.source_url).where(Consent.subscriber_id == Subscriber.id)
        .order_by(Consent.id.desc()).limit(1).correlate(Subscriber).scalar_subquery()
    )
    rows = await session.execute(
        select(Subscriber.email, Subscriber.regimen, Subscriber.status, Subscriber.created_at,
               latest_source)
        .where(Subscriber.created_at >= since, *_of(regimen))
        .order_by(Subscriber.created_at.desc(), Subscriber.id.desc()).limit(RECENT_SIGNUPS)
    )
    return [RecentSignup(masked_email=mask(email), regimen=key, status=status.value,
                         created_at=created, source_url=source)
            for email, key, status, created, source in rows]


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def table(report: Report, title: str | None = None) -> list[str]:
    """The funnel as lines of text, for `regimen stats`; `title`: whose numbers they are (the
    regimen's title), said in the first line."""
    heads = ("day", "signups", "confirm page", "confirmed", "regimen", "clicks")
    whose = "all regimens" if report.regimen is None else \
        f"{title} ({report.regimen})" if title else report.regimen
    lines = [f"{report.since:%Y-%m-%d} to {report.until:%Y-%m-%d %H:%M} UTC, {whose}",
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
