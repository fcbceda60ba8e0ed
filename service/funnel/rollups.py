"""The author's figures kept per regimen and signup day, so a year's view reads a year of days
rather than a year of readers.

Every figure of a period is of the readers who signed up in it (service.funnel.figures), so a
period's figures are the sum of its days'. Every minute the worker counts the days from
the raw rows (`count`, the same functions a view uses on what is not kept;
service.funnel.upkeep) and keeps the counts: `daily_figures`, one row per figure, and
`figure_days`, which days are kept and up to when (`through`: the next midnight for a day that
is over, a few minutes ago for today). A view then adds:

- the kept days of the period, summed in SQL (the figures shown only for a whole period from
  each whole month's sums, service.funnel.summed_months, and the other days' rows);
- the readers no kept day holds (those who signed up since the worker last counted today, and
  those of any day not kept yet or kept for another shape of the regimen), counted from the
  raw rows as before there were rollups.

A reader may still do something that counts after their day was counted (confirm weeks later,
click, mark a step, get a lesson, stop, be erased): whatever records it also notes their day in
the same transaction (service.core.stale_figures), and the worker's next pass counts that day
again: such a change shows within a pass, and after each pass the kept figures are what
counting the raw rows gives. `regimen stats --verify` checks it, `--rebuild` starts again from
the raw rows.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta

from sqlalchemy import Executable, and_, case, func, or_, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.content import Regimen
from service.core.models import DailyFigure, FigureDay, MonthlyFigure, Subscriber
from service.funnel import lesson_stats, progress_stats, stats, summed_months
from service.funnel.figures import SERIES, Figures, Key, as_date, day_start


def shape(regimen: Regimen | None) -> str:
    """A fingerprint of what the figures depend on in a regimen's content: its units, their
    exercises (free or whose program), their next steps' programs, its lessons. Wording is not
    part of it."""
    if regimen is None:
        return ""
    units = [[[e.slug, e.is_free, e.program] for e in unit.exercises]
             + [[step.program for step in unit.next_steps]] for unit in regimen.units]
    lessons = [each.key for each in regimen.lessons]
    text_ = json.dumps([units, sorted(regimen.programs), lessons], sort_keys=True)
    return hashlib.sha256(text_.encode()).hexdigest()[:16]


async def plan_for_few_rows(session: AsyncSession) -> None:
    """PostgreSQL settings for the rest of the transaction, for queries that each read a few
    thousand rows: a day's readers, or the kept rows of a year (measured at a million readers,
    bench/scale.py):

    - a plan made for the days asked (`force_custom_plan`): a statement is prepared once per
      connection, and after five runs PostgreSQL may keep a generic plan, made without knowing
      the bounds; a plan made for a year's readers then served a day's;
    - no JIT: the planner costs the progress figures' events probes as if every reader were
      looked up (it cannot know how few finished a unit), which crosses `jit_above_cost`, and
      compiling then took ~300 ms for a query that runs in ~90;
    - no parallel workers: starting them cost ~5 ms a query, each of which runs in one or two;
    - a grouping per reader in memory (16 MB for one query's hash table, not the default 4 MB):
      a month of readers otherwise spilled to a sort on disk."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text(
            "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
            "set_config('jit', 'off', true), set_config('work_mem', '16MB', true), "
            "set_config('max_parallel_workers_per_gather', '0', true)"))


async def count(session: AsyncSession, key: str, content: Regimen | None, start: datetime,
                end: datetime, scanner_window: timedelta) -> Figures:
    """Every figure of the regimen `key` for its readers who signed up in [start, end), counted
    from the raw rows. `content`: the regimen as served now (None for a regimen no longer
    served: its funnel figures only)."""
    await plan_for_few_rows(session)
    figures = await stats.count(session, key, start, end)
    rest: Counter[Key] = Counter()
    if content is not None:
        rest.update(await lesson_stats.count(session, key, [each.key for each in content.lessons],
                                             start, end, scanner_window))
        rest.update(await progress_stats.count(session, content, start, end))
    if rest:
        # Figures shown only for a whole period: filed under the first day, so a day's count is
        # that day's.
        figures.add_day(start.date(), rest)
    return figures


def frozen_through(now: datetime, event_retention: timedelta | None) -> date | None:
    """The last signup day whose readers' events may have been deleted (service.funnel.upkeep):
    its kept figures stand, whatever the regimen's shape now."""
    return None if event_retention is None else (now - event_retention).date()


async def kept_days(session: AsyncSession, key: str, content: Regimen | None, since: date,
                    now: datetime, event_retention: timedelta | None,
                    ) -> tuple[dict[date, datetime], list[date]]:
    """The regimen's kept days from `since` on: those that count (kept for its shape now, or
    too old to count again), each with up to when it was counted; and those that do not."""
    current, frozen = shape(content), frozen_through(now, event_retention) or date.min
    counting: dict[date, datetime] = {}
    not_counting: list[date] = []
    for day, through, kept_shape in await session.execute(
            select(FigureDay.day, FigureDay.through, FigureDay.shape)
            .where(FigureDay.regimen == key, FigureDay.day >= since)):
        if kept_shape == current or day <= frozen:
            counting[day] = through
        else:
            not_counting.append(day)
    return counting, not_counting


