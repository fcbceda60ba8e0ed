"""The reader's progress through a regimen: the steps they marked done on their regimen page,
and what follows from them: the step to continue with, each unit's count, and the author's
next steps once a unit is done.

The steps are the page's first one (reading the regimen through, as the post asks) and then
each exercise, in the regimen's order. Only a button press (a POST) marks or unmarks one:
mail scanners open every page they find, and must change nothing. Progress belongs to the
subscription (an address's to one regimen): it is exported with it, deleted with it (the
foreign key cascades), and never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.core import stale_figures
from service.core.bulk import insert_rows
from service.core.content import READ_THROUGH, Exercise, Regimen, Unit
from service.core.models import Progress, Subscriber, table_of


def steps(regimen: Regimen) -> list[str]:
    """What can be marked done on the regimen's page, in its order: reading it through, then
    each exercise."""
    return [READ_THROUGH, *(exercise.slug for exercise in regimen.exercises())]


def is_step(regimen: Regimen, step: str) -> bool:
    return step in steps(regimen)


async def done_steps(session: AsyncSession, subscriber: Subscriber) -> frozenset[str]:
    """The steps the subscription's reader has marked done (also those of exercises the author
    has since removed: `standing` leaves them out)."""
    return frozenset(await session.scalars(
        select(Progress.step).where(Progress.subscriber_id == subscriber.id)))


async def done_by_subscriber(session: AsyncSession,
                             subscriber_ids: set[int]) -> dict[int, frozenset[str]]:
    """`done_steps` of several subscriptions in one query."""
    if not subscriber_ids:
        return {}
    grouped: dict[int, set[str]] = {}
    for subscriber_id, step in await session.execute(
            select(Progress.subscriber_id, Progress.step)
            .where(Progress.subscriber_id.in_(subscriber_ids))):
        grouped.setdefault(subscriber_id, set()).add(step)
    return {subscriber_id: frozenset(steps) for subscriber_id, steps in grouped.items()}


async def mark(session: AsyncSession, subscriber: Subscriber, step: str, done: bool,
               now: datetime) -> None:
    """Mark `step` done, or not done. Either is idempotent: a button pressed twice, or two tabs
    pressing it at once, leave the state asked for (the first time marked done is kept)."""
    stale_figures.note_reader(session, subscriber)
    if done:
        row = {"subscriber_id": subscriber.id, "step": step, "regimen": subscriber.regimen,
               "signed_up_at": subscriber.created_at, "done_at": now}
        await session.run_sync(lambda sync: insert_rows(
            sync, table_of(Progress), [row], skip_duplicates_of=("subscriber_id", "step")))
    else:
        await session.execute(delete(Progress).where(Progress.subscriber_id == subscriber.id,
                                                     Progress.step == step))
    await session.flush()


@dataclass(frozen=True)
class UnitProgress:
    unit: Unit
    # The unit's place in the regimen, from 1.
    number: int
    done: int

    @property
    def total(self) -> int:
        return len(self.unit.exercises)

    @property
    def finished(self) -> bool:
        return self.done == self.total


@dataclass(frozen=True)
class Standing:
    """Where a reader stands in a regimen, as their page shows it."""

    done: frozenset[str]
    units: tuple[UnitProgress, ...]

    @property
    def read_through(self) -> bool:
        return READ_THROUGH in self.done

    @property
    def continue_with(self) -> Exercise | None:
        """The first exercise not done, in the regimen's order (None: every one is done). The
        page offers reading it through first, while that is not done."""
        return next((exercise for each in self.units for exercise in each.unit.exercises
                     if exercise.slug not in self.done), None)

    @property
    def started(self) -> bool:
        return bool(self.done)

    @property
    def next_steps_of(self) -> UnitProgress | None:
        """The furthest unit the reader has finished that has next steps, which the page
        offers (e.g. after Unit 1: the program that holds Unit 2, or a consultation)."""
        finished = [each for each in self.units if each.finished and each.unit.next_steps]
        return finished[-1] if finished else None


def standing(regimen: Regimen, done: frozenset[str]) -> Standing:
    """The reader's standing in `regimen` as served now: steps of exercises the author removed
    no longer count, and a new exercise counts as not done yet."""
    # Readers share a few dozen standings at most, and a burst of lessons asks for one per
    # reader twice (scheduling, then sending): worked out once per regimen and steps done.
    key = (id(regimen), done)
    known = _standings.get(key)
    if known is not None and known[0] is regimen:
        return known[1]
    if len(_standings) >= _STANDINGS_KEPT:
        _standings.clear()
    done_now = done & set(steps(regimen))
    found = Standing(done=done_now, units=tuple(
        UnitProgress(unit=unit, number=n,
                     done=sum(exercise.slug in done_now for exercise in unit.exercises))
        for n, unit in enumerate(regimen.units, start=1)))
    # The regimen is kept with its standing: an edited regimen is a new object, and a new
    # object may be given the id of one gone.
    _standings[key] = (regimen, found)
    return found


_STANDINGS_KEPT = 4096
_standings: dict[tuple[int, frozenset[str]], tuple[Regimen, Standing]] = {}
