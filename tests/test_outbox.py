"""The outbox and its worker: nothing lost when the mail server is away, leases, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from service import signup
from service.db import Database
from service.models import MailKind, OutboxMessage, OutboxStatus, Subscriber
from service.outbox import (
    FIRST_RETRY,
    LEASE,
    LONGEST_RETRY,
    claim_due,
    queue_mail,
    retry_delay,
)
from service.runtime import Runtime
from service.signup import RequestOrigin
from service.tokens import Claims
from service.worker import Pace, Worker
from tests.helpers import MailSink

READER = RequestOrigin(ip="203.0.113.9", user_agent="test")


class Clock:
    """The worker's idea of now, moved forward by the test instead of waited for."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def worker(runtime: Runtime, clock: Clock) -> Worker:
    # One at a time, so that the order mail leaves in is the order it was queued in.
    return Worker(runtime.db, runtime.mailer, runtime.transport, Pace(concurrency=1),
                  clock=clock)


async def sign_up(db: Database, *emails: str) -> None:
    async with db.transaction() as session:
        for email in emails:
            await session.run_sync(signup.subscribe, [signup.Signup(email, READER, None)],
                                   datetime.now(UTC))


async def outbox_rows(db: Database) -> list[OutboxMessage]:
    async with db.transaction() as session:
        return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


class RefusingHandler:
    def __init__(self, code: str) -> None:
        self.code = code

    async def handle_RCPT(self, server: object, session: object, envelope: object,
                          address: str, rcpt_options: list[str]) -> str:
        return self.code


@pytest.fixture
def refusing_server(smtp_port: int, request: pytest.FixtureRequest) -> Iterator[None]:
    controller = Controller(RefusingHandler(request.param), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    yield
    controller.stop()


async def test_mail_server_down_during_signups_then_back(
    runtime: Runtime, worker: Worker, clock: Clock, smtp_port: int,
) -> None:
    readers = [f"reader{i:02}@example.org" for i in range(20)]
    await sign_up(runtime.db, *readers)

    # Nothing listens on the port yet: every attempt fails, every row stays queued.
    while await worker.deliver_due():
        pass
    rows = await outbox_rows(runtime.db)
    assert {row.status for row in rows} == {OutboxStatus.QUEUED}
    assert all(row.attempts == 1 and row.next_attempt_at > clock() for row in rows)
    assert all("connect" in (row.last_error or "").lower() for row in rows)
    assert await worker.deliver_due() == 0  # backing off, not hammering

    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        clock.ahead = timedelta(hours=1)
        while await worker.deliver_due():
            pass
        received = await sink.wait_for(20)
        await runtime.transport.close()
    finally:
        controller.stop()
    assert [str(message["To"]) for message in received] == readers  # all of them, in order
    assert {row.status for row in await outbox_rows(runtime.db)} == {OutboxStatus.SENT}


@pytest.mark.parametrize("refusing_server", ["550 5.1.1 No such user"], indirect=True)
@pytest.mark.usefixtures("refusing_server")
async def test_permanent_refusal_is_not_retried(runtime: Runtime, worker: Worker) -> None:
    await sign_up(runtime.db, "nobody@example.org")
    await worker.deliver_due()
    [row] = await outbox_rows(runtime.db)
    assert row.status is OutboxStatus.FAILED
    assert "550" in (row.last_error or "")


@pytest.mark.parametrize("refusing_server", ["451 4.7.1 Try again later"], indirect=True)
@pytest.mark.usefixtures("refusing_server")
async def test_temporary_refusal_is_retried(runtime: Runtime, worker: Worker) -> None:
    await sign_up(runtime.db, "greylisted@example.org")
    await worker.deliver_due()
    [row] = await outbox_rows(runtime.db)
    assert row.status is OutboxStatus.QUEUED
    assert "451" in (row.last_error or "")


async def test_a_lease_hides_a_claimed_row_until_it_runs_out(db: Database) -> None:
    await sign_up(db, "leased@example.org")
    now = datetime.now(UTC)
    async with db.transaction() as session:
        [claimed] = await claim_due(session, now, limit=10)
    async with db.transaction() as session:
        assert await claim_due(session, now + LEASE / 2, limit=10) == []
    # The worker that held it died without settling: another takes it once the lease is up.
    async with db.transaction() as session:
        [retaken] = await claim_due(session, now + LEASE + timedelta(seconds=1), limit=10)
    assert retaken.id == claimed.id
    assert retaken.attempts == 2


async def test_queued_mail_for_a_reader_who_left_is_dropped(
    runtime: Runtime, worker: Worker, smtp: MailSink,
) -> None:
    await sign_up(runtime.db, "leaving@example.org")
    async with runtime.db.transaction() as session:
        reader = await session.scalar(select(Subscriber))
        assert reader is not None
        await signup.confirm(session, Claims(reader.public_id, reader.token_version), READER,
                             datetime.now(UTC))
        await signup.unsubscribe(session, Claims(reader.public_id, reader.token_version),
                                 datetime.now(UTC))
    # The regimen mail queued by confirm() was cancelled by unsubscribe() before any send.
    async with runtime.db.transaction() as session:
        await queue_mail(session, reader, MailKind.REGIMEN)  # e.g. queued by a stale request
    await worker.deliver_due()
    statuses = [row.status for row in await outbox_rows(runtime.db)]
    assert statuses == [OutboxStatus.CANCELLED, OutboxStatus.CANCELLED, OutboxStatus.CANCELLED]
    assert smtp.messages == []


async def test_commit_wakes_the_worker(db: Database) -> None:
    db.outbox_ready.clear()
    async with db.transaction() as session:
        await session.run_sync(signup.subscribe, [signup.Signup("now@example.org", READER, None)],
                               datetime.now(UTC))
        assert not db.outbox_ready.is_set()  # not before the commit
    assert db.outbox_ready.is_set()


async def test_a_commit_in_another_process_wakes_a_postgres_worker(database_url: str,
                                                                   db: Database) -> None:
    # Another Database stands for a `regimen worker` process beside the web process.
    postgres = database_url.startswith("postgresql")
    worker_side = Database(database_url)
    try:
        async with worker_side.outbox_notifications():
            worker_side.outbox_ready.clear()
            async with db.transaction() as session:
                await session.run_sync(signup.subscribe,
                                       [signup.Signup("elsewhere@example.org", READER, None)],
                                       datetime.now(UTC))
            woken = await _woken_within(worker_side, seconds=10 if postgres else 0.5)
    finally:
        await worker_side.dispose()
    # SQLite has no notifications: another process's mail waits for the poll.
    assert woken is postgres


async def _woken_within(db: Database, seconds: float) -> bool:
    try:
        await asyncio.wait_for(db.outbox_ready.wait(), seconds)
    except TimeoutError:
        return False
    return True


def test_retries_back_off_exponentially_with_jitter_up_to_a_cap() -> None:
    for attempts in range(1, 12):
        ceiling = min(LONGEST_RETRY, FIRST_RETRY * 2 ** (attempts - 1))
        delays = [retry_delay(attempts) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        # Jitter: a crowd of mails that failed together does not retry in step.
        assert len(set(delays)) > 100
    assert min(retry_delay(4) for _ in range(200)) > max(retry_delay(1) for _ in range(200))
    assert max(retry_delay(40) for _ in range(200)) <= LONGEST_RETRY
