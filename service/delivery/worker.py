"""The outbox worker: claim due mails, send them, settle each row.

It runs inside the web process (woken right after a signup commits) or on its own as
`regimen worker`, as many as wanted; either way it also polls, so retries, reminders and other
processes' mail go out too. Stopping finishes the sends under way and gives back the claimed
mail not yet tried, so another worker takes it at once.

Sending, the heartbeat, the scheduled chores (reminders, forgetting unconfirmed signups) and
the LISTEN for queued mail run side by side: a backlog that takes minutes to send must neither
make /readyz think the worker dead nor hold up the reminders (issue 13). A failing chore is
logged once, with its traceback, when it starts failing, and once when it works again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from service.core import outbox
from service.core.content import Catalog
from service.core.database import Database
from service.core.models import (
    MailKind,
    OutboxMessage,
    Subscriber,
    WorkerHeartbeat,
    utcnow,
)
from service.core.notifications import first_of, keep_listening
from service.core.settings import Settings
from service.delivery import lessons
from service.delivery.messages import Mailer
from service.delivery.outgoing import Transport
from service.delivery.sending import Outcome, Result, attempt, settle
from service.readers import privacy, progress

log = logging.getLogger(__name__)

RETENTION_EVERY_SECONDS = 3600
# Subscriptions whose lessons one transaction settles.
LESSON_BATCH = 500


@dataclass(frozen=True)
class Pace:
    """How a worker works; `regimen worker` takes these from the settings."""

    concurrency: int
    lease: timedelta
    retry_for: timedelta
    remind_after: timedelta | None
    pending_retention: timedelta
    poll_seconds: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Pace:
        return cls(
            concurrency=settings.worker_concurrency,
            lease=settings.worker_lease,
            retry_for=settings.retry_for,
            remind_after=settings.reminder_after or None,
            pending_retention=settings.pending_retention,
        )

    @property
    def claim_batch(self) -> int:
        """How many mails one batch claims. Each batch costs two transactions (claim, settle),
        a few round trips each; while one was settled and the next claimed, nothing was sent:
        with 5 a connection the worker sent 0.55-0.61 of raw aiosmtplib's rate on PostgreSQL
        (bench/mail.py), with 15 1.04-1.09 (the next batch is now claimed while one is sent).
        A worker killed mid-batch has this many mails sent again by the next."""
        return self.concurrency * 15


@dataclass(frozen=True)
class Chore:
    """Work of another feature that the worker does every `seconds` (the runtime gives it: the
    author's figures, service.funnel.upkeep). Its clock is the worker's."""

    what: str
    seconds: float
    run: Callable[[datetime], Awaitable[object]]


class Worker:
    def __init__(
        self, db: Database, mailer: Mailer, transport: Transport, pace: Pace, *,
        clock: Callable[[], datetime] = utcnow, chores: tuple[Chore, ...] = (),
    ) -> None:
        self.chores = chores
        self.db = db
        self.mailer = mailer
        self.transport = transport
        self.pace = pace
        self.clock = clock
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.stop = asyncio.Event()
        # The content whose lessons were last noted (service.delivery.lessons.note_content).
        self._lessons_noted: Catalog | None = None

    async def run(self, stop: asyncio.Event) -> None:
        self.stop = stop
        log.info("outbox worker %s started", self.worker_id)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(keep_listening(self.db, outbox.MAIL_QUEUED, stop))
                tasks.create_task(self._every(self.pace.poll_seconds, "heartbeat", self.beat))
                tasks.create_task(self._every(self.pace.poll_seconds, "reminders", self.remind))
                tasks.create_task(self._every(self.pace.poll_seconds, "lessons", self.lessons))
                tasks.create_task(self._every(RETENTION_EVERY_SECONDS, "forgetting "
                                              "unconfirmed signups", self.forget_unconfirmed))
                for chore in self.chores:
                    tasks.create_task(self._every(chore.seconds, chore.what,
                                                  self._on_the_clock(chore)))
                tasks.create_task(self._send_until_stopped())
        finally:
            log.info("outbox worker %s stopped", self.worker_id)

    async def _send_until_stopped(self) -> None:
        queued = outbox.mail_queued(self.db)
        failures = Failures("sending")
        while not self.stop.is_set():
            # Cleared before looking, so a signup committed while we send is not missed.
            queued.clear()
            try:
                await self.deliver_due()
            except Exception:
                failures.failed()
            else:
                failures.succeeded()
            await first_of(self.stop, queued, timeout=self.pace.poll_seconds)

    def _on_the_clock(self, chore: Chore) -> Callable[[], Awaitable[object]]:
        return lambda: chore.run(self.clock())

    async def _every(self, seconds: float, what: str,
                     chore: Callable[[], Awaitable[object]]) -> None:
        failures = Failures(what)
        while not self.stop.is_set():
            try:
                await chore()
            except Exception:
                failures.failed()
            else:
                failures.succeeded()
            await first_of(self.stop, timeout=seconds)

    async def beat(self) -> None:
        async with self.db.transaction() as session:
            await session.merge(WorkerHeartbeat(worker_id=self.worker_id, beat_at=self.clock()))

    async def remind(self) -> int:
        if self.pace.remind_after is None:
            return 0
        async with self.db.transaction() as session:
            return await outbox.queue_reminders(session, self.clock(), self.pace.remind_after)

    async def lessons(self) -> int:
        """Settle the lessons that have come due (service.delivery.lessons), a batch a
        transaction, until none are left; return how many subscriptions were looked at. The
        content's lessons are noted first whenever the content changed."""
        catalog = self.mailer.content.catalog
        looked_at = 0
        while not self.stop.is_set():
            async with self.db.transaction() as session:
                if catalog is not self._lessons_noted:
                    await lessons.note_content(session, catalog, self.clock())
                batch = await lessons.queue_due(session, catalog, self.clock(), LESSON_BATCH)
            self._lessons_noted = catalog
            looked_at += batch
            if batch < LESSON_BATCH:
                break
        return looked_at

    async def forget_unconfirmed(self) -> int:
        async with self.db.transaction() as session:
            forgotten = await privacy.forget_unconfirmed(session, self.clock(),
                                                         self.pace.pending_retention)
        if forgotten:
            log.info("deleted %s signups never confirmed within %s", forgotten,
                     self.pace.pending_retention)
        return forgotten

    async def deliver_due(self) -> int:
        """Send what is due, a batch at a time, until nothing is left; return how many mails
        were claimed.

        Two transactions a batch (claim, settle), not a few a mail: with SQLite's single
        writer, per-mail bookkeeping would cost more than the sending. The next batch is
        claimed while one is being sent, so the connections do not stand idle meanwhile (when
        thousands of lessons come due, a claim on SQLite waits behind the transactions that
        settle them). A stopping worker gives back the batch claimed ahead, untried.
        """
        claimed = 0
        batch = await self._claim()
        while batch.messages:
            claimed += len(batch.messages)
            if self.stop.is_set():
                await self._release(batch)
                break
            ahead = asyncio.create_task(self._claim())
            try:
                await self._settle(await self._send(batch))
            except BaseException:
                await self._give_back(ahead)
                raise
            batch = await ahead
        return claimed

    async def _claim(self) -> Claimed:
        async with self.db.transaction() as session:
            messages = await outbox.claim_due(session, self.clock(),
                                              limit=self.pace.claim_batch,
                                              lease=self.pace.lease)
            ids = {message.subscriber_id for message in messages}
            readers = {reader.id: reader for reader in await session.scalars(
                select(Subscriber).where(Subscriber.id.in_(ids)))} if ids else {}
            # A lesson speaks of the reader's progress as it is now, at sending (a batch
            # earlier at most).
            learners = {message.subscriber_id for message in messages
                        if message.kind is MailKind.LESSON}
            done_steps = await progress.done_by_subscriber(session, learners)
        return Claimed(messages, readers, done_steps)

    async def _send(self, batch: Claimed) -> list[Outcome]:
        """Send a batch, in queue order, at most `concurrency` at a time."""
        outcomes: list[Outcome] = []
        in_flight: set[asyncio.Task[Outcome]] = set()
        for message in batch.messages:
            if len(in_flight) >= self.pace.concurrency:
                done, in_flight = await asyncio.wait(in_flight,
                                                     return_when=asyncio.FIRST_COMPLETED)
                outcomes += [task.result() for task in done]
            in_flight.add(asyncio.create_task(self._attempt(message, batch)))
        outcomes += await asyncio.gather(*in_flight)
        return outcomes

    async def _settle(self, outcomes: list[Outcome]) -> None:
        if outcomes:
            async with self.db.transaction() as session:
                await settle(session, outcomes, self.clock(), self.pace.retry_for)

    async def _release(self, batch: Claimed) -> None:
        """Give a claimed batch back untried: another worker may take it at once."""
        await self._settle([Outcome(message, Result.RELEASED) for message in batch.messages])

    async def _give_back(self, ahead: asyncio.Task[Claimed]) -> None:
        """Release a batch claimed ahead that will not be sent, as the pass fails or is
        cancelled. If that fails too, its lease runs out and another worker takes the mail."""
        try:
            await self._release(await ahead)
        except Exception:
            log.debug("could not give back mail claimed ahead", exc_info=True)

    async def _attempt(self, message: OutboxMessage, batch: Claimed) -> Outcome:
        if self.stop.is_set():
            return Outcome(message, Result.RELEASED)
        return await attempt(message, batch.readers.get(message.subscriber_id), self.mailer,
                             self.transport, batch.done.get(message.subscriber_id, frozenset()))


@dataclass(frozen=True)
class Claimed:
    """A batch of mail leased to this worker, with what sending it needs to know."""

    messages: list[OutboxMessage]
    readers: dict[int, Subscriber]
    # The steps each lesson's reader marked done.
    done: dict[int, frozenset[str]]


class Failures:
    """A run of failures of one chore, logged as two lines: the first failure (with its
    traceback) and the recovery (with how many tries failed), not one line a try."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.count = 0

    def failed(self) -> None:
        """Call from the `except` block, so the first failure's traceback is logged."""
        if self.count == 0:
            log.exception("outbox worker: %s failed; trying again (logged once until it works)",
                          self.what)
        self.count += 1

    def succeeded(self) -> None:
        if self.count:
            log.info("outbox worker: %s works again after %d failed tries", self.what,
                     self.count)
        self.count = 0
