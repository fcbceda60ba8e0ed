"""Lessons end to end, on a real database and a real SMTP server, with the worker's clock moved
by the test: who agrees to them and how, each sent once at the reader's hour with the reader's
state at sending, the skips, stopping them, and the content changing while readers wait."""

from __future__ import annotations

import asyncio
import base64
import csv
import html
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from service.cli import app
from service.core.bulk import insert_rows
from service.core.content import READ_THROUGH
from service.core.database import Database
from service.core.lessons import promise
from service.core.models import (
    Event,
    EventKind,
    LessonDelivery,
    LessonOutcome,
    MailKind,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
    SubscriberStatus,
    table_of,
)
from service.core.settings import Settings
from service.delivery import lessons
from service.delivery.worker import Pace, Worker
from service.funnel import lesson_stats
from service.readers import privacy
from service.readers.signup import SuppressionReason, suppress
from service.runtime import Runtime, build_runtime
from service.web.app import create_app
from service.web.texts import TEXTS
from tests.helpers import (
    BASE_URL,
    DEFAULT_REGIMEN,
    OTHER_REGIMEN,
    MailSink,
    app_client,
    lessons_of,
    links_in,
    many_subscriptions,
    new_subscription,
    on_database,
    path_of,
    plans_kept_from_the_first_run,
    shipped_content_in,
)

HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')
DAY = timedelta(days=1)


class Clock:
    """The worker's now: the real one until the test sets it."""

    def __init__(self) -> None:
        self.now: datetime | None = None

    def __call__(self) -> datetime:
        return self.now or datetime.now(UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def http(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The app without its own worker: the test's worker, on the test's clock, sends."""
    transport = httpx.ASGITransport(app=create_app(runtime, run_worker=False))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


def worker_for(runtime: Runtime, clock: Clock) -> Worker:
    return Worker(runtime.db, runtime.mailer, runtime.transport,
                  Pace.from_settings(runtime.settings), clock=clock)


async def mails_to(smtp: MailSink, count: int) -> list[EmailMessage]:
    return await asyncio.to_thread(smtp.wait, count, 10.0)


async def confirmed(http: httpx.AsyncClient, worker: Worker, smtp: MailSink, email: str,
                    regimen: str = DEFAULT_REGIMEN, with_page: bool = True) -> str:
    """Sign up and press the confirm page's button (with its fields, as a browser does; or,
    `with_page=False`, as a page from before lessons did); return the regimen page's path."""
    before = len(smtp.messages)
    await http.post("/subscribe", data={"email": email, "regimen": regimen})
    await worker.deliver_due()
    confirmation = (await mails_to(smtp, before + 1))[-1]
    confirm = path_of(next(url for url in links_in(confirmation) if "/confirm/" in url))
    page = await http.get(confirm)
    fields = dict(HIDDEN.findall(page.text)) if with_page else {}
    assert (await http.post(confirm, data=fields)).status_code == 200
    await worker.deliver_due()
    regimen_mail = (await mails_to(smtp, before + 2))[-1]
    return path_of(next(url for url in links_in(regimen_mail) if "/r/" in url))


async def subscription(db: Database, email: str) -> Subscriber:
    async with db.transaction() as session:
        found = await session.scalar(select(Subscriber).where(Subscriber.email == email))
    assert found is not None
    return found


async def agreed_at(db: Database, email: str) -> datetime:
    """When the address's subscription agreed to lessons (its confirmation)."""
    agreed = (await subscription(db, email)).lessons_consented_at
    assert agreed is not None
    return agreed


async def lessons_queued(db: Database) -> list[tuple[str, str | None, OutboxStatus]]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(Subscriber.email, OutboxMessage.lesson, OutboxMessage.status)
            .join(Subscriber, Subscriber.id == OutboxMessage.subscriber_id)
            .where(OutboxMessage.kind == MailKind.LESSON).order_by(OutboxMessage.id))
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def settled(db: Database) -> dict[str, tuple[LessonOutcome, str | None]]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(LessonDelivery.lesson, LessonDelivery.outcome, LessonDelivery.reason))
        return {lesson: (outcome, reason) for lesson, outcome, reason in rows}


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


