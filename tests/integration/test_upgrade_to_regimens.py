"""Migration 0011 on a database filled by the schema before it: every link mailed before the
upgrade opens what it opened, now as a subscription to the site's default regimen; what belongs
to the address (a suppression) moves to its reader row. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from alembic import command
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from service.core.migrations import alembic_config, migrate
from service.core.models import Reader, Subscriber, SubscriberStatus
from service.readers.tokens import Claims, Purpose, Tokens
from service.runtime import build_runtime
from service.web.app import create_app
from tests.helpers import BASE_URL, DEFAULT_REGIMEN, settings_for
from tests.integration.conftest import POSTGRES_URL

BACKENDS = ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]
BEFORE = "0010"  # the last schema with one subscription per address
# Readers as the previous schema held them: (id, public id, address, state, token version).
READERS = [
    (1, "pub-confirmed", "confirmed@example.org", "confirmed", 1),
    (2, "pub-pending", "pending@example.org", "pending", 1),
    (3, "pub-bounced", "bounced@example.org", "confirmed", 2),
]


@pytest.fixture(params=BACKENDS)
async def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database migrated to the schema before 0011."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        yield await _upgraded_to_before(url)
        return
    target = make_url(POSTGRES_URL).set(database="regimen_test_upgrade")
    url = target.render_as_string(hide_password=False)
    server = await asyncpg.connect(host=target.host, port=target.port or 5432,
                                   user=target.username, database="postgres")
    try:
        await server.execute('DROP DATABASE IF EXISTS "regimen_test_upgrade" WITH (FORCE)')
        await server.execute('CREATE DATABASE "regimen_test_upgrade"')
        yield await _upgraded_to_before(url)
        await server.execute('DROP DATABASE IF EXISTS "regimen_test_upgrade" WITH (FORCE)')
    finally:
        await server.close()


async def _upgraded_to_before(url: str) -> str:
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite+aiosqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # Alembic's env.py runs its own event loop, which cannot start inside this test's.
    await asyncio.to_thread(command.upgrade, alembic_config(url), BEFORE)
    return url


async def _fill_as_before(url: str) -> None:
    def at(day: int, hour: int, minute: int) -> datetime:
        # As each database's driver takes a time: SQLite's column holds naive UTC.
        moment = datetime(2026, 11, day, hour, minute, tzinfo=UTC)
        return moment.replace(tzinfo=None) if url.startswith("sqlite") else moment

    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for id_, public_id, email, status, version in READERS:
                await connection.execute(text(
                    "INSERT INTO subscribers (id, public_id, email, status, token_version,"
                    " created_at, confirmed_at, suppressed_at, suppressed_reason) VALUES"
                    " (:id, :public_id, :email, :status, :version, :at, :confirmed, :suppressed,"
                    " :reason)"), {
                    "id": id_, "public_id": public_id, "email": email, "status": status,
                    "version": version, "at": at(1, 10, 0),
                    "confirmed": at(1, 10, 5) if status == "confirmed" else None,
                    "suppressed": at(20, 8, 0) if id_ == 3 else None,
                    "reason": "bounce" if id_ == 3 else None})
    finally:
        await engine.dispose()


async def test_links_mailed_before_the_upgrade_still_work(
    old_database: str, tmp_path: Path, smtp_port: int,
) -> None:
    settings = settings_for(tmp_path, old_database, smtp_port)
    await _fill_as_before(old_database)
    tokens = Tokens(settings.secret_keys)
    # Minted now by the same token code that minted them then: the format did not change.
    links = {(public_id, purpose): f"/{path}/{tokens.make(purpose, Claims(public_id, version))}"
             for _, public_id, _, _, version in READERS
             for purpose, path in ((Purpose.REGIMEN, "r"), (Purpose.CONFIRM, "confirm"),
                                   (Purpose.UNSUBSCRIBE, "unsubscribe"),
                                   (Purpose.ERASE, "erase"))}

    await asyncio.to_thread(migrate, old_database, DEFAULT_REGIMEN)

    async with build_runtime(settings) as runtime:
        async with runtime.db.transaction() as session:
            subscriptions = {s.public_id: s for s in await session.scalars(select(Subscriber))}
            readers = {r.email: r for r in await session.scalars(select(Reader))}
        assert {s.regimen for s in subscriptions.values()} == {DEFAULT_REGIMEN}
        assert set(readers) == {email for _, _, email, _, _ in READERS}
        assert readers["bounced@example.org"].suppressed_reason == "bounce"
        assert readers["confirmed@example.org"].suppressed_at is None

        app = create_app(runtime, run_worker=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url=BASE_URL) as http:
            page = await http.get(links["pub-confirmed", Purpose.REGIMEN])
            assert page.status_code == 200
            assert runtime.catalog.default.title in page.text
            assert (await http.get(links["pub-pending", Purpose.CONFIRM])).status_code == 200
            confirmed = await http.post(links["pub-pending", Purpose.CONFIRM])
            assert confirmed.status_code == 200
            assert (await http.get(links["pub-bounced", Purpose.UNSUBSCRIBE])).status_code == 200
            assert (await http.post(links["pub-confirmed", Purpose.UNSUBSCRIBE])
                    ).status_code == 200
            erased = await http.post(links["pub-bounced", Purpose.ERASE])
            assert erased.status_code == 200
        async with runtime.db.transaction() as session:
            after = {s.public_id: s for s in await session.scalars(select(Subscriber))}
            left = set(await session.scalars(select(Reader.email)))
    assert after["pub-pending"].status is SubscriberStatus.CONFIRMED
    assert after["pub-confirmed"].status is SubscriberStatus.UNSUBSCRIBED
    assert "pub-bounced" not in after
    assert left == {"confirmed@example.org", "pending@example.org"}


async def test_the_upgrade_will_not_guess_which_regimen_the_readers_had(
    old_database: str,
) -> None:
    await _fill_as_before(old_database)
    # Without `regimen migrate`'s key, a guess could send every mailed link to a regimen
    # that does not exist: refused, and nothing changed.
    with pytest.raises(RuntimeError, match="needs the content's default regimen"):
        await asyncio.to_thread(migrate, old_database)
    engine = create_async_engine(old_database)
    try:
        async with engine.connect() as connection:
            revision = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    finally:
        await engine.dispose()
    assert revision == BEFORE
