"""The author's figures kept per regimen and signup day, so a year's view reads a year of days
rather than a year of readers.

Every figure of a period is of the readers who signed up in it (service.funnel.figures), so a
period's figures are the sum of its days'. Once a day is over, the worker counts it from the raw
rows (`count`, the same functions the live view uses; service.funnel.upkeep) and keeps the
counts (`daily_figures`, one row per figure, and `figure_days`, which days are kept). A view
then adds:

- the kept days of the period, summed in SQL;
- the rest (today, and any day not kept yet or kept for another shape of the regimen) counted
  from the raw rows, as before there were rollups.

A reader of a closed day may still do something that counts (confirm weeks later, click, mark a
step, get a lesson, stop, be erased): whatever records it also notes the day as stale in the
same transaction (service.core.stale_figures), and the worker counts that day again. So the
kept figures are always what counting the raw rows gives; `verify` checks it, `rebuild` starts
again from the raw rows.

"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.content import Regimen
from service.core.models import DailyFigure, FigureDay, Subscriber
from service.core.stale_figures import midnight
from service.funnel import lesson_stats, progress_stats, stats
from service.funnel.figures import DAILY, Figures, Key


def shape(regimen: Regimen | None) -> str:
    """A fingerprint of what the figures depend on in a regimen's content: its units, their
    exercises (free or whose program), their next steps' programs. Wording is not part of it."""
    if regimen is None:
        return ""
    units = [[[e.slug, e.is_free, e.program] for e in unit.exercises]
             + [[step.program for step in unit.next_steps]] for unit in regimen.units]
    text_ = json.dumps([units, sorted(regimen.programs)], sort_keys=True)
    return hashlib.sha256(text_.encode()).hexdigest()[:16]


def _as_date(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


async def count(session: AsyncSession, key: str, content: Regimen | None, first: date,
                last: date, scanner_window: timedelta) -> Figures:
    """Every figure of the regimen `key` for its readers who signed up from `first` to `last`
    (both included), counted from the raw rows. `content`: the regimen as served now (None for
    a regimen no longer served: its funnel figures only)."""
    start, end = _start(first), _start(last + timedelta(days=1))
    figures = await stats.count(session, key, start, end)
    rest: Counter[Key] = await lesson_stats.count(session, key, start, end, scanner_window)
    if content is not None:
        rest.update(await progress_stats.count(session, content, start, end))
    if rest:
        # Figures shown only for a whole period: filed under the first day, so a one-day count
        # is that day's.
        figures.add_day(first, rest)
    return figures


def _runs(days: list[date]) -> list[tuple[date, date]]:
    """Consecutive days as (first, last) runs."""
    runs: list[tuple[date, date]] = []
    for day in sorted(days):
        if runs and runs[-1][1] + timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def frozen_through(now: datetime, event_retention: timedelta | None) -> date | None:
    """The last signup day whose readers' events may have been deleted (service.funnel.upkeep):
    its kept figures stand, whatever the regimen's shape now."""
    return None if event_retention is None else (now - event_retention).date()


async def read(session: AsyncSession, regimens: Sequence[Regimen], regimen: str | None,
               since: datetime, now: datetime, scanner_window: timedelta,
               event_retention: timedelta | None = None) -> dict[str, Figures]:
    """The figures of the period from `since`'s day to `now`'s, per regimen: the one whose key
    is `regimen`, or every one (None: those served, and any other with kept days or readers
    today). Kept days are summed in SQL; the other days are counted from the raw rows."""
    served = {each.key: each for each in regimens}
    keys = [regimen] if regimen is not None else await _keys(session, served, since, now)
    first, today = since.date(), now.date()
    out: dict[str, Figures] = {}
    for key in keys:
        figures = Figures()
        kept = (FigureDay.regimen == key, FigureDay.day >= first,
                or_(FigureDay.shape == shape(served.get(key)),
                    FigureDay.day <= (frozen_through(now, event_retention) or date.min)))
        joined = select(DailyFigure.figure, DailyFigure.key, DailyFigure.value,
                        DailyFigure.day).join(FigureDay, (FigureDay.regimen == DailyFigure.regimen)
                                              & (FigureDay.day == DailyFigure.day)).where(*kept)
        rows = joined.subquery()
        for name, item, total in await session.execute(
                select(rows.c.figure, rows.c.key, func.sum(rows.c.value))
                .group_by(rows.c.figure, rows.c.key)):
            figures.total[name, item] += int(total)
        # The daily figures per day, each exercise's clicks summed (the series shows them so).
        for day, name, total in await session.execute(
                select(rows.c.day, rows.c.figure, func.sum(rows.c.value))
                .where(rows.c.figure.in_(sorted(DAILY))).group_by(rows.c.day, rows.c.figure)):
            figures.days[_as_date(day)][name, ""] += int(total)
        counted = set(await session.scalars(select(FigureDay.day).where(*kept)))
        missing = [first + timedelta(days=n) for n in range((today - first).days + 1)
                   if first + timedelta(days=n) not in counted]
        for run_first, run_last in _runs(missing):
            figures.add(await count(session, key, served.get(key), run_first, run_last,
                                    scanner_window))
        out[key] = figures
    return out


async def _keys(session: AsyncSession, served: Mapping[str, Regimen], since: datetime,
                now: datetime) -> list[str]:
    """Every regimen with figures in the period: those served (in their order), then any
    other with kept days, or with readers today."""
    kept = await session.scalars(select(FigureDay.regimen).where(FigureDay.day >= since.date())
                                 .distinct())
    today = await session.scalars(select(Subscriber.regimen)
                                  .where(Subscriber.created_at >= midnight(now)).distinct())
    return [*served, *sorted({*kept, *today} - set(served))]
