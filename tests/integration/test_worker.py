"""The worker beyond the happy path: reminders, giving up, bounces, stopping, concurrency."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from service.core.database import Database
from service.core.models import MailKind, OutboxMessage, OutboxStatus, Subscriber, SubscriberStatus
from service.core.outbox import claim_due
from service.core.settings import Settings
from service.delivery.outgoing import Outgoing, Transport
from service.delivery.worker import Pace, Worker
from service.readers import signup
from service.readers.tokens import Claims
from service.runtime import Runtime, build_runtime
from tests.helpers import MailSink, links_in
from tests.integration.test_outbox import READER, Clock, RefusingHandler, outbox_rows, sign_up


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_worker(runtime: Runtime, clock: Clock, pace: Pace | None = None) -> Worker:
    return Worker(runtime.db, runtime.mailer, runtime.transport,
                  pace or Pace.from_settings(runtime.settings), clock=clock)


async def reader(db: Database, email: str) -> Subscriber:
    async with db.transaction() as session:
        found = await session.scalar(select(Subscriber).where(Subscriber.email == email))
    assert found is not None
    return found


@pytest.mark.usefixtures("smtp")
async def test_one_reminder_a_day_after_an_unconfirmed_signup(
    runtime: Runtime, clock: Clock, smtp: MailSink,
) -> None:
    worker = make_worker(runtime, clock)
    await sign_up(runtime.db, "forgetful@example.org", "prompt@example.org")
    async with runtime.db.transaction() as session:
        prompt = await session.scalar(select(Subscriber).where(
            Subscriber.email == "prompt@example.org"))
        assert prompt is not None
        await signup.confirm(session, Claims(prompt.public_id, 1), READER, clock())
    assert await worker.remind() == 0  # too early

    clock.ahead = timedelta(hours=25)
    assert await worker.remind() == 1
    assert await worker.remind() == 0  # only one, however often the worker looks
    await worker.deliver_due()
    # forgetful's confirmation and reminder, prompt's regimen (its confirmation went stale).
    reminders = [m for m in await smtp.wait_for(3) if "Reminder" in str(m["Subject"])]
    assert [str(m["To"]) for m in reminders] == ["forgetful@example.org"]
    assert any("/confirm/" in url for url in links_in(reminders[0]))

    # Signing up again after the reminder brings a confirmation, never a second reminder.
    await sign_up(runtime.db, "forgetful@example.org")
    clock.ahead = timedelta(days=3)
    assert await worker.remind() == 0


async def test_reminders_can_be_turned_off(settings: Settings, db: Database,
                                           clock: Clock) -> None:
    # REGIMEN_REMINDER_AFTER=0, through the settings to the worker `regimen worker` builds.
    runtime = build_runtime(settings.model_copy(update={"reminder_after": timedelta(0)}))
    worker = runtime.worker()
    worker.clock = clock
    await sign_up(runtime.db, "forgetful@example.org")
    clock.ahead = timedelta(days=2)
    assert await worker.remind() == 0
    await runtime.db.dispose()


async def test_gives_up_after_the_retry_window(runtime: Runtime, clock: Clock) -> None:
    # Nothing listens on the SMTP port: every attempt fails.
    pace = replace(Pace.from_settings(runtime.settings), retry_for=timedelta(days=3))
    worker = make_worker(runtime, clock, pace)
    await sign_up(runtime.db, "patient@example.org")
    await worker.deliver_due()
    [row] = await outbox_rows(runtime.db)
    assert row.status is OutboxStatus.QUEUED

    clock.ahead = timedelta(days=3, minutes=1)
    await worker.deliver_due()
    [row] = await outbox_rows(runtime.db)
    assert row.status is OutboxStatus.FAILED
    assert (row.last_error or "").startswith("gave up retrying")


@pytest.fixture
def refusing_server(smtp_port: int) -> Iterator[None]:
    controller = Controller(RefusingHandler("550 5.1.1 No such user"), hostname="127.0.0.1",
                            port=smtp_port)
    controller.start()
    yield
    controller.stop()


@pytest.mark.usefixtures("refusing_server")
async def test_a_hard_bounce_suppresses_the_address_for_good(
    runtime: Runtime, clock: Clock,
) -> None:
    worker = make_worker(runtime, clock)
    await sign_up(runtime.db, "gone@example.org")
    await worker.deliver_due()
    bounced = await reader(runtime.db, "gone@example.org")
    assert bounced.reader.suppressed_reason == "bounce"
    assert bounced.reader.suppressed_at is not None

    await sign_up(runtime.db, "gone@example.org")  # someone types it in again
    async with runtime.db.transaction() as session:
        queued = await session.scalar(select(func.count()).select_from(OutboxMessage)
                                      .where(OutboxMessage.status == OutboxStatus.QUEUED))
    assert queued == 0


async def test_a_stopping_worker_gives_back_what_it_has_not_tried(
    runtime: Runtime, clock: Clock,
) -> None:
    worker = make_worker(runtime, clock)
    await sign_up(runtime.db, *(f"r{i}@example.org" for i in range(3)))
    worker.stop.set()
    assert await worker.deliver_due() == 3
    rows = await outbox_rows(runtime.db)
    assert [(row.status, row.attempts, row.locked_until) for row in rows] == \
        [(OutboxStatus.QUEUED, 0, None)] * 3
    # Another worker takes them straight away, with no lease to wait out.
    async with runtime.db.transaction() as session:
        assert len(await claim_due(session, clock(), limit=10, lease=worker.pace.lease)) == 3


class StopAfterFirstSend:
    """The runtime's transport, stopping the worker as its first mail is accepted."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.worker: Worker | None = None

    async def send(self, outgoing: Outgoing) -> None:
        await self.inner.send(outgoing)
        assert self.worker is not None
        self.worker.stop.set()

    async def close(self) -> None:
        await self.inner.close()

    async def delivers_utf8_local_parts(self) -> bool:
        return await self.inner.delivers_utf8_local_parts()


