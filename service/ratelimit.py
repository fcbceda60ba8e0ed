"""Rate limits, with the `limits` library: in memory for one process, in Redis for several.

Two kinds of limit, for two kinds of abuse:
- per client IP on the public routes: a script hammering the form gets 429 and Retry-After;
- per address on the mail it causes: a stranger's address typed in again and again gets at
  most one mail per 5 minutes and three a day. That limit never shows in the answer (which
  would tell whether the address is known): only the mail is withheld. It is counted on the
  outbox, which already holds every mail queued to the address: exact across any number of
  processes without Redis, one query for a whole batch of signups, and no memory that grows
  with the number of addresses seen.

The IP limits use sliding-window counters: constant work and memory per key, where a moving
window keeps (and re-sorts) one entry per request in the window.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis.asyncio
from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.bulk import among
from service.models import OutboxMessage


@dataclass(frozen=True)
class Refused:
    retry_after: int  # seconds


class RateLimits:
    def __init__(self, storage_url: str, *, signups_per_ip: str, link_opens_per_ip: str) -> None:
        # Our own pool for Redis, so that stopping the service can close its connections.
        self._pool: redis.asyncio.ConnectionPool | None = None
        options: dict[str, Any] = {}
        if storage_url.startswith("redis"):
            self._pool = redis.asyncio.ConnectionPool.from_url(storage_url)
            options = {"implementation": "redispy", "connection_pool": self._pool}
        storage = storage_from_string(f"async+{storage_url}", **options)
        assert isinstance(storage, Storage)
        self.storage = storage
        self.limiter = SlidingWindowCounterRateLimiter(storage)
        self.per_ip = {"signup": parse_many(signups_per_ip), "link": parse_many(link_opens_per_ip)}

    async def check_ip(self, kind: str, ip: str) -> Refused | None:
        """Count one request of `kind` ("signup" or "link") from `ip`; say how long to wait if
        it is one too many."""
        return await self._hit(self.per_ip[kind], kind, ip)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.disconnect()

    async def _hit(self, limits: list[RateLimitItem], namespace: str,
                   key: str) -> Refused | None:
        for limit in limits:
            if not await self.limiter.hit(limit, namespace, key):
                stats = await self.limiter.get_window_stats(limit, namespace, key)
                return Refused(max(1, math.ceil(stats.reset_time - time.time())))
        return None


@dataclass(frozen=True)
class MailWindow:
    """At most `most` mails to one address within `within`."""

    most: int
    within: timedelta


def mail_windows(spec: str) -> list[MailWindow]:
    """REGIMEN_MAILS_PER_ADDRESS ("1/5minutes;3/day") as windows."""
    return [MailWindow(item.amount, timedelta(seconds=item.get_expiry()))
            for item in parse_many(spec)]


class MailBudget:
    """What the per-address windows still allow each of some readers, from the outbox."""

    def __init__(self, windows: Sequence[MailWindow], now: datetime,
                 queued: dict[int, list[datetime]]) -> None:
        self._windows = windows
        self._now = now
        self._queued = queued

    @classmethod
    def load(cls, session: Session, reader_ids: set[int], windows: Sequence[MailWindow],
             now: datetime) -> MailBudget:
        queued: dict[int, list[datetime]] = {}
        if windows and reader_ids:
            since = now - max(window.within for window in windows)
            rows = session.execute(
                select(OutboxMessage.subscriber_id, OutboxMessage.created_at)
                .where(among(session, OutboxMessage.subscriber_id, reader_ids),
                       OutboxMessage.created_at > since))
            for reader_id, created_at in rows:
                queued.setdefault(reader_id, []).append(created_at)
        return cls(windows, now, queued)

    def spend(self, reader_id: int) -> bool:
        """Whether one more mail to this reader fits; if it does, count it."""
        queued = self._queued.setdefault(reader_id, [])
        for window in self._windows:
            if sum(1 for at in queued if at > self._now - window.within) >= window.most:
                return False
        queued.append(self._now)
        return True
