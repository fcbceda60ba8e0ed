"""What the benchmarks share: ports, processes, wrk, an SMTP sink that notes arrival times, and
bench/results.json."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.migrations import migrate
from service.core.models import Base

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def save_result(name: str, result: dict[str, Any]) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[name] = result
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def service_env(database_url: str, data_dir: Path, mail_url: str) -> dict[str, str]:
    """The service's settings for a benchmark; limits raised, as every request is from one IP."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGIMEN_")}
    env.update({
        "REGIMEN_DATABASE_URL": database_url, "REGIMEN_DATA_DIR": str(data_dir),
        "REGIMEN_MAIL_URL": mail_url, "REGIMEN_SECRET_KEYS": "bench-" + "k" * 42,
        "REGIMEN_SIGNUPS_PER_IP": "100000000/minute",
        "REGIMEN_MAILS_PER_ADDRESS": "100000000/minute",
    })
    return env


def start(command: list[str], env: dict[str, str], port: int | None = None,
          ) -> subprocess.Popen[bytes]:
    """Start a process; with `port`, wait until it answers HTTP there."""
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    for _ in range(300 if port else 0):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    if port:
        process.kill()
        sys.exit(f"nothing answered on port {port}: {' '.join(command)}")
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=60)


def regimen(*args: str) -> list[str]:
    return [sys.executable, "-m", "service.cli", *args]


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True,
                   stdout=subprocess.DEVNULL)
    return shutil.which("wrk") or sys.exit("wrk could not be installed")


# A new address on every request, naming its regimen as the blog snippet does; `prefix` keeps
# the addresses of two runs apart.
SIGNUP_LUA = """
local counter = 0
local thread_id = 0
local prefix = "%(prefix)s"
setup = function(thread) thread_id = thread_id + 1; thread:set("id", thread_id) end
request = function()
  counter = counter + 1
  local body = "email=" .. prefix .. id .. "-" .. counter .. "%%40example.org" ..
    "&regimen=sacro-iliac"
  return wrk.format("POST", "/subscribe",
    {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
done = function(summary, latency, requests)
  io.write(string.format("p50 %%d p99 %%d\\n", latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_signups(port: int, seconds: int, work: Path, prefix: str = "r") -> dict[str, float]:
    """POST /subscribe with 2 threads and 64 connections; requests/s, p50 and p99 in ms, and
    how many signups were answered with a 303."""
    script = work / f"signup-{prefix}.lua"
    script.write_text(SIGNUP_LUA % {"prefix": prefix})
    out = subprocess.run(
        [ensure_wrk(), "-t2", "-c64", f"-d{seconds}s", "-s", str(script),
         f"http://127.0.0.1:{port}"], check=True, capture_output=True, text=True).stdout
    requests = int(_found(r"(\d+) requests in", out))
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": round(float(_found(r"Requests/sec:\s+([\d.]+)", out)), 1),
        "p50_ms": int(_found(r"p50 (\d+)", out)) / 1000,
        "p99_ms": int(_found(r"p99 (\d+)", out)) / 1000,
        "acknowledged": requests - (int(failed[1]) if failed else 0),
        "socket_errors": 1 if "Socket errors" in out else 0,
    }


def _found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        sys.exit(f"wrk said something unexpected:\n{text}")
    return match[1]


def start_arrivals_sink(work: Path) -> tuple[int, Path, multiprocessing.Process]:
    """The sink's port, its arrivals log and its process (terminate it when done)."""
    port, log = free_port(), work / "arrivals.log"
    ready = multiprocessing.Event()
    sink = multiprocessing.Process(target=_run_arrivals_sink, args=(port, str(log), ready),
                                   daemon=True)
    sink.start()
    ready.wait(30)
    return port, log, sink


def prepared_database(given: str, work: Path, name: str) -> str:
    """The benchmark's database, migrated: `given`, or a SQLite file of its own in `work`."""
    url = given or f"sqlite+aiosqlite:///{work}/{name}.db"
    ensure_postgres_database(url)
    migrate(url)
    return url


async def empty_tables(session: AsyncSession) -> None:
    """Every table emptied. On PostgreSQL by TRUNCATE: deleted rows stay in the tables and
    their indexes until a vacuum, and with autovacuum off (as on the machines here) each run
    had to step over the dead rows of all before it: a claim of the outbox took 28 ms after
    a few runs."""
    tables = reversed(Base.metadata.sorted_tables)
    if session.get_bind().dialect.name == "postgresql":
        names = ", ".join(f'"{table.name}"' for table in tables)
        await session.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
        return
    for table in tables:
        await session.execute(table.delete())


def wait_ready(port: int) -> None:
    """Until /readyz says a worker is beating (it listens for mail before its first beat)."""
    for _ in range(600):
        if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
            return
        time.sleep(0.1)
    sys.exit("no mail worker became ready")


def _run_arrivals_sink(port: int, log_path: str, ready: Any) -> None:
    """An aiosmtpd server (in a process of its own) that appends `recipient time` for each mail
    it accepts, so a benchmark can tell when each reader's mail arrived."""
    from aiosmtpd.controller import Controller

    log = open(log_path, "a", buffering=1)  # line-buffered: the benchmark reads it meanwhile

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            for recipient in envelope.rcpt_tos:
                log.write(f"{recipient} {time.time():.6f}\n")
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    while True:
        time.sleep(3600)


def arrivals(log_path: Path) -> dict[str, float]:
    """The first arrival time of each recipient's mail."""
    found: dict[str, float] = {}
    for line in log_path.read_text().splitlines():
        recipient, at = line.split()
        found.setdefault(recipient, float(at))
    return found


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def ensure_postgres_database(url: str) -> None:
    """Create the benchmark's PostgreSQL database when it is not there yet."""
    import asyncio

    import asyncpg
    from sqlalchemy.engine import make_url

    target = make_url(url)
    if target.get_backend_name() != "postgresql":
        return

    async def create() -> None:
        server = await asyncpg.connect(host=target.host, port=target.port or 5432,
                                       user=target.username, database="postgres")
        try:
            if not await server.fetchval("SELECT 1 FROM pg_database WHERE datname = $1",
                                         target.database):
                await server.execute(f'CREATE DATABASE "{target.database}"')
        finally:
            await server.close()

    asyncio.run(create())
