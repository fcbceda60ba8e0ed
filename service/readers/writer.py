"""Group commit for signups: the signups of concurrent requests go to the database together.

A popular post brings bursts of readers. One transaction per request makes every request wait
its turn for the database's write lock (SQLite has a single writer, and each commit is a sync of
the journal), so throughput collapses and the slowest requests wait half a second. Here each
request hands its signup to one writer and waits; the writer takes everything that is waiting,
writes it in one transaction and one commit, and then answers all of those requests. Nobody is
answered before their own signup has committed, and a quiet moment costs no extra wait: a lone
signup is written at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime

from service.abuse.mail_budget import MailWindow
from service.core.database import Database, is_unavailable
from service.core.models import utcnow
from service.readers import signup

log = logging.getLogger(__name__)

# Enough to absorb a burst; small enough that one transaction stays short.
MAX_BATCH = 256


class SignupWriter:
    def __init__(self, db: Database, mail_windows: Sequence[MailWindow] = (),
                 max_batch: int = MAX_BATCH) -> None:
        self.db = db
        self.mail_windows = mail_windows
        self.max_batch = max_batch
        self._waiting: list[tuple[signup.Signup, asyncio.Future[None]]] = []
        self._writing: asyncio.Task[None] | None = None
        # When, and why, the database last refused a batch outright; None once one commits
        # again. /readyz reports it.
        self.failed: tuple[datetime, str] | None = None

    async def write(self, item: signup.Signup) -> None:
        """Return once `item` has committed; raise what writing it raised."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write_waiting())
        await done

    async def _write_waiting(self) -> None:
        while self._waiting:
            batch = self._waiting[:self.max_batch]
            del self._waiting[:self.max_batch]
            try:
                await self._commit(batch)
            except Exception as exc:
                if not is_unavailable(exc):
                    await self._one_by_one(batch)
                    continue
                # The database itself failed (unreachable, locked, out of space), not one of
                # these rows: each signup alone would only fail as slowly again, one by one.
                # The class only for /readyz, which anyone may read; the text (which can name
                # the database's host) goes to the log.
                self.failed = (utcnow(), type(exc).__name__)
                log.warning("a batch of %d signups failed: %s", len(batch),
                            f"{type(exc).__name__}: {exc}".splitlines()[0])
                for _, done in batch:
                    _settle(done, exc)

    async def _one_by_one(self, batch: list[tuple[signup.Signup, asyncio.Future[None]]]) -> None:
        # One signup the database refuses must not fail the others beside it.
        log.warning("a batch of %d signups failed; writing them one by one", len(batch))
        for one in batch:
            try:
                await self._commit([one])
            except Exception as exc:  # handed to the request that waits for it
                _settle(one[1], exc)

    async def _commit(self, batch: list[tuple[signup.Signup, asyncio.Future[None]]]) -> None:
        signups = [item for item, _ in batch]
        await self.db.run_in_thread(
            lambda session: signup.subscribe(session, signups, utcnow(), self.mail_windows))
        self.failed = None
        for _, done in batch:
            _settle(done, None)


def _settle(done: asyncio.Future[None], error: Exception | None) -> None:
    # A request whose client went away has cancelled its future; its signup stands anyway.
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
