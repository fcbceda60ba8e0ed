"""The author's figures kept per signup day (issue 17): over random histories of readers who
sign up, confirm, open, click, mark steps, get lessons, stop, bounce and are erased, days apart,
with the worker keeping the figures now and then, every view after the worker's pass reads
exactly what counting the raw rows gives, for random periods and regimens, on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from typer.testing import CliRunner

from service.cli import app
from service.core.content import READ_THROUGH, Catalog, load_content
from service.core.database import Database
from service.core.models import (
    Base,
    DailyFigure,
    Event,
    EventKind,
    FigureDay,
    FigureMonth,
    MailKind,
    MonthlyFigure,
    OutboxMessage,
    StaleFigureDay,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from service.core.outbox import mark_failed
from service.delivery import lessons
from service.delivery.worker import Chore, Pace, Worker
from service.funnel import events, rollups, upkeep
from service.funnel.figures import Figures
from service.readers import privacy, progress, signup
from service.readers.signup import RequestOrigin, SuppressionReason
from service.readers.tokens import Claims
from service.runtime import Runtime
from tests.helpers import PROJECT_ROOT, a_signup

CATALOG: Catalog = load_content(PROJECT_ROOT / "content")
REGIMENS = list(CATALOG.regimens.values())
KEYS = sorted(CATALOG.regimens)
# The first of a month: a history's first month can be kept whole, and summed.
START = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
WINDOW = timedelta(seconds=60)
READER = RequestOrigin("192.0.2.1", "test")
SOURCES = ["https://blog.example.org/a", "https://blog.example.org/b", None]
ADDRESSES = [f"r{n}@example.org" for n in range(3)]


def targets(key: str) -> list[str]:
    regimen = CATALOG.regimens[key]
    return [*(e.slug for e in regimen.exercises()), *regimen.programs]


# What can happen, one step of a history at a time: (what, address, regimen, a number).
ACTIONS = st.tuples(
    st.sampled_from(["signup", "signup", "confirm", "confirm", "open-confirm", "open-regimen",
                     "click", "click", "mark", "mark", "undo", "unsubscribe", "stop-lessons",
                     "bounce", "complain", "erase", "lessons", "lesson-fails", "later",
                     "later", "weeks-later", "keep", "keep", "forget-unconfirmed"]),
    st.sampled_from(ADDRESSES), st.sampled_from(KEYS), st.integers(0, 40))


@dataclass
class World:
    db: Database
    now: datetime = START

    async def subscriber(self, email: str, key: str) -> Subscriber | None:
        async with self.db.transaction() as session:
            return await session.scalar(select(Subscriber).where(
                Subscriber.email == email, Subscriber.regimen == key))

    async def act(self, what: str, email: str, key: str, n: int) -> None:
        now = self.now
        if what == "later":
            self.now += timedelta(hours=1 + n * 3)  # up to five days at once
            return
        if what == "weeks-later":
            # Past the end of a month or two, so that whole months are kept (and summed).
            self.now += timedelta(days=15 + n)
            return
        if what == "keep":
            await upkeep.keep(self.db, REGIMENS, now, WINDOW, None)
            return
        if what == "signup":
            async with self.db.transaction() as session:
                await session.run_sync(lambda sync: signup.subscribe(
                    sync, [a_signup(email, READER, SOURCES[n % 3], key)], now))
            return
        if what == "lessons":
            async with self.db.transaction() as session:
                await lessons.note_content(session, CATALOG, now)
                await lessons.queue_due(session, CATALOG, now, 500)
            return
        if what == "forget-unconfirmed":
            async with self.db.transaction() as session:
                await privacy.forget_unconfirmed(session, now, timedelta(days=3))
            return
        reader = await self.subscriber(email, key)
        if reader is None:
            return
        claims = Claims(reader.public_id, reader.token_version)
        async with self.db.transaction() as session:
            reader = await session.get(Subscriber, reader.id)
            assert reader is not None
            steps = [READ_THROUGH, *(e.slug for e in CATALOG.regimens[key].exercises())]
            if what == "confirm" and reader.status is SubscriberStatus.PENDING:
                await signup.confirm(session, claims, READER, now,
                                     lessons=[reader.public_id] if n % 2 else [])
            elif what == "open-confirm":
                await events.record(session, EventKind.CONFIRM_PAGE_OPENED, reader,
                                    scanner_window=WINDOW, now=now)
            elif what == "open-regimen":
                await events.record(session, EventKind.REGIMEN_OPENED, reader,
                                    scanner_window=WINDOW, now=now, lesson=None)
            elif what == "click":
                target = targets(key)[n % len(targets(key))]
                kind = EventKind.PROGRAM_CLICKED if target in CATALOG.regimens[key].programs \
                    else EventKind.EXERCISE_CLICKED
                await events.record(session, kind, reader, target, scanner_window=WINDOW,
                                    now=now, lesson=["how-it-should-feel", None][n % 2])
            elif what in ("mark", "undo"):
                await progress.mark(session, reader, steps[n % len(steps)], what == "mark", now)
            elif what == "unsubscribe":
                await signup.unsubscribe(session, claims, now, everything=n % 2 == 1)
            elif what == "stop-lessons":
                await signup.stop_lessons(session, claims, now)
            elif what in ("bounce", "complain"):
                await signup.suppress(session, email, SuppressionReason.BOUNCE if
                                      what == "bounce" else SuppressionReason.COMPLAINT, now)
            elif what == "erase":
                await privacy.erase(session, email, "secret", now)
            elif what == "lesson-fails":
                mail = await session.scalar(select(OutboxMessage.id).where(
                    OutboxMessage.subscriber_id == reader.id,
                    OutboxMessage.kind == MailKind.LESSON))
                if mail is not None:
                    await mark_failed(session, mail, "550 no such user")

    async def check(self, regimen: str | None, days: int) -> None:
        """The view's figures (kept days and the rest) against counting every day from the raw
        rows."""
        since = datetime.combine(self.now.date() - timedelta(days=days - 1), datetime.min.time(),
                                 tzinfo=UTC)
        async with self.db.transaction() as session:
            read = await rollups.read(session, REGIMENS, regimen, since, self.now, WINDOW)
            counted = {key: await rollups.count(session, key, CATALOG.regimens[key], since,
                                                since + timedelta(days=days), WINDOW)
                       for key in ([regimen] if regimen else KEYS)}
        assert set(read) == set(counted)
        for key, figures in counted.items():
            assert +read[key].total == +figures.total, (key, days, self.now)
            assert daily(read[key]) == daily(figures), (key, days, self.now)


def daily(figures: Figures) -> dict[date, dict[str, int]]:
    """The daily series as the page shows it: each figure per day, over its keys."""
    out: dict[date, dict[str, int]] = {}
    for day, counts in figures.days.items():
        for (name, _), n in counts.items():
            if n:
                out.setdefault(day, {}).setdefault(name, 0)
                out[day][name] += n
    return out


async def empty(db: Database) -> None:
    async with db.transaction() as session:
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(table.delete())


@settings(
    max_examples=40,
    deadline=None,  # a per-example time limit is a wall-clock assertion
    database=None,  # nothing written into the repository
    # One database for every example: each empties it first.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=st.lists(ACTIONS, min_size=5, max_size=45),
       views=st.lists(st.tuples(st.sampled_from([None, *KEYS]), st.integers(1, 120)),
                      min_size=1, max_size=3))
async def test_the_kept_figures_are_what_counting_the_raw_rows_gives(
    db: Database, history: list[tuple[str, str, str, int]],
    views: list[tuple[str | None, int]],
) -> None:
    await empty(db)
    world = World(db)
    for step, action in enumerate(history):
        await world.act(*action)
        if step % 9 == 8:
            # What the worker's next pass promises: the views as counting the raw rows.
            await upkeep.keep(db, REGIMENS, world.now, WINDOW, None)
            await world.check(*views[step % len(views)])
    # The worker keeps every closed day, a day later, then the views are checked again.
    world.now += timedelta(days=1)
    await upkeep.keep(db, REGIMENS, world.now, WINDOW, None)
    for regimen, days in views:
        await world.check(regimen, days)
    async with db.transaction() as session:
        assert await upkeep.verify_some(
            session, REGIMENS, await upkeep.days_to_verify(session, REGIMENS, world.now, None),
            WINDOW) == []
        assert await upkeep.verify_months(session) == []
        assert not (await session.scalars(select(StaleFigureDay.id))).all()


async def test_what_a_reader_does_days_later_counts_on_their_signup_day(db: Database) -> None:
    world = World(db)
    key = KEYS[-1]
    await world.act("signup", ADDRESSES[0], key, 0)
    await world.act("confirm", ADDRESSES[0], key, 1)
    signed_up = world.now.date()
    world.now += timedelta(days=3)
    await world.act("keep", ADDRESSES[0], key, 0)
    async with db.transaction() as session:
        assert set(await session.scalars(select(FigureDay.day).where(FigureDay.regimen == key))) \
            == {signed_up + timedelta(days=n) for n in range(4)}  # today up to 10 minutes ago
    # Each alone, so that each must note the day itself.
    for what in ("mark", "click", "open-regimen", "lessons", "lesson-fails", "stop-lessons",
                 "undo"):
        await world.act(what, ADDRESSES[0], key, 0)
        async with db.transaction() as session:
            assert set(await session.scalars(select(StaleFigureDay.day))) == {signed_up}, what
        await world.act("keep", ADDRESSES[0], key, 0)
        await world.check(key, 7)
    async with db.transaction() as session:
        figures = (await rollups.read(session, REGIMENS, key, world.now - timedelta(days=6),
                                      world.now, WINDOW))[key]
    assert figures.days[signed_up]["signups", ""] == 1
    assert figures.days[signed_up]["regimen_opened", ""] == 1
    assert figures["step", READ_THROUGH] == 0  # marked, then undone
    assert figures["exercise_clicks", targets(key)[0]] == 1
    assert figures["lesson_queued", "how-it-should-feel"] == 1
    assert figures["lesson_undelivered", "how-it-should-feel"] == 1
    await world.act("erase", ADDRESSES[0], key, 0)
    await world.act("keep", ADDRESSES[0], key, 0)
    await world.check(key, 7)
    async with db.transaction() as session:
        assert (await rollups.read(session, REGIMENS, key, world.now - timedelta(days=6),
                                   world.now, WINDOW))[key].total.total() == 0


async def test_whole_months_are_read_from_their_sums(db: Database) -> None:
    """Once every day of a month is kept whole, a view over it reads the month's sums (so a
    tampered sum shows, and `verify_months` names it); a reader of that month who clicks
    later lets the sums go until their day is counted again."""
    world = World(db)  # 1 March
    key = KEYS[0]
    for n, email in enumerate(ADDRESSES):
        await world.act("signup", email, key, n)
        await world.act("confirm", email, key, 1)
        await world.act("click", email, key, n)
        world.now += timedelta(days=20)  # the readers of 1 and 21 March, and of 10 April
    world.now += timedelta(days=45)  # 15 June
    await upkeep.keep(db, REGIMENS, world.now, WINDOW, None)
    march, april, may = date(2026, 3, 1), date(2026, 4, 1), date(2026, 5, 1)

    async def summed() -> set[date]:
        async with db.transaction() as session:
            return set(await session.scalars(select(FigureMonth.month)
                                              .where(FigureMonth.regimen == key)))

    # Every day from the first signup on is kept; June is not over.
    assert await summed() == {march, april, may}
    await world.check(key, 100)
    await world.check(None, 120)
    slug = targets(key)[2]  # what the April reader clicked

    async def clicks() -> int:
        async with db.transaction() as session:
            return (await rollups.read(session, REGIMENS, key, world.now - timedelta(days=99),
                                       world.now, WINDOW))[key]["exercise_clicks", slug]

    assert await clicks() == 1
    async with db.transaction() as session:
        await session.execute(update(MonthlyFigure).where(
            MonthlyFigure.month == april, MonthlyFigure.figure == "exercise_clicks",
            MonthlyFigure.key == slug).values(value=MonthlyFigure.value + 5))
        assert [(each.day, each.figure, each.kept, each.counted, each.month)
                for each in await upkeep.verify_months(session)] == [
            (april, "exercise_clicks", 6, 1, True)]
    assert await clicks() == 6  # read from the month's sum, not from its days
    # The April reader clicks again in June: their day, and so April, is counted again.
    await world.act("click", ADDRESSES[2], key, 2)
    async with db.transaction() as session:
        await upkeep.catch_up(session, REGIMENS, world.now + timedelta(minutes=1), WINDOW, None)
        assert await upkeep.verify_months(session) == []
    assert await summed() == {march, april, may}
    assert await clicks() == 2
    await world.check(key, 100)


async def test_a_signup_writes_nothing_to_the_kept_figures(db: Database) -> None:
    """A signup writes no row of the author's figures (none that concurrent signups could wait
    on): the new reader is counted from the raw rows until the worker next counts their day.
    What a reader does afterwards appends a note, which updates no row either."""
    world = World(db)
    for email in ADDRESSES:
        await world.act("signup", email, KEYS[0], 0)
    async with db.transaction() as session:
        for model in (StaleFigureDay, FigureDay, DailyFigure):
            assert (await session.scalars(select(model))).all() == [], model
    world.now += timedelta(days=1)
    for email in ADDRESSES:
        await world.act("confirm", email, KEYS[0], 0)
        await world.act("click", email, KEYS[0], 0)
    async with db.transaction() as session:
        notes = (await session.scalars(select(StaleFigureDay))).all()
        assert len(notes) == 2 * len(ADDRESSES)
        assert {(note.regimen, note.day) for note in notes} == {(KEYS[0], START.date())}
        for model in (FigureDay, DailyFigure):
            assert (await session.scalars(select(model))).all() == [], model


async def test_an_edited_regimen_has_its_days_counted_again(db: Database, tmp_path: Path) -> None:
    world = World(db)
    key = "sacro-iliac"
    await world.act("signup", ADDRESSES[0], key, 0)
    await world.act("confirm", ADDRESSES[0], key, 0)
    unit1 = [e.slug for e in CATALOG.regimens[key].units[0].exercises]
    async with db.transaction() as session:
        reader = await session.scalar(select(Subscriber))
        assert reader is not None
        for slug in unit1[:-1]:
            await progress.mark(session, reader, slug, True, world.now)
    world.now += timedelta(days=2)
    await upkeep.keep(db, REGIMENS, world.now, WINDOW, None)
    # The author drops Unit 1's last exercise: the reader has now finished Unit 1.
    folder = tmp_path / "content"
    shutil.copytree(PROJECT_ROOT / "content", folder)
    path = folder / "regimens" / f"{key}.yaml"
    data = yaml.safe_load(path.read_text())
    data["units"][0]["exercises"].pop()
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    edited = load_content(folder).regimens[key]
    assert rollups.shape(edited) != rollups.shape(CATALOG.regimens[key])
    since = world.now - timedelta(days=6)
    async with db.transaction() as session:
        before = (await rollups.read(session, REGIMENS, key, since, world.now, WINDOW))[key]
        after = (await rollups.read(session, [edited], key, since, world.now, WINDOW))[key]
    assert (before["unit_finished", "1"], after["unit_finished", "1"]) == (0, 1)
    await upkeep.keep(db, [edited], world.now, WINDOW, None)
    async with db.transaction() as session:
        shapes = set(await session.scalars(select(FigureDay.shape).where(FigureDay.regimen == key)))
        kept = (await rollups.read(session, [edited], key, since, world.now, WINDOW))[key]
    assert shapes == {rollups.shape(edited)}
    assert kept.total == after.total


async def test_old_events_go_and_the_figures_stay(db: Database) -> None:
    retention = timedelta(days=10)
    world = World(db)
    key = KEYS[0]
    await world.act("signup", ADDRESSES[0], key, 0)
    await world.act("confirm", ADDRESSES[0], key, 0)
    for n in range(3):
        await world.act("click", ADDRESSES[0], key, n)
    world.now += timedelta(days=5)
    await world.act("click", ADDRESSES[0], key, 0)
    world.now += timedelta(days=8)  # the first clicks are 13 days old, the last one 8
    since = world.now - timedelta(days=29)

    async def figures() -> Figures:
        async with db.transaction() as session:
            return (await rollups.read(session, REGIMENS, key, since, world.now, WINDOW,
                                       retention))[key]

    before = await figures()
    assert before["exercise_clicks", targets(key)[0]] == 2
    done = await upkeep.keep(db, REGIMENS, world.now, WINDOW, retention)
    assert done.events_forgotten == 3  # the three clicks of the signup day
    async with db.transaction() as session:
        left = (await session.scalars(select(Event.created_at))).all()
    assert left
    assert all(at >= world.now - retention for at in left)
    assert (await figures()).total == before.total
    # The signup day's events are partly gone: it keeps its count, and `verify` leaves it be.
    await world.act("click", ADDRESSES[0], key, 1)
    await upkeep.keep(db, REGIMENS, world.now + timedelta(hours=1), WINDOW, retention)
    assert (await figures()).total == before.total
    async with db.transaction() as session:
        kept = await upkeep.days_to_verify(session, REGIMENS, world.now, retention)
    assert [(each.regimen, each.day) for each in kept] == [
        (key, world.now.date() - timedelta(days=n)) for n in range(retention.days - 1, -1, -1)]


async def test_the_worker_keeps_the_figures(db: Database, runtime: Runtime) -> None:
    world = World(runtime.db)
    await world.act("signup", ADDRESSES[0], KEYS[0], 0)
    assert runtime.worker().chores == ()  # the tests' settings: REGIMEN_FIGURES_EVERY=0
    runtime.settings.figures_every = timedelta(seconds=60)  # the default
    worker = runtime.worker()
    assert [chore.what for chore in worker.chores] == ["keeping the author's figures"]
    done = await worker.chores[0].run(world.now + timedelta(days=3))
    assert isinstance(done, upkeep.Pass)
    assert done.counted == 4  # three days over, and today up to 10 minutes ago
    assert done.left == 0
    # The worker runs it on its own clock, as often as asked, until stopped.
    ran = asyncio.Event()

    async def chore(now: datetime) -> None:
        assert now == START
        ran.set()

    stop = asyncio.Event()
    looping = Worker(runtime.db, runtime.mailer, runtime.transport,
                     Pace.from_settings(runtime.settings), clock=lambda: START,
                     chores=(Chore("noting", 3600, chore),))
    task = asyncio.create_task(looping.run(stop))
    await asyncio.wait_for(ran.wait(), timeout=60)
    stop.set()
    await asyncio.wait_for(task, timeout=60)


def test_regimen_stats_verify_and_rebuild(author_env: str) -> None:
    async def history(db: Database) -> None:
        world = World(db, now=utcnow() - timedelta(days=20))
        for n, email in enumerate(ADDRESSES):
            await world.act("signup", email, KEYS[n % 2], n)
            await world.act("confirm", email, KEYS[n % 2], 1)
            world.now += timedelta(days=2)
            await world.act("click", email, KEYS[n % 2], n)

    asyncio.run(on(author_env, history))
    runner = CliRunner()

    def stats(*args: str) -> list[str]:
        result = runner.invoke(app, ["stats", *args])
        assert result.exit_code == 0, result.output
        return result.output.splitlines()[1:]  # not the first line, which says the time

    counted_live = stats("--days", "30")
    rebuilt = runner.invoke(app, ["stats", "--rebuild"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert re.search(r"Counted the figures of (\d+) days again", rebuilt.output)
    assert stats("--days", "30") == counted_live
    assert "The kept figures of " in runner.invoke(app, ["stats", "--verify"]).output

    async def tamper(db: Database) -> None:
        async with db.transaction() as session:
            await session.execute(update(DailyFigure).where(DailyFigure.figure == "signups")
                                  .values(value=DailyFigure.value + 1))

    asyncio.run(on(author_env, tamper))
    assert stats("--days", "30") != counted_live
    verified = runner.invoke(app, ["stats", "--verify"])
    assert verified.exit_code == 1
    assert "signups '' kept 2, counted 1" in verified.output
    assert "differ from the raw rows; `regimen stats --rebuild`" in verified.output
    assert runner.invoke(app, ["stats", "--rebuild"]).exit_code == 0
    assert stats("--days", "30") == counted_live
    migrated = runner.invoke(app, ["migrate"])
    assert migrated.exit_code == 0, migrated.output
    # Nothing to count but each regimen's today since the last count (the clock moved on).
    assert re.fullmatch(r"Database is up to date\.( Counted the author's figures of 2 days\.)?",
                        migrated.output.strip()), migrated.output


async def on(url: str, work: Callable[[Database], Awaitable[None]]) -> None:
    db = Database(url)
    try:
        await work(db)
    finally:
        await db.dispose()