async def test_the_promise_is_on_the_form_the_mail_and_the_page(
    http: httpx.AsyncClient, runtime: Runtime, smtp: MailSink, clock: Clock,
) -> None:
    line = promise(runtime.catalog.regimens[DEFAULT_REGIMEN].lessons)
    assert line == "Then three short lessons by email over 12 days; stop them any time."
    assert line in html.unescape((await http.get(f"/{DEFAULT_REGIMEN}")).text)
    assert "lessons" not in (await http.get(f"/{OTHER_REGIMEN}")).text
    worker = worker_for(runtime, clock)
    await http.post("/subscribe", data={"email": "reader@example.org"})
    await worker.deliver_due()
    [confirmation] = await mails_to(smtp, 1)
    assert line in " ".join(text_of(confirmation).split())
    page = await http.get(path_of(next(u for u in links_in(confirmation) if "/confirm/" in u)))
    assert f'<p class="promise">{line}</p>' in html.unescape(page.text)


async def test_lessons_go_out_once_each_at_the_readers_hour(
    http: httpx.AsyncClient, runtime: Runtime, smtp: MailSink, clock: Clock,
) -> None:
    worker = worker_for(runtime, clock)
    await confirmed(http, worker, smtp, "reader@example.org")
    reader = await subscription(runtime.db, "reader@example.org")
    assert reader.lessons_consented_at is not None
    start = reader.lessons_consented_at
    [_, regimen_mail] = smtp.messages
    assert "Then three short lessons" in text_of(regimen_mail)
    assert "No more mail unless you ask again" not in text_of(regimen_mail)

    clock.now = start + DAY
    await worker.lessons()
    assert await lessons_queued(runtime.db) == []
    for day, lesson in ((2, "how-it-should-feel"), (5, "next-free-exercise"),
                        (12, "after-unit-1")):
        clock.now = start + day * DAY + timedelta(minutes=3)
        await worker.lessons()
        await worker.lessons()  # looking twice sends nothing twice
        assert [row[1] for row in await lessons_queued(runtime.db)][-1] == lesson
        await worker.deliver_due()
    assert [(row[1], row[2]) for row in await lessons_queued(runtime.db)] == [
        ("how-it-should-feel", OutboxStatus.SENT), ("next-free-exercise", OutboxStatus.SENT),
        ("after-unit-1", OutboxStatus.SENT)]
    messages = await mails_to(smtp, 5)
    lesson_mails = messages[2:]
    assert [str(m["Subject"]) for m in lesson_mails] == [
        lesson.subject for lesson in runtime.catalog.regimens[DEFAULT_REGIMEN].lessons]
    for message in lesson_mails:
        assert re.fullmatch(r"<https://regimen\.test/lessons/stop/[^>]+>",
                            message["List-Unsubscribe"])
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert (await subscription(runtime.db, "reader@example.org")).next_lesson_at is None
    clock.now = start + 40 * DAY
    await worker.lessons()
    assert len(await lessons_queued(runtime.db)) == 3


async def test_a_reader_who_confirmed_under_the_old_wording_gets_none(
    http: httpx.AsyncClient, runtime: Runtime, smtp: MailSink, clock: Clock,
) -> None:
    """A confirm page from before the regimen had lessons promised nothing more: the press
    carries no promise, and the regimen mail still says no more mail follows."""
    worker = worker_for(runtime, clock)
    await confirmed(http, worker, smtp, "early@example.org", with_page=False)
    reader = await subscription(runtime.db, "early@example.org")
    assert reader.lessons_consented_at is None
    assert "No more mail unless you ask again" in text_of(smtp.messages[-1])
    clock.now = datetime.now(UTC) + 20 * DAY
    await worker.lessons()
    assert await lessons_queued(runtime.db) == []


