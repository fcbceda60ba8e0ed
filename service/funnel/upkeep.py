"""Keeping the author's daily figures (service.funnel.rollups) true: the worker's chore, and
`regimen stats --verify` and `--rebuild`.

- Each day is counted up to `CLOSE_AFTER` ago (a day that ended longer ago than that, whole;
  today, up to then): a signup that began before that moment has committed by now, so no
  reader of the span counted is missing from it. Today is counted again at every pass.
- A day noted stale (service.core.stale_figures) is let go and counted again. The notes taken
  are deleted in the transaction that lets their days go; a note written meanwhile stays for
  the next pass, so no change is ever missed.
- A regimen whose shape changed (service.funnel.rollups.shape) has its days counted again.
- A month whose days are all kept whole is summed (service.funnel.summed_months); counting one
  of its days again lets its sums go, and they are made again once the day is kept.
- Raw events older than `REGIMEN_EVENT_RETENTION` are deleted in small batches, once every
  day is counted. A day whose readers' events may be gone keeps its last count: notes
  about it are dropped, since counting it again from what is left would lose what was deleted.

Only one worker of a fleet does this at a time (a PostgreSQL advisory lock; SQLite has one
writer anyway).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.content import Regimen
from service.core.database import Database
from service.core.models import (
    DailyFigure,
    Event,
    FigureDay,
    FigureMonth,
    MonthlyFigure,
    StaleFigureDay,
    Subscriber,
)
from service.funnel import rollups, summed_months
from service.funnel.figures import Key, day_start
from service.funnel.rollups import count, frozen_through, shape

CLOSE_AFTER = timedelta(minutes=10)
# Days counted per transaction: each is a dozen short queries on one day's readers.
DAYS_PER_BATCH = 20
NOTES_PER_BATCH = 1000
EVENTS_PER_BATCH = 5000
# pg_try_advisory_xact_lock's key: "regimen figures".
LOCK_KEY = 0x52_46_49_47


def through(day: date, now: datetime) -> datetime:
    """Up to when the worker counts `day`'s readers at `now`: the day's end, once it ended
    `CLOSE_AFTER` ago; up to `CLOSE_AFTER` ago before that."""
    return min(day_start(day + timedelta(days=1)), now - CLOSE_AFTER)


async def take_turn(session: AsyncSession) -> bool:
    """Whether this transaction may keep the figures (no other worker is at it)."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(await session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"),
                                     {"key": LOCK_KEY}))


async def take_notes(session: AsyncSession, now: datetime,
                     event_retention: timedelta | None) -> int:
    """Let go of the days noted stale, so they are counted again; return how many notes."""
    notes = (await session.execute(
        select(StaleFigureDay.id, StaleFigureDay.regimen, StaleFigureDay.day)
        .order_by(StaleFigureDay.id).limit(NOTES_PER_BATCH))).all()
    frozen = frozen_through(now, event_retention) or date.min
    for regimen, day in {(regimen, day) for _, regimen, day in notes if day > frozen}:
        await forget_day(session, regimen, day)
    if notes:
        await session.execute(delete(StaleFigureDay).where(
            StaleFigureDay.id.in_([id_ for id_, _, _ in notes])))
    return len(notes)


async def forget_day(session: AsyncSession, regimen: str, day: date) -> None:
    """A day's kept figures go, and its month's sums: it is counted from the raw rows until
    counted again."""
    await session.execute(delete(DailyFigure).where(DailyFigure.regimen == regimen,
                                                    DailyFigure.day == day))
    await session.execute(delete(FigureDay).where(FigureDay.regimen == regimen,
                                                  FigureDay.day == day))
    await summed_months.forget(session, regimen, day)


async def _keys(session: AsyncSession, served: Mapping[str, Regimen], since: datetime | None,
                ) -> list[str]:
    """The regimens to keep figures of: those served, those kept already, and those with
    readers since `since` (None: ever, which reads every subscription once)."""
    kept = set(await session.scalars(select(FigureDay.regimen).distinct()))
    query = select(Subscriber.regimen).distinct()
    if since is not None:
        query = query.where(Subscriber.created_at >= since)
    return [*served, *sorted((kept | set(await session.scalars(query))) - set(served))]


