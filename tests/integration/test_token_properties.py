"""A reader's links carry their token version: bumping it in the database kills every link
already mailed, through the real routes, whatever the version was."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from service.core.database import Database
from service.core.models import Subscriber, SubscriberStatus, utcnow
from service.core.settings import Settings
from service.readers.links import PATHS
from service.readers.tokens import Claims, Purpose, Tokens
from tests.helpers import app_client, new_subscription

# Versions live in a 32-bit column on PostgreSQL; the bump must still fit.
versions = st.integers(min_value=1, max_value=2**31 - 2)
readers = itertools.count()


@pytest.fixture
async def http(settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings) as client:
        yield client


async def confirmed_reader(db: Database, version: int) -> Subscriber:
    async with db.transaction() as session:
        now = utcnow()
        address, reader = new_subscription(f"reader-{next(readers)}@example.org",
                                           token_version=version,
                                           status=SubscriberStatus.CONFIRMED, created_at=now,
                                           confirmed_at=now)
        session.add_all([address, reader])
    return reader


@settings(
    max_examples=25,
    deadline=None,  # a per-example time limit is a wall-clock assertion
    database=None,  # nothing written into the repository
    # One app and database for all examples: each example makes its own reader.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(version=versions, purpose=st.sampled_from(list(PATHS)))
async def test_a_bumped_version_kills_the_links_already_sent(
    http: httpx.AsyncClient, db: Database, settings: Settings, version: int, purpose: Purpose,
) -> None:
    reader = await confirmed_reader(db, version)
    tokens = Tokens(settings.secret_keys)

    def page(version: int) -> str:
        return PATHS[purpose] + tokens.make(purpose, Claims(reader.public_id, version))

    assert (await http.get(page(version))).status_code == 200
    async with db.transaction() as session:
        await session.execute(update(Subscriber).where(Subscriber.id == reader.id)
                              .values(token_version=version + 1))
    assert (await http.get(page(version))).status_code == 404
    assert (await http.get(page(version + 1))).status_code == 200
