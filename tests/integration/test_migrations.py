"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.core.migrations import alembic_config, migrate
from service.core.models import Base
from tests.helpers import DEFAULT_REGIMEN

T = TypeVar("T")


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def _looked_at(database_url: str, look: Callable[[Connection], T]) -> T:
    """What `look` finds in the (migrated) test database."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(look)
    finally:
        await engine.dispose()


async def test_no_drift_between_models_and_migrations(database_url: str) -> None:
    assert await _looked_at(database_url, _differences) == []


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'roundtrip.db'}"
    engine = create_async_engine(url)
    try:
        await _in_thread(migrate, url)
        async with engine.connect() as connection:
            assert {"subscribers", "consents", "outbox"} <= await connection.run_sync(_tables)
        await _in_thread(command.downgrade, alembic_config(url), "base")
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == {"alembic_version"}
        await _in_thread(migrate, url)
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
    finally:
        await engine.dispose()


async def _in_thread(function: Any, *args: Any) -> None:
    # Alembic's env.py runs its own event loop, which cannot start inside this test's.
    await asyncio.to_thread(function, *args)


@asynccontextmanager
async def _at_revision(tmp_path: Path, revision: str) -> AsyncIterator[tuple[str, AsyncEngine]]:
    """A SQLite database migrated up to `revision`, for a test to fill and migrate further."""
    url = f"sqlite+aiosqlite:///{tmp_path / f'at-{revision}.db'}"
    await _in_thread(_prepare_and_upgrade_to, url, revision)
    engine = create_async_engine(url)
    try:
        yield url, engine
    finally:
        await engine.dispose()


async def test_milestones_are_filled_from_the_events_already_recorded(tmp_path: Path) -> None:
    async with _at_revision(tmp_path, "0008") as (url, engine):
        async with engine.begin() as connection:
            await connection.execute(text(
                "INSERT INTO subscribers (id, public_id, email, status, token_version, created_at)"
                " VALUES (1, 'p1', 'a@example.org', 'pending', 1, '2026-11-01 10:00:00.000000')"))
            await connection.execute(text(
                "INSERT INTO outbox (key, kind, subscriber_id, status, attempts, created_at,"
                " next_attempt_at, sent_at) VALUES ('k', 'confirm', 1, 'sent', 1,"
                " '2026-11-01 10:00:00.000000', '2026-11-01 10:00:00.000000',"
                " '2026-11-01 10:00:02.000000')"))
            for kind, at in [("confirm_page_opened", "10:00:07"),  # a scanner
                             ("confirm_page_opened", "10:10:00"),
                             ("confirm_page_opened", "10:11:00"),
                             ("regimen_opened", "10:30:00"), ("regimen_opened", "10:31:00"),
                             ("exercise_clicked", "10:40:00")]:
                await connection.execute(text(
                    "INSERT INTO events (kind, subscriber_id, created_at)"
                    f" VALUES ('{kind}', 1, '2026-11-01 {at}.000000')"))
        await _in_thread(migrate, url, DEFAULT_REGIMEN)
        async with engine.connect() as connection:
            row = (await connection.execute(text(
                "SELECT confirm_page_opened_at, regimen_opened_at, first_click_at"
                " FROM subscribers"))).one()
        assert [str(value)[11:19] for value in row] == ["10:10:00", "10:30:00", "10:40:00"]


def _prepare_and_upgrade_to(url: str, revision: str) -> None:
    migrate_dir = Path(url.removeprefix("sqlite+aiosqlite:///")).parent
    migrate_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


def _partial_indexes(connection: Connection) -> dict[str, str]:
    """Each partial index of the database and its condition, as the database reports it."""
    found: dict[str, str] = {}
    inspector = inspect(connection)
    for table in inspector.get_table_names():
        for index in inspector.get_indexes(table):
            options = index.get("dialect_options", {})
            condition = options.get("postgresql_where") or options.get("sqlite_where")
            if condition is not None:
                found[str(index["name"])] = str(condition)
    return found


async def test_partial_indexes_are_partial_in_the_database_too(database_url: str) -> None:
    # compare_metadata does not look at an index's condition; this does.
    declared = {str(index.name) for table in Base.metadata.tables.values()
                for index in table.indexes
                if index.dialect_options["postgresql"]["where"] is not None}
    partial = await _looked_at(database_url, _partial_indexes)
    assert set(partial) == declared
    # the four milestones, the lessons due, lesson links followed and the two stops
    assert len(declared) == 8
    assert all("IS NOT NULL" in condition.upper() for condition in partial.values())


async def test_lesson_deliveries_get_their_readers_signup_time(tmp_path: Path) -> None:
    """Migration 0016 copies each subscription's signup time onto its lesson deliveries, which
    the author's lesson figures of a signup day are a range of."""
    async with _at_revision(tmp_path, "0015") as (url, engine):
        async with engine.begin() as connection:
            await connection.execute(text(
                "INSERT INTO readers (id, email, created_at)"
                " VALUES (1, 'a@example.org', '2026-11-01 10:00:00.000000')"))
            await connection.execute(text(
                "INSERT INTO subscribers (id, public_id, email, regimen, status, token_version,"
                " created_at) VALUES (7, 'p1', 'a@example.org', 'sacro-iliac', 'confirmed', 1,"
                " '2026-11-01 10:00:00.000000')"))
            await connection.execute(text(
                "INSERT INTO lesson_deliveries (subscriber_id, lesson, regimen, outcome, at)"
                " VALUES (7, 'day-2', 'sacro-iliac', 'queued', '2026-11-03 10:00:00.000000')"))
        await _in_thread(migrate, url, DEFAULT_REGIMEN)
        async with engine.connect() as connection:
            copied = (await connection.execute(text(
                "SELECT signed_up_at FROM lesson_deliveries"))).scalar_one()
            assert await connection.run_sync(_differences) == []
        assert str(copied).startswith("2026-11-01 10:00:00")
