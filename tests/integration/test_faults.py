"""Faults injected for real, and what the service does about them (issue 13): a PostgreSQL
restart under a listening worker, a database outage and a full disk under the web app, a
backlog that takes a while to send.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select, text

from service.core import database
from service.core.database import Database
from service.core.migrations import migrate
from service.core.models import MailKind, OutboxMessage, OutboxStatus, WorkerHeartbeat
from service.core.settings import Settings
from service.delivery.worker import Pace, Worker
from service.readers import signup
from service.runtime import Runtime, build_runtime
from tests.helpers import MailSink, a_signup, served, settings_for
from tests.integration.test_outbox import READER, sign_up
from tests.integration.throwaway import fill, postgres_cluster, small_disk


async def _eventually(check: Any, within: float = 60.0, every: float = 0.1) -> None:
    """Poll `check` (an async predicate) until it holds; fail after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{check.__name__} did not hold within {within} s")
        await asyncio.sleep(every)


async def test_a_worker_listens_again_after_postgresql_restarts(
    tmp_path: Path, smtp: MailSink, smtp_port: int, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with postgres_cluster() as cluster:
        await asyncio.to_thread(migrate, cluster.url)
        settings = settings_for(tmp_path, cluster.url, smtp_port)
        async with build_runtime(settings) as runtime:
            # Polling once an hour: only a notification can bring the mail out in time.
            pace = replace(Pace.from_settings(settings), poll_seconds=3600)
            worker = Worker(runtime.db, runtime.mailer, runtime.transport, pace)
            stop = asyncio.Event()
            running = asyncio.create_task(worker.run(stop))
            observer = Database(cluster.url)

            async def listening() -> bool:
                try:
                    async with observer.transaction() as session:
                        return bool(await session.scalar(text(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE query LIKE 'LISTEN%'")))
                except Exception:  # the server is still coming back
                    return False

            try:
                await _eventually(listening)
                await asyncio.to_thread(cluster.crash_and_restart)
                await _eventually(listening)
                await sign_up(observer, "after-restart@example.org")
                [mail] = await smtp.wait_for(1, within=30)
                assert mail["To"] == "after-restart@example.org"
            finally:
                stop.set()
                await running
                await observer.dispose()
    messages = [record.getMessage() for record in caplog.records]
    assert any("connection listening on regimen_outbox was lost" in m for m in messages)
    assert any("listening on regimen_outbox again" in m for m in messages)


class SlowSink(MailSink):
    """A mail server taking its time over each message, as a busy relay does."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.05)
        return await super().handle_DATA(server, session, envelope)


async def test_heartbeat_and_reminders_go_on_while_a_backlog_is_sent(
    runtime: Runtime, settings: Settings, smtp_port: int,
) -> None:
    slow = SlowSink()
    controller = Controller(slow, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    backlog = [f"backlog{n}@example.org" for n in range(40)]
    await sign_up(runtime.db, *backlog)
    pace = replace(Pace.from_settings(settings), concurrency=1, poll_seconds=0.1)
    worker = Worker(runtime.db, runtime.mailer, runtime.transport, pace)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    beats: set[datetime] = set()
    reminded_during_backlog = False
    forgetful_added = False

    async def backlog_sent() -> bool:
        nonlocal reminded_during_backlog, forgetful_added
        if beats and not forgetful_added:
            # Once sending is under way: a reader who signed up two days ago and never
            # confirmed, due the reminder at once. It must not wait for the backlog.
            async with runtime.db.transaction() as session:
                await session.run_sync(
                    signup.subscribe,
                    [a_signup("forgetful@example.org", READER)],
                    datetime.now(UTC) - timedelta(days=2))
            forgetful_added = True
        async with runtime.db.transaction() as session:
            beat = await session.scalar(select(func.max(WorkerHeartbeat.beat_at)))
            waiting = await session.scalar(
                select(func.count()).where(OutboxMessage.status == OutboxStatus.QUEUED,
                                           OutboxMessage.kind == MailKind.CONFIRM))
            reminders = await session.scalar(
                select(func.count()).where(OutboxMessage.kind == MailKind.REMINDER))
        if waiting:
            if beat is not None:
                beats.add(beat)
            reminded_during_backlog |= bool(reminders)
        return waiting == 0

    try:
        await _eventually(backlog_sent, within=120, every=0.05)
    finally:
        stop.set()
        await running
        controller.stop()
    # /readyz trusts a heartbeat seen within a minute: it must keep coming while mail flows.
    assert len(beats) >= 3
    assert reminded_during_backlog


async def test_a_checkpoint_on_a_full_disk_is_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(database, "CHECKPOINT_EVERY", 0.0)
    with small_disk(tmp_path / "disk") as disk:
        url = f"sqlite+aiosqlite:///{disk / 'regimen.db'}"
        await asyncio.to_thread(migrate, url)
        db = Database(url)
        # Enough written to the WAL that copying it back needs the main file to grow.
        for batch in range(8):
            async with db.transaction() as session:
                await session.run_sync(signup.subscribe, [
                    a_signup(f"r{batch}-{n}@example.org", READER)
                    for n in range(100)], datetime.now(UTC))
        fill(disk)
        for _ in range(3):
            db.checkpoint_soon()
            await db.dispose()  # waits for the checkpoint; it must not raise
    failures = [r for r in caplog.records if "checkpoint failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].levelno == logging.WARNING


async def _ready(http: httpx.AsyncClient) -> bool:
    return (await http.get("/readyz")).status_code == 200


async def test_a_full_disk_is_a_503_and_not_ready_until_there_is_room(
    tmp_path: Path, smtp: MailSink, smtp_port: int, caplog: pytest.LogCaptureFixture,
) -> None:
    with small_disk(tmp_path / "disk", size="4M") as disk:
        url = f"sqlite+aiosqlite:///{disk / 'regimen.db'}"
        await asyncio.to_thread(migrate, url)
        settings = settings_for(tmp_path, url, smtp_port)
        async with build_runtime(settings) as runtime, served(runtime) as http:
            await _eventually(lambda: _ready(http))
            fill(disk)
            failed = [await http.post("/subscribe", json={"email": f"r{n}@example.org"})
                      for n in range(4)]
            assert {answer.status_code for answer in failed} == {503}
            assert all(int(answer.headers["retry-after"]) > 0 for answer in failed)
            assert failed[0].json()["error"] == "Not available just now"
            page = await http.post("/subscribe", data={"email": "page@example.org"})
            assert page.status_code == 503
            assert "Not available just now" in page.text
            readiness = await http.get("/readyz")
            assert readiness.status_code == 503
            assert "full" in readiness.json()["checks"]["signups"]
            assert readiness.headers["retry-after"]
            (disk / "filler").unlink()
            assert (await http.post("/subscribe", json={"email": "back@example.org"})
                    ).status_code == 202
            await _eventually(lambda: _ready(http))
    # One line per failed request, and one traceback for all of them.
    errors = [r for r in caplog.records if r.name == "service.web.errors"]
    assert len(errors) == 5
    assert sum(r.exc_info is not None for r in errors if "/subscribe" in r.getMessage()) == 1
    assert not [r for r in caplog.records if r.name.startswith("uvicorn")]


async def test_a_database_outage_is_a_503_and_everything_comes_back(
    tmp_path: Path, smtp: MailSink, smtp_port: int,
) -> None:
    with postgres_cluster() as cluster:
        await asyncio.to_thread(migrate, cluster.url)
        settings = settings_for(tmp_path, cluster.url, smtp_port)
        async with build_runtime(settings) as runtime, served(runtime) as http:
            await _eventually(lambda: _ready(http))
            await asyncio.to_thread(cluster.stop, "immediate")
            refused = await http.post("/subscribe", json={"email": "during@example.org"})
            assert refused.status_code == 503
            assert int(refused.headers["retry-after"]) > 0
            readiness = await http.get("/readyz")
            assert readiness.status_code == 503
            checks = readiness.json()["checks"]
            assert checks["database"].startswith("unreachable")
            # Not "no worker has started": we cannot know while the database is away.
            assert checks["worker"] == "unknown while the database is unreachable"
            await asyncio.to_thread(cluster.start)
            await _eventually(lambda: _ready(http))
            assert (await http.post("/subscribe", json={"email": "after@example.org"})
                    ).status_code == 202
            [mail] = await smtp.wait_for(1, within=30)
            assert mail["To"] == "after@example.org"

