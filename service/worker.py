"""The outbox worker: claim due mails, send them, settle each row.

It runs inside the web process (woken right after a signup commits) or on its own as
`regimen worker`, as many as wanted; either way it also polls, so retries, reminders and other
processes' mail go out too. Stopping finishes the sends under way and gives back the claimed
mail not yet tried, so another worker takes it at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from service import outbox
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


@dataclass(frozen=True)
class Pace:
    """How a worker works; `regimen worker` takes these from the settings."""

    concurrency: int = 4
    poll_seconds: float = 5.0
    lease: timedelta = outbox.LEASE
    retry_for: timedelta = timedelta(days=3)
    remind_after: timedelta | None = timedelta(hours=24)


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

    async def run(self, stop: asyncio.Event) -> None:
        self.stop = stop
        log.info("outbox worker %s started", self.worker_id)
        try:
            while not stop.is_set():
                # Cleared before looking, so a signup committed while we send is not missed.
                self.db.outbox_ready.clear()
                try:
                    await self.beat()
                    await self.remind()
                    while await self.deliver_due() and not stop.is_set():
                        pass
                except Exception:
                    log.exception("outbox worker pass failed; trying again at the next poll")
                await _first_of(stop, self.db.outbox_ready, timeout=self.pace.poll_seconds)
        finally:
            await self.transport.close()
            log.info("outbox worker %s stopped", self.worker_id)

    async def beat(self) -> None:
        async with self.db.transaction() as session:
            await session.merge(WorkerHeartbeat(worker_id=self.worker_id, beat_at=self.clock()))

    async def remind(self) -> int:
        if self.pace.remind_after is None:
            return 0
        async with self.db.transaction() as session:
            return await outbox.queue_reminders(session, self.clock(), self.pace.remind_after)

    async def deliver_due(self) -> int:
        """Claim one batch and settle every message in it; return how many were claimed."""
        async with self.db.transaction() as session:
            messages = await outbox.claim_due(session, self.clock(),
                                              limit=self.pace.concurrency * 5,
                                              lease=self.pace.lease)
        # Sends start in queue order, at most `concurrency` at a time.
        in_flight: set[asyncio.Task[None]] = set()
        for message in messages:
            if len(in_flight) >= self.pace.concurrency:
                done, in_flight = await asyncio.wait(in_flight,
                                                     return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            in_flight.add(asyncio.create_task(self._deliver(message)))
        await asyncio.gather(*in_flight)
        return len(messages)

    async def _deliver(self, message: OutboxMessage) -> None:
        if self.stop.is_set():
            async with self.db.transaction() as session:
                await outbox.release(session, message.id)
            return
        await self._send(message)

    async def _send(self, message: OutboxMessage) -> None:
        async with self.db.transaction() as session:
            subscriber = await session.get(Subscriber, message.subscriber_id)
        if subscriber is None or (stale := _why_stale(message.kind, subscriber)):
            async with self.db.transaction() as session:
                await outbox.mark_cancelled(session, message.id,
                                            "reader erased" if subscriber is None else stale)
            return
        try:
            await self.transport.send(self.mailer.compose(message.kind, subscriber, message.key))
        except PermanentFailure as exc:
            log.warning("outbox %s: refused for good: %s", message.id, exc)
            async with self.db.transaction() as session:
                await outbox.mark_failed(session, message.id, str(exc))
                if isinstance(exc, RecipientRejected):
                    await suppress(session, subscriber.email, SuppressionReason.BOUNCE,
                                   self.clock())
        except Exception as exc:  # TemporaryFailure, and anything unforeseen: nothing is lost
            await self._retry_or_give_up(message, str(exc) or type(exc).__name__)
        else:
            log.info("outbox %s: %s mail sent", message.id, message.kind.value)
            async with self.db.transaction() as session:
                await outbox.mark_sent(session, message.id, self.clock())

    async def _retry_or_give_up(self, message: OutboxMessage, error: str) -> None:
        now = self.clock()
        async with self.db.transaction() as session:
            if now - message.created_at > self.pace.retry_for:
                log.error("outbox %s: failing for %s, giving up: %s",
                          message.id, self.pace.retry_for, error)
                await outbox.mark_failed(session, message.id, f"gave up retrying: {error}")
            else:
                log.warning("outbox %s: attempt %s failed, will retry: %s",
                            message.id, message.attempts, error)
                await outbox.mark_retry(session, message.id, message.attempts, error, now)


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
