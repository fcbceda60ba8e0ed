"""The engine, and the one place that commits: `Database.transaction()`.

Domain code takes a session and only flushes; whoever opened the transaction (a request or the
worker) owns the commit. Code whose change someone waits for (queued mail: the worker) calls
`wake_after_commit`, and the waiter's event is set as soon as that transaction has committed.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import asyncpg
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, CursorResult, Result, make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

WAKE_AFTER_COMMIT = "wake_after_commit"
CHECKPOINT_EVERY = 1.0  # seconds
T = TypeVar("T")


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


def _leave_checkpoints_to_the_background(dbapi_connection: Any, _record: Any) -> None:
    # SQLite copies the WAL back into the database file, and syncs both, inside whichever commit
    # crosses 1000 pages: on the signup hot path that made one commit in ten take 20 ms. These
    # connections leave it to Database.checkpoint_soon, which no writer waits for.
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


def _begin_immediate(conn: Connection) -> None:
    # A deferred transaction that reads and then writes can fail at once with "database is
    # locked" when another writer got in between; taking the write lock up front makes writers
    # queue on the busy timeout instead.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


# The blocking driver for each async one, for work handed to a thread (`run_in_thread`).
BLOCKING_DRIVERS = {"aiosqlite": "pysqlite", "asyncpg": "psycopg"}


def _blocking_connect_args(is_sqlite: bool) -> dict[str, Any]:
    if is_sqlite:
        return {}
    # psycopg prepares a statement on its fifth run, and PostgreSQL then keeps one generic plan
    # for it. Planned while the tables were still empty, that plan scanned them whole for
    # every batch ever after, unless an ANALYZE came by (bench/signup.py on a fresh database:
    # 1,270 signups/s against 2,070 planned each time). The batch's statements are short, so
    # planning them each time costs nothing measurable.
    return {"prepare_threshold": None}


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.is_sqlite = prepare_sqlite_dir(url)
        database = make_url(url).database
        self.sqlite_path = Path(database) if self.is_sqlite and database not in (
            None, "", ":memory:") else None
        self.engine = create_async_engine(url, echo=echo, pool_pre_ping=not self.is_sqlite)
        self.blocking_engine = create_engine(_blocking_url(url), echo=echo,
                                             pool_pre_ping=not self.is_sqlite,
                                             connect_args=_blocking_connect_args(self.is_sqlite))
        if self.is_sqlite:
            for engine in (self.engine.sync_engine, self.blocking_engine):
                event.listen(engine, "connect", _tune_sqlite)
                event.listen(engine, "begin", _begin_immediate)
            event.listen(self.blocking_engine, "connect", _leave_checkpoints_to_the_background)
        self._checkpointing: asyncio.Task[None] | None = None
        self._last_checkpoint = 0.0
        self._checkpoint_failing = False
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self.blocking_sessionmaker = sessionmaker(self.blocking_engine, expire_on_commit=False)
        self._wakeups: dict[str, asyncio.Event] = {}

    def wakeup(self, name: str) -> asyncio.Event:
        """The event set after each commit of a transaction that called `wake_after_commit`
        with this name."""
        return self._wakeups.setdefault(name, asyncio.Event())

    def _wake(self, names: set[str]) -> None:
        for name in names:
            self.wakeup(name).set()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """Yield a session; commit if the block succeeds, roll back if it raises."""
        async with self.sessionmaker() as session:
            async with session.begin():
                yield session
            self._wake(session.info.pop(WAKE_AFTER_COMMIT, set()))

    async def run_in_thread(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one transaction of its own on a worker thread, and commit.

        For a hot path of several statements: an async session hands each statement to the
        event loop and back, and under load every hand-off waits behind all the requests the
        loop is serving. Here the whole transaction is one hand-off.
        """
        def in_thread() -> tuple[T, set[str]]:
            with self.blocking_sessionmaker() as session:
                with session.begin():
                    result = work(session)
                return result, session.info.pop(WAKE_AFTER_COMMIT, set())

        result, wake = await asyncio.to_thread(in_thread)
        self._wake(wake)
        if self.is_sqlite:
            self.checkpoint_soon()
        return result

    def checkpoint_soon(self) -> None:
        """Start a passive WAL checkpoint on a thread unless one ran in the last second.

        Passive: it copies what it can without waiting for, or holding up, readers and writers.
        """
        running = self._checkpointing is not None and not self._checkpointing.done()
        if running or time.monotonic() - self._last_checkpoint < CHECKPOINT_EVERY:
            return
        self._last_checkpoint = time.monotonic()
        self._checkpointing = asyncio.create_task(asyncio.to_thread(self._checkpoint))

    def _checkpoint(self) -> None:
        # Nobody awaits this task, so a failure (a full disk) is logged here, once until
        # checkpoints work again: it would otherwise be "Task exception was never retrieved".
        try:
            # The bare DB-API connection: SQLAlchemy would open a transaction first, and a
            # checkpoint cannot run inside one.
            connection = self.blocking_engine.raw_connection()
            try:
                connection.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                connection.close()
        except Exception as exc:
            if not self._checkpoint_failing:
                log.warning("SQLite WAL checkpoint failed (%s: %s); trying again with the next "
                            "writes", type(exc).__name__, exc)
            self._checkpoint_failing = True
        else:
            if self._checkpoint_failing:
                log.info("SQLite WAL checkpoints work again")
            self._checkpoint_failing = False

    def free_disk_bytes(self) -> int | None:
        """Free space where a SQLite database lives (a full disk fails every write while
        reads go on); None for a server database, which watches its own."""
        if not self.is_sqlite or self.sqlite_path is None:
            return None
        return shutil.disk_usage(self.sqlite_path.parent).free

    async def dispose(self) -> None:
        if self._checkpointing is not None:
            await self._checkpointing
        await self.engine.dispose()
        self.blocking_engine.dispose()


