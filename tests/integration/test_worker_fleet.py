"""Several `regimen worker` processes on one queue: every mail exactly once, even when one of
them is killed mid-send (kill -9: no chance to give anything back)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from service.core.database import Database
from service.core.models import MailKind, OutboxMessage, OutboxStatus, SubscriberStatus
from service.core.settings import Settings
from service.delivery.worker import Pace
from tests.helpers import PROJECT_ROOT, REPORT, MailSink, new_subscription

MAILS = 1000
CLAIM_BATCH = Pace.from_settings(Settings()).claim_batch  # what deliver_due claims at once


def worker_process(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=env,
                            cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def unsent(db: Database) -> int:
    async with db.transaction() as session:
        return await session.scalar(select(func.count()).select_from(OutboxMessage)
                                    .where(OutboxMessage.status != OutboxStatus.SENT)) or 0


@pytest.mark.parametrize("kill", [False, True], ids=["all-well", "one-killed"])
async def test_every_mail_once(
    database_url: str, db: Database, smtp: MailSink, smtp_port: int, tmp_path: Path, kill: bool,
) -> None:
    async with db.transaction() as session:
        pairs = [new_subscription(f"reader{i}@example.org", status=SubscriberStatus.PENDING)
                 for i in range(MAILS)]
        readers = [reader for _, reader in pairs]
        session.add_all([address for address, _ in pairs] + readers)
        await session.flush()
        session.add_all(OutboxMessage(kind=MailKind.CONFIRM, subscriber_id=reader.id)
                        for reader in readers)
    async with db.transaction() as session:
        keys = set(await session.scalars(select(OutboxMessage.key)))

    env = {key: value for key, value in os.environ.items() if not key.startswith("REGIMEN_")}
    env.update({
        "REGIMEN_DATABASE_URL": database_url,
        "REGIMEN_MAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "REGIMEN_DATA_DIR": str(tmp_path),
        "REGIMEN_SECRET_KEYS": "fleet-test-" + "k" * 40,
        "REGIMEN_WORKER_LEASE": "5",
        "REGIMEN_REMINDER_AFTER": "0",
    })
    # PostgreSQL takes a fleet; SQLite has one writer, so one worker and then its replacement.
    postgres = database_url.startswith("postgresql")
    workers = [worker_process(env) for _ in range(3 if postgres else 1)]
    killed = workers[0] if kill else None
    try:
        if killed is not None:
            # Woken by the sink as mail arrives; killed after a third, or after 60 s anyway.
            def a_third_arrived() -> bool:
                with smtp.arrived:
                    return smtp.arrived.wait_for(lambda: len(smtp.messages) >= MAILS // 3, 60)

            await asyncio.to_thread(a_third_arrived)
            killed.send_signal(signal.SIGKILL)
            killed.wait()
            if not postgres:
                workers.append(worker_process(env))
        for _ in range(1200):
            if await unsent(db) == 0:
                break
            await asyncio.sleep(0.1)
    finally:
        alive = [worker for worker in workers if worker is not killed]
        for worker in alive:
            worker.send_signal(signal.SIGTERM)
        for worker in alive:
            assert worker.wait(timeout=60) == 0

    assert await unsent(db) == 0
    received = [str(message["Message-ID"]).strip("<>").partition("@")[0]
                for message in smtp.messages]
    assert set(received) == keys  # nothing lost
    duplicates = len(received) - len(keys)
    # Only what a killed worker had claimed can go out twice.
    assert duplicates <= (CLAIM_BATCH if kill else 0)
    REPORT.append(f"worker fleet on {'PostgreSQL' if postgres else 'SQLite'}: {MAILS} mails, "
                  f"{len(alive)} worker(s) to the end"
                  f"{', one killed with -9 midway' if kill else ''}: "
                  f"{duplicates} duplicate(s), nothing lost")
