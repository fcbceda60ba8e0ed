"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from service.db import alembic_config, migrate
from service.models import Base


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_no_drift_between_models_and_migrations(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == []


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
