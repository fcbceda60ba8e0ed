"""The author's page: the funnel counted so that mail scanners do not inflate it, behind a
password, as a chart without script or inline style, and as CSV."""

from __future__ import annotations

import base64
import csv
import io
import re
from datetime import datetime, timedelta

import httpx
from sqlalchemy import func, select

from service.core.database import Database
from service.core.models import (
    Consent,
    Event,
    EventKind,
    MailKind,
    OutboxMessage,
    OutboxStatus,
    Reader,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from service.core.settings import Settings
from service.funnel import stats
from service.funnel.events import record
from service.runtime import Runtime
from tests.helpers import DEFAULT_REGIMEN, funnel_of, new_subscription, report_of

PASSWORD = "author-password-" + "y" * 20

WINDOW = timedelta(seconds=60)  # REGIMEN_SCANNER_WINDOW's default


def basic(password: str, user: str = "admin") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def add_reader(db: Database, email: str, signed_up: datetime, source: str | None,
                     opened_after: list[int], confirmed_after: int | None = None,
                     events: list[tuple[EventKind, str | None]] | None = None,
                     scanner_window: timedelta = WINDOW,
                     regimen: str = DEFAULT_REGIMEN) -> None:
    """A reader's subscription to `regimen` whose confirmation mail left 2 s after signing up
    and who opened its link the given seconds after that mail was sent, each event recorded as
    the app records it. The address's reader row is added unless it has one already."""
    sent = signed_up + timedelta(seconds=2)
    confirmed = sent + timedelta(seconds=confirmed_after) if confirmed_after else None
    async with db.transaction() as session:
        address, reader = new_subscription(
            email, regimen, created_at=signed_up, confirmed_at=confirmed,
            status=SubscriberStatus.CONFIRMED if confirmed else SubscriberStatus.PENDING)
        if await session.scalar(select(Reader.id).where(Reader.email == email)) is None:
            session.add(address)
            await session.flush()
        session.add(reader)
        await session.flush()
        session.add(Consent(subscriber_id=reader.id, signed_up_at=signed_up, source_url=source,
                            confirmed_at=confirmed))
        session.add(OutboxMessage(kind=MailKind.CONFIRM, subscriber_id=reader.id,
                                  status=OutboxStatus.SENT, created_at=signed_up,
                                  next_attempt_at=signed_up, sent_at=sent))
        for seconds in opened_after:
            await record(session, EventKind.CONFIRM_PAGE_OPENED, reader,
                         scanner_window=scanner_window, now=sent + timedelta(seconds=seconds))
        for n, (kind, exercise) in enumerate(events or []):
            assert confirmed is not None
            await record(session, kind, reader, exercise, scanner_window=scanner_window,
                         now=confirmed + timedelta(seconds=10 + n))


async def seed(db: Database, scanner_window: timedelta = WINDOW) -> datetime:
    """Readers of the default regimen: three in the last 30 days, one before."""
    now = utcnow()
    start = now - timedelta(hours=3)
    post1, post2 = "https://blog.example.org/post-1", "https://blog.example.org/post-2"
    # Only a scanner opened the link (5 s after the mail): not a reader at the button.
    await add_reader(db, "scanned@example.org", start, post1, opened_after=[5],
                     scanner_window=scanner_window)
    # A reader who opened it ten minutes later and never pressed the button.
    await add_reader(db, "stopped@example.org", start, post1, opened_after=[3, 600],
                     scanner_window=scanner_window)
    # Scanned too, but then confirmed: pressing the button proves a person saw the page.
    await add_reader(db, "reader@example.org", start, post2, opened_after=[3],
                     confirmed_after=700, scanner_window=scanner_window, events=[
                         (EventKind.REGIMEN_OPENED, None), (EventKind.REGIMEN_OPENED, None),
                         (EventKind.EXERCISE_CLICKED, "gentle-back-exercise"),
                         (EventKind.EXERCISE_CLICKED, "gentle-back-exercise"),
                         (EventKind.EXERCISE_CLICKED, "psoas-release")])
    # Outside the 30 days.
    await add_reader(db, "old@example.org", now - timedelta(days=40), post1, opened_after=[900],
                     confirmed_after=1000, scanner_window=scanner_window)
    async with db.transaction() as session:
        stopped = await session.scalar(
            select(Subscriber.id).where(Subscriber.email == "stopped@example.org"))
        assert stopped is not None
        session.add(OutboxMessage(kind=MailKind.REGIMEN, status=OutboxStatus.QUEUED,
                                  subscriber_id=stopped, created_at=now - timedelta(minutes=7),
                                  next_attempt_at=now))
    return now


async def test_funnel_discounts_scanners(db: Database, runtime: Runtime) -> None:
    now = await seed(db)
    async with db.transaction() as session:
        report = await report_of(session, [runtime.regimen], now, 30, scanner_window=WINDOW)
    totals = report.totals
    assert (totals.signups, totals.confirm_page_opened, totals.confirmed,
            totals.stopped_at_button, totals.regimen_opened, totals.clicked) == (3, 2, 1, 1, 1, 1)
    assert stats.percent(totals.confirmation_rate) == "33%"
    assert stats.percent(totals.button_drop_off) == "50%"
    assert len(report.days) == 30
    assert sum(d.signups for d in report.days) == 3
    assert sum(d.confirmed for d in report.days) == 1
    # Per signup day, as in the totals: the reader who confirmed and the one who stopped.
    assert sum(d.confirm_page_opened for d in report.days) == 2
    assert sum(d.regimen_opened for d in report.days) == 1
    assert sum(d.exercise_clicks for d in report.days) == 3
    assert [(s.url, s.signups, s.confirmed) for s in report.sources] == [
        ("https://blog.example.org/post-1", 2, 0), ("https://blog.example.org/post-2", 1, 1)]
    [shown] = report.exercises
    assert (shown.key, shown.clicks) == (DEFAULT_REGIMEN, 3)
    clicks = {e.slug: (e.free, e.clicks, e.readers) for e in shown.exercises}
    assert clicks["gentle-back-exercise"] == (True, 2, 1)
    assert clicks["psoas-release"] == (False, 1, 1)
    assert clicks["lying-twist"] == (True, 0, 0)
    assert report.outbox is not None
    assert (report.outbox.queued, report.outbox.failed) == (1, 0)
    assert report.outbox.oldest_queued_age == timedelta(minutes=7)
    # The period's latest signups, newest first: the reader from before it is not one.
    assert [(r.masked_email, r.regimen) for r in report.recent] == [
        ("r***@example.org", DEFAULT_REGIMEN), ("s***@example.org", DEFAULT_REGIMEN),
        ("s***@example.org", DEFAULT_REGIMEN)]


async def test_a_wider_scanner_window_discounts_more(db: Database, runtime: Runtime) -> None:
    # The window applies when an opening is recorded: with an hour, the opening ten minutes
    # after the mail is a scanner's too.
    now = await seed(db, scanner_window=timedelta(seconds=3600))
    async with db.transaction() as session:
        report = await funnel_of(session, [runtime.regimen], now, 30,
                                    scanner_window=timedelta(seconds=3600))
    assert report.totals.stopped_at_button == 0
    assert report.totals.confirm_page_opened == 1


async def test_admin_is_off_without_a_password(client: httpx.AsyncClient) -> None:
    assert (await client.get("/admin")).status_code == 404
    assert (await client.get("/admin/funnel.csv")).status_code == 404


async def test_admin_asks_for_the_password(client: httpx.AsyncClient, settings: Settings) -> None:
    settings.admin_password = PASSWORD
    for headers in ({}, basic("wrong"), basic(PASSWORD[:-1]), {"Authorization": "Basic %%%"},
                    {"Authorization": f"Bearer {PASSWORD}"}):
        response = await client.get("/admin", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == \
            'Basic realm="regimen admin", charset="UTF-8"'
        assert response.headers["content-type"].startswith("text/plain")
        assert "REGIMEN_ADMIN_PASSWORD" in response.text
        assert response.headers["cache-control"] == "no-store"
    assert (await client.get("/admin/funnel.csv", headers=basic("nope"))).status_code == 401


async def test_admin_password_may_be_any_text(client: httpx.AsyncClient,
                                              settings: Settings) -> None:
    """The realm asks browsers for UTF-8 (RFC 7617), so a password beyond ASCII works."""
    settings.admin_password = "mot de passe \u00e9t\u00e9 \u2713"
    assert (await client.get("/admin", headers=basic(settings.admin_password))).status_code == 200
    assert (await client.get("/admin", headers=basic("mot de passe ete"))).status_code == 401


async def test_the_password_is_asked_before_the_period_is_checked(
    client: httpx.AsyncClient, settings: Settings,
) -> None:
    assert (await client.get("/admin?days=0")).status_code == 404
    settings.admin_password = PASSWORD
    assert (await client.get("/admin?days=0")).status_code == 401
    assert (await client.get("/admin?days=0", headers=basic(PASSWORD))).status_code == 400


async def test_admin_page_shows_the_funnel(client: httpx.AsyncClient, settings: Settings,
                                           db: Database) -> None:
    settings.admin_password = PASSWORD
    await seed(db)
    response = await client.get("/admin", headers=basic(PASSWORD, user="anyone"))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert "noindex" in response.headers["x-robots-tag"]
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    page = response.text
    assert '<meta name="robots" content="noindex' in page
    # Inline SVG, without script or style attributes the CSP would refuse.
    assert page.count('<polyline class="series') == 5
    assert "<script" not in page
    assert " style=" not in page
    assert "<style" not in page
    assert re.search(r"Pressed “Yes, send me the regimen”</th><td>1</td><td>33% of signups",
                     page)
    assert re.search(r"never pressed the button</th><td>1</td><td>50% of those who saw it", page)
    assert "within 60 seconds after a confirmation or reminder mail" in page
    assert "s***@example.org" in page
    assert "stopped@example.org" not in page
    assert "https://blog.example.org/post-2" in page


async def test_funnel_csv(client: httpx.AsyncClient, settings: Settings, db: Database) -> None:
    settings.admin_password = PASSWORD
    await seed(db)
    response = await client.get("/admin/funnel.csv?days=7", headers=basic(PASSWORD))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 7
    assert tuple(rows[0]) == stats.FUNNEL_COLUMNS
    assert sum(int(r["signups"]) for r in rows) == 3
    assert sum(int(r["exercise_clicks"]) for r in rows) == 3
    assert (await client.get("/admin/funnel.csv?days=0", headers=basic(PASSWORD))
            ).status_code == 400


async def test_recording_sets_each_milestone_once(db: Database) -> None:
    now = utcnow()
    signed_up = now - timedelta(hours=1)
    sent = signed_up + timedelta(seconds=2)
    async with db.transaction() as session:
        address, reader = new_subscription(
            "steps@example.org", created_at=signed_up,
            confirmed_at=sent + timedelta(minutes=20),
            status=SubscriberStatus.CONFIRMED)
        session.add_all((address, reader))
        await session.flush()
        session.add(OutboxMessage(kind=MailKind.CONFIRM, subscriber_id=reader.id,
                                  status=OutboxStatus.SENT, created_at=signed_up,
                                  next_attempt_at=signed_up, sent_at=sent))
        # A scanner 5 s after the confirmation mail: an Event, but not the reader's opening.
        await record(session, EventKind.CONFIRM_PAGE_OPENED, reader, scanner_window=WINDOW,
                     now=sent + timedelta(seconds=5))
        assert reader.confirm_page_opened_at is None
        # The same reader ten minutes later: a person.
        first_human = sent + timedelta(minutes=10)
        await record(session, EventKind.CONFIRM_PAGE_OPENED, reader, scanner_window=WINDOW,
                     now=first_human)
        await record(session, EventKind.CONFIRM_PAGE_OPENED, reader, scanner_window=WINDOW,
                     now=first_human + timedelta(minutes=1))
        opened = sent + timedelta(minutes=21)
        for n in range(2):
            await record(session, EventKind.REGIMEN_OPENED, reader, scanner_window=WINDOW,
                         now=opened + timedelta(minutes=n))
            await record(session, EventKind.EXERCISE_CLICKED, reader, "lying-twist",
                         scanner_window=WINDOW, now=opened + timedelta(minutes=5 + n))
        reader_id = reader.id
    async with db.transaction() as session:
        stored = await session.get(Subscriber, reader_id)
        assert stored is not None
        assert stored.confirm_page_opened_at == first_human
        assert stored.regimen_opened_at == opened
        assert stored.first_click_at == opened + timedelta(minutes=5)
        events = await session.scalar(
            select(func.count()).select_from(Event).where(Event.subscriber_id == reader_id))
        assert events == 7


async def test_a_reminder_mail_explains_an_opening_too(db: Database) -> None:
    now = utcnow()
    async with db.transaction() as session:
        address, reader = new_subscription(
            "reminded@example.org", created_at=now - timedelta(days=2),
            status=SubscriberStatus.PENDING)
        session.add_all((address, reader))
        await session.flush()
        reminded = now - timedelta(seconds=30)
        session.add(OutboxMessage(kind=MailKind.REMINDER, subscriber_id=reader.id,
                                  status=OutboxStatus.SENT, created_at=reminded,
                                  next_attempt_at=reminded, sent_at=reminded))
        await record(session, EventKind.CONFIRM_PAGE_OPENED, reader, scanner_window=WINDOW, now=now)
        assert reader.confirm_page_opened_at is None
        await record(session, EventKind.CONFIRM_PAGE_OPENED, reader, scanner_window=WINDOW,
                     now=now + timedelta(seconds=31))
        assert reader.confirm_page_opened_at == now + timedelta(seconds=31)


async def test_regimen_opens_discount_scanners_of_the_regimen_mail(db: Database) -> None:
    now = utcnow()
    async with db.transaction() as session:
        address, reader = new_subscription(
            "fresh@example.org", created_at=now - timedelta(minutes=5),
            confirmed_at=now - timedelta(minutes=1),
            status=SubscriberStatus.CONFIRMED)
        session.add_all((address, reader))
        await session.flush()
        sent = now - timedelta(seconds=10)
        session.add(OutboxMessage(kind=MailKind.REGIMEN, subscriber_id=reader.id,
                                  status=OutboxStatus.SENT, created_at=sent,
                                  next_attempt_at=sent, sent_at=sent))
        # The mail's link, 10 s after the mail left: a scanner.
        await record(session, EventKind.REGIMEN_OPENED, reader, scanner_window=WINDOW, now=now)
        assert reader.regimen_opened_at is None
        # The link on the page shown after confirming: no scanner sees that page.
        await record(session, EventKind.REGIMEN_OPENED, reader, scanner_window=WINDOW,
                     now=now + timedelta(seconds=1), from_mail=False)
        assert reader.regimen_opened_at == now + timedelta(seconds=1)
