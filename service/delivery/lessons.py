"""Scheduling the lessons: each reader who agreed to them gets each lesson of their regimen
once, at the hour of day they confirmed, unless their progress makes it pointless.

How a subscription is looked at. Confirming with lessons promised sets `next_lesson_at`; the
worker takes the subscriptions whose `next_lesson_at` has come (an index on that column alone:
no reader who has nothing due is ever read), settles what is due for each, and sets the time
to look again (NULL once nothing is left). Settling a lesson writes its `LessonDelivery` row
(queued, or skipped and why) and, when queued, its outbox row in the same transaction; the
row's primary key makes a second settling of the same lesson impossible, and the outbox row
is only written for a delivery row this transaction inserted. So a fleet of workers sends each
lesson once per reader; the outbox's lease and idempotency key take it from there.

The rules, each decided when the lesson comes due (`plan`):

- A lesson is due `after` days after the reader confirmed: the same hour of day. One found
  more than `LATE` after that hour (the worker was down) waits for that hour the next day,
  rather than waking the reader at night. At most one lesson a reader a day.
- Skipped: once the reader marked its `about` exercise done, once they finished its
  `skip_if` unit, or once they followed a purchase link of every program it links to.
- The file may change while readers wait. A removed lesson is sent to nobody who has not
  had it (a queued one is cancelled when its turn comes, service.delivery.sending). A new
  lesson goes to readers whose delay for it had not passed when the worker first saw it
  (`LessonSeen`). A changed delay applies to everyone still waiting for that lesson. Either
  change makes the worker look again at the readers who may still be waiting
  (`note_content`).
- Only readers who confirmed on a page that said lessons follow, who are still subscribed,
  have not stopped the lessons and whose address is not suppressed.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.core import outbox, stale_figures
from service.core.bulk import among, insert_rows, on_postgresql
from service.core.content import Catalog, Regimen
from service.core.database import planned_with
from service.core.lessons import Lesson
from service.core.models import (
    CLICK_KINDS,
    Event,
    LessonDelivery,
    LessonOutcome,
    LessonSeen,
    MailKind,
    Progress,
    Reader,
    Subscriber,
    SubscriberStatus,
    table_of,
)
from service.readers.progress import Standing, standing

# A lesson found this long after its hour waits for the same hour the next day.
LATE = timedelta(hours=3)
DAY = timedelta(days=1)
# Where the scheduler looks again at a reader whose regimen is not in the content just now
# (a file being renamed or saved anew): soon, and nothing is lost meanwhile.
REGIMEN_AWAY = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Skip(enum.StrEnum):
    EXERCISE_DONE = "exercise_done"
    UNIT_DONE = "unit_done"
    PROGRAM_CLICKED = "program_clicked"


@dataclass
class Plan:
    """What to do for one subscription now."""

    send: Lesson | None = None
    skipped: list[tuple[Lesson, Skip]] = field(default_factory=list)
    # When to look at the subscription again; None: nothing is left to send.
    next_at: datetime | None = None


@dataclass(frozen=True)
class ReaderState:
    """What the rules read about one subscription."""

    confirmed_at: datetime
    settled: frozenset[str]
    done: frozenset[str]
    programs_clicked: frozenset[str]


def plan(regimen: Regimen, reader: ReaderState, first_seen: dict[str, datetime],
         now: datetime) -> Plan:
    """The rules of the module's docstring for one subscription (pure: no database)."""
    # Each waiting lesson with when it is due, soonest first.
    waiting = sorted(((reader.confirmed_at + lesson.delay, lesson) for lesson in regimen.lessons
                      if lesson.key not in reader.settled),
                     key=lambda pair: pair[0])
    waiting = [(due, lesson) for due, lesson in waiting
               if due >= first_seen.get(lesson.key, EPOCH)]
    result = Plan()
    standing_now = None
    for due, lesson in waiting:
        if due > now:
            break
        if standing_now is None:
            standing_now = standing(regimen, reader.done)
        reason = _skip_reason(lesson, standing_now, reader)
        if reason is not None:
            result.skipped.append((lesson, reason))
            continue
        # The reader's hour on the latest day it has passed.
        hour = due + DAY * ((now - due) // DAY)
        if now - hour <= LATE:
            result.send = lesson
        else:
            result.next_at = hour + DAY
        break
    settled_now = {lesson.key for lesson, _ in result.skipped}
    if result.send is not None:
        settled_now.add(result.send.key)
    later = [due for due, lesson in waiting if lesson.key not in settled_now]
    if result.next_at is None and later:
        result.next_at = max(min(later), now + DAY) if result.send is not None else min(later)
    return result


def _skip_reason(lesson: Lesson, standing_now: Standing,
                 reader: ReaderState) -> Skip | None:
    if lesson.about is not None and lesson.about in standing_now.done:
        return Skip.EXERCISE_DONE
    if lesson.skip_if is not None and \
            standing_now.units[lesson.skip_if.unit_done - 1].finished:
        return Skip.UNIT_DONE
    pitched = set(lesson.programs())
    if pitched and pitched <= reader.programs_clicked:
        return Skip.PROGRAM_CLICKED
    return None


def outbox_key(public_id: str, lesson: str) -> str:
    """The lesson mail's idempotency key (its Message-ID): the same for the same reader and
    lesson, whichever worker queues it."""
    return hashlib.sha256(f"lesson:{public_id}:{lesson}".encode()).hexdigest()[:32]


async def note_content(session: AsyncSession, catalog: Catalog, now: datetime) -> int:
    """Record the lessons seen for the first time and the delays changed since last seen; for
    each regimen with such a change, look again now at its readers who may still be waiting
    for one of its lessons. Returns how many were looked at again."""
    seen = {(regimen, lesson): after for regimen, lesson, after in await session.execute(
        select(LessonSeen.regimen, LessonSeen.lesson, LessonSeen.after_days))}
    changed: list[Regimen] = []
    new_rows = []
    regimens_seen = {regimen for regimen, _ in seen}
    for regimen in catalog.regimens.values():
        touched = False
        # A regimen's first lessons were promised to every reader who agreed to lessons:
        # nobody agreed before there were any. Only a lesson added later is new to some.
        first_seen = now if regimen.key in regimens_seen else EPOCH
        for lesson in regimen.lessons:
            before = seen.get((regimen.key, lesson.key))
            if before is None:
                new_rows.append({"regimen": regimen.key, "lesson": lesson.key,
                                 "first_seen_at": first_seen, "after_days": lesson.after})
                touched = True
            elif before != lesson.after:
                await session.execute(
                    update(LessonSeen).where(LessonSeen.regimen == regimen.key,
                                             LessonSeen.lesson == lesson.key)
                    .values(after_days=lesson.after))
                touched = True
        if touched:
            changed.append(regimen)
    if new_rows:
        await session.run_sync(lambda sync: insert_rows(
            sync, table_of(LessonSeen), new_rows, skip_duplicates_of=("regimen", "lesson")))
    looked_again = 0
    for regimen in changed:
        # Readers who confirmed within the longest delay (and a day, for the hour's slack):
        # a range on the confirmation's index.
        longest = max(lesson.delay for lesson in regimen.lessons) + DAY
        result = await session.execute(
            update(Subscriber)
            .where(Subscriber.confirmed_at >= now - longest, Subscriber.regimen == regimen.key,
                   Subscriber.lessons_consented_at.is_not(None),
                   Subscriber.lessons_stopped_at.is_(None),
                   Subscriber.status == SubscriberStatus.CONFIRMED,
                   (Subscriber.next_lesson_at.is_(None)) | (Subscriber.next_lesson_at > now))
            .values(next_lesson_at=now).execution_options(synchronize_session=False))
        looked_again += getattr(result, "rowcount", 0) or 0
    await session.flush()
    return looked_again


class _Due(NamedTuple):
    """What the scheduler reads of a subscription whose time has come."""

    id: int
    public_id: str
    regimen: str
    status: SubscriberStatus
    lessons_consented_at: datetime | None
    lessons_stopped_at: datetime | None
    suppressed_at: datetime | None
    created_at: datetime

    @property
    def may_get_lessons(self) -> bool:
        return (self.status is SubscriberStatus.CONFIRMED
                and self.lessons_consented_at is not None
                and self.lessons_stopped_at is None and self.suppressed_at is None)


async def queue_due(session: AsyncSession, catalog: Catalog, now: datetime,
                    limit: int) -> int:
    """Settle the lessons due for up to `limit` subscriptions whose time to be looked at has
    come; return how many subscriptions were looked at (fewer than `limit`: none are left)."""
    query = (select(Subscriber.id, Subscriber.public_id, Subscriber.regimen, Subscriber.status,
                    Subscriber.lessons_consented_at, Subscriber.lessons_stopped_at,
                    Reader.suppressed_at, Subscriber.created_at)
             .join(Reader, Reader.email == Subscriber.email)
             .where(Subscriber.next_lesson_at <= now)
             .order_by(Subscriber.next_lesson_at).limit(limit))
    if on_postgresql(session.sync_session):
        # Workers take disjoint sets: a subscription another worker holds waits for its turn.
        query = query.with_for_update(skip_locked=True, of=Subscriber)
    due = [_Due(*row) for row in await session.execute(query)]
    if not due:
        return 0
    ids = [each.id for each in due]
    sync = session.sync_session
    # Plans made for this batch's readers: a plan kept from the first batches, when the
    # settled lessons' table was nearly empty, read the whole table for each later batch, a
    # cost that grew with every lesson settled (100,000 readers due at once: 242 us a reader,
    # against 10). Only for these reads: the inserts' plans made anew each time cost more.
    async with planned_with(session, "plan_cache_mode", "force_custom_plan"):
        settled = await _values_by_subscriber(session, LessonDelivery.lesson,
                                              among(sync, LessonDelivery.subscriber_id, ids))
        done = await _values_by_subscriber(session, Progress.step,
                                           among(sync, Progress.subscriber_id, ids))
        clicks = await _values_by_subscriber(
            session, Event.exercise, among(sync, Event.subscriber_id, ids),
            Event.kind.in_(CLICK_KINDS))
    first_seen: dict[str, dict[str, datetime]] = {}
    for regimen_key, lesson_key, at in await session.execute(
            select(LessonSeen.regimen, LessonSeen.lesson, LessonSeen.first_seen_at)):
        first_seen.setdefault(regimen_key, {})[lesson_key] = at
    deliveries: list[dict[str, object]] = []
    to_send: dict[tuple[int, str], str] = {}
    look_again: dict[datetime | None, list[int]] = {}
    for each in due:
        regimen = catalog.get(each.regimen)
        if not each.may_get_lessons:
            look_again.setdefault(None, []).append(each.id)
            continue
        if regimen is None:
            look_again.setdefault(now + REGIMEN_AWAY, []).append(each.id)
            continue
        assert each.lessons_consented_at is not None
        result = plan(regimen, ReaderState(
            confirmed_at=each.lessons_consented_at,
            settled=frozenset(settled.get(each.id, ())),
            done=frozenset(done.get(each.id, ())),
            programs_clicked=_programs(regimen, clicks.get(each.id, ()))),
            first_seen.get(regimen.key, {}), now)
        deliveries += [{"subscriber_id": each.id, "lesson": lesson.key,
                        "regimen": regimen.key, "outcome": LessonOutcome.SKIPPED,
                        "reason": reason.value, "at": now, "signed_up_at": each.created_at}
                       for lesson, reason in result.skipped]
        if result.send is not None:
            deliveries.append({"subscriber_id": each.id, "lesson": result.send.key,
                               "regimen": regimen.key, "outcome": LessonOutcome.QUEUED,
                               "reason": None, "at": now, "signed_up_at": each.created_at})
            to_send[each.id, result.send.key] = each.public_id
        look_again.setdefault(result.next_at, []).append(each.id)
    # Readers due together mostly look again together: one statement per time, not per reader.
    for when, subscriber_ids in look_again.items():
        await session.execute(update(Subscriber).where(among(sync, Subscriber.id, subscriber_ids))
                              .values(next_lesson_at=when)
                              .execution_options(synchronize_session=False))
    if deliveries:
        inserted = await session.run_sync(lambda sync: insert_rows(
            sync, table_of(LessonDelivery), deliveries,
            returning=[table_of(LessonDelivery).c.subscriber_id,
                       table_of(LessonDelivery).c.lesson],
            skip_duplicates_of=("subscriber_id", "lesson")).all())
        # Only the lessons this transaction settled: one settled before is never sent again.
        mails = [{"subscriber_id": subscriber_id, "kind": MailKind.LESSON, "lesson": lesson,
                  "key": outbox_key(to_send[subscriber_id, lesson], lesson)}
                 for subscriber_id, lesson in inserted if (subscriber_id, lesson) in to_send]
        await session.run_sync(outbox.queue_rows, mails)
        await stale_figures.note_readers(
            session, among(sync, Subscriber.id, {each["subscriber_id"] for each in deliveries}))
    return len(due)


def _programs(regimen: Regimen, clicked: Iterable[str]) -> frozenset[str]:
    """The programs whose purchase link the reader followed: a next step's program link (the
    program's key) or a paid exercise's link (its program)."""
    if not clicked:
        return frozenset()
    by_slug = {exercise.slug: exercise.program for exercise in regimen.exercises()}
    programs: set[str] = set()
    for name in clicked:
        program = by_slug.get(name, name if name in regimen.programs else None)
        if program is not None:
            programs.add(program)
    return frozenset(programs)


async def _values_by_subscriber(session: AsyncSession, value: Any,
                                *where: ColumnElement[bool]) -> dict[int, list[str]]:
    """`value` of the rows matching `where`, grouped by the row's subscriber."""
    grouped: dict[int, list[str]] = {}
    rows = await session.execute(select(value.table.c.subscriber_id, value).where(*where))
    for subscriber_id, found in rows:
        if found is not None:
            grouped.setdefault(subscriber_id, []).append(found)
    return grouped
