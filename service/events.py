"""Counting what readers do, for the author's funnel: signed up, opened the confirm page,
confirmed, opened the regimen, followed an exercise's link. Counts only; nothing here changes a
reader's state, so recording on a GET is harmless."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from service.models import Event, EventKind, Subscriber, utcnow


async def record(session: AsyncSession, kind: EventKind, subscriber: Subscriber,
                 exercise: str | None = None) -> None:
    session.add(Event(kind=kind, subscriber_id=subscriber.id, exercise=exercise,
                      created_at=utcnow()))
    await session.flush()
