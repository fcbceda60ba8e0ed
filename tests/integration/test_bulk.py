"""Bulk inserts (service.core.bulk) write what an insert row by row would, on both databases."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.core.bulk import among, insert_rows
from service.core.database import Database
from service.core.models import (
    MailKind,
    OutboxMessage,
    OutboxStatus,
    Reader,
    Subscriber,
    SubscriberStatus,
    table_of,
    utcnow,
)
from tests.helpers import DEFAULT_REGIMEN


async def test_rows_get_their_values_and_each_its_own_defaults(db: Database) -> None:
    now = utcnow()
    table = table_of(Subscriber)

    def write(session: Session) -> tuple[list[tuple[str, int]], Sequence[str], list[str]]:
        insert_rows(session, table_of(Reader), [
            {"email": email, "created_at": now}
            for email in [*(f"r{n}@example.org" for n in range(3)), "new@example.org"]])
        readers = insert_rows(session, table, [
            {"email": f"r{n}@example.org", "regimen": DEFAULT_REGIMEN,
             "status": SubscriberStatus.PENDING,
             "created_at": now - timedelta(seconds=n)} for n in range(3)],
            returning=[table.c.email, table.c.id])
        pairs = [(email, id_) for email, id_ in readers]
        ids = [id_ for _, id_ in pairs]
        # Alike in every given value: still three rows, each with a key of its own.
        insert_rows(session, table_of(OutboxMessage),
                    [{"subscriber_id": ids[0], "kind": MailKind.CONFIRM}] * 3)
        insert_rows(session, table_of(OutboxMessage),
                    [{"subscriber_id": ids[1], "kind": MailKind.REGIMEN}])
        again = insert_rows(session, table, [
            {"email": email, "regimen": DEFAULT_REGIMEN, "status": SubscriberStatus.PENDING,
             "created_at": now} for email in ("r0@example.org", "new@example.org")],
            returning=[table.c.email], skip_duplicates_of=("email", "regimen")).scalars().all()
        found = session.scalars(select(Subscriber.email).where(
            among(session, Subscriber.email, {"r1@example.org", "new@example.org"}))).all()
        return pairs, again, sorted(found)

    readers, again, found = await db.run_in_thread(write)
    assert [email for email, _ in readers] == [f"r{n}@example.org" for n in range(3)]
    assert again == ["new@example.org"]
    assert found == ["new@example.org", "r1@example.org"]
    async with db.transaction() as session:
        subscribers = {s.email: s for s in await session.scalars(select(Subscriber))}
        mails = list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    assert subscribers["r2@example.org"].created_at == now - timedelta(seconds=2)
    assert len({s.public_id for s in subscribers.values()}) == 4
    assert all(s.token_version == 1 for s in subscribers.values())
    assert [m.kind for m in mails] == [MailKind.CONFIRM] * 3 + [MailKind.REGIMEN]
    assert len({m.key for m in mails}) == 4
    assert all(m.status is OutboxStatus.QUEUED and m.attempts == 0 for m in mails)
    assert all(m.next_attempt_at <= utcnow() for m in mails)