async def test_the_lesson_speaks_of_the_readers_state_when_it_is_sent(
    http: httpx.AsyncClient, runtime: Runtime, smtp: MailSink, clock: Clock,
) -> None:
    worker = worker_for(runtime, clock)
    page = await confirmed(http, worker, smtp, "reader@example.org")
    reader = await subscription(runtime.db, "reader@example.org")
    assert reader.lessons_consented_at is not None
    # Day 2's lesson is about the gentle back exercise; the reader has not done it.
    clock.now = reader.lessons_consented_at + 5 * DAY
    await worker.lessons()  # settles day 2's lesson (one a day)
    await worker.deliver_due()
    # Queued on day 6, then the reader marks three exercises before it goes out.
    clock.now = reader.lessons_consented_at + 6 * DAY
    await worker.lessons()
    assert [row[1] for row in await lessons_queued(runtime.db)][-1] == "next-free-exercise"
    for step in (READ_THROUGH, "gentle-back-exercise", "sacrum-self-appraisal",
                 "arch-and-flatten"):
        assert (await http.post(f"{page}/done/{step}")).status_code == 303
    await worker.deliver_due()
    lesson = (await mails_to(smtp, 4))[-1]
    text = " ".join(text_of(lesson).split())
    assert "You have marked 3 of the 10 exercises done so far." in text
    assert "Your next one is Lying side bend <https://regimen.test/r/" in text
    # Its links are the reader's own, marked with the lesson, in both parts.
    assert re.search(r"/r/[^/\s>]+/go/lying-side-bend\?lesson=next-free-exercise", text)


async def test_progress_skips_what_the_reader_no_longer_needs(
    http: httpx.AsyncClient, runtime: Runtime, smtp: MailSink, clock: Clock,
) -> None:
    worker = worker_for(runtime, clock)
    page = await confirmed(http, worker, smtp, "keen@example.org")
    start = await agreed_at(runtime.db, "keen@example.org")
    for exercise in runtime.catalog.regimens[DEFAULT_REGIMEN].units[0].exercises:
        await http.post(f"{page}/done/{exercise.slug}")
    assert (await http.get(f"{page}/go/psoas-release")).status_code == 303  # a purchase link
    for day in (2, 5, 12):
        clock.now = start + day * DAY
        await worker.lessons()
    assert await settled(runtime.db) == {
        "how-it-should-feel": (LessonOutcome.SKIPPED, "exercise_done"),
        "next-free-exercise": (LessonOutcome.SKIPPED, "unit_done"),
        "after-unit-1": (LessonOutcome.SKIPPED, "program_clicked"),
    }
    assert await lessons_queued(runtime.db) == []


