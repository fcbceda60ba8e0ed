"""The outbox and its worker: nothing lost when the mail server is away, leases, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from service.core import outbox
from service.core.database import Database
from service.core.models import (
    MailKind,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
    SubscriberStatus,
)
from service.core.notifications import keep_listening
from service.core.outbox import (
    FIRST_RETRY,
    LONGEST_RETRY,
    MAIL_QUEUED,
    claim_due,
    mail_queued,
    pick_due,
    queue_mail,
    retry_delay,
)
from service.delivery.worker import Pace, Worker
from service.readers import signup
from service.readers.signup import RequestOrigin
from service.readers.tokens import Claims
from service.runtime import Runtime
from tests.helpers import (
    MailSink,
    a_signup,
    many_subscriptions,
    plans_kept_from_the_first_run,
)

LEASE = timedelta(minutes=5)

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
    pace = replace(Pace.from_settings(runtime.settings), concurrency=1)
    return Worker(runtime.db, runtime.mailer, runtime.transport, pace, clock=clock)


async def sign_up(db: Database, *emails: str) -> None:
    async with db.transaction() as session:
        for email in emails:
            await session.run_sync(signup.subscribe, [a_signup(email, READER)],
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


async def test_a_lease_hides_a_claimed_row_until_it_runs_out(
    db: Database, caplog: pytest.LogCaptureFixture,
) -> None:
    await sign_up(db, "leased@example.org")
    now = datetime.now(UTC)
    async with db.transaction() as session:
        [claimed] = await claim_due(session, now, limit=10, lease=LEASE)
    async with db.transaction() as session:
        assert await claim_due(session, now + LEASE / 2, limit=10, lease=LEASE) == []
    # The worker that held it died without settling: another takes it once the lease is up.
    async with db.transaction() as session:
        [retaken] = await claim_due(session, now + LEASE + timedelta(seconds=1), limit=10,
                                     lease=LEASE)
    assert retaken.id == claimed.id
    assert retaken.attempts == 2
    # Said once, so an operator can tell why a reader got a mail twice.
    [taken_over] = [r.getMessage() for r in caplog.records if "took over" in r.getMessage()]
    assert taken_over.endswith(f"(lease ran out): #{claimed.id}")


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
    mail_queued(db).clear()
    async with db.transaction() as session:
        await session.run_sync(signup.subscribe,
                               [a_signup("now@example.org", READER)],
                               datetime.now(UTC))
        assert not mail_queued(db).is_set()  # not before the commit
    assert mail_queued(db).is_set()


async def test_a_commit_in_another_process_wakes_a_postgres_worker(database_url: str,
                                                                   db: Database) -> None:
    # Another Database stands for a `regimen worker` process beside the web process.
    postgres = database_url.startswith("postgresql")
    worker_side = Database(database_url)
    stop = asyncio.Event()
    listening = asyncio.create_task(keep_listening(worker_side, MAIL_QUEUED, stop))
    try:
        await _listener_ready(worker_side, postgres)
        mail_queued(worker_side).clear()
        async with db.transaction() as session:
            await session.run_sync(signup.subscribe,
                                   [a_signup("elsewhere@example.org", READER)],
                                   datetime.now(UTC))
        woken = await _woken_within(worker_side, seconds=10 if postgres else 0.5)
    finally:
        stop.set()
        await listening
        await worker_side.dispose()
    # SQLite has no notifications: another process's mail waits for the poll.
    assert woken is postgres


async def _listener_ready(db: Database, postgres: bool) -> None:
    """Until PostgreSQL shows the LISTEN (it runs in a task of its own)."""
    if not postgres:
        return
    for _ in range(200):
        async with db.transaction() as session:
            if await session.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'")):
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the worker never started listening")


async def _woken_within(db: Database, seconds: float) -> bool:
    try:
        await asyncio.wait_for(mail_queued(db).wait(), seconds)
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


async def test_a_claim_reads_its_few_in_index_order_whenever_its_plan_was_made(
    db: Database,
) -> None:
    """PostgreSQL prepares a statement once per connection and may keep the plan it made at
    the first runs; without statistics (a new table, or autovacuum off), a plan made when the
    outbox held a few hundred rows read every due row and sorted them, and each claim of 60
    then read all of 100,000 lessons queued at once (bench/mail.py --lessons)."""
    now = datetime.now(UTC)
    async with db.transaction() as session:
        if session.get_bind().dialect.name == "sqlite":
            compiled = pick_due(now, 60).compile(dialect=session.get_bind().dialect)
            # SQLite plans without looking at the values.
            unbound = (None,) * len(compiled.positiontup or ())
            connection = await session.connection()
            plan = "\n".join(str(row[-1]) for row in await connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {compiled}", unbound))
            assert "USING INDEX ix_outbox_queued_oldest" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
            return
        async with plans_kept_from_the_first_run(session) as plans:
            held = 0
            for size in (0, 100, 1000, 10000):
                await session.run_sync(_queue_confirmations,
                                       [f"queued{n}@example.org" for n in range(held, size)],
                                       now)
                held = size
                await session.execute(text("DISCARD PLANS"))  # the next claim plans anew
                await claim_due(session, now, limit=60, lease=LEASE)
    plans = [plan for plan in plans if "FOR UPDATE SKIP LOCKED" in plan]
    assert len(plans) == 4
    for plan in plans:
        assert "Index Scan using ix_outbox_queued_oldest" in plan, plan
        assert "Sort" not in plan, plan


def _queue_confirmations(sync: Session, emails: list[str], due: datetime) -> None:
    if not emails:
        return
    ids = many_subscriptions(sync, emails, status=SubscriberStatus.PENDING)
    outbox.queue_rows(sync, [{"subscriber_id": subscriber_id, "kind": MailKind.CONFIRM,
                              "next_attempt_at": due - timedelta(minutes=1)}
                             for subscriber_id in ids])