async def _days_to_count(session: AsyncSession, key: str, content: Regimen | None,
                         now: datetime, event_retention: timedelta | None) -> list[date]:
    """The regimen's days, from its first signup to today, not kept up to `through` for its
    shape now."""
    kept, _ = await rollups.kept_days(session, key, content, date.min, now, event_retention)
    first_signup = await session.scalar(select(func.min(Subscriber.created_at))
                                        .where(Subscriber.regimen == key))
    if first_signup is None:
        return []
    days = (first_signup.date() + timedelta(days=n)
            for n in range((now.date() - first_signup.date()).days + 1))
    return [day for day in days if kept.get(day, day_start(day)) < through(day, now)]


async def keep_day(session: AsyncSession, key: str, content: Regimen | None, day: date,
                   now: datetime, scanner_window: timedelta) -> None:
    """Count one day of one regimen from the raw rows, up to `through`, and keep its figures."""
    until = through(day, now)
    figures = await count(session, key, content, day_start(day), until, scanner_window)
    await forget_day(session, key, day)
    rows = [{"regimen": key, "day": day, "figure": figure, "key": item, "value": value}
            for (figure, item), value in figures.total.items() if value]
    if rows:
        await session.execute(insert(DailyFigure), rows)
    session.add(FigureDay(regimen=key, day=day, shape=shape(content), through=until,
                          counted_at=now))
    await session.flush()


@dataclass
class Pass:
    """What `catch_up` (one batch) or `keep` (all of them) did."""

    notes: int = 0
    counted: int = 0
    left: int = 0  # days still to count after it
    # Whether this worker had its turn (another may be at it: then it did nothing).
    turn: bool = True
    events_forgotten: int = 0

    def add(self, other: Pass) -> None:
        self.notes += other.notes
        self.counted += other.counted
        self.left, self.turn = other.left, other.turn


async def catch_up(session: AsyncSession, regimens: Sequence[Regimen], now: datetime,
                   scanner_window: timedelta, event_retention: timedelta | None,
                   days: int = DAYS_PER_BATCH, every_regimen: bool = False) -> Pass:
    """One batch: take the stale notes, then count up to `days` days not kept. The caller
    commits, and calls again while `left`. `every_regimen`: also look for regimens no longer
    served that have readers (reads every subscription; `rebuild` does)."""
    done = Pass()
    if not await take_turn(session):
        done.turn = False
        return done
    done.notes = await take_notes(session, now, event_retention)
    served = {each.key: each for each in regimens}
    since = None if every_regimen else day_start(now.date() - timedelta(days=2))
    keys = await _keys(session, served, since)
    todo = [(key, day) for key in keys
            for day in await _days_to_count(session, key, served.get(key), now,
                                            event_retention)]
    for key, day in todo[:days]:
        await keep_day(session, key, served.get(key), day, now, scanner_window)
    for key in keys:
        await summed_months.sum_whole(session, key)
    done.counted, done.left = min(days, len(todo)), max(0, len(todo) - days)
    return done


async def keep(db: Database, regimens: Sequence[Regimen], now: datetime,
               scanner_window: timedelta, event_retention: timedelta | None,
               every_regimen: bool = False,
               counted: Callable[[int, int], object] | None = None) -> Pass:
    """Catch up, a batch a transaction, until every day is kept; then forget raw
    events past `event_retention`, a batch a transaction. `counted(done, left)` is told after
    each batch (`regimen stats --rebuild` draws its progress bar with it)."""
    done = Pass()
    while True:
        async with db.transaction() as session:
            batch = await catch_up(session, regimens, now, scanner_window, event_retention,
                                   every_regimen=every_regimen)
        done.add(batch)
        if counted is not None:
            counted(done.counted, batch.left)
        if not batch.turn or (not batch.left and batch.notes < NOTES_PER_BATCH):
            break
    if done.turn and event_retention is not None:
        while True:
            async with db.transaction() as session:
                forgotten = await forget_old_events(session, now, event_retention)
            done.events_forgotten += forgotten
            if forgotten < EVENTS_PER_BATCH:
                break
    return done


