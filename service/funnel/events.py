"""Counting what readers do, for the author's funnel: signed up, opened the confirm page,
confirmed, opened the regimen, followed an exercise's link (or a program's, from a unit's next
steps). Counts only; nothing here changes a
reader's state, so recording on a GET is harmless.

Besides the Event row, the reader's first time at each step is kept on the row of their
subscription (`confirm_page_opened_at`, `regimen_opened_at`, `first_click_at`; a reader of two
regimens reaches each step in each on its own), so that the author's numbers are range counts
on indexed columns instead of a search through every event.

Which openings count (see service.funnel.stats): mail security scanners fetch every link of a mail
within seconds of its delivery, so an opening of a mail's link less than `scanner_window`
seconds after that mail was sent to this reader is taken to be a scanner: the confirmation
page after a confirmation or reminder mail, the regimen page after a regimen mail. It is still
recorded as an Event, but does not set the milestone; a later opening does. The regimen link
on the page shown after confirming is no mail's link (no scanner sees that page): its openings
always count.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.orm.attributes import set_committed_value

from service.core import stale_figures
from service.core.models import Event, EventKind, MailKind, OutboxMessage, Subscriber, utcnow

MILESTONES: dict[EventKind, InstrumentedAttribute[datetime | None]] = {
    EventKind.CONFIRM_PAGE_OPENED: Subscriber.confirm_page_opened_at,
    EventKind.REGIMEN_OPENED: Subscriber.regimen_opened_at,
    EventKind.EXERCISE_CLICKED: Subscriber.first_click_at,
}


# The mails whose links lead to each page a scanner may open. A lesson links to the regimen,
# to exercises and to programs itself.
MAILS_LINKING: dict[EventKind, list[MailKind]] = {
    EventKind.CONFIRM_PAGE_OPENED: [MailKind.CONFIRM, MailKind.REMINDER],
    EventKind.REGIMEN_OPENED: [MailKind.REGIMEN, MailKind.LESSON],
    EventKind.EXERCISE_CLICKED: [MailKind.LESSON],
    EventKind.PROGRAM_CLICKED: [MailKind.LESSON],
}


async def looks_like_scanner(session: AsyncSession, kind: EventKind, subscriber_id: int,
                             at: datetime, scanner_window: timedelta) -> bool:
    """Whether a mail linking to this page was sent to this reader within `scanner_window`
    seconds before `at` (one probe on the outbox's subscriber index)."""
    if not scanner_window or kind not in MAILS_LINKING:
        return False
    return bool(await session.scalar(select(exists().where(
        OutboxMessage.subscriber_id == subscriber_id,
        OutboxMessage.kind.in_(MAILS_LINKING[kind]),
        OutboxMessage.sent_at <= at,
        OutboxMessage.sent_at > at - scanner_window,
    ))))


async def record(session: AsyncSession, kind: EventKind, subscriber: Subscriber,
                 exercise: str | None = None, *, scanner_window: timedelta,
                 now: datetime | None = None, from_mail: bool = True,
                 lesson: str | None = None) -> None:
    """`from_mail`: whether the link opened was a mail's, which a scanner may have opened.
    `lesson`: the lesson whose link it was."""
    at = now or utcnow()
    stale_figures.note_reader(session, subscriber)
    session.add(Event(kind=kind, subscriber_id=subscriber.id, exercise=exercise, lesson=lesson,
                      created_at=at))
    column = MILESTONES.get(kind)
    if column is not None and not (
            from_mail and await looks_like_scanner(session, kind, subscriber.id, at,
                                                   scanner_window)):
        result = await session.execute(
            update(Subscriber).where(Subscriber.id == subscriber.id, column.is_(None))
            .values({column: at}).execution_options(synchronize_session=False))
        if getattr(result, "rowcount", 0) == 1:
            set_committed_value(subscriber, column.key, at)
    await session.flush()