async def test_a_stopping_worker_gives_back_the_batch_it_claimed_ahead(
    runtime: Runtime, clock: Clock, smtp: MailSink,
) -> None:
    transport = StopAfterFirstSend(runtime.transport)
    pace = replace(Pace.from_settings(runtime.settings), concurrency=1)
    worker = Worker(runtime.db, runtime.mailer, transport, pace, clock=clock)
    transport.worker = worker
    await sign_up(runtime.db, *(f"r{i:02}@example.org" for i in range(40)))
    # The batch being sent when the worker was told to stop, and the next, claimed meanwhile.
    assert await worker.deliver_due() == 2 * pace.claim_batch
    assert len(await smtp.wait_for(1)) == 1
    rows = await outbox_rows(runtime.db)
    assert [row.status for row in rows] == [OutboxStatus.SENT] + [OutboxStatus.QUEUED] * 39
    assert all((row.attempts, row.locked_until) == (0, None) for row in rows[1:])
    await runtime.transport.close()


@pytest.mark.usefixtures("smtp")
async def test_a_batch_goes_out_concurrently_over_few_connections(
    runtime: Runtime, clock: Clock, smtp: MailSink,
) -> None:
    pace = replace(Pace.from_settings(runtime.settings), concurrency=3)
    worker = make_worker(runtime, clock, pace)
    readers = [f"reader{i}@example.org" for i in range(12)]
    await sign_up(runtime.db, *readers)
    while await worker.deliver_due():
        pass
    received = await smtp.wait_for(12)
    assert sorted(str(m["To"]) for m in received) == sorted(readers)
    assert {row.status for row in await outbox_rows(runtime.db)} == {OutboxStatus.SENT}
    await runtime.transport.close()


async def test_a_confirmed_reader_is_not_reminded(runtime: Runtime, clock: Clock) -> None:
    worker = make_worker(runtime, clock)
    await sign_up(runtime.db, "eager@example.org")
    eager = await reader(runtime.db, "eager@example.org")
    async with runtime.db.transaction() as session:
        await signup.confirm(session, Claims(eager.public_id, 1), READER, datetime.now(UTC))
    clock.ahead = timedelta(days=2)
    assert await worker.remind() == 0
    assert (await reader(runtime.db, "eager@example.org")).status is SubscriberStatus.CONFIRMED
    kinds = [row.kind for row in await outbox_rows(runtime.db)]
    assert MailKind.REMINDER not in kinds
