"""Mail throughput: the outbox worker against raw aiosmtplib, to the same SMTP sink, same run.

    .venv/bin/python bench/mail.py [--mails 2000] [--database-url URL]

The sink is aiosmtpd in its own process (so it does not share our CPU). The baseline sends
already-built messages one after another over one kept-open aiosmtplib connection: the most
a single Python client can push. The worker does everything it does in production for each
mail: claim it from the outbox, load the reader, render the templates, inline the CSS, send
over its kept-open connections, and mark it sent. The figure that matters is the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiosmtplib
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataclasses import replace  # noqa: E402

from bench.common import (  # noqa: E402
    ROOT,
    empty_tables,
    ensure_postgres_database,
    free_port,
    save_result,
)
from service.core.migrations import migrate  # noqa: E402
from service.core.models import (  # noqa: E402
    MailKind,
    OutboxMessage,
    OutboxStatus,
    Reader,
    Subscriber,
    SubscriberStatus,
)
from service.core.settings import load_settings  # noqa: E402
from service.delivery.worker import Pace, Worker  # noqa: E402
from service.runtime import build_runtime  # noqa: E402


class CountingSink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def run_sink(port: int, ready: Any) -> None:
    from aiosmtpd.controller import Controller

    controller = Controller(CountingSink(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


async def raw_rate(port: int, messages: list[bytes]) -> float:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
    await client.connect()
    started = time.perf_counter()
    for data in messages:
        await client.sendmail("regimen@regimen.test", ["reader@example.org"], data)
    elapsed = time.perf_counter() - started
    await client.quit()
    return len(messages) / elapsed


async def worker_rate(port: int, mails: int, database_url: str, data_dir: Path) -> tuple[float,
                                                                                       list[bytes]]:
    settings = load_settings(
        _env_file=None, database_url=database_url, data_dir=data_dir,
        base_url="https://regimen.test", secret_keys=["bench-" + "k" * 40],
        mail_url=f"smtp://127.0.0.1:{port}", mail_from="Lawrence Gold <regimen@regimen.test>",
        content_path=ROOT / "content",
    )
    await asyncio.to_thread(migrate, database_url)
    runtime = build_runtime(settings)
    async with runtime.db.transaction() as session:
        await empty_tables(session)
    async with runtime.db.transaction() as session:
        emails = [f"reader{i}@example.org" for i in range(mails)]
        readers = [Subscriber(email=email, regimen=runtime.regimen.key,
                              status=SubscriberStatus.PENDING) for email in emails]
        session.add_all([Reader(email=email) for email in emails] + readers)
        await session.flush()
        session.add_all(OutboxMessage(kind=MailKind.CONFIRM, subscriber_id=reader.id)
                        for reader in readers)
    worker = Worker(runtime.db, runtime.mailer, runtime.transport,
                    replace(Pace.from_settings(settings), remind_after=None))
    started = time.perf_counter()
    while await worker.deliver_due():
        pass
    elapsed = time.perf_counter() - started
    async with runtime.db.transaction() as session:
        sent = await session.scalar(select(func.count()).select_from(OutboxMessage)
                                    .where(OutboxMessage.status == OutboxStatus.SENT))
    assert sent == mails, f"only {sent} of {mails} sent"
    # The same kind of message for the baseline, built once.
    samples = [runtime.mailer.compose(MailKind.CONFIRM, readers[i % mails], f"raw{i}").data
               for i in range(mails)]
    await runtime.aclose()
    return mails / elapsed, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    port = free_port()
    ready = multiprocessing.Event()
    sink = multiprocessing.Process(target=run_sink, args=(port, ready), daemon=True)
    sink.start()
    ready.wait(30)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = args.database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
            ensure_postgres_database(url)
            worker, samples = asyncio.run(worker_rate(port, args.mails, url, Path(tmp)))
            # The baseline twice, around nothing else, and the better of the two: the ratio
            # errs against the worker when the machine is busy.
            raw = max(asyncio.run(raw_rate(port, samples)) for _ in range(2))
    finally:
        sink.terminate()
    backend = url.split(":", 1)[0].split("+")[0]
    ratio = worker / raw
    print(f"{'':32} {'mails/s':>10}")  # noqa: T201
    print(f"{'raw aiosmtplib, one connection':32} {raw:>10.0f}")  # noqa: T201
    print(f"{'outbox worker (' + backend + ')':32} {worker:>10.0f}")  # noqa: T201
    print(f"{'ratio (target >= 0.75)':32} {ratio:>10.2f}")  # noqa: T201
    save_result(f"mail_{backend}", {"mails": args.mails, "raw_per_s": round(raw),
                                    "worker_per_s": round(worker), "ratio": round(ratio, 3)})


if __name__ == "__main__":
    main()
