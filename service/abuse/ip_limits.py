"""Per-client-IP limits on the public routes, with the `limits` library: in memory for one
process, in Redis for several. A script hammering the form gets 429 and Retry-After.

Sliding-window counters: constant work and memory per key, where a moving window keeps (and
re-sorts) one entry per request in the window.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string


@dataclass(frozen=True)
class Refused:
    retry_after: int  # seconds


class RateLimits:
    def __init__(self, storage_url: str, *, signups_per_ip: str, link_opens_per_ip: str,
                 auth_failures_per_ip: str) -> None:
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
        self.per_ip = {"signup": parse_many(signups_per_ip), "link": parse_many(link_opens_per_ip),
                       "auth": parse_many(auth_failures_per_ip)}

    async def check_ip(self, kind: str, ip: str) -> Refused | None:
        """Count one request of `kind` ("signup", "link", or a wrong password: "auth") from
        `ip`; say how long to wait if it is one too many."""
        return await self._hit(self.per_ip[kind], kind, ip)

    async def refusal(self, kind: str, ip: str) -> Refused | None:
        """Whether `ip` is over its limit of `kind` already, without counting a request: a
        right password is not a failure, but must wait too while the IP is locked out."""
        for limit in self.per_ip[kind]:
            if not await self.limiter.test(limit, kind, ip):
                return await self._refused(limit, kind, ip)
        return None

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.disconnect()

    async def _hit(self, limits: list[RateLimitItem], namespace: str,
                   key: str) -> Refused | None:
        for limit in limits:
            if not await self.limiter.hit(limit, namespace, key):
                return await self._refused(limit, namespace, key)
        return None

    async def _refused(self, limit: RateLimitItem, namespace: str, key: str) -> Refused:
        stats = await self.limiter.get_window_stats(limit, namespace, key)
        return Refused(max(1, math.ceil(stats.reset_time - time.time())))
