"""The engine, and the one place that commits: `Database.transaction()`.

Domain code takes a session and only flushes; whoever opened the transaction (a request or the
worker) owns the commit. Code that queues mail sets `session.info["outbox"]`, and the worker is
woken as soon as that transaction has committed, so a signup's mail leaves at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, CursorResult, Result, make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from service.config import PROJECT_ROOT

OUTBOX_QUEUED = "outbox"


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the writer; a busy timeout waits for the lock instead of
    # failing; SQLite leaves foreign keys off unless asked.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _begin_immediate(conn: Connection) -> None:
    # A deferred transaction that reads and then writes can fail at once with "database is
    # locked" when another writer got in between; taking the write lock up front makes writers
    # queue on the busy timeout instead.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.is_sqlite = _prepare_sqlite_dir(url)
        self.engine = create_async_engine(url, echo=echo, pool_pre_ping=not self.is_sqlite)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _tune_sqlite)
            event.listen(self.engine.sync_engine, "begin", _begin_immediate)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self.outbox_ready = asyncio.Event()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """Yield a session; commit if the block succeeds, roll back if it raises."""
        async with self.sessionmaker() as session:
            async with session.begin():
                yield session
            if session.info.pop(OUTBOX_QUEUED, False):
                self.outbox_ready.set()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def alembic_config(url: str) -> Config:
    config = Config(PROJECT_ROOT / "alembic.ini")
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logging"] = False
    return config


def migrate(url: str) -> None:
    """Bring the database schema up to date. Must not be called from a running event loop."""
    _prepare_sqlite_dir(url)
    command.upgrade(alembic_config(url), "head")


def _prepare_sqlite_dir(url: str) -> bool:
    """Create the folder of a SQLite database file; say whether the URL is SQLite at all."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return False
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return True


def rowcount(result: Result[Any]) -> int:
    """How many rows a bulk UPDATE or DELETE touched (they return a cursor result)."""
    return cast(CursorResult[Any], result).rowcount
