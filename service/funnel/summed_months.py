"""The author's figures summed per calendar month (`figure_months`, `monthly_figures`): a year's
view reads twelve months of the figures shown only for a whole period (sources, clicks,
progress, lessons) rather than 365 days of them. service.funnel.upkeep makes them,
service.funnel.rollups reads them.

A month is summed from its kept days' rows once every one of its days is kept whole; counting
one of its days again lets the month's sums go (`forget`) until all its days are kept again. So
a month's sums are always those of its days' rows as they are now.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta

from sqlalchemy import Select, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.models import DailyFigure, FigureDay, FigureMonth, MonthlyFigure
from service.funnel.figures import SERIES, day_start


def month_of(day: date) -> date:
    """The first day of `day`'s month."""
    return day.replace(day=1)


def next_month(month: date) -> date:
    return month_of(month + timedelta(days=32))


def days_of(month: date) -> list[date]:
    return [month + timedelta(days=n) for n in range((next_month(month) - month).days)]


def sums(key: str, month: date) -> Select[str, str, int]:
    """A month's sums, from its days' kept rows: the figures shown only for a whole period."""
    return (select(DailyFigure.figure, DailyFigure.key, func.sum(DailyFigure.value))
            .where(DailyFigure.regimen == key, DailyFigure.day >= month,
                   DailyFigure.day < next_month(month), DailyFigure.figure.not_in(SERIES))
            .group_by(DailyFigure.figure, DailyFigure.key))


async def sum_whole(session: AsyncSession, key: str) -> int:
    """Sum each month of the regimen whose days are all kept whole and that is not summed yet;
    return how many months."""
    whole = {day for day, until in await session.execute(
        select(FigureDay.day, FigureDay.through).where(FigureDay.regimen == key))
        if until >= day_start(day + timedelta(days=1))}
    summed = set(await session.scalars(select(FigureMonth.month)
                                       .where(FigureMonth.regimen == key)))
    months = [month for month in sorted({month_of(day) for day in whole} - summed)
              if all(day in whole for day in days_of(month))]
    for month in months:
        rows = [{"regimen": key, "month": month, "figure": figure, "key": item, "value": value}
                for figure, item, value in await session.execute(sums(key, month))]
        if rows:
            await session.execute(insert(MonthlyFigure), rows)
        session.add(FigureMonth(regimen=key, month=month))
    await session.flush()
    return len(months)


async def forget(session: AsyncSession, regimen: str, day: date) -> None:
    """`day`'s month is no longer summed (its day is about to be counted again)."""
    for table in (MonthlyFigure, FigureMonth):
        await session.execute(delete(table).where(table.regimen == regimen,
                                                  table.month == month_of(day)))


async def to_read(session: AsyncSession, key: str, first: date,
                  counting: Mapping[date, datetime]) -> list[date]:
    """The months from `first` on that are summed and whose days all count (`counting`, from
    service.funnel.rollups.kept_days): a day kept for another shape of the regimen does not
    count, nor then does its month's sum."""
    summed = await session.scalars(select(FigureMonth.month).where(
        FigureMonth.regimen == key, FigureMonth.month >= first))
    return sorted(month for month in summed
                  if all(day in counting for day in days_of(month)))


def outside(first: date, end: date, months: Sequence[date]) -> list[tuple[date, date]]:
    """The spans of days from `first` to `end` (exclusive) outside `months` (sorted), as
    [start, end) spans."""
    spans: list[tuple[date, date]] = []
    start = first
    for month in months:
        if month > start:
            spans.append((start, month))
        start = max(start, next_month(month))
    if start < end:
        spans.append((start, end))
    return spans
