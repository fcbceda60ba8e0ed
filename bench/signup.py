"""Signup throughput: `POST /subscribe` on the real server against a bare FastAPI endpoint.

    .venv/bin/python bench/signup.py [--seconds 10] [--database-url URL]

Both are served the way production serves them (one uvicorn process, uvloop, httptools) and
loaded by wrk (2 threads, 64 connections, a new address every request) in the same run, so the
figure that matters is the ratio. Afterwards every signup wrk saw acknowledged (303) must have
its subscriber row and its outbox row: nothing acknowledged and lost. wrk is installed from
Debian's packages if it is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.db import Database, migrate  # noqa: E402
from service.models import Base, OutboxMessage, Subscriber  # noqa: E402

RESULTS = ROOT / "bench" / "results.json"
LUA = """
local counter = 0
local thread_id = 0
setup = function(thread) thread_id = thread_id + 1; thread:set("id", thread_id) end
request = function()
  counter = counter + 1
  local body = "email=r" .. id .. "-" .. counter .. "%40example.org"
  return wrk.format("POST", "/subscribe",
    {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
"""
BARE_APP = """
from fastapi import FastAPI, Form
from fastapi.responses import RedirectResponse

app = FastAPI()

@app.post("/subscribe")
async def subscribe(email: str = Form()) -> RedirectResponse:
    return RedirectResponse("/check-inbox", status_code=303)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True,
                   stdout=subprocess.DEVNULL)
    return shutil.which("wrk") or sys.exit("wrk could not be installed")


def wait_up(port: int) -> None:
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    sys.exit(f"nothing answered on port {port}")


def load(wrk: str, port: int, seconds: int, script: Path) -> dict[str, float]:
    out = subprocess.run(
        [wrk, "-t2", "-c64", f"-d{seconds}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}"], check=True, capture_output=True, text=True).stdout
    def latency(label: str) -> float:
        found = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, flags=re.M)
        assert found, out
        return float(found[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found[2]]

    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        "p50_ms": latency("50%"), "p99_ms": latency("99%"),
        "acknowledged": requests - (int(failed[1]) if failed else 0),
        "socket_errors": 1.0 if errors else 0.0,
    }


def serve(command: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    wait_up(port)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=60)


async def rows(url: str) -> tuple[int, int]:
    db = Database(url)
    async with db.transaction() as session:
        readers = await session.scalar(select(func.count()).select_from(Subscriber)) or 0
        mails = await session.scalar(select(func.count()).select_from(OutboxMessage)) or 0
    await db.dispose()
    return readers, mails


async def empty(url: str) -> None:
    db = Database(url)
    async with db.transaction() as session:
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(table.delete())
    await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    wrk = ensure_wrk()
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        script = work / "signup.lua"
        script.write_text(LUA)
        (work / "bare.py").write_text(BARE_APP)
        port = free_port()
        bare = serve([python, "-m", "uvicorn", "bare:app", "--port", str(port), "--loop",
                      "uvloop", "--http", "httptools", "--log-level", "warning",
                      "--app-dir", tmp], dict(os.environ), port)
        try:
            baseline = load(wrk, port, args.seconds, script)
        finally:
            stop(bare)

        url = args.database_url or f"sqlite+aiosqlite:///{work}/signup.db"
        migrate(url)
        asyncio.run(empty(url))
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGIMEN_")}
        env.update({
            "REGIMEN_DATABASE_URL": url, "REGIMEN_DATA_DIR": str(work),
            "REGIMEN_MAIL_URL": f"file://{work}/mail", "REGIMEN_SECRET_KEYS": "b" * 48,
            "REGIMEN_SIGNUPS_PER_IP": "100000000/minute",
            "REGIMEN_MAILS_PER_ADDRESS": "100000000/minute",
        })
        port = free_port()
        server = serve([python, "-m", "service.cli", "serve", "--port", str(port)], env, port)
        try:
            service = load(wrk, port, args.seconds, script)
        finally:
            stop(server)
        readers, mails = asyncio.run(rows(url))

    backend = url.split(":", 1)[0].split("+")[0]
    ratio = service["requests_per_s"] / baseline["requests_per_s"]
    print(f"{'':28} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")  # noqa: T201
    for name, row in (("bare FastAPI form POST", baseline), (f"POST /subscribe ({backend})",
                                                             service)):
        print(f"{name:28} {row['requests_per_s']:>9.0f} {row['p50_ms']:>8.1f} "  # noqa: T201
              f"{row['p99_ms']:>8.1f}")
    print(f"ratio {ratio:.2f} (target >= 0.35, p99 < 50 ms)")  # noqa: T201
    print(f"acknowledged {service['acknowledged']:.0f}, subscribers {readers}, "  # noqa: T201
          f"outbox rows {mails}")
    if readers < service["acknowledged"] or mails < service["acknowledged"]:
        sys.exit("acknowledged signups are missing from the database")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[f"signup_{backend}"] = {"baseline": baseline, "service": service,
                                    "ratio": round(ratio, 3), "subscribers": readers,
                                    "outbox_rows": mails}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
