"""What the tests share besides fixtures: a mail sink for aiosmtpd, and reading links."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import yaml
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from service.core.bulk import insert_rows
from service.core.content import Regimen
from service.core.database import Database
from service.core.models import Base, Reader, Subscriber, table_of, utcnow
from service.core.settings import Settings, load_settings
from service.funnel import lesson_stats, progress_stats, rollups, stats
from service.readers.signup import RequestOrigin, Signup
from service.readers.tokens import Claims, Purpose
from service.runtime import Runtime, build_runtime
from service.web.app import create_app

# The repository: the shipped content, README, compose file.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
BASE_URL = "https://regimen.test"
# Measurements a test wants shown at the end of the run (see conftest.pytest_terminal_summary).
REPORT: list[str] = []
URL_PATTERN = re.compile(r"https?://[^\s\"'<>]+")


class MailSink:
    """An aiosmtpd handler that keeps what it receives, and lets a test wait for it."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Any] = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.arrived:
            self.envelopes.append(envelope)
            self.messages.append(message)
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    async def wait_for(self, count: int, within: float = 10.0) -> list[EmailMessage]:
        """Wait (without blocking the event loop) until `count` messages have arrived."""
        return await asyncio.to_thread(self.wait, count, within)

    def wait(self, count: int, within: float = 10.0, to: str | None = None,
             ) -> list[EmailMessage]:
        """Block until `count` messages (to `to`, if given) have arrived; for tests that run
        outside an event loop."""
        def matching() -> list[EmailMessage]:
            return [m for m in self.messages if to is None or m["To"] == to]

        with self.arrived:
            if not self.arrived.wait_for(lambda: len(matching()) >= count, within):
                raise AssertionError(f"expected {count} mails, got {len(matching())}")
            return matching()[:count]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def links_in(message: EmailMessage) -> list[str]:
    """Every URL in the plain-text part, in order."""
    part = message.get_body(("plain",))
    assert part is not None
    return URL_PATTERN.findall(part.get_content())


def path_of(url: str) -> str:
    assert url.startswith(BASE_URL), url
    return url.removeprefix(BASE_URL)