def _uncounted(first: date, now: datetime,
               kept: Mapping[date, datetime]) -> list[tuple[datetime, datetime]]:
    """The spans of signup times from `first`'s day to `now`'s that no kept day holds, as
    [start, end) spans, each as long as it can be (consecutive days not kept are one)."""
    spans: list[tuple[datetime, datetime]] = []
    for n in range((now.date() - first).days + 1):
        day = first + timedelta(days=n)
        start, end = kept.get(day, day_start(day)), day_start(day + timedelta(days=1))
        if start >= end:
            continue
        if spans and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


async def read(session: AsyncSession, regimens: Sequence[Regimen], regimen: str | None,
               since: datetime, now: datetime, scanner_window: timedelta,
               event_retention: timedelta | None = None) -> dict[str, Figures]:
    """The figures of the period from `since`'s day to `now`'s, per regimen: the one whose key
    is `regimen`, or every one (None: those served, and any other with kept days or readers
    today). Kept days and months are summed in SQL; the readers no kept day holds (those of
    today since the worker last counted it, of a day not kept yet) are counted from the raw
    rows."""
    await plan_for_few_rows(session)
    served = {each.key: each for each in regimens}
    keys = [regimen] if regimen is not None else await keys_of(session, regimens, since, now)
    first = since.date()
    out: dict[str, Figures] = {}
    for key in keys:
        figures = Figures()
        through, not_counting = await kept_days(session, key, served.get(key), first, now,
                                                event_retention)
        months = await summed_months.to_read(session, key, first, through)
        # Read on the connection: a year is thousands of plain rows, which the ORM's result
        # handling would take longer over than the database (measured: ~25 ms of 160).
        connection = await session.connection()
        for row in await connection.execute(_daily_series(key, first, not_counting)):
            counts = Counter({(name, ""): int(value)
                              for name, value in zip(SERIES, row[1:], strict=True) if value})
            figures.days[as_date(row[0])].update(counts)
            figures.total.update(counts)
        for name, item, total in await connection.execute(
                _period_sums(key, first, now.date(), not_counting, months)):
            figures.total[name, item] += int(total)
        for start, end in _uncounted(first, now, through):
            figures.add(await count(session, key, served.get(key), start, end, scanner_window))
        out[key] = figures
    return out


def _daily_series(key: str, first: date, not_counting: Sequence[date]) -> Executable:
    """The kept days' daily figures from `first` on, a row a day (through the index by figure
    and day: six rows a day, not the day's every figure)."""
    return (select(DailyFigure.day,
                   *(func.sum(case((DailyFigure.figure == name, DailyFigure.value)))
                     for name in SERIES))
            .where(DailyFigure.regimen == key, DailyFigure.figure.in_(SERIES),
                   DailyFigure.day >= first,
                   *([DailyFigure.day.not_in(not_counting)] if not_counting else []))
            .group_by(DailyFigure.day))


def _period_sums(key: str, first: date, today: date, not_counting: Sequence[date],
                 months: Sequence[date]) -> Executable:
    """Every other figure of the period, summed: over the `months` kept whole from their sums,
    over the other kept days from their rows."""
    spans = summed_months.outside(first, today + timedelta(days=1), months)
    days = (select(DailyFigure.figure, DailyFigure.key, func.sum(DailyFigure.value))
            .where(DailyFigure.regimen == key, DailyFigure.figure.not_in(SERIES),
                   or_(*(and_(DailyFigure.day >= start, DailyFigure.day < end)
                         for start, end in spans)),
                   *([DailyFigure.day.not_in(not_counting)] if not_counting else []))
            .group_by(DailyFigure.figure, DailyFigure.key))
    if not months:
        return days
    summed = (select(MonthlyFigure.figure, MonthlyFigure.key, func.sum(MonthlyFigure.value))
              .where(MonthlyFigure.regimen == key, MonthlyFigure.month.in_(months))
              .group_by(MonthlyFigure.figure, MonthlyFigure.key))
    return union_all(days, summed)


async def keys_of(session: AsyncSession, regimens: Sequence[Regimen], since: datetime,
                  now: datetime) -> list[str]:
    """Every regimen with figures in the period: those served (`regimens`, in their order),
    then any other with kept days, or with readers today."""
    served = [each.key for each in regimens]
    kept = await session.scalars(select(FigureDay.regimen).where(FigureDay.day >= since.date())
                                 .distinct())
    today = await session.scalars(select(Subscriber.regimen)
                                  .where(Subscriber.created_at >= day_start(now.date())).distinct())
    return [*served, *sorted({*kept, *today} - set(served))]