async def test_one_click_stops_the_lessons_and_the_page_keeps_working(
    http: httpx.AsyncClient, runtime: Runtime, smtp: MailSink, clock: Clock,
) -> None:
    worker = worker_for(runtime, clock)
    page = await confirmed(http, worker, smtp, "reader@example.org")
    start = await agreed_at(runtime.db, "reader@example.org")
    clock.now = start + 2 * DAY
    await worker.lessons()
    await worker.deliver_due()
    lesson = (await mails_to(smtp, 3))[-1]
    stop = path_of(lesson["List-Unsubscribe"].strip("<>"))
    # Probed by the mailbox provider first: HEAD and GET change nothing.
    assert (await http.head(stop)).status_code == 200
    shown = await http.get(stop)
    assert TEXTS.lessons.heading in html.unescape(shown.text)
    assert (await subscription(runtime.db, "reader@example.org")).lessons_stopped_at is None
    # RFC 8058: a POST with that one field, no cookies; the answer is no redirect.
    answer = await http.post(stop, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    assert TEXTS.lessons.done_heading in html.unescape(answer.text)
    reader = await subscription(runtime.db, "reader@example.org")
    assert reader.lessons_stopped_at is not None
    assert reader.status.value == "confirmed"
    assert (await http.get(page)).status_code == 200
    clock.now = start + 30 * DAY
    await worker.lessons()
    assert [row[1] for row in await lessons_queued(runtime.db)] == ["how-it-should-feel"]


async def test_unsubscribing_or_a_queued_lesson_after_stopping_sends_nothing(
    http: httpx.AsyncClient, runtime: Runtime, smtp: MailSink, clock: Clock,
) -> None:
    worker = worker_for(runtime, clock)
    await confirmed(http, worker, smtp, "one@example.org")
    await confirmed(http, worker, smtp, "two@example.org")
    start = await agreed_at(runtime.db, "two@example.org")
    clock.now = start + 2 * DAY
    await worker.lessons()
    assert len(await lessons_queued(runtime.db)) == 2
    # Both queued; one reader unsubscribes, the other's address bounces elsewhere.
    async with runtime.db.transaction() as session:
        await session.execute(update(Subscriber).where(Subscriber.email == "one@example.org")
                              .values(status="unsubscribed"))
        await session.execute(update(Subscriber).where(Subscriber.email == "two@example.org")
                              .values(lessons_stopped_at=clock.now))
    await worker.deliver_due()
    assert {row[2] for row in await lessons_queued(runtime.db)} == {OutboxStatus.CANCELLED}
    assert len(smtp.messages) == 4  # the two confirmations and two regimen mails only


async def test_editing_the_lessons_while_readers_wait(
    settings: Settings, db: Database, smtp: MailSink, clock: Clock, tmp_path: Path,
) -> None:
    content = shipped_content_in(tmp_path)
    file = content / "regimens" / f"{DEFAULT_REGIMEN}.yaml"
    async with build_runtime(settings.model_copy(update={"content_path": content})) as runtime:
        transport = httpx.ASGITransport(app=create_app(runtime, run_worker=False))
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            worker = worker_for(runtime, clock)
            await confirmed(http, worker, smtp, "reader@example.org")
            start = await agreed_at(db, "reader@example.org")
            clock.now = start + 2 * DAY
            await worker.lessons()  # day 2's lesson: queued
            # The author removes day 2's lesson before it went out, moves day 5's to day 3,
            # and adds one for day 4 and one for day 1 (already past for this reader).
            source = file.read_text()
            source = source.replace("after: 5 days", "after: 3 days")
            source = source.replace("  - key: how-it-should-feel\n", "  - key: gone-lesson\n")
            source = source.replace("lessons:\n", "lessons:\n"
                                    "  - key: added-late\n    after: 1 day\n"
                                    "    subject: Added late\n    body: Hello.\n"
                                    "  - key: added-in-time\n    after: 4 days\n"
                                    "    subject: Added in time\n    body: Hello.\n", 1)
            source = source.replace("  - key: gone-lesson\n    after: 2 days\n"
                                    "    subject: \"How the gentle back exercise should feel\"\n",
                                    "  - key: gone-lesson\n    after: 40 days\n"
                                    "    subject: \"How the gentle back exercise should feel\"\n")
            file.write_text(source)
            assert runtime.content.reload_if_changed()
            regimen = runtime.catalog.regimens[DEFAULT_REGIMEN]
            assert regimen.lesson("how-it-should-feel") is None
            assert regimen.lesson("added-in-time") is not None
            await worker.deliver_due()  # the removed lesson's mail: cancelled, not sent
            assert await lessons_queued(db) == [
                ("reader@example.org", "how-it-should-feel", OutboxStatus.CANCELLED)]
            sent = []
            for day in range(3, 14):
                clock.now = start + day * DAY
                await worker.lessons()
                sent += [row[1] for row in (await lessons_queued(db))[len(sent) + 1:]]
            assert sent == ["next-free-exercise", "added-in-time", "after-unit-1"]
            await worker.deliver_due()


async def test_erasing_the_reader_erases_their_lessons(
    http: httpx.AsyncClient, runtime: Runtime, smtp: MailSink, clock: Clock,
) -> None:
    worker = worker_for(runtime, clock)
    await confirmed(http, worker, smtp, "reader@example.org")
    start = await agreed_at(runtime.db, "reader@example.org")
    clock.now = start + 2 * DAY
    await worker.lessons()
    async with runtime.db.transaction() as session:
        held = await privacy.export(session, "reader@example.org")
    assert held is not None
    lessons = held["subscriptions"][0]["lessons"]
    assert lessons["agreed_at"] is not None
    assert [each["lesson"] for each in lessons["settled"]] == ["how-it-should-feel"]
    async with runtime.db.transaction() as session:
        await privacy.erase(session, "reader@example.org", runtime.settings.secret_keys[0],
                            clock.now)
    assert await settled(runtime.db) == {}


async def test_a_fleet_of_workers_settles_each_lesson_once(
    runtime: Runtime, settings: Settings, clock: Clock,
) -> None:
    """Four workers, each with its own connections, look at the same 300 due readers at once:
    each reader's lesson is queued once (on PostgreSQL the workers take disjoint rows; on
    SQLite one writes at a time)."""
    start = datetime.now(UTC) - 2 * DAY
    async with runtime.db.transaction() as session:
        for n in range(300):
            reader, subscription_row = new_subscription(
                f"r{n}@example.org", status=SubscriberStatus.CONFIRMED, confirmed_at=start,
                lessons_consented_at=start, next_lesson_at=start)
            session.add(reader)
            await session.flush()
            session.add(subscription_row)
    fleet = [build_runtime(settings) for _ in range(4)]
    try:
        workers = [worker_for(each, clock) for each in fleet]
        await asyncio.gather(*(worker.lessons() for worker in workers))
    finally:
        for each in fleet:
            await each.db.dispose()
    queued = await lessons_queued(runtime.db)
    assert len(queued) == 300
    assert len({email for email, _, _ in queued}) == 300
    assert {lesson for _, lesson, _ in queued} == {"how-it-should-feel"}
    assert len(await settled_rows(runtime.db)) == 300


async def test_the_scheduler_reads_a_batchs_settled_lessons_by_key_as_the_table_grows(
    runtime: Runtime,
) -> None:
    """The scheduler reads each batch's settled lessons with a plan made for that batch: on
    PostgreSQL a plan kept from a first batch, when nothing was settled yet, read the whole
    table for every later one (100,000 readers due at once: 242 us a reader against 10)."""
    start = datetime.now(UTC) - 2 * DAY
    catalog = runtime.catalog
    async with runtime.db.transaction() as session:
        postgresql = session.get_bind().dialect.name == "postgresql"
        async with plans_kept_from_the_first_run(session) as plans:
            for batch in ("first", "later"):
                # A reader due now, and (before the later batch) 5,000 with lessons settled.
                await session.run_sync(_settled_readers, f"{batch}-", 5000 if batch == "later"
                                       else 0, start)
                reader, row = new_subscription(
                    f"due-{batch}@example.org", status=SubscriberStatus.CONFIRMED,
                    confirmed_at=start, lessons_consented_at=start, next_lesson_at=start)
                session.add(reader)
                await session.flush()
                session.add(row)
                await session.flush()
                assert await lessons.queue_due(session, catalog, datetime.now(UTC), 500) == 1
    queued = await lessons_queued(runtime.db)
    assert sorted(email for email, _, _ in queued) == ["due-first@example.org",
                                                       "due-later@example.org"]
    if postgresql:
        reads = [plan for plan in plans if "FROM lesson_deliveries" in plan
                 and "ANY" in plan]
        assert len(reads) == 2
        assert "Seq Scan on lesson_deliveries" not in reads[-1], reads[-1]
        assert "Index Scan on pk_lesson_deliveries" in reads[-1], reads[-1]


def _settled_readers(sync: Session, prefix: str, count: int, start: datetime) -> None:
    """`count` readers whose first lesson is settled and who have nothing due."""
    if not count:
        return
    emails = [f"{prefix}{n}@example.org" for n in range(count)]
    ids = many_subscriptions(sync, emails, status=SubscriberStatus.CONFIRMED,
                             created_at=start, confirmed_at=start, lessons_consented_at=start)
    insert_rows(sync, table_of(LessonDelivery), [
        {"subscriber_id": subscriber_id, "lesson": FIRST, "regimen": DEFAULT_REGIMEN,
         "outcome": LessonOutcome.QUEUED, "at": start, "signed_up_at": start}
        for subscriber_id in ids])


async def settled_rows(db: Database) -> list[tuple[int, str]]:
    async with db.transaction() as session:
        return [tuple(row) for row in await session.execute(  # type: ignore[misc]
            select(LessonDelivery.subscriber_id, LessonDelivery.lesson))]


FIRST, SECOND = "how-it-should-feel", "next-free-exercise"


async def lesson_history(db: Database) -> datetime:
    """Readers' lessons written row by row, so that each figure is known; returns when the
    first lesson was queued (ten days ago)."""
    t0 = datetime.now(UTC).replace(microsecond=0) - 10 * DAY
    async with db.transaction() as session:
        ids, signed_ups = {}, {}
        for name in ("r1", "r2", "r3", "r4", "r5"):
            # r5 signed up before the period the author asks about, the others in it.
            signed_up = t0 - (42 if name == "r5" else 3) * DAY
            reader, row = new_subscription(f"{name}@example.org",
                                           status=SubscriberStatus.CONFIRMED,
                                           created_at=signed_up,
                                           confirmed_at=signed_up + DAY)
            session.add(reader)
            await session.flush()
            session.add(row)
            await session.flush()
            ids[name], signed_ups[name] = row.id, signed_up

        def delivered(name: str, lesson: str, at: datetime,
                      outcome: LessonOutcome = LessonOutcome.QUEUED) -> LessonDelivery:
            return LessonDelivery(subscriber_id=ids[name], lesson=lesson,
                                  regimen=DEFAULT_REGIMEN, outcome=outcome,
                                  reason="exercise_done" if outcome is LessonOutcome.SKIPPED
                                  else None, at=at, signed_up_at=signed_ups[name])

        session.add_all([
            delivered("r1", FIRST, t0), delivered("r2", FIRST, t0),
            delivered("r3", FIRST, t0, LessonOutcome.SKIPPED), delivered("r4", FIRST, t0),
            delivered("r4", SECOND, t0 + 3 * DAY), delivered("r5", FIRST, t0 - 40 * DAY),
            OutboxMessage(kind=MailKind.LESSON, lesson=FIRST, subscriber_id=ids["r4"],
                          status=OutboxStatus.CANCELLED),
            # r1: a scanner within the window (not counted), then the reader clicks.
            Event(kind=EventKind.REGIMEN_OPENED, subscriber_id=ids["r1"], lesson=FIRST,
                  created_at=t0 + timedelta(seconds=10)),
            Event(kind=EventKind.EXERCISE_CLICKED, subscriber_id=ids["r1"], lesson=FIRST,
                  exercise="gentle-back-exercise", created_at=t0 + timedelta(hours=1)),
            # r2: a purchase click 8 days later (outside the 7), and stops the lessons.
            Event(kind=EventKind.PROGRAM_CLICKED, subscriber_id=ids["r2"],
                  exercise="free_your_back", created_at=t0 + 8 * DAY),
        ])
        await session.execute(update(Subscriber).where(Subscriber.id == ids["r2"])
                              .values(lessons_stopped_at=t0 + timedelta(hours=2)))
        # r4 unsubscribes after the second lesson: that one is "stopped after", not the first.
        await session.execute(update(Subscriber).where(Subscriber.id == ids["r4"])
                              .values(unsubscribed_at=t0 + 4 * DAY))
    return t0


async def test_the_authors_numbers_per_lesson(runtime: Runtime) -> None:
    t0 = await lesson_history(runtime.db)
    async with runtime.db.transaction() as session:
        [figures] = await lessons_of(session, list(runtime.catalog.regimens.values()),
                                               t0 - 4 * DAY, runtime.settings.scanner_window)
    assert runtime.settings.scanner_window < timedelta(hours=1)
    assert figures.key == DEFAULT_REGIMEN
    by_key = {each.key: each for each in figures.lessons}
    assert list(by_key) == [lesson.key for lesson in runtime.regimen.lessons]
    assert by_key[FIRST] == lesson_stats.LessonFigures(
        key=FIRST, subject=runtime.regimen.lessons[0].subject, after_days=2, sent=2, skipped=1,
        opened=1, clicked_within_7_days=1, stopped_after=1)
    assert (by_key[SECOND].sent, by_key[SECOND].stopped_after) == (1, 1)
    assert by_key["after-unit-1"].sent == 0
    text = "\n".join(lesson_stats.lines([figures]))
    assert re.search(rf"{FIRST}\s+2\s+2\s+1\s+1\s+1\s+1$", text, re.M), text


async def test_the_lessons_on_the_admin_page_and_in_its_csv(
    settings: Settings, db: Database,
) -> None:
    await lesson_history(db)
    password = "a-password-of-sixteen+"
    auth = {"Authorization": "Basic " + base64.b64encode(f"a:{password}".encode()).decode()}
    async with app_client(settings, admin_password=password) as http:
        csv_answer = await http.get("/admin/lessons.csv", headers=auth,
                                    params={"days": 30, "regimen": DEFAULT_REGIMEN})
        page = await http.get("/admin", headers=auth, params={"days": 30})
        other = await http.get("/admin", headers=auth,
                               params={"days": 30, "regimen": OTHER_REGIMEN})
        refused = (await http.get("/admin/lessons.csv")).status_code
    assert refused == 401
    assert csv_answer.headers["content-disposition"] == \
        f'attachment; filename="lessons-{DEFAULT_REGIMEN}-30d.csv"'
    rows = list(csv.reader(io.StringIO(csv_answer.text)))
    assert rows[0] == list(lesson_stats.COLUMNS)
    assert rows[1:] == [[DEFAULT_REGIMEN, FIRST, "2", "2", "1", "1", "1", "1"],
                        [DEFAULT_REGIMEN, SECOND, "5", "1", "0", "0", "0", "1"],
                        [DEFAULT_REGIMEN, "after-unit-1", "12", "0", "0", "0", "0", "0"]]
    text = html.unescape(page.text)
    assert "<h2>Lessons</h2>" in text
    assert "How the gentle back exercise should feel (<code>how-it-should-feel</code>)" in text
    assert "No regimen shown has lessons" in html.unescape(other.text)


def test_regimen_stats_prints_each_lessons_numbers(author_env: str) -> None:
    on_database(lesson_history, author_env)
    result = CliRunner().invoke(app, ["stats", "--days", "30", "--regimen", DEFAULT_REGIMEN])
    assert result.exit_code == 0, result.output
    assert "Lessons of Self-relief regimen for sacro-iliac joint pain (sacro-iliac)" \
        in result.output
    assert re.search(rf"^{FIRST}\s+2\s+2\s+1\s+1\s+1\s+1$", result.output, re.M)


async def test_a_lesson_does_not_hold_back_a_confirmation_asked_for_later(
    settings: Settings, db: Database, smtp: MailSink, clock: Clock,
) -> None:
    """The per-address budget (here one mail per 5 minutes) counts mail that signups cause; a
    lesson the reader agreed to is not one of them."""
    strict = settings.model_copy(update={"mails_per_address": "1/5minutes;3/day"})
    async with build_runtime(strict) as runtime:
        transport = httpx.ASGITransport(app=create_app(runtime, run_worker=False))
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            worker = worker_for(runtime, clock)
            await confirmed(http, worker, smtp, "reader@example.org")
            two_days_ago = datetime.now(UTC) - 2 * DAY - timedelta(minutes=1)
            async with db.transaction() as session:  # as if confirmed two days ago
                await session.execute(update(Subscriber).values(
                    lessons_consented_at=two_days_ago, next_lesson_at=two_days_ago,
                    confirmed_at=two_days_ago))
                await session.execute(update(OutboxMessage).values(created_at=two_days_ago))
            await worker.lessons()
            await worker.deliver_due()
            assert [row[1] for row in await lessons_queued(db)] == ["how-it-should-feel"]
            await http.post("/subscribe", data={"email": "reader@example.org",
                                                "regimen": OTHER_REGIMEN})
            await worker.deliver_due()
            last = (await mails_to(smtp, 4))[-1]
    assert "/confirm/" in " ".join(links_in(last))


async def test_a_bounce_or_complaint_stops_the_lessons(
    http: httpx.AsyncClient, runtime: Runtime, smtp: MailSink, clock: Clock,
) -> None:
    worker = worker_for(runtime, clock)
    await confirmed(http, worker, smtp, "reader@example.org")
    start = await agreed_at(runtime.db, "reader@example.org")
    async with runtime.db.transaction() as session:
        await suppress(session, "reader@example.org", SuppressionReason.COMPLAINT, start)
    clock.now = start + 2 * DAY
    await worker.lessons()
    assert await lessons_queued(runtime.db) == []
    assert (await subscription(runtime.db, "reader@example.org")).next_lesson_at is None
