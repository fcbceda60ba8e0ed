"""Memory: the resident size of the web process with its in-process worker after 100,000
signups, against its own size right after start-up, measured in the same run.

    .venv/bin/python bench/memory.py [--signups 100000] [--database-url URL]

The service runs as the embedded default does (`regimen serve`: web and mail worker in one
process), mailing each confirmation to an SMTP sink in a process of its own. wrk sends the
signups (2 threads, 64 connections, a new address each); the process is measured once every
mail has been accepted by the sink, so the outbox is empty again. Target: under 150 MB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    arrivals,
    free_port,
    prepared_database,
    regimen,
    save_result,
    service_env,
    start,
    start_arrivals_sink,
    stop,
    wrk_signups,
)

TARGET_MB = 150


def resident_mb(pid: int) -> dict[str, float]:
    """Now (VmRSS) and the peak so far (VmHWM), in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return {name: round(int(fields[key].split()[0]) / 1024, 1)
            for name, key in (("rss_mb", "VmRSS"), ("peak_mb", "VmHWM"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signups", type=int, default=100_000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = prepared_database(args.database_url, work, "memory")
        smtp_port, log, sink = start_arrivals_sink(work)
        port = free_port()
        web = start(regimen("serve", "--port", str(port)),
                    service_env(url, work, f"smtp://127.0.0.1:{smtp_port}"), port)
        try:
            started = resident_mb(web.pid)
            began = time.perf_counter()
            # wrk runs for a time, not a number of requests: rounds as long as the rate of
            # the first one says the remaining signups take, overshooting by a second at most.
            signed_up, seconds, rounds = 0, 10, 0
            while signed_up < args.signups:
                round_ = wrk_signups(port, seconds, work, prefix=f"m{rounds}-")
                signed_up += int(round_["acknowledged"])
                seconds = max(1, int((args.signups - signed_up) / round_["requests_per_s"]))
                rounds += 1
            deadline = time.monotonic() + 600
            while len(arrivals(log)) < signed_up and time.monotonic() < deadline:
                time.sleep(1)
            elapsed = time.perf_counter() - began
            after = resident_mb(web.pid)
        finally:
            stop(web)
            sink.terminate()
        delivered = len(arrivals(log))
    result = {"signups": signed_up, "mails_delivered": delivered,
              "seconds": round(elapsed, 1), "at_start": started, "after": after,
              "growth_ratio": round(after["rss_mb"] / started["rss_mb"], 2),
              "target_mb": TARGET_MB}
    save_result("memory_sqlite" if url.startswith("sqlite") else "memory_postgresql", result)
    print(f"after {signed_up} signups and {delivered} mails ({elapsed:.0f} s): "  # noqa: T201
          f"{after['rss_mb']} MiB resident (peak {after['peak_mb']}), "
          f"{started['rss_mb']} MiB at start: x{result['growth_ratio']}; target < {TARGET_MB}")


if __name__ == "__main__":
    main()
