"""`GET /metrics` for Prometheus.

Business numbers (signups, confirmations, mails by kind and outcome, the outbox's depth and
oldest age) are read from the database at scrape time, not counted in memory: with several
uvicorn workers and separate `regimen worker` processes an in-memory counter would only know
its own process, and the database already holds the truth. They are reported as gauges of
current totals: a count can go down when rows are purged (`regimen outbox purge`) or readers
erased, which a Prometheus counter must never do.

Request latency can only be measured in the process that served the request: a histogram
labelled by route template (never the raw path, which holds tokens). With several web workers
set PROMETHEUS_MULTIPROC_DIR (prometheus-client's own variable) to an empty directory shared
by them, and /metrics reports all of them together.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service import stats
from service.models import MailKind, OutboxMessage, OutboxStatus, Subscriber, utcnow
from service.routes import RuntimeDep

router = APIRouter()

REQUEST_SECONDS = Histogram(
    "regimen_http_request_duration_seconds", "Time to answer an HTTP request.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


class Snapshot(Collector):
    """Numbers read from the database for one scrape."""

    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self.families


async def database_metrics(session: AsyncSession, transport: str,
                           now: datetime) -> list[GaugeMetricFamily]:
    signups = GaugeMetricFamily("regimen_signups", "Readers who ever signed up (held now).")
    confirmed = GaugeMetricFamily("regimen_confirmations",
                                  "Readers who confirmed their address (held now).")
    people, confirmations = (await session.execute(
        select(func.count(), func.count(Subscriber.confirmed_at))
    )).one()
    signups.add_metric([], people)
    confirmed.add_metric([], confirmations)
    mails = GaugeMetricFamily(
        "regimen_mails", "Outbox mails by kind and state (sent, failed, queued, cancelled). "
        "The transport is the one configured now.", labels=["kind", "status", "transport"])
    rows = await session.execute(
        select(OutboxMessage.kind, OutboxMessage.status, func.count())
        .group_by(OutboxMessage.kind, OutboxMessage.status))
    counted = {(kind, status): number for kind, status, number in rows}
    for kind in MailKind:
        for status in OutboxStatus:
            mails.add_metric([kind.value, status.value, transport],
                             counted.get((kind, status), 0))
    health = await stats.outbox_health(session, now)
    depth = GaugeMetricFamily("regimen_outbox_depth", "Mails waiting to be sent.")
    depth.add_metric([], health.queued)
    oldest = GaugeMetricFamily("regimen_outbox_oldest_age_seconds",
                               "Age of the oldest mail waiting to be sent (0 when none).")
    oldest.add_metric([], health.oldest_queued_age.total_seconds()
                      if health.oldest_queued_age else 0.0)
    return [signups, confirmed, mails, depth, oldest]


def transport_name(mail_url: str) -> str:
    return mail_url.split(":", 1)[0]


@router.get("/metrics")
async def metrics(runtime: RuntimeDep) -> Response:
    async with runtime.db.transaction() as session:
        families = await database_metrics(session, transport_name(runtime.settings.mail_url),
                                          utcnow())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(families))
    body = generate_latest(registry)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shared = CollectorRegistry()
        multiprocess.MultiProcessCollector(shared)  # type: ignore[no-untyped-call]
        body += generate_latest(shared)
    else:
        body += generate_latest(REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
