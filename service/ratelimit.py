"""Rate limits, with the `limits` library: in memory for one process, in Redis for several.

Two kinds of limit, for two kinds of abuse:
- per client IP on the public routes: a script hammering the form gets 429 and Retry-After;
- per address on the mail it causes: a stranger's address typed in again and again gets at
  most one confirmation per 5 minutes and three a day. That limit never shows in the answer
  (which would tell whether the address is known): only the mail is withheld.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string


@dataclass(frozen=True)
class Refused:
    retry_after: int  # seconds


class RateLimits:
    def __init__(self, storage_url: str, secret: str, *, signups_per_ip: str,
                 link_opens_per_ip: str, mails_per_address: str) -> None:
        # Our own pool for Redis, so that stopping the service can close its connections.
        self._pool: redis.asyncio.ConnectionPool | None = None
        options: dict[str, Any] = {}
        if storage_url.startswith("redis"):
            self._pool = redis.asyncio.ConnectionPool.from_url(storage_url)
            options = {"implementation": "redispy", "connection_pool": self._pool}
        storage = storage_from_string(f"async+{storage_url}", **options)
        assert isinstance(storage, Storage)
        self.storage = storage
        self.limiter = MovingWindowRateLimiter(storage)
        self._secret = secret.encode()
        self.per_ip = {"signup": parse_many(signups_per_ip), "link": parse_many(link_opens_per_ip)}
        self.mails_per_address = parse_many(mails_per_address)

    async def check_ip(self, kind: str, ip: str) -> Refused | None:
        """Count one request of `kind` ("signup" or "link") from `ip`; say how long to wait if
        it is one too many."""
        return await self._hit(self.per_ip[kind], kind, ip)

    async def allow_mail_to(self, address: str) -> bool:
        # Keyed hash: the limiter's storage (maybe a shared Redis) never holds addresses.
        digest = hmac.new(self._secret, address.encode(), hashlib.sha256).hexdigest()[:32]
        return await self._hit(self.mails_per_address, "mail", digest) is None

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
