"""Signup speed: POST /subscribe on the real web process against a bare FastAPI endpoint, and
how long a signup takes to reach the reader's mail server.

    .venv/bin/python bench/signup.py [--seconds 10] [--database-url URL]

1. Throughput. A bare FastAPI form-POST endpoint, then the service's web process, each served
   as production serves it (one uvicorn process, uvloop, httptools; the service as `regimen
   serve --no-worker`, its mail worker being a process of its own), loaded by wrk (2 threads,
   64 connections, a new address every request) in the same run: the figure that matters is
   the ratio. Afterwards every signup wrk saw acknowledged (303) must have its subscriber row
   and its outbox row: nothing acknowledged and lost.
2. End to end: from the signup to the confirmation mail accepted by an SMTP server (aiosmtpd,
   in a process of its own). Light load: one reader at a time, timed from sending the form.
   Under load: wrk as in 1, timed from the signup's commit (its row's created_at), since wrk
   cannot say when it sent each request. On SQLite the mail goes out from the worker inside
   the web process (the embedded default, `regimen serve`); on PostgreSQL from a `regimen
   worker` process beside the web process.
wrk is installed from Debian's packages if it is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    arrivals,
    empty_tables,
    free_port,
    percentile,
    prepared_database,
    regimen,
    save_result,
    service_env,
    start,
    start_arrivals_sink,
    stop,
    wait_ready,
    wrk_signups,
)
from service.core.database import Database  # noqa: E402
from service.core.models import OutboxMessage, Subscriber  # noqa: E402

BARE_APP = """
from fastapi import FastAPI, Form
from fastapi.responses import RedirectResponse

app = FastAPI()

@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}

@app.post("/subscribe")
async def subscribe(email: str = Form()) -> RedirectResponse:
    return RedirectResponse("/check-inbox", status_code=303)
"""
UVICORN = ["--loop", "uvloop", "--http", "httptools", "--log-level", "warning"]


async def empty(url: str) -> None:
    db = Database(url)
    async with db.transaction() as session:
        await empty_tables(session)
    await db.dispose()


async def counts(url: str) -> tuple[int, int]:
    db = Database(url)
    async with db.transaction() as session:
        readers = await session.scalar(select(func.count()).select_from(Subscriber)) or 0
        mails = await session.scalar(select(func.count()).select_from(OutboxMessage)) or 0
    await db.dispose()
    return readers, mails


async def signed_up_at(url: str, prefix: str) -> dict[str, float]:
    db = Database(url)
    async with db.transaction() as session:
        rows = await session.execute(select(Subscriber.email, Subscriber.created_at)
                                     .where(Subscriber.email.startswith(prefix)))
        found = {email: created_at.timestamp() for email, created_at in rows}
    await db.dispose()
    return found


def throughput(url: str, seconds: int, work: Path) -> dict[str, Any]:
    (work / "bare.py").write_text(BARE_APP)
    port = free_port()
    bare = start([sys.executable, "-m", "uvicorn", "bare:app", "--port", str(port), *UVICORN,
                  "--app-dir", str(work)], service_env(url, work, "console:"), port)
    try:
        baseline = wrk_signups(port, seconds, work)
    finally:
        stop(bare)

    asyncio.run(empty(url))
    port = free_port()
    web = start(regimen("serve", "--no-worker", "--port", str(port)),
                service_env(url, work, f"file://{work}/mail"), port)
    try:
        service = wrk_signups(port, seconds, work)
    finally:
        stop(web)
    readers, mails = asyncio.run(counts(url))
    if readers < service["acknowledged"] or mails < service["acknowledged"]:
        sys.exit(f"acknowledged {service['acknowledged']} signups, but the database holds "
                 f"{readers} readers and {mails} mails")
    return {"baseline": baseline, "service": service,
            "ratio": round(service["requests_per_s"] / baseline["requests_per_s"], 3),
            "subscribers": readers, "outbox_rows": mails}


def end_to_end(url: str, seconds: int, work: Path) -> dict[str, Any]:
    asyncio.run(empty(url))
    smtp_port, log, sink = start_arrivals_sink(work)
    env = service_env(url, work, f"smtp://127.0.0.1:{smtp_port}")
    port = free_port()
    embedded = url.startswith("sqlite")
    processes = [start(regimen("serve", "--port", str(port)) if embedded else
                       regimen("serve", "--no-worker", "--port", str(port)), env, port)]
    if not embedded:
        processes.append(start(regimen("worker"), env))
    try:
        wait_ready(port)
        sent: dict[str, float] = {}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for n in range(200):
                address = f"light{n}@example.org"
                sent[address] = time.time()
                client.post("/subscribe", data={"email": address})
                time.sleep(0.02)
        load = wrk_signups(port, seconds, work, prefix="load")
        committed = asyncio.run(signed_up_at(url, "load"))
        deadline = time.monotonic() + 300
        while len(arrivals(log)) < len(sent) + len(committed) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        for process in processes:
            stop(process)
        sink.terminate()
    arrived = arrivals(log)
    light = [(arrived[a] - t) * 1000 for a, t in sent.items() if a in arrived]
    loaded = [(arrived[a] - t) * 1000 for a, t in committed.items() if a in arrived]
    return {
        "mail_from": "in-process worker" if embedded else "regimen worker process",
        "light": {"signups": len(sent), "delivered": len(light),
                  "p50_ms": round(percentile(light, 0.5), 1),
                  "p99_ms": round(percentile(light, 0.99), 1)},
        "under_load": {"signups": len(committed), "delivered": len(loaded),
                       "requests_per_s": load["requests_per_s"],
                       "p50_ms": round(percentile(loaded, 0.5), 1),
                       "p99_ms": round(percentile(loaded, 0.99), 1)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = prepared_database(args.database_url, work, "signup")
        result = throughput(url, args.seconds, work)
        result["end_to_end"] = end_to_end(url, args.seconds, work)
    backend = url.split(":", 1)[0].split("+")[0]
    save_result(f"signup_{backend}", result)
    base, service, e2e = result["baseline"], result["service"], result["end_to_end"]
    print(f"{'':34} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")  # noqa: T201
    for name, row in (("bare FastAPI form POST", base), (f"POST /subscribe ({backend})", service)):
        print(f"{name:34} {row['requests_per_s']:>8.0f} {row['p50_ms']:>8.1f} "  # noqa: T201
              f"{row['p99_ms']:>8.1f}")
    print(f"ratio {result['ratio']:.2f} (target >= 0.35, p99 < 50 ms); acknowledged "  # noqa: T201
          f"{service['acknowledged']}, readers {result['subscribers']}, "
          f"mails queued {result['outbox_rows']}")
    for label in ("light", "under_load"):
        row = e2e[label]
        print(f"signup -> mail accepted, {label.replace('_', ' ')}: p50 {row['p50_ms']} ms, "  # noqa: T201
              f"p99 {row['p99_ms']} ms ({row['delivered']}/{row['signups']} delivered, "
              f"{e2e['mail_from']})")


if __name__ == "__main__":
    main()
