"""How far readers get through a regimen, for the author: `/admin`, `/admin/progress.csv` and
`regimen stats`.

Of the readers who signed up in the period (the funnel's cohort: `Progress.signed_up_at` is a
copy of the subscription's signup time), per regimen:

- per step (reading it through, then each exercise in the regimen's order): the readers who
  marked it done;
- per unit: the readers who finished it, i.e. marked done every exercise the unit holds *as
  served now* (a step of an exercise the author removed no longer counts, and a new exercise
  is not done by anyone yet; the regimen page counts the same way, service.readers.progress);
- of the readers who finished Unit 1, those who then clicked a purchase link: an exercise
  click on a non-free exercise of the regimen, or a program link from a unit's next steps, at
  or after the moment they finished the unit (the latest `done_at` of its exercises);
- per program, its conversion: the readers who clicked its purchase link (its exercises' or
  its next-step link) at or after finishing *the unit before it*, over the readers who
  finished that unit. The unit before it is the first unit whose next steps name it, else the
  unit before the first one holding one of its exercises. A program holding exercises of
  Unit 1 that no next step names has none, and gets no rate.

Why this shape: it must stay exact and fast at a million readers. Two queries per regimen, each
over the cohort's range of `ix_progress_cohort` (regimen, signed_up_at, step, subscriber_id):
per step, a GROUP BY step read from the index alone; then one pass grouped per reader, each
unit's count of steps compared to its size (and, for the units a purchase is measured from,
when the reader marked its last exercise). Only the readers who finished such a unit are
looked up further: one probe each on `ix_events_subscriber_id_kind`, answering every link
asked about that unit at once; no query reads all events. Each subscription belongs to one
regimen, so an event's subscriber tells its regimen. `count` counts one cohort (a closed day's
readers, kept by service.funnel.rollups, or today's), so each query reads a day's readers.

A PROGRAM_CLICKED event counts as a purchase link whatever its program (the regimen's page
offers only its own); an exercise click counts where the regimen serves that exercise now,
not free.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import reduce

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from service.core.content import READ_THROUGH, Regimen, Unit
from service.core.models import CLICK_KINDS, Event, EventKind, Progress
from service.funnel.figures import Figures, Key
from service.readers import progress

READ_THROUGH_TITLE = "Read the whole regimen through, once"
PROGRESS_COLUMNS = ("regimen", "kind", "key", "title", "readers", "of_readers")


@dataclass(frozen=True)
class StepDone:
    key: str  # the exercise's slug, or READ_THROUGH
    title: str
    readers: int


@dataclass(frozen=True)
class UnitFinished:
    number: int  # from 1
    title: str
    exercises: int
    readers: int


@dataclass(frozen=True)
class ProgramConversion:
    """Readers who clicked the program's purchase link after finishing the unit before it
    (`after`, a unit's number), of those who finished it; all None when it has no such unit."""

    key: str
    name: str
    after: int | None
    after_title: str | None
    finished: int | None
    clicked: int | None

    @property
    def rate(self) -> float | None:
        return self.clicked / self.finished if self.finished and self.clicked is not None \
            else None


@dataclass(frozen=True)
class HowFar:
    """One regimen's figures for the readers who signed up since `since`."""

    key: str
    title: str
    since: datetime
    # Readers who marked at least one step done (of the steps served now).
    started: int
    steps: list[StepDone]
    units: list[UnitFinished]
    # Of the readers who finished Unit 1 (units[0].readers): then clicked a purchase link.
    unit1_then_purchase: int
    programs: list[ProgramConversion]

    @property
    def unit1_finished(self) -> int:
        return self.units[0].readers

    @property
    def then_purchase_rate(self) -> float | None:
        return self.unit1_then_purchase / self.unit1_finished if self.unit1_finished else None


def unit_before(regimen: Regimen, program: str) -> int | None:
    """The index of the unit a program's conversion is measured from: the first unit whose
    next steps name it, else the one before the first unit holding one of its exercises;
    None when that would be before Unit 1, or the program is in no unit at all."""
    for index, unit in enumerate(regimen.units):
        if any(step.program == program for step in unit.next_steps):
            return index
    for index, unit in enumerate(regimen.units):
        if any(exercise.program == program for exercise in unit.exercises):
            return index - 1 if index else None
    return None


def _cohort(regimen: Regimen, since: datetime, until: datetime) -> list[ColumnElement[bool]]:
    """The index range: the regimen's rows of readers who signed up in [since, until)."""
    return [Progress.regimen == regimen.key, Progress.signed_up_at >= since,
            Progress.signed_up_at < until]


def _slugs(unit: Unit) -> list[str]:
    return [exercise.slug for exercise in unit.exercises]


async def _steps(session: AsyncSession, regimen: Regimen, since: datetime,
                 until: datetime) -> dict[str, int]:
    rows = await session.execute(
        select(Progress.step, func.count())
        .where(*_cohort(regimen, since, until), Progress.step.in_(progress.steps(regimen)))
        .group_by(Progress.step))
    return {row[0]: row[1] for row in rows}


# The links one probe answers about (bits of an INTEGER on either database).
LINKS_PER_PROBE = 30


@dataclass(frozen=True)
class _Readers:
    """What one pass over the cohort's readers counted."""

    started: int
    # Per unit (by index): the readers who finished it.
    finished: list[int]
    # Per question asked (a unit and links): per link, the readers who clicked it at or after
    # finishing the unit.
    clicked: list[list[int]]


async def _readers(session: AsyncSession, regimen: Regimen, since: datetime, until: datetime,
                   asked: list[tuple[int, list[ColumnElement[bool]]]]) -> _Readers:
    """One pass over the cohort's rows, grouped per reader: how many steps of each unit they
    marked and, for the units asked about, when they marked its last one. A reader who finished
    such a unit is then looked up on the events' subscriber index: which of the links
    (conditions on an event) asked about the unit they clicked at or after finishing it, as
    bits (link n: 2**n; at most LINKS_PER_PROBE). A correlated subquery in the select list, run
    only for those readers (CASE), so it never becomes a join that reads every event. The
    readers are finally counted per combination of answers: a few rows, and each answer
    computed once per reader."""
    units = [_slugs(unit) for unit in regimen.units]
    measured = sorted({n for n, _ in asked})
    per_reader = (
        select(Progress.subscriber_id,
               *(func.count().filter(Progress.step.in_(slugs)).label(f"n{n}")
                 for n, slugs in enumerate(units)),
               *(func.max(Progress.done_at).filter(Progress.step.in_(units[n])).label(f"at{n}")
                 for n in measured))
        .where(*_cohort(regimen, since, until), Progress.step.in_(progress.steps(regimen)))
        .group_by(Progress.subscriber_id).subquery())

    def done(n: int) -> ColumnElement[bool]:
        return per_reader.c[f"n{n}"] == len(units[n])

    def answer(n: int, links: list[ColumnElement[bool]]) -> ColumnElement[int | None]:
        bits = [func.max(case((link, 1 << bit), else_=0)) for bit, link in enumerate(links)]
        probe = (select(reduce(operator.add, bits))
                 .where(Event.subscriber_id == per_reader.c.subscriber_id,
                        Event.kind.in_(CLICK_KINDS), Event.created_at >= per_reader.c[f"at{n}"])
                 .scalar_subquery())
        return case((done(n), probe), else_=None)

    answers = select(*(case((done(n), 1), else_=0).label(f"f{n}") for n in range(len(units))),
                     *(answer(n, links).label(f"c{q}") for q, (n, links) in enumerate(asked))
                     ).subquery()
    started, finished = 0, [0] * len(units)
    clicked = [[0] * len(links) for _, links in asked]
    for row in await session.execute(select(*answers.c, func.count()).group_by(*answers.c)):
        *flags, readers = row
        started += readers
        for n in range(len(units)):
            finished[n] += readers * flags[n]
        for answered, counts in zip(flags[len(units):], clicked, strict=True):
            for bit in range(len(counts)):
                if answered is not None and answered >> bit & 1:
                    counts[bit] += readers
    return _Readers(started=started, finished=finished, clicked=clicked)


def _purchase(regimen: Regimen) -> ColumnElement[bool]:
    """Any purchase link of the regimen: a non-free exercise's, or a next step's program."""
    paid = [exercise.slug for exercise in regimen.exercises() if not exercise.is_free]
    return or_(and_(Event.kind == EventKind.EXERCISE_CLICKED, Event.exercise.in_(paid)),
               Event.kind == EventKind.PROGRAM_CLICKED)


def _program_link(regimen: Regimen, program: str) -> ColumnElement[bool]:
    """The program's purchase link: one of its exercises', or its next-step link."""
    held = [exercise.slug for exercise in regimen.exercises() if exercise.program == program]
    return or_(and_(Event.kind == EventKind.EXERCISE_CLICKED, Event.exercise.in_(held)),
               and_(Event.kind == EventKind.PROGRAM_CLICKED, Event.exercise == program))


async def count(session: AsyncSession, regimen: Regimen, since: datetime,
                until: datetime) -> Counter[Key]:
    """The regimen's progress figures (service.funnel.figures) of its readers who signed up in
    [since, until): two queries, each over the cohort's range of `ix_progress_cohort` (see
    `_readers`). Units and programs as the regimen is served now (service.funnel.rollups
    counts a day again after the regimen's shape changed)."""
    done = await _steps(session, regimen, since, until)
    if not done:
        # No step marked by these readers, so none started: the pass over them is spared.
        return Counter()
    befores = {key: unit_before(regimen, key) for key in regimen.programs}
    # The links asked about per unit measured from: any purchase link after Unit 1 (the key
    # None), each program's after the unit before it.
    asked: dict[int, list[tuple[str | None, ColumnElement[bool]]]] = {
        0: [(None, _purchase(regimen))]}
    for key, index in befores.items():
        if index is not None:
            asked.setdefault(index, []).append((key, _program_link(regimen, key)))
    questions = [(n, links[start:start + LINKS_PER_PROBE]) for n, links in asked.items()
                 for start in range(0, len(links), LINKS_PER_PROBE)]
    readers = await _readers(session, regimen, since, until,
                             [(n, [link for _, link in links]) for n, links in questions])
    counts: Counter[Key] = Counter({("step", step): n for step, n in done.items()})
    counts["started", ""] = readers.started
    counts.update({("unit_finished", str(n)): finished
                   for n, finished in enumerate(readers.finished, start=1)})
    for (_, links), numbers in zip(questions, readers.clicked, strict=True):
        for (program, _), number in zip(links, numbers, strict=True):
            counts["then_purchase" if program is None else "program_clicked",
                   program or ""] = number
    return +counts


def how_far(regimen: Regimen, since: datetime, figures: Figures) -> HowFar:
    """The regimen's figures for its readers who signed up since `since`, from their counts
    (service.funnel.rollups.read)."""
    finished = [figures["unit_finished", str(n)] for n in range(1, len(regimen.units) + 1)]
    programs = []
    for key, program in regimen.programs.items():
        index = unit_before(regimen, key)
        programs.append(ProgramConversion(
            key=key, name=program.name, after=None if index is None else index + 1,
            after_title=None if index is None else regimen.units[index].title,
            finished=None if index is None else finished[index],
            clicked=None if index is None else figures["program_clicked", key]))
    return HowFar(
        key=regimen.key, title=regimen.title, since=since, started=figures["started", ""],
        steps=[StepDone(READ_THROUGH, READ_THROUGH_TITLE, figures["step", READ_THROUGH]),
               *(StepDone(e.slug, e.title, figures["step", e.slug])
                 for e in regimen.exercises())],
        units=[UnitFinished(number=n, title=unit.title, exercises=len(unit.exercises),
                            readers=finished[n - 1])
               for n, unit in enumerate(regimen.units, start=1)],
        unit1_then_purchase=figures["then_purchase", ""], programs=programs)


def how_far_each(regimens: Sequence[Regimen], since: datetime,
                 figures: Mapping[str, Figures]) -> list[HowFar]:
    """`how_far` of each regimen in turn (the one shown, or every one served)."""
    return [how_far(regimen, since, figures.get(regimen.key, Figures())) for regimen in regimens]


NO_UNIT_BEFORE = "no unit before it (it holds exercises of Unit 1 and no next step names it)"


def rows(figures: HowFar) -> list[tuple[str, str, str, str, int | str, int | str]]:
    """The CSV's rows (PROGRESS_COLUMNS), one per figure: `of_readers` is whom `readers` is a
    part of: the readers who marked any step (steps, units), who finished Unit 1 (then
    clicked a purchase link), who finished the unit before the program (empty: none)."""
    out: list[tuple[str, str, str, str, int | str, int | str]] = []
    out += [(figures.key, "step", s.key, s.title, s.readers, figures.started)
            for s in figures.steps]
    out += [(figures.key, "unit", str(u.number), u.title, u.readers, figures.started)
            for u in figures.units]
    out.append((figures.key, "unit1_then_purchase", "1", figures.units[0].title,
                figures.unit1_then_purchase, figures.unit1_finished))
    out += [(figures.key, "program", p.key, p.name,
             "" if p.clicked is None else p.clicked, "" if p.finished is None else p.finished)
            for p in figures.programs]
    return out


def _share(part: int, whole: int | None) -> str:
    return "–" if not whole else f"{part / whole:.0%}"


def _line(label: str, number: int, note: str = "") -> str:
    return f"{label:<62} {number:>7}  {note}".rstrip()


def table(figures: HowFar) -> list[str]:
    """The figures as lines of text, for `regimen stats`."""
    started = figures.started
    lines = [f"How far readers get: {figures.title} ({figures.key})",
             "Of the readers who signed up in these days:",
             _line("  marked at least one step done", started),
             "  each step marked done (and the share of those who marked any):"]
    lines += [_line(f"    {s.title}", s.readers, _share(s.readers, started))
              for s in figures.steps]
    lines.append("  each unit finished, every exercise it holds now marked done:")
    lines += [_line(f"    {u.title}", u.readers, _share(u.readers, started))
              for u in figures.units]
    lines += [_line("  finished Unit 1, then clicked a purchase link",
                    figures.unit1_then_purchase,
                    f"{_share(figures.unit1_then_purchase, figures.unit1_finished)} of "
                    f"{figures.unit1_finished}"),
              "  each program: clicked its purchase link after finishing the unit before it:"]
    for p in figures.programs:
        if p.finished is None or p.clicked is None:
            lines.append(f"    {p.name}: {NO_UNIT_BEFORE}, no rate")
        else:
            lines.append(_line(f"    {p.name}, after Unit {p.after}", p.clicked,
                               f"{_share(p.clicked, p.finished)} of {p.finished}"))
    return lines