async def rebuild(db: Database, regimens: Sequence[Regimen], now: datetime,
                  scanner_window: timedelta, event_retention: timedelta | None,
                  counted: Callable[[int, int], object] | None = None) -> Pass:
    """Forget every kept figure and count every day again from the raw rows, for every
    regimen that has readers (served or not). Days whose raw events may be gone are counted
    from what is left."""
    async with db.transaction() as session:
        await forget_everything(session)
    return await keep(db, regimens, now, scanner_window, None, every_regimen=True,
                      counted=counted)


async def forget_old_events(session: AsyncSession, now: datetime,
                            event_retention: timedelta) -> int:
    """Delete one batch of raw events older than `event_retention`; return how many. Only
    call it once every day is kept (`catch_up` left none)."""
    old = select(Event.id).where(Event.created_at < now - event_retention) \
        .order_by(Event.id).limit(EVENTS_PER_BATCH)
    result = await session.execute(delete(Event).where(Event.id.in_(old.scalar_subquery())))
    return int(getattr(result, "rowcount", 0) or 0)


async def forget_everything(session: AsyncSession) -> None:
    """Drop every kept figure and note (`rebuild` counts them all again)."""
    for table in (DailyFigure, FigureDay, MonthlyFigure, FigureMonth, StaleFigureDay):
        await session.execute(delete(table))


@dataclass(frozen=True)
class Difference:
    regimen: str
    day: date
    figure: str
    key: str
    kept: int
    counted: int
    # Whether it is a month's sum (`day` its first) that differs from its kept days'.
    month: bool = False


async def verify_some(session: AsyncSession, regimens: Sequence[Regimen],
                      days: Sequence[KeptDay], scanner_window: timedelta,
                      ) -> list[Difference]:
    """Count each of `days` from the raw rows, up to when it was counted, and compare
    with what is kept for it."""
    served = {each.key: each for each in regimens}
    differences = []
    for key, day, until in days:
        counted = (await count(session, key, served.get(key), day_start(day), until,
                               scanner_window)).total
        kept = {(figure, item): value for figure, item, value in await session.execute(
            select(DailyFigure.figure, DailyFigure.key, DailyFigure.value)
            .where(DailyFigure.regimen == key, DailyFigure.day == day))}
        differences += _differences(key, day, kept, counted)
    return differences


def _differences(regimen: str, day: date, kept: Mapping[Key, int], counted: Mapping[Key, int],
                 month: bool = False) -> list[Difference]:
    """Each figure whose kept value is not the one counted (a figure missing counts 0)."""
    return [Difference(regimen, day, figure, item, kept.get((figure, item), 0),
                       counted.get((figure, item), 0), month)
            for figure, item in sorted(set(kept) | set(counted))
            if kept.get((figure, item), 0) != counted.get((figure, item), 0)]


async def verify_months(session: AsyncSession) -> list[Difference]:
    """Compare each summed month with the sum of its kept days (which `verify_some` compares
    with the raw rows)."""
    differences = []
    for key, month in await session.execute(select(FigureMonth.regimen, FigureMonth.month)
                                            .order_by(FigureMonth.regimen, FigureMonth.month)):
        kept = {(figure, item): value for figure, item, value in await session.execute(
            select(MonthlyFigure.figure, MonthlyFigure.key, MonthlyFigure.value)
            .where(MonthlyFigure.regimen == key, MonthlyFigure.month == month))}
        days = {(figure, item): int(value) for figure, item, value
                in await session.execute(summed_months.sums(key, month))}
        differences += _differences(key, month, kept, days, month=True)
    return differences


class KeptDay(NamedTuple):
    regimen: str
    day: date
    through: datetime


async def days_to_verify(session: AsyncSession, regimens: Sequence[Regimen], now: datetime,
                         event_retention: timedelta | None) -> list[KeptDay]:
    """The days `verify_some` can check: kept days that count (rollups.kept_days), less those
    whose raw events may be gone."""
    served = {each.key: each for each in regimens}
    frozen = frozen_through(now, event_retention) or date.min
    days = []
    for key in sorted(set(await session.scalars(select(FigureDay.regimen).distinct()))):
        counting, _ = await rollups.kept_days(session, key, served.get(key), date.min, now,
                                              event_retention)
        days += [KeptDay(key, day, through) for day, through in sorted(counting.items())
                 if day > frozen]
    return days