def _blocking_url(url: str) -> str:
    parsed = make_url(url)
    driver = BLOCKING_DRIVERS.get(parsed.get_driver_name())
    if driver is None:
        raise ValueError(f"no blocking driver known for {parsed.drivername}; use one of "
                         + ", ".join(sorted(BLOCKING_DRIVERS)))
    return parsed.set(drivername=f"{parsed.get_backend_name()}+{driver}").render_as_string(
        hide_password=False)


def prepare_sqlite_dir(url: str) -> bool:
    """Create the folder of a SQLite database file; say whether the URL is SQLite at all."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return False
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return True


def wake_after_commit(session: Session | AsyncSession, name: str) -> None:
    """Have `Database.wakeup(name)` set once this session's transaction has committed."""
    session.info.setdefault(WAKE_AFTER_COMMIT, set()).add(name)


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be used right now (unreachable, restarting, out
    of disk, locked) rather than that something was wrong with a statement: the caller may
    well succeed in a little while."""
    if isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    # asyncpg raises its own, unwrapped, when it cannot even connect.
    return isinstance(exc, asyncpg.exceptions.PostgresConnectionError
                      | asyncpg.exceptions.OperatorInterventionError
                      | asyncpg.exceptions.InterfaceError)


def rowcount(result: Result[Any]) -> int:
    """How many rows a bulk UPDATE or DELETE touched (they return a cursor result)."""
    return cast(CursorResult[Any], result).rowcount


@asynccontextmanager
async def planned_with(session: AsyncSession, setting: str, value: str) -> AsyncIterator[None]:
    """On PostgreSQL, a planner setting for the statements run inside only (SQLite has none).

    For the worker's statements that run on every batch against tables that grow by the batch:
    a statement is prepared once per connection, PostgreSQL may keep the plan it made at the
    first runs, and a table never analyzed (new, or on a server with autovacuum off) gives it
    no idea of how many rows match."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    if postgresql:
        await session.execute(text(f"SET LOCAL {setting} = {value}"))
    yield
    if postgresql:
        await session.execute(text(f"SET LOCAL {setting} TO DEFAULT"))
