"""The outbox worker: claim due mails, send them, settle each row.

It runs inside the web process (woken right after a signup commits) or on its own as
`regimen worker`; either way it also polls, so retries and other processes' mail go out too.
Stopping lets the batch in hand finish: nothing claimed is left half-done.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime

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
from service.transports import PermanentFailure, Transport

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0
BATCH_SIZE = 20


class Worker:
    def __init__(
        self, db: Database, mailer: Mailer, transport: Transport, *,
        poll_seconds: float = POLL_SECONDS, clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.mailer = mailer
        self.transport = transport
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"

    async def run(self, stop: asyncio.Event) -> None:
        log.info("outbox worker %s started", self.worker_id)
        while not stop.is_set():
            # Cleared before looking, so a signup committed while we send is not missed.
            self.db.outbox_ready.clear()
            try:
                await self.beat()
                while await self.deliver_due() and not stop.is_set():
                    pass
            except Exception:
                log.exception("outbox worker pass failed; trying again at the next poll")
            await _first_of(stop, self.db.outbox_ready, timeout=self.poll_seconds)
        log.info("outbox worker %s stopped", self.worker_id)

    async def beat(self) -> None:
        async with self.db.transaction() as session:
            await session.merge(WorkerHeartbeat(worker_id=self.worker_id, beat_at=self.clock()))

    async def deliver_due(self) -> int:
        """Claim one batch and settle every message in it; return how many were claimed."""
        async with self.db.transaction() as session:
            messages = await outbox.claim_due(session, self.clock(), BATCH_SIZE)
        for message in messages:
            await self._deliver(message)
        return len(messages)

    async def _deliver(self, message: OutboxMessage) -> None:
        async with self.db.transaction() as session:
            subscriber = await session.get(Subscriber, message.subscriber_id)
        stale = _why_stale(message.kind, subscriber)
        if stale is not None or subscriber is None:
            async with self.db.transaction() as session:
                await outbox.mark_cancelled(session, message.id, stale or "reader erased")
            return
        try:
            await self.transport.send(self.mailer.compose(message.kind, subscriber, message.key))
        except PermanentFailure as exc:
            log.warning("outbox %s: refused for good: %s", message.id, exc)
            async with self.db.transaction() as session:
                await outbox.mark_failed(session, message.id, str(exc))
        except Exception as exc:  # TemporaryFailure, and anything unforeseen: nothing is lost
            log.warning("outbox %s: attempt %s failed, will retry: %s",
                        message.id, message.attempts, exc)
            async with self.db.transaction() as session:
                await outbox.mark_retry(session, message.id, message.attempts, str(exc),
                                        self.clock())
        else:
            log.info("outbox %s: %s mail sent", message.id, message.kind.value)
            async with self.db.transaction() as session:
                await outbox.mark_sent(session, message.id, self.clock())


def _why_stale(kind: MailKind, subscriber: Subscriber | None) -> str | None:
    """A queued mail that no longer makes sense is dropped rather than sent."""
    if subscriber is None:
        return "reader erased"
    if kind is MailKind.CONFIRM and subscriber.status is not SubscriberStatus.PENDING:
        return f"reader is {subscriber.status.value}, no confirmation needed"
    if kind is MailKind.REGIMEN and subscriber.status is not SubscriberStatus.CONFIRMED:
        return f"reader is {subscriber.status.value}, not confirmed"
    return None


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
