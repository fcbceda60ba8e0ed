"""PostgreSQL LISTEN, kept up for as long as a worker runs.

A NOTIFY reaches a listener only while its connection lives. A server restart closes it, and
a worker that listened once would go back to its slow poll without a word (issue 13). So the
listening connection is watched: when it goes, that is logged, it is reopened with backoff,
the recovery is logged, and the waiter is woken once, since notifications sent in between are
lost. SQLite has no NOTIFY: there only this process's commits wake its waiters
(`service.core.database.wake_after_commit`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from service.core.database import Database

log = logging.getLogger(__name__)

FIRST_RETRY = 1.0  # seconds
LONGEST_RETRY = 30.0


async def keep_listening(db: Database, channel: str, stop: asyncio.Event) -> None:
    """Until `stop` is set, each NOTIFY on `channel` from any process sets
    `db.wakeup(channel)` here."""
    if db.engine.dialect.driver != "asyncpg":
        await stop.wait()
        return
    delay, lost = FIRST_RETRY, False
    while not stop.is_set():
        closed = asyncio.Event()
        connection: AsyncConnection | None = None
        try:
            connection = await db.engine.connect()
            await _listen(db, connection, channel, closed)
        except Exception as exc:
            if not lost:
                log.warning("cannot LISTEN on %s (%s); polling until it can", channel,
                            f"{type(exc).__name__}: {exc}".splitlines()[0])
            lost = True
        else:
            if lost:
                log.info("listening on %s again", channel)
                db.wakeup(channel).set()
            delay, lost = FIRST_RETRY, False
            await first_of(stop, closed)
            if closed.is_set():
                log.warning("the connection listening on %s was lost; reconnecting", channel)
                lost = True
        finally:
            if connection is not None:
                await _close(connection)
        if lost and not stop.is_set():
            await first_of(stop, timeout=delay)
            delay = min(delay * 2, LONGEST_RETRY)


async def _listen(db: Database, connection: AsyncConnection, channel: str,
                  closed: asyncio.Event) -> None:
    listener: Any = (await connection.get_raw_connection()).driver_connection
    listener.add_termination_listener(lambda *_: closed.set())
    await listener.add_listener(channel, lambda *_: db.wakeup(channel).set())


async def _close(connection: AsyncConnection) -> None:
    # Never back into the pool: returned, it would stay subscribed to the channel (the pool's
    # reset is a ROLLBACK, not an UNLISTEN), and after a loss its server end is gone anyway.
    try:
        await connection.invalidate()
        await connection.close()
    except Exception as exc:
        log.debug("closing the listening connection: %s: %s", type(exc).__name__, exc)


async def first_of(*events: asyncio.Event, timeout: float | None = None) -> None:
    """Wait until one of `events` is set, or `timeout` seconds have passed."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
