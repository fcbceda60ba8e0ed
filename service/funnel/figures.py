"""The author's figures as counts that add up: each figure of a regimen's readers who signed up
in some days, named by a figure and a key (e.g. ("confirmed", ""), ("exercise_clicks",
"gentle-back"), ("lesson_sent", "day-2")).

Every figure counts readers of a cohort (those who signed up in the days), or what they did, so
the figures of two sets of days add up to those of both: the daily rows kept by
service.funnel.rollups are summed, and today's (counted from the raw rows) added.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

Key = tuple[str, str]

# The figures shown per signup day (the funnel's daily series; "all_exercise_clicks" is the
# sum of each exercise's "exercise_clicks", kept so that a year's series is 6 rows a day);
# every other figure is only ever shown for the whole period.
DAILY = frozenset({"signups", "confirmed", "stopped_at_button", "regimen_opened", "clicked",
                   "all_exercise_clicks"})
# The daily figures in a fixed order, as columns of a row a day.
SERIES = sorted(DAILY)


@dataclass
class Figures:
    """One regimen's figures over some signup days: per day for the daily ones, summed for all."""

    days: defaultdict[date, Counter[Key]] = field(default_factory=lambda: defaultdict(Counter))
    total: Counter[Key] = field(default_factory=Counter)

    def add_day(self, day: date, counts: Counter[Key]) -> None:
        """Every figure of one signup day."""
        self.total.update(counts)
        self.days[day].update({key: n for key, n in counts.items() if key[0] in DAILY})

    def add(self, other: Figures) -> None:
        self.total.update(other.total)
        for day, counts in other.days.items():
            self.days[day].update(counts)

    def __getitem__(self, key: Key) -> int:
        return self.total[key]

    def keyed(self, figure: str) -> dict[str, int]:
        """A figure's count per key, e.g. each exercise's clicks."""
        return {key: n for (name, key), n in self.total.items() if name == figure}


def as_date(value: object) -> date:
    """A day as read back from the database: a date on PostgreSQL, ISO text from SQLite's
    date() function."""
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def day_start(day: date) -> datetime:
    """The first moment of `day`, UTC."""
    return datetime.combine(day, time.min, tzinfo=UTC)
