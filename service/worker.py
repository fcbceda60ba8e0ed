"""The outbox worker: claim due mails, send them, settle each row.

It runs inside the web process (woken right after a signup commits) or on its own as
`regimen worker`, as many as wanted; either way it also polls, so retries, reminders and other
processes' mail go out too. Stopping finishes the sends under way and gives back the claimed
mail not yet tried, so another worker takes it at once.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from service import outbox, privacy
from service.db import Database
from service.mail import Mailer
from service.models import (
    MailKind,
    OutboxMessage,
    Subscriber,
    SubscriberStatus,
    WorkerHeartbeat,
    utcnow,
)
from service.outgoing import PermanentFailure, RecipientRejected, Transport
from service.signup import SuppressionReason, suppress

log = logging.getLogger(__name__)

RETENTION_EVERY_SECONDS = 3600


@dataclass(frozen=True)
class Pace:
    """How a worker works; `regimen worker` takes these from the settings."""

    concurrency: int = 4
    poll_seconds: float = 5.0
    lease: timedelta = outbox.LEASE
    retry_for: timedelta = timedelta(days=3)
    remind_after: timedelta | None = timedelta(hours=24)
    pending_retention: timedelta = timedelta(days=30)

    @property
    def claim_batch(self) -> int:
        """How many mails one pass claims. Each pass costs two transactions (claim, settle), a
        few round trips each, during which nothing is sent: with 5 a connection the worker sent
        0.55-0.61 of raw aiosmtplib's rate on PostgreSQL (bench/mail.py), with 15 1.04-1.09.
        A worker killed mid-pass has this many mails sent again by the next."""
        return self.concurrency * 15


class Worker:
    def __init__(
        self, db: Database, mailer: Mailer, transport: Transport, pace: Pace | None = None, *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.mailer = mailer
        self.transport = transport
        self.pace = pace or Pace()
        self.clock = clock
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.stop = asyncio.Event()
        self._chores_done = -math.inf
        self._forgotten = -math.inf

    async def run(self, stop: asyncio.Event) -> None:
        self.stop = stop
        log.info("outbox worker %s started", self.worker_id)
        try:
            async with self.db.outbox_notifications():
                await self._work_until(stop)
        finally:
            await self.transport.close()
            log.info("outbox worker %s stopped", self.worker_id)

    async def _work_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Cleared before looking, so a signup committed while we send is not missed.
            self.db.outbox_ready.clear()
            try:
                # A busy web process wakes the worker per signup: the chores keep to
                # the poll's pace.
                if time.monotonic() - self._chores_done >= self.pace.poll_seconds:
                    await self.beat()
                    await self.remind()
                    self._chores_done = time.monotonic()
                if time.monotonic() - self._forgotten >= RETENTION_EVERY_SECONDS:
                    await self.forget_unconfirmed()
                    self._forgotten = time.monotonic()
                while await self.deliver_due() and not stop.is_set():
                    pass
            except Exception:
                log.exception("outbox worker pass failed; trying again at the next poll")
            await _first_of(stop, self.db.outbox_ready, timeout=self.pace.poll_seconds)

    async def beat(self) -> None:
        async with self.db.transaction() as session:
            await session.merge(WorkerHeartbeat(worker_id=self.worker_id, beat_at=self.clock()))

    async def remind(self) -> int:
        if self.pace.remind_after is None:
            return 0
        async with self.db.transaction() as session:
            return await outbox.queue_reminders(session, self.clock(), self.pace.remind_after)

    async def forget_unconfirmed(self) -> int:
        async with self.db.transaction() as session:
            forgotten = await privacy.forget_unconfirmed(session, self.clock(),
                                                         self.pace.pending_retention)
        if forgotten:
            log.info("deleted %s signups never confirmed within %s", forgotten,
                     self.pace.pending_retention)
        return forgotten

    async def deliver_due(self) -> int:
        """Claim one batch, send it, and settle it; return how many were claimed.

        Two transactions a batch, not a few a mail: with SQLite's single writer, per-mail
        bookkeeping would cost more than the sending.
        """
        async with self.db.transaction() as session:
            messages = await outbox.claim_due(session, self.clock(),
                                              limit=self.pace.claim_batch,
                                              lease=self.pace.lease)
            ids = {message.subscriber_id for message in messages}
            readers = {reader.id: reader for reader in await session.scalars(
                select(Subscriber).where(Subscriber.id.in_(ids)))} if ids else {}
        # Sends start in queue order, at most `concurrency` at a time.
        outcomes: list[Outcome] = []
        in_flight: set[asyncio.Task[Outcome]] = set()
        for message in messages:
            if len(in_flight) >= self.pace.concurrency:
                done, in_flight = await asyncio.wait(in_flight,
                                                     return_when=asyncio.FIRST_COMPLETED)
                outcomes += [task.result() for task in done]
            reader = readers.get(message.subscriber_id)
            in_flight.add(asyncio.create_task(self._attempt(message, reader)))
        outcomes += await asyncio.gather(*in_flight)
        if outcomes:
            await self._settle(outcomes)
        return len(messages)

    async def _attempt(self, message: OutboxMessage, reader: Subscriber | None) -> Outcome:
        if self.stop.is_set():
            return Outcome(message, Result.RELEASED)
        if reader is None or (stale := _why_stale(message.kind, reader)):
            return Outcome(message, Result.CANCELLED, "reader erased" if reader is None else stale)
        try:
            await self.transport.send(self.mailer.compose(message.kind, reader, message.key))
        except PermanentFailure as exc:
            log.warning("outbox %s: refused for good: %s", message.id, exc)
            bounced = reader.email if isinstance(exc, RecipientRejected) else None
            return Outcome(message, Result.FAILED, str(exc), bounced)
        except Exception as exc:  # TemporaryFailure, and anything unforeseen: nothing is lost
            return Outcome(message, Result.RETRY, str(exc) or type(exc).__name__)
        log.info("outbox %s: %s mail sent", message.id, message.kind.value)
        return Outcome(message, Result.SENT)

    async def _settle(self, outcomes: list[Outcome]) -> None:
        now = self.clock()
        async with self.db.transaction() as session:
            sent = [o.message.id for o in outcomes if o.result is Result.SENT]
            if sent:
                await outbox.mark_sent(session, sent, now)
            for outcome in outcomes:
                message, detail = outcome.message, outcome.detail
                if outcome.result is Result.RELEASED:
                    await outbox.release(session, message.id)
                elif outcome.result is Result.CANCELLED:
                    await outbox.mark_cancelled(session, message.id, detail)
                elif outcome.result is Result.FAILED:
                    await outbox.mark_failed(session, message.id, detail)
                    if outcome.bounced is not None:
                        await suppress(session, outcome.bounced, SuppressionReason.BOUNCE, now)
                elif outcome.result is Result.RETRY and \
                        now - message.created_at > self.pace.retry_for:
                    log.error("outbox %s: failing for %s, giving up: %s",
                              message.id, self.pace.retry_for, detail)
                    await outbox.mark_failed(session, message.id, f"gave up retrying: {detail}")
                elif outcome.result is Result.RETRY:
                    log.warning("outbox %s: attempt %s failed, will retry: %s",
                                message.id, message.attempts, detail)
                    await outbox.mark_retry(session, message.id, message.attempts, detail, now)


class Result(enum.Enum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RELEASED = "released"


@dataclass(frozen=True)
class Outcome:
    message: OutboxMessage
    result: Result
    detail: str = ""
    bounced: str | None = None  # the address a hard bounce refused


def _why_stale(kind: MailKind, subscriber: Subscriber) -> str:
    """Why a queued mail no longer makes sense and is dropped rather than sent; empty if not."""
    if subscriber.suppressed_at is not None:
        return f"address suppressed ({subscriber.suppressed_reason})"
    wanted = SubscriberStatus.CONFIRMED if kind is MailKind.REGIMEN else SubscriberStatus.PENDING
    if subscriber.status is not wanted:
        return f"reader is {subscriber.status.value}"
    return ""


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
