"""One table of every benchmark in bench/results.json, each figure beside the baseline it was
measured against in the same run.

    .venv/bin/python bench/report.py
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS  # noqa: E402


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    table = []
    for backend in ("sqlite", "postgresql"):
        if mail := results.get(f"mail_{backend}"):
            table.append((f"mail worker, mails/s ({backend})", f"{mail['worker_per_s']}",
                          f"{mail['raw_per_s']} raw aiosmtplib", f"{mail['ratio']:.2f}",
                          ">= 0.75"))
        if lessons := results.get(f"lessons_{backend}"):
            table.append((f"{lessons['lessons']:,} lessons due at once, mails/s ({backend})",
                          f"{lessons['lessons_per_s']}",
                          f"{lessons['raw_lessons_per_s']} raw aiosmtplib (lesson mails)",
                          f"{lessons['lessons_ratio']:.2f}",
                          f"confirmations' ratio ({lessons['ratio']:.2f})"))
            if "queued_lessons_per_s" in lessons:
                table.append((f"  the same, already queued, mails/s ({backend})",
                              f"{lessons['queued_lessons_per_s']}",
                              f"{lessons['lessons_per_s']} due at once",
                              f"{lessons['due_to_queued']:.2f}", "due at once ÷ queued"))
        if signup := results.get(f"signup_{backend}"):
            service, base = signup["service"], signup["baseline"]
            table.append((f"POST /subscribe, req/s ({backend})",
                          f"{service['requests_per_s']:.0f} (p50 {service['p50_ms']:.0f}, "
                          f"p99 {service['p99_ms']:.0f} ms)",
                          f"{base['requests_per_s']:.0f} bare FastAPI (p99 "
                          f"{base['p99_ms']:.0f} ms)", f"{signup['ratio']:.2f}",
                          ">= 0.35, p99 < 50 ms"))
            for label in ("light", "under_load"):
                e2e = signup["end_to_end"][label]
                table.append((f"signup -> mail accepted, {label.replace('_', ' ')} ({backend})",
                              f"p50 {e2e['p50_ms']:.0f}, p99 {e2e['p99_ms']:.0f} ms",
                              f"{e2e['delivered']}/{e2e['signups']} delivered", "",
                              "p50 < 50 ms" if label == "light" else ""))
        if memory := results.get(f"memory_{backend}"):
            table.append((f"RSS after {memory['signups']:,} signups ({backend})",
                          f"{memory['after']['rss_mb']} MiB",
                          f"{memory['at_start']['rss_mb']} MiB at start",
                          f"x{memory['growth_ratio']}", f"< {memory['target_mb']} MiB"))
    return table


def main() -> None:
    results = json.loads(RESULTS.read_text())
    header = ("benchmark", "measured", "baseline, same run", "ratio", "target")
    table = [header, *rows(results)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    print(f"{os.cpu_count()} CPUs, {platform.python_implementation()} "  # noqa: T201
          f"{platform.python_version()}, {platform.machine()}")
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))  # noqa: T201


if __name__ == "__main__":
    main()
