"""The author's numbers as Prometheus gauges, read from the database at each scrape (see
`service.web.metrics` for why not counted in memory)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.models import MailKind, OutboxMessage, OutboxStatus, Subscriber
from service.funnel import stats


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
