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
click. Every figure is of the readers who signed up in the period (the cohort), however long
after signing up they reached a step: the totals count, of those readers, the ones who reached
each step; the daily series does the same for each signup day; the exercises list their clicks
(at any time) and how many of them clicked; the sources count the consents given in the period.
So a day's figures add up with the next day's, and service.funnel.rollups keeps each closed
day's, counted by `count`; a year's view reads 365 rows per figure, not a year of readers.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
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
from service.core.stale_figures import day_of
from service.funnel.figures import Figures, Key, as_date
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


def _of(regimen: str | None) -> list[ColumnElement[bool]]:
    """The condition on `subscribers` for one regimen's numbers; none for all regimens'."""
    return [] if regimen is None else [Subscriber.regimen == regimen]


def _cohort(regimen: str, start: datetime, end: datetime) -> tuple[ColumnElement[bool], ...]:
    """The regimen's readers who signed up in [start, end): an index range."""
    return (Subscriber.created_at >= start, Subscriber.created_at < end,
            Subscriber.regimen == regimen)


async def count(session: AsyncSession, regimen: str, start: datetime,
                end: datetime) -> Figures:
    """The funnel's figures (service.funnel.figures) of the regimen's readers who signed up in
    [start, end), from the raw rows: per signup day, how far they got, and their exercise
    clicks (each exercise's, and how many of them clicked it); the sources of the consents
    given in those days."""
    figures = Figures()
    day = day_of(session, Subscriber.created_at)
    rows = await session.execute(
        select(day, func.count(), func.count(Subscriber.confirmed_at),
               func.count().filter(Subscriber.confirm_page_opened_at.is_not(None),
                                   Subscriber.confirmed_at.is_(None)),
               func.count(Subscriber.regimen_opened_at), func.count(Subscriber.first_click_at))
        .where(*_cohort(regimen, start, end)).group_by(day))
    for signed_up, signups, confirmed, stopped, regimen_opened, clicked in rows:
        figures.add_day(as_date(signed_up), Counter({
            ("signups", ""): signups, ("confirmed", ""): confirmed,
            ("stopped_at_button", ""): stopped, ("regimen_opened", ""): regimen_opened,
            ("clicked", ""): clicked}))
    # Per reader and exercise first (the events' subscriber index), then per day and exercise.
    per_reader = (
        select(day.label("day"), Event.exercise, func.count().label("clicks"))
        .join(Event, Event.subscriber_id == Subscriber.id)
        .where(*_cohort(regimen, start, end), Event.kind == EventKind.EXERCISE_CLICKED)
        .group_by(Subscriber.id, day, Event.exercise).subquery())
    for signed_up, slug, clicks, readers in await session.execute(
            select(per_reader.c.day, per_reader.c.exercise, func.sum(per_reader.c.clicks),
                   func.count()).group_by(per_reader.c.day, per_reader.c.exercise)):
        figures.add_day(as_date(signed_up), Counter({("exercise_clicks", slug or ""): int(clicks),
                                                      ("exercise_readers", slug or ""): readers,
                                                      ("all_exercise_clicks", ""): int(clicks)}))
    url = func.coalesce(Consent.source_url, "")
    given = day_of(session, Consent.signed_up_at)
    for signed_up, source, signups, confirmed in await session.execute(
            select(given, url, func.count(), func.count(Consent.confirmed_at))
            .join(Subscriber, Subscriber.id == Consent.subscriber_id)
            .where(Consent.signed_up_at >= start, Consent.signed_up_at < end,
                   Subscriber.regimen == regimen)
            .group_by(given, url)):
        figures.add_day(as_date(signed_up), Counter({("source_signups", source): signups,
                                                      ("source_confirmed", source): confirmed}))
    return figures


def funnel(figures: Mapping[str, Figures], now: datetime, days: int, scanner_window: timedelta,
           regimen: str | None = None) -> Report:
    """The daily funnel and the period's totals (the cheap part: `regimen stats`, the CSV),
    from the figures (service.funnel.rollups.read) of the regimen whose key is `regimen`, or
    of every regimen together (None). `scanner_window` is only reported: it was applied when
    each opening was recorded."""
    since = period_start(now, days)
    series = {since.date() + timedelta(days=n): Day(since.date() + timedelta(days=n))
              for n in range(days)}
    total: Counter[Key] = Counter()
    for each in figures.values():
        total.update(each.total)
        for signed_up, counts in each.days.items():
            entry = series.get(signed_up)
            if entry is not None:
                entry.signups += counts["signups", ""]
                entry.confirmed += counts["confirmed", ""]
                entry.confirm_page_opened += counts["confirmed", ""] \
                    + counts["stopped_at_button", ""]
                entry.regimen_opened += counts["regimen_opened", ""]
                entry.exercise_clicks += counts["all_exercise_clicks", ""]
    confirmed, stopped = total["confirmed", ""], total["stopped_at_button", ""]
    totals = Totals(signups=total["signups", ""], confirmed=confirmed,
                    stopped_at_button=stopped,
                    # Pressing the button proves the page was opened by a person.
                    confirm_page_opened=confirmed + stopped,
                    regimen_opened=total["regimen_opened", ""], clicked=total["clicked", ""])
    return Report(since=since, until=now, scanner_window=scanner_window,
                  days=list(series.values()), totals=totals, regimen=regimen)


async def report(session: AsyncSession, figures: Mapping[str, Figures],
                 regimens: Sequence[Regimen], now: datetime, days: int,
                 scanner_window: timedelta, regimen: str | None = None) -> Report:
    """Everything the admin page shows of the funnel, for the regimen whose key is `regimen` or
    for every regimen together (None).

    `regimens`: the content served now, in its listing order. The clicks are listed per
    regimen, each regimen's exercises in its order, every one even with no clicks: the one
    regimen's, or each of `regimens` in turn."""
    result = funnel(figures, now, days, scanner_window, regimen)
    result.sources = _sources(figures)
    result.exercises = _exercises(figures, regimens, regimen)
    result.outbox = await outbox_health(session, now)
    result.recent = await _recent(session, result.since, regimen)
    return result


def _sources(figures: Mapping[str, Figures]) -> list[Source]:
    signups: Counter[str] = Counter()
    confirmed: Counter[str] = Counter()
    for each in figures.values():
        signups.update(each.keyed("source_signups"))
        confirmed.update(each.keyed("source_confirmed"))
    top = sorted(signups.items(), key=lambda item: (-item[1], item[0]))[:TOP_SOURCES]
    return [Source(url=url, signups=n, confirmed=confirmed[url]) for url, n in top]


def _exercises(figures: Mapping[str, Figures], regimens: Sequence[Regimen],
               regimen: str | None) -> list[RegimenClicks]:
    """Each exercise of the regimens shown, in their order: its clicks by the period's readers
    of that regimen, and how many of them clicked it."""
    shown = [r for r in regimens if regimen is None or r.key == regimen]
    out = []
    for each in shown:
        counted = figures.get(each.key, Figures())
        out.append(RegimenClicks(key=each.key, title=each.title, exercises=[
            ExerciseClicks(slug=e.slug, title=e.title, free=e.is_free,
                           clicks=counted["exercise_clicks", e.slug],
                           readers=counted["exercise_readers", e.slug])
            for e in each.exercises()]))
    return out


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