def token_signed_at(secret_key: str, purpose: Purpose, claims: Claims, when: datetime) -> str:
    """A genuine token as if it had been made at `when`."""

    class Backdated(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(when.timestamp())

    serializer = URLSafeTimedSerializer(secret_key, salt=f"regimen.{purpose.value}",
                                        signer=Backdated)
    return str(serializer.dumps([claims.public_id, claims.version]))


@asynccontextmanager
async def served(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its in-process worker running, as `regimen serve` runs it, and a client for
    it; the app's lifespan closes the runtime at the end."""
    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            yield http


def on_database(work: Callable[[Database], Awaitable[object]], url: str) -> None:
    """`work` on a database of its own at `url`, from a test that is not async (one that runs
    a CLI command, which starts its own event loop)."""
    async def main() -> None:
        db = Database(url)
        try:
            await work(db)
        finally:
            await db.dispose()

    asyncio.run(main())


async def count_rows(db: Database, model: type[Base]) -> int:
    async with db.transaction() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


@asynccontextmanager
async def app_client(settings: Settings, **changes: object) -> AsyncIterator[httpx.AsyncClient]:
    """The app (without its worker) on settings changed by `changes`, and a client for it."""
    async with build_runtime(settings.model_copy(update=changes)) as runtime:
        transport = httpx.ASGITransport(app=create_app(runtime, run_worker=False))
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            yield http


def settings_for(tmp_path: Path, database_url: str, smtp_port: int) -> Settings:
    """The tests' settings: the database and SMTP port given, the shipped regimen, and limits
    out of the way (tests/integration/test_rate_limits.py sets the real ones)."""
    return load_settings(
        _env_file=None,
        database_url=database_url,
        data_dir=tmp_path,
        base_url=BASE_URL,
        secret_keys=["test-key-" + "x" * 40],
        mail_url=f"smtp://127.0.0.1:{smtp_port}",
        mail_from="Lawrence Gold <regimen@regimen.test>",
        content_path=PROJECT_ROOT / "content",
        # Tests sign the same addresses up many times in a second.
        signups_per_ip="10000/minute",
        link_opens_per_ip="10000/minute",
        mails_per_address="10000/minute",
        auth_failures_per_ip="10000/minute",
        # Tests write readers dated in the past, which only the worker's next count of the
        # author's figures would see (tests/integration/test_rollups.py counts them itself).
        figures_every=0,
    )


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    """The JSON log lines written so far."""
    for handler in logging.getLogger().handlers:
        handler.flush()  # info lines wait in the handler (logs.BufferedStreamHandler)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def shipped_single_file() -> str:
    """The shipped sacro-iliac regimen as a one-regimen site in a single file: the site fields
    of content/site.yaml first, then content/regimens/sacro-iliac.yaml as it is."""
    site = yaml.safe_load((PROJECT_ROOT / "content" / "site.yaml").read_text(encoding="utf-8"))
    head = "".join(f"{name}: {json.dumps(site[name], ensure_ascii=False)}\n"
                   for name in ("author", "site_name", "site_url"))
    regimen = PROJECT_ROOT / "content" / "regimens" / "sacro-iliac.yaml"
    return head + regimen.read_text(encoding="utf-8")


# The shipped content's default regimen, and a second one (content/regimens/).
DEFAULT_REGIMEN = "sacro-iliac"


def new_subscription(email: str, regimen: str = DEFAULT_REGIMEN,
                     **fields: Any) -> tuple[Reader, Subscriber]:
    """A reader row for the address and its subscription to `regimen`, for a test to add to a
    session (in that order: the subscription refers to the reader's address)."""
    return Reader(email=email), Subscriber(email=email, regimen=regimen, **fields)


def many_subscriptions(sync: Session, emails: list[str], **fields: Any) -> list[int]:
    """Readers and their subscriptions to the default regimen (with `fields`), a statement
    for each table, for tests that need thousands; returns the subscriptions' ids."""
    insert_rows(sync, table_of(Reader), [{"email": email} for email in emails])
    return list(insert_rows(sync, table_of(Subscriber), [
        {"email": email, "regimen": DEFAULT_REGIMEN, **fields} for email in emails],
        returning=[table_of(Subscriber).c.id]).scalars().all())


def a_signup(email: str, origin: RequestOrigin, source_url: str | None = None,
             regimen: str = DEFAULT_REGIMEN) -> Signup:
    """A checked signup, as the web hands it to the writer, with a test's wording version."""
    return Signup(email, origin, source_url, "v-test", regimen)


# The shipped content's second regimen (content/regimens/neck-and-shoulders.yaml).
OTHER_REGIMEN = "neck-and-shoulders"


def shipped_content_in(folder: Path) -> Path:
    """A copy of the shipped content folder (site.yaml and regimens/) under `folder`, for a test
    that edits, adds or removes regimens; returns the copy's path."""
    import shutil

    return Path(shutil.copytree(PROJECT_ROOT / "content", folder / "content"))


# The author's figures as the pages read them (service.funnel.rollups.read: the days kept, and
# the rest counted from the raw rows), for a period from `since` on (to `now`, by default far
# enough ahead to hold every reader a test made).
def _until(since: datetime, now: datetime | None) -> datetime:
    return now or max(utcnow(), since) + timedelta(days=400)


async def report_of(session: AsyncSession, regimens: Sequence[Regimen], now: datetime,
                    days: int, scanner_window: timedelta,
                    regimen: str | None = None) -> stats.Report:
    figures = await rollups.read(session, regimens, regimen, stats.period_start(now, days), now,
                                 scanner_window)
    return await stats.report(session, figures, regimens, now, days, scanner_window, regimen)


async def funnel_of(session: AsyncSession, regimens: Sequence[Regimen], now: datetime,
                    days: int, scanner_window: timedelta,
                    regimen: str | None = None) -> stats.Report:
    figures = await rollups.read(session, regimens, regimen, stats.period_start(now, days), now,
                                 scanner_window)
    return stats.funnel(figures, now, days, scanner_window, regimen)


async def how_far_each_of(session: AsyncSession, regimens: Sequence[Regimen], since: datetime,
                          now: datetime | None = None) -> list[progress_stats.HowFar]:
    figures = await rollups.read(session, regimens, None, since, _until(since, now),
                                 timedelta(0))
    return progress_stats.how_far_each(regimens, since, figures)


async def how_far_of(session: AsyncSession, regimen: Regimen, since: datetime,
                     now: datetime | None = None) -> progress_stats.HowFar:
    [figures] = await how_far_each_of(session, [regimen], since, now)
    return figures


async def lessons_of(session: AsyncSession, regimens: list[Regimen], since: datetime,
                     scanner_window: timedelta,
                     now: datetime | None = None) -> list[lesson_stats.RegimenLessons]:
    figures = await rollups.read(session, regimens, None, since, _until(since, now),
                                 scanner_window)
    return lesson_stats.lessons(regimens, figures)


@asynccontextmanager
async def plans_kept_from_the_first_run(session: AsyncSession) -> AsyncIterator[list[str]]:
    """On PostgreSQL, the plans the transaction's statements run with (auto_explain), made as
    a prepared statement's generic plan is: once, at its first run, and kept after (until
    `DISCARD PLANS`). A plan made when a table was small, without statistics (a new table, or
    autovacuum off), can be one that reads all of it later. On SQLite, no plans: it keeps
    none of the kind."""
    plans: list[str] = []
    if session.get_bind().dialect.name != "postgresql":
        yield plans
        return
    raw = (await (await session.connection()).get_raw_connection()).driver_connection
    assert raw is not None

    def note(_connection: object, message: Any) -> None:
        plans.append(message.message)

    raw.add_log_listener(note)
    for setting in ("LOAD 'auto_explain'", "SET LOCAL auto_explain.log_min_duration = 0",
                    "SET LOCAL auto_explain.log_level = notice",
                    "SET LOCAL plan_cache_mode = force_generic_plan"):
        await session.execute(text(setting))
    try:
        yield plans
        await session.execute(text("SELECT 1"))  # the last plan has arrived
    finally:
        raw.remove_log_listener(note)
