"""The author's numbers as Prometheus gauges, read from the database at each scrape (see
`service.web.metrics` for why not counted in memory). Signups, confirmations and mails are
labelled by regimen (its key); the outbox's depth and oldest age are the one queue's."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
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


async def database_metrics(session: AsyncSession, transport: str, now: datetime,
                           regimens: Sequence[str] = ()) -> list[GaugeMetricFamily]:
    """`regimens`: the keys of the regimens served now, each reported even before it has a
    reader or a mail (a regimen no longer served is reported while the database holds its
    readers)."""
    signups = GaugeMetricFamily("regimen_signups", "Subscriptions ever made, by regimen "
                                "(held now).", labels=["regimen"])
    confirmed = GaugeMetricFamily("regimen_confirmations", "Subscriptions whose reader "
                                  "confirmed their address, by regimen (held now).",
                                  labels=["regimen"])
    rows = await session.execute(
        select(Subscriber.regimen, func.count(), func.count(Subscriber.confirmed_at))
        .group_by(Subscriber.regimen))
    held = {key: (count, confirmations) for key, count, confirmations in rows}
    for key, (count, confirmations) in sorted((dict.fromkeys(regimens, (0, 0)) | held).items()):
        signups.add_metric([key], count)
        confirmed.add_metric([key], confirmations)
    mails = GaugeMetricFamily(
        "regimen_mails", "Outbox mails by kind, state (sent, failed, queued, cancelled) and "
        "regimen. The transport is the one configured now.",
        labels=["kind", "status", "transport", "regimen"])
    counted = await _mails(session, held)
    for key in sorted({*regimens, *held}):
        for kind in MailKind:
            for status in OutboxStatus:
                mails.add_metric([kind.value, status.value, transport, key],
                                 counted.get((key, kind, status), 0))
    health = await stats.outbox_health(session, now)
    depth = GaugeMetricFamily("regimen_outbox_depth", "Mails waiting to be sent.")
    depth.add_metric([], health.queued)
    oldest = GaugeMetricFamily("regimen_outbox_oldest_age_seconds",
                               "Age of the oldest mail waiting to be sent (0 when none).")
    oldest.add_metric([], health.oldest_queued_age.total_seconds()
                      if health.oldest_queued_age else 0.0)
    return [signups, confirmed, mails, depth, oldest]


async def _mails(session: AsyncSession,
                 held: Collection[str]) -> dict[tuple[str, MailKind, OutboxStatus], int]:
    """The outbox's mails per regimen (of the subscription each is for), kind and state.

    Every mail belongs to a subscription, so where the database holds one regimen's
    subscriptions only (`held`, read just before), the outbox is counted alone: looking up
    each mail's subscription costs most of a second on a million readers."""
    if len(held) > 1:
        rows = await session.execute(
            select(Subscriber.regimen, OutboxMessage.kind, OutboxMessage.status, func.count())
            .join(Subscriber, Subscriber.id == OutboxMessage.subscriber_id)
            .group_by(Subscriber.regimen, OutboxMessage.kind, OutboxMessage.status))
        return {(key, kind, status): number for key, kind, status, number in rows}
    if not held:
        return {}
    [key] = held
    alone = await session.execute(
        select(OutboxMessage.kind, OutboxMessage.status, func.count())
        .group_by(OutboxMessage.kind, OutboxMessage.status))
    return {(key, kind, status): number for kind, status, number in alone}
