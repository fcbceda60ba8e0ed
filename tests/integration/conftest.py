"""Shared fixtures: real databases (SQLite, and PostgreSQL when REGIMEN_TEST_DATABASE_URL is
set, which `make test` and CI always do), a real SMTP server, and the app with its worker."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.engine import make_url

from service.core.database import Database
from service.core.migrations import migrate
from service.core.models import Base
from service.core.settings import Settings
from service.runtime import Runtime, build_runtime
from tests.helpers import PROJECT_ROOT, REPORT, MailSink, free_port, served, settings_for

POSTGRES_URL = os.environ.get("REGIMEN_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") == "true" and not POSTGRES_URL:
        raise pytest.UsageError("CI must test PostgreSQL too: set REGIMEN_TEST_DATABASE_URL")


def pytest_report_header() -> str:
    if POSTGRES_URL:
        return f"databases: SQLite and PostgreSQL ({make_url(POSTGRES_URL).render_as_string()})"
    return ("databases: SQLite only; set REGIMEN_TEST_DATABASE_URL (as `make test` does) "
            "to run every database test on PostgreSQL too")


async def _recreate_postgres_database(url: str) -> None:
    """Start each run from an empty database; a dead server fails the run loudly."""
    target = make_url(url)
    server = await asyncpg.connect(host=target.host, port=target.port or 5432,
                                   user=target.username, database="postgres")
    try:
        await server.execute(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
        await server.execute(f'CREATE DATABASE "{target.database}"')
    finally:
        await server.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in REPORT:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'regimen.db'}"
    else:
        url = POSTGRES_URL
        asyncio.run(_recreate_postgres_database(url))
    migrate(url)
    return url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A database with empty tables."""
    database = Database(database_url)
    async with database.transaction() as session:
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(table.delete())
    yield database
    await database.dispose()


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def smtp(smtp_port: int) -> Iterator[MailSink]:
    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    yield sink
    controller.stop()


@pytest.fixture
def settings(tmp_path: Path, database_url: str, smtp_port: int) -> Settings:
    return settings_for(tmp_path, database_url, smtp_port)


@pytest.fixture
async def runtime(settings: Settings, db: Database) -> AsyncIterator[Runtime]:
    async with build_runtime(settings) as built:
        yield built


@pytest.fixture
async def client(runtime: Runtime, smtp: MailSink) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its in-process worker running, as `regimen serve` runs it, mailing to
    the SMTP sink (which outlives it, so the worker never finds the server gone)."""
    async with served(runtime) as http:
        yield http


@pytest.fixture
def author_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The CLI pointed at the test database, emptied."""
    for key, value in {
        "REGIMEN_DATABASE_URL": database_url,
        "REGIMEN_DATA_DIR": str(tmp_path / "var"),
        "REGIMEN_CONTENT_PATH": str(PROJECT_ROOT / "content"),
        "REGIMEN_MAIL_URL": "console:",
    }.items():
        monkeypatch.setenv(key, value)

    async def empty() -> None:
        db = Database(database_url)
        async with db.transaction() as session:
            for table in reversed(Base.metadata.sorted_tables):
                await session.execute(table.delete())
        await db.dispose()

    asyncio.run(empty())
    return database_url
