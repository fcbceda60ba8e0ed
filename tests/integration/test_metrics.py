"""`/metrics`: business numbers read from the database at scrape time, and request latency by
route template (never by the raw path, which holds a reader's token)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from service.core.database import Database
from service.core.models import (
    MailKind,
    OutboxMessage,
    OutboxStatus,
    SubscriberStatus,
    utcnow,
)
from tests.helpers import DEFAULT_REGIMEN, MailSink, links_in, new_subscription, path_of


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics_count_from_the_database(client: httpx.AsyncClient, smtp: MailSink,
                                               db: Database) -> None:
    await client.post("/subscribe", data={"email": "one@example.org"})
    [mail] = await smtp.wait_for(1)
    confirm = next(url for url in links_in(mail) if "/confirm/" in url)
    await client.get(path_of(confirm))
    await client.post(path_of(confirm))
    await smtp.wait_for(2)
    now = utcnow()
    async with db.transaction() as session:
        address, reader = new_subscription("two@example.org", status=SubscriberStatus.PENDING)
        session.add_all((address, reader))
        await session.flush()
        # Reminders only from here: the worker may still be settling the mails above.
        session.add(OutboxMessage(kind=MailKind.REMINDER, subscriber_id=reader.id,
                                  status=OutboxStatus.FAILED))
        session.add_all(OutboxMessage(kind=MailKind.REMINDER, subscriber_id=reader.id,
                                      status=OutboxStatus.SENT, sent_at=now) for _ in range(2))
        session.add(OutboxMessage(kind=MailKind.REMINDER, subscriber_id=reader.id,
                                  created_at=now.replace(year=now.year - 1),
                                  next_attempt_at=now.replace(year=now.year + 1)))
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    # Both readers signed up to the default regimen (the form names none).
    served = (("regimen", DEFAULT_REGIMEN),)
    assert found[("regimen_signups", served)] == 2
    assert found[("regimen_confirmations", served)] == 1

    def mails(status: str) -> float:
        return found[("regimen_mails", (("kind", "reminder"), ("regimen", DEFAULT_REGIMEN),
                                        ("status", status), ("transport", "smtp")))]

    assert (mails("sent"), mails("failed"), mails("queued"), mails("cancelled")) == (2, 1, 1, 0)
    assert found[("regimen_outbox_depth", ())] >= 1
    assert found[("regimen_outbox_oldest_age_seconds", ())] > 364 * 86400
    # Latency by route template: the confirm route, never the token itself.
    token = confirm.rsplit("/", 1)[1]
    assert token not in response.text
    posted = [value for (name, labels), value in found.items()
              if name == "regimen_http_request_duration_seconds_count"
              and ("route", "/confirm/{token}") in labels and ("method", "POST") in labels
              and ("status", "200") in labels]
    assert posted
    assert posted[0] >= 1
