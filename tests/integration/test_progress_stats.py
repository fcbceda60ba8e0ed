"""How far readers get, for the author (issue 15, item 4): per step, per unit, Unit 1 then a
purchase link, each program's conversion; for the readers who signed up in the period, each
regimen apart, exact on SQLite and PostgreSQL, on the page, in the CSV and from `regimen stats`;
and the same numbers as counting the raw rows by hand, over random histories."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from typer.testing import CliRunner

from service.cli import app
from service.core.content import READ_THROUGH, Regimen, load_content
from service.core.database import Database
from service.core.models import (
    Base,
    Event,
    EventKind,
    Progress,
    Reader,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from service.core.settings import Settings
from service.funnel import progress_stats, stats
from service.funnel.events import record
from service.funnel.progress_stats import HowFar
from service.readers import progress
from service.runtime import Runtime
from tests.helpers import (
    DEFAULT_REGIMEN,
    OTHER_REGIMEN,
    PROJECT_ROOT,
    app_client,
    count_rows,
    funnel_of,
    how_far_each_of,
    how_far_of,
    new_subscription,
    on_database,
    shipped_content_in,
)
from tests.integration.test_admin import PASSWORD, WINDOW, basic

EC, PC = EventKind.EXERCISE_CLICKED, EventKind.PROGRAM_CLICKED
# The shipped sacro-iliac regimen: Unit 1 free (five exercises, its next steps name
# free_your_back), Unit 2 in free_your_back, Unit 3 in walking_better.
UNIT1 = ["gentle-back-exercise", "sacrum-self-appraisal", "arch-and-flatten", "lying-side-bend",
         "lying-twist"]
UNIT2 = ["psoas-release", "hip-joint-freedom", "pelvic-figure-eight"]
UNIT3 = ["walking-integration", "standing-balance"]
# The shipped neck-and-shoulders regimen: Unit 1 free, Unit 2 in free_your_neck but for
# seated-integration (sitting_easy), Unit 1's next steps name free_your_neck.
NECK1 = ["lying-head-turn", "shoulder-blade-slide", "arch-and-curl"]


async def subscribe(db: Database, email: str, signed_up: datetime,
                    regimen: str = DEFAULT_REGIMEN) -> int:
    async with db.transaction() as session:
        address, subscriber = new_subscription(
            email, regimen, created_at=signed_up, confirmed_at=signed_up + timedelta(minutes=5),
            status=SubscriberStatus.CONFIRMED)
        if await session.scalar(select(Reader.id).where(Reader.email == email)) is None:
            session.add(address)
            await session.flush()
        session.add(subscriber)
        await session.flush()
        return subscriber.id


async def mark(db: Database, subscriber_id: int, steps: Sequence[str], start: datetime) -> datetime:
    """The steps marked done on the reader's page, an hour apart from `start`, as the page marks
    them; returns when the last one was marked."""
    at = start
    async with db.transaction() as session:
        subscriber = await session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        for n, step in enumerate(steps):
            at = start + timedelta(hours=n)
            await progress.mark(session, subscriber, step, True, at)
    return at


async def click(db: Database, subscriber_id: int, kind: EventKind, target: str,
                at: datetime) -> None:
    """A click on an exercise's link (its slug) or a next step's program link (its key)."""
    async with db.transaction() as session:
        subscriber = await session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        await record(session, kind, subscriber, target, scanner_window=WINDOW, now=at)


async def seed_history(db: Database) -> datetime:
    """Readers of both shipped regimens (see each line); returns `now`."""
    now = utcnow()
    day = timedelta(days=1)
    minute = timedelta(minutes=1)
    # Finished Unit 1, then the next step's program link at the very moment of the last mark.
    a = await subscribe(db, "a@example.org", now - 5 * day)
    done = await mark(db, a, [READ_THROUGH, *UNIT1], now - 5 * day)
    await click(db, a, PC, "free_your_back", done)
    # Signed up before the 30 days: nothing of theirs counts.
    b = await subscribe(db, "b@example.org", now - 40 * day)
    done = await mark(db, b, [READ_THROUGH, *UNIT1, *UNIT2], now - 40 * day)
    await click(db, b, EC, "walking-integration", done + minute)
    # Finished Unit 1, but bought before that (and only watched a free video after).
    c = await subscribe(db, "c@example.org", now - 4 * day)
    await click(db, c, EC, "psoas-release", now - 4 * day + minute)
    done = await mark(db, c, [READ_THROUGH, *UNIT1], now - 4 * day + 2 * minute)
    await click(db, c, EC, "gentle-back-exercise", done + minute)
    # Units 1 and 2, each followed by its program's link: an exercise of each.
    d = await subscribe(db, "d@example.org", now - 6 * day)
    done = await mark(db, d, [READ_THROUGH, *UNIT1], now - 6 * day)
    await click(db, d, EC, "psoas-release", done + minute)
    done = await mark(db, d, UNIT2, done + 2 * minute)
    await click(db, d, EC, "walking-integration", done + minute)
    # Started: reading it through and two exercises.
    e = await subscribe(db, "e@example.org", now - 3 * day)
    await mark(db, e, [READ_THROUGH, *UNIT1[:2]], now - 3 * day)
    # Unit 2 alone (no Unit 1), then Unit 3's program.
    f = await subscribe(db, "f@example.org", now - 3 * day)
    done = await mark(db, f, UNIT2, now - 3 * day)
    await click(db, f, EC, "standing-balance", done + minute)
    # All of Unit 1 but its last exercise, then the program link: not a finisher.
    h = await subscribe(db, "h@example.org", now - 2 * day)
    done = await mark(db, h, [READ_THROUGH, *UNIT1[:4]], now - 2 * day)
    await click(db, h, PC, "free_your_back", done + minute)
    # Finished Unit 1, then another program's exercise: a purchase link, not free_your_back's.
    i = await subscribe(db, "i@example.org", now - 2 * day)
    done = await mark(db, i, [READ_THROUGH, *UNIT1], now - 2 * day)
    await click(db, i, EC, "walking-integration", done + minute)
    # The second regimen, one of them the same address as a reader of the first.
    g = await subscribe(db, "a@example.org", now - 2 * day, OTHER_REGIMEN)
    done = await mark(db, g, [READ_THROUGH, *NECK1], now - 2 * day)
    await click(db, g, PC, "free_your_neck", done + minute)
    j = await subscribe(db, "j@example.org", now - 2 * day, OTHER_REGIMEN)
    await click(db, j, EC, "shoulder-circles", now - 2 * day)
    done = await mark(db, j, NECK1, now - 2 * day + minute)
    await click(db, j, EC, "seated-integration", done + minute)
    return now


def step_counts(figures: HowFar) -> dict[str, int]:
    return {s.key: s.readers for s in figures.steps}


def programs(figures: HowFar) -> dict[str, tuple[int | None, int | None, int | None]]:
    """Per program: (the unit before it, clicked, finished that unit)."""
    return {p.key: (p.after, p.clicked, p.finished) for p in figures.programs}


SACRO_STEPS = {READ_THROUGH: 6, "gentle-back-exercise": 6, "sacrum-self-appraisal": 6,
               "arch-and-flatten": 5, "lying-side-bend": 5, "lying-twist": 4,
               "psoas-release": 2, "hip-joint-freedom": 2, "pelvic-figure-eight": 2,
               "walking-integration": 0, "standing-balance": 0}
NECK_STEPS = {READ_THROUGH: 1, "lying-head-turn": 2, "shoulder-blade-slide": 2,
              "arch-and-curl": 2, "neck-and-jaw-release": 0, "shoulder-circles": 0,
              "seated-integration": 0}


async def test_how_far_readers_get(db: Database, runtime: Runtime) -> None:
    now = await seed_history(db)
    sacro, neck = runtime.catalog.regimens[DEFAULT_REGIMEN], runtime.catalog.regimens[OTHER_REGIMEN]
    since = stats.period_start(now, 30)
    async with db.transaction() as session:
        first = await how_far_of(session, sacro, since)
        second = await how_far_of(session, neck, since)
        both = await how_far_each_of(session, [neck, sacro], since)
    assert both == [second, first]
    assert (first.key, first.title, first.since) == (DEFAULT_REGIMEN, sacro.title, since)
    # Each step in the page's order: reading it through, then each exercise.
    assert [s.key for s in first.steps] == [READ_THROUGH, *UNIT1, *UNIT2, *UNIT3]
    assert first.steps[0].title == progress_stats.READ_THROUGH_TITLE
    assert first.steps[1].title == "The gentle back exercise"
    assert step_counts(first) == SACRO_STEPS
    assert first.started == 7  # a, c, d, e, f, h, i
    assert [(u.number, u.exercises, u.readers) for u in first.units] == [
        (1, 5, 4), (2, 3, 2), (3, 2, 0)]  # Unit 1: a, c, d, i; Unit 2: d, f
    # a (at the very moment), d and i after finishing Unit 1; not c, who bought before.
    assert (first.unit1_finished, first.unit1_then_purchase) == (4, 3)
    assert first.then_purchase_rate == 0.75
    # free_your_back: offered by Unit 1's next steps (a, d); walking_better: its first
    # exercise is in Unit 3, so measured after Unit 2 (d, f).
    assert programs(first) == {"free_your_back": (1, 2, 4), "walking_better": (2, 2, 2)}
    assert [p.rate for p in first.programs] == [0.5, 1.0]

    assert step_counts(second) == NECK_STEPS
    assert second.started == 2
    assert [u.readers for u in second.units] == [2, 0]
    assert (second.unit1_finished, second.unit1_then_purchase) == (2, 2)
    # sitting_easy's first exercise is in Unit 2: measured after Unit 1, as free_your_neck.
    assert programs(second) == {"free_your_neck": (1, 1, 2), "sitting_easy": (1, 1, 2)}


async def test_the_cohort_is_the_funnels(db: Database, runtime: Runtime) -> None:
    """The readers who signed up from the period's first moment on, as the funnel counts them;
    one a microsecond earlier is not one of them, however far they got."""
    now = utcnow()
    since = stats.period_start(now, 7)
    for days in (1, 7, 30, 366):
        async with db.transaction() as session:
            report = await funnel_of(session, [runtime.regimen], now, days, WINDOW)
        assert stats.period_start(now, days) == report.since
    for email, signed_up in (("first@example.org", since),
                             ("earlier@example.org", since - timedelta(microseconds=1))):
        reader = await subscribe(db, email, signed_up)
        done = await mark(db, reader, [READ_THROUGH, *UNIT1], since + timedelta(hours=1))
        await click(db, reader, PC, "free_your_back", done)
    async with db.transaction() as session:
        figures = await how_far_of(session, runtime.regimen, since)
        wider = await how_far_of(session, runtime.regimen,
                                             since - timedelta(microseconds=1))
        report = await funnel_of(session, [runtime.regimen], now, 7, WINDOW)
    assert report.totals.signups == figures.started == 1
    assert (figures.unit1_finished, figures.unit1_then_purchase) == (1, 1)
    assert (wider.started, wider.unit1_finished, wider.unit1_then_purchase) == (2, 2, 2)
    assert programs(wider)["free_your_back"] == (1, 2, 2)


async def test_undone_steps_no_longer_count(db: Database, runtime: Runtime) -> None:
    now = utcnow()
    reader = await subscribe(db, "undo@example.org", now - timedelta(days=1))
    await mark(db, reader, [READ_THROUGH, *UNIT1], now - timedelta(days=1))
    async with db.transaction() as session:
        subscriber = await session.get(Subscriber, reader)
        assert subscriber is not None
        await progress.mark(session, subscriber, "lying-twist", False, now)
    async with db.transaction() as session:
        figures = await how_far_of(session, runtime.regimen,
                                               stats.period_start(now, 30))
    assert step_counts(figures)["lying-twist"] == 0
    assert (figures.started, figures.unit1_finished) == (1, 0)
    assert await count_rows(db, Progress) == 5


def edited_content(folder: Path) -> Regimen:
    """The shipped sacro-iliac regimen after the author (1) removed lying-twist from Unit 1,
    (2) moved lying-side-bend into walking_better (so walking_better holds an exercise of
    Unit 1, and no next step names it) and (3) added an exercise to Unit 2."""
    content = shipped_content_in(folder)
    path = content / "regimens" / f"{DEFAULT_REGIMEN}.yaml"
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    unit1, unit2 = data["units"][0], data["units"][1]
    unit1["exercises"] = [e for e in unit1["exercises"] if e["slug"] != "lying-twist"]
    side_bend = next(e for e in unit1["exercises"] if e["slug"] == "lying-side-bend")
    del side_bend["video_url"]
    side_bend["program"] = "walking_better"
    unit2["exercises"].append({"slug": "new-exercise", "title": "A new exercise",
                               "note": "Added later.", "program": "free_your_back"})
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_content(content).regimens[DEFAULT_REGIMEN]


async def test_the_regimen_as_served_now_counts(db: Database, tmp_path: Path) -> None:
    """A removed exercise's step no longer counts (h, who never did it, has now finished Unit 1,
    and bought after it); a new one is done by nobody yet (Unit 2 finished by none); a program
    holding an exercise of Unit 1 that no next step names has no rate."""
    now = await seed_history(db)
    edited = edited_content(tmp_path)
    async with db.transaction() as session:
        figures = await how_far_of(session, edited,
                                               stats.period_start(now, 30))
    expected = {key: n for key, n in SACRO_STEPS.items() if key != "lying-twist"}
    assert step_counts(figures) == {**expected, "new-exercise": 0}
    assert [s.key for s in figures.steps][5:7] == ["psoas-release", "hip-joint-freedom"]
    assert figures.started == 7
    assert [(u.exercises, u.readers) for u in figures.units] == [(4, 5), (4, 0), (2, 0)]
    # a, d, h, i then clicked a purchase link; c still bought before.
    assert (figures.unit1_finished, figures.unit1_then_purchase) == (5, 4)
    assert programs(figures) == {"free_your_back": (1, 3, 5),
                                 "walking_better": (None, None, None)}
    assert figures.programs[1].rate is None
    text = "\n".join(progress_stats.table(figures))
    assert (f"Walking Better: {progress_stats.NO_UNIT_BEFORE}, no rate") in text
    rows = {(row[1], row[2]): row for row in progress_stats.rows(figures)}
    assert rows[("program", "walking_better")][4:] == ("", "")
    assert rows[("program", "free_your_back")][4:] == (3, 5)


async def test_more_programs_than_one_probe_answers(db: Database, tmp_path: Path) -> None:
    """Each probe answers about at most LINKS_PER_PROBE links (bits of an integer): a unit that
    many programs are measured from is asked in several."""
    content = shipped_content_in(tmp_path)
    path = content / "regimens" / f"{DEFAULT_REGIMEN}.yaml"
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    many = progress_stats.LINKS_PER_PROBE + 5
    for n in range(many):
        data["programs"][f"p{n}"] = {"name": f"Program {n}",
                                     "url": f"https://example.com/replace-me/p{n}"}
        data["units"][0]["next_steps"].append({"title": f"Program {n}", "program": f"p{n}"})
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    regimen = load_content(content).regimens[DEFAULT_REGIMEN]
    now = utcnow()
    reader = await subscribe(db, "many@example.org", now - timedelta(days=1))
    done = await mark(db, reader, UNIT1, now - timedelta(days=1))
    last = f"p{many - 1}"
    for program in ("p2", last):
        await click(db, reader, PC, program, done)
    async with db.transaction() as session:
        figures = await how_far_of(session, regimen,
                                               stats.period_start(now, 30))
    conversions = programs(figures)
    assert conversions["p2"] == conversions[last] == (1, 1, 1)
    assert [key for key, (_, clicked, _) in conversions.items() if clicked] == ["p2", last]
    assert conversions["free_your_back"] == (1, 0, 1)
    assert figures.unit1_then_purchase == 1


def rows_of(text: str) -> dict[tuple[str, str, str], tuple[str, str, str]]:
    """The CSV by (regimen, kind, key): (title, readers, of_readers)."""
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == progress_stats.PROGRESS_COLUMNS
    return {(r["regimen"], r["kind"], r["key"]): (r["title"], r["readers"], r["of_readers"])
            for r in reader}


async def test_the_csv(settings: Settings, db: Database) -> None:
    await seed_history(db)
    async with app_client(settings, admin_password=PASSWORD) as http:
        one = await http.get("/admin/progress.csv", headers=basic(PASSWORD),
                             params={"days": 30, "regimen": DEFAULT_REGIMEN})
        every = await http.get("/admin/progress.csv?days=30", headers=basic(PASSWORD))
        week = await http.get(f"/admin/progress.csv?days=1&regimen={DEFAULT_REGIMEN}",
                              headers=basic(PASSWORD))
        refused = [(await http.get(path, headers=headers)).status_code for path, headers in (
            ("/admin/progress.csv", {}), ("/admin/progress.csv?regimen=nope", basic(PASSWORD)),
            ("/admin/progress.csv?days=0", basic(PASSWORD)))]
    async with app_client(settings) as http:
        off = await http.get("/admin/progress.csv", headers=basic(PASSWORD))
    assert refused == [401, 400, 400]
    assert off.status_code == 404
    assert one.status_code == 200
    assert one.headers["content-type"].startswith("text/csv")
    assert one.headers["cache-control"] == "no-store"
    assert one.headers["content-disposition"] == \
        f'attachment; filename="progress-{DEFAULT_REGIMEN}-30d.csv"'
    assert every.headers["content-disposition"] == 'attachment; filename="progress-30d.csv"'
    rows = rows_of(one.text)
    s = DEFAULT_REGIMEN
    assert {key: int(row[1]) for (_, kind, key), row in rows.items() if kind == "step"} \
        == SACRO_STEPS
    assert rows[(s, "step", READ_THROUGH)] == (progress_stats.READ_THROUGH_TITLE, "6", "7")
    assert rows[(s, "unit", "1")] == ("Unit 1 — Unlock the situation", "4", "7")
    assert rows[(s, "unit", "2")][1:] == ("2", "7")
    assert rows[(s, "unit1_then_purchase", "1")][1:] == ("3", "4")
    assert rows[(s, "program", "free_your_back")] == ("Free Your Back!", "2", "4")
    assert rows[(s, "program", "walking_better")] == ("Walking Better", "2", "2")
    assert len(rows) == 11 + 3 + 1 + 2
    # Every regimen: each one's rows, the first's the same as alone.
    all_rows = rows_of(every.text)
    assert {k: v for k, v in all_rows.items() if k[0] == s} == rows
    assert all_rows[(OTHER_REGIMEN, "unit1_then_purchase", "1")][1:] == ("2", "2")
    assert all_rows[(OTHER_REGIMEN, "program", "sitting_easy")][1:] == ("1", "2")
    assert len(all_rows) == len(rows) + 7 + 2 + 1 + 2
    # Today's signups only: nobody.
    assert rows_of(week.text)[(s, "unit", "1")][1:] == ("0", "0")


async def test_the_page(settings: Settings, db: Database) -> None:
    await seed_history(db)
    async with app_client(settings, admin_password=PASSWORD) as http:
        one = (await http.get(f"/admin?regimen={DEFAULT_REGIMEN}",
                              headers=basic(PASSWORD))).text
        every = (await http.get("/admin", headers=basic(PASSWORD))).text
    section = one[one.index("<h2>How far readers get</h2>"):one.index("<h2>Lessons</h2>")]
    assert section.count("<h3>") == 1
    assert "<th scope=\"row\">Marked at least one step done</th><td>7</td>" in section
    assert "<th scope=\"row\">Finished Unit 1, then clicked a purchase link</th><td>3</td>" \
        "<td>75% of those who finished Unit 1</td>" in section
    assert f"<tr><td>{progress_stats.READ_THROUGH_TITLE}</td><td>6</td><td>86%</td></tr>" \
        in section
    assert "<tr><td>Unit 2 — Reshape muscular tension and movement patterns (3 exercises)" \
        "</td><td>2</td><td>29%</td></tr>" in section
    assert "<tr><td>Free Your Back!</td><td>Unit 1 — Unlock the situation</td><td>4</td>" \
        "<td>2</td><td>50%</td></tr>" in section
    assert "<tr><td>Walking Better</td><td>Unit 2 — Reshape muscular tension and movement " \
        "patterns</td><td>2</td><td>2</td><td>100%</td></tr>" in section
    assert f'href="/admin/progress.csv?days=30&amp;regimen={DEFAULT_REGIMEN}"' in one
    assert " style=" not in section
    assert 'class="numbers"' in section
    everyone = every[every.index("<h2>How far readers get</h2>"):
                     every.index("<h2>Lessons</h2>")]
    assert everyone.count("<h3>") == 2
    assert "<tr><td>Sitting Without Strain</td><td>Unit 1 — Sense the pattern</td><td>2</td>" \
        "<td>1</td><td>50%</td></tr>" in everyone
    assert 'href="/admin/progress.csv?days=30"' in every


async def test_the_page_says_when_a_program_has_no_rate(settings: Settings, db: Database,
                                                        tmp_path: Path) -> None:
    edited_content(tmp_path)
    await seed_history(db)
    async with app_client(settings, admin_password=PASSWORD,
                          content_path=tmp_path / "content") as http:
        page = (await http.get(f"/admin?regimen={DEFAULT_REGIMEN}",
                               headers=basic(PASSWORD))).text
    assert ("<tr><td>Walking Better</td><td colspan=\"4\">No rate: "
            f"{progress_stats.NO_UNIT_BEFORE}.</td></tr>") in page


def test_regimen_stats_prints_how_far_readers_get(author_env: str) -> None:
    on_database(seed_history, author_env)
    runner = CliRunner()
    result = runner.invoke(app, ["stats", "--days", "30", "--regimen", DEFAULT_REGIMEN])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index(f"How far readers get: Self-relief regimen for sacro-iliac joint pain "
                        f"({DEFAULT_REGIMEN})")
    assert lines.index("Of the readers who signed up in these days:") < start
    section = lines[start:]  # the last thing printed
    assert section[1] == "Of the readers who signed up in these days:"
    assert section[2].split() == ["marked", "at", "least", "one", "step", "done", "7"]
    numbers = {line.strip().rsplit(maxsplit=2)[0].strip(): line.split()[-2:]
               for line in section if line.startswith("    ") and line.endswith("%")}
    assert numbers[progress_stats.READ_THROUGH_TITLE] == ["6", "86%"]
    assert numbers["Lying twist"] == ["4", "57%"]
    assert numbers["Unit 1 — Unlock the situation"] == ["4", "57%"]
    assert numbers["Unit 3 — Reinforce healthy, balanced movement"] == ["0", "0%"]
    assert [line.split()[-4:] for line in section if "then clicked" in line] == [
        ["3", "75%", "of", "4"]]
    assert [line.split() for line in section if "after Unit" in line] == [
        ["Free", "Your", "Back!,", "after", "Unit", "1", "2", "50%", "of", "4"],
        ["Walking", "Better,", "after", "Unit", "2", "2", "100%", "of", "2"]]
    assert not any("neck" in line.lower() for line in section)

    every = runner.invoke(app, ["stats", "--days", "30"])
    assert every.exit_code == 0, every.output
    printed = every.output.splitlines()
    heads = [line for line in printed if line.startswith("How far")]
    assert heads == [f"How far readers get: {r.title} ({r.key})"
                     for r in load_content(PROJECT_ROOT / "content").regimens.values()]
    assert [line.split() for line in printed if "Sitting Without Strain" in line] == [
        ["Sitting", "Without", "Strain,", "after", "Unit", "1", "1", "50%", "of", "2"]]
# --- The same numbers as counting the raw rows by hand, over random histories. -------------

BASE = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class History:
    regimen: str
    signed_up_day: int
    # step -> hours after signing up
    steps: dict[str, int]
    # (kind, exercise or program, hours after signing up)
    clicks: list[tuple[EventKind, str, int]]


SHIPPED = load_content(PROJECT_ROOT / "content").regimens


def order_of(regimen: Regimen) -> list[str]:
    return [READ_THROUGH, *(e.slug for e in regimen.exercises())]


@st.composite
def histories(draw: st.DrawFn) -> History:
    key = draw(st.sampled_from(sorted(SHIPPED)))
    regimen = SHIPPED[key]
    order = order_of(regimen)
    # In the page's order, often up to the end of a unit, now and then with a gap, and now and
    # then a step since removed.
    ends = [1 + sum(len(unit.exercises) for unit in regimen.units[:n + 1])
            for n in range(len(regimen.units))]
    depth = draw(st.sampled_from(ends) | st.integers(0, len(order)))
    skipped = draw(st.sets(st.sampled_from(order), max_size=1))
    steps = [step for step in order[:depth] if step not in skipped]
    if draw(st.booleans()):
        steps.append("retired-exercise")
    # Clicks as often before as after the moment a unit was finished, on any link: exercises
    # free or not, programs, another regimen's, or one no longer offered.
    targets = sorted({*(step for r in SHIPPED.values() for step in order_of(r)[1:]),
                      *(key for r in SHIPPED.values() for key in r.programs),
                      "retired-exercise"})
    clicks = draw(st.lists(st.tuples(st.sampled_from([EC, PC]), st.sampled_from(targets),
                                     st.integers(0, 16)), max_size=4))
    return History(regimen=key, signed_up_day=draw(st.integers(0, 6)),
                   steps={step: draw(st.integers(0, 8)) for step in steps}, clicks=clicks)


async def empty(db: Database) -> None:
    async with db.transaction() as session:
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(table.delete())


async def store(db: Database, readers: list[History]) -> None:
    async with db.transaction() as session:
        for n, history in enumerate(readers):
            signed_up = BASE + timedelta(days=history.signed_up_day)
            address, subscriber = new_subscription(
                f"r{n}@example.org", history.regimen, created_at=signed_up,
                status=SubscriberStatus.CONFIRMED, confirmed_at=signed_up)
            session.add(address)
            await session.flush()
            session.add(subscriber)
            await session.flush()
            session.add_all(Progress(subscriber_id=subscriber.id, step=step,
                                     regimen=subscriber.regimen, signed_up_at=signed_up,
                                     done_at=signed_up + timedelta(hours=hours))
                            for step, hours in history.steps.items())
            session.add_all(Event(kind=kind, subscriber_id=subscriber.id, exercise=target,
                                  created_at=signed_up + timedelta(hours=hours))
                            for kind, target, hours in history.clicks)


def by_hand(regimen: Regimen, readers: list[History], since_day: int) -> dict[str, object]:
    """The figures counted the plain way, from the histories."""
    cohort = [h for h in readers if h.regimen == regimen.key and h.signed_up_day >= since_day]
    current = set(order_of(regimen))
    units = [[e.slug for e in unit.exercises] for unit in regimen.units]

    def finished(h: History, unit: list[str]) -> int | None:
        """When the reader finished the unit (hours after signing up), or None."""
        return max(h.steps[s] for s in unit) if all(s in h.steps for s in unit) else None

    def then(h: History, unit: list[str], link: Any) -> bool:
        at = finished(h, unit)
        return at is not None and any(hours >= at and link(kind, target)
                                      for kind, target, hours in h.clicks)

    paid = {e.slug for e in regimen.exercises() if not e.is_free}

    def purchase(kind: EventKind, target: str) -> bool:
        return kind == PC or target in paid

    def program_link(key: str) -> Any:
        held = {e.slug for e in regimen.exercises() if e.program == key}
        return lambda kind, target: (kind == EC and target in held) or \
            (kind == PC and target == key)

    conversions = {}
    for key in regimen.programs:
        index = progress_stats.unit_before(regimen, key)
        conversions[key] = (None, None) if index is None else (
            sum(then(h, units[index], program_link(key)) for h in cohort),
            sum(finished(h, units[index]) is not None for h in cohort))
    return {
        "started": sum(bool(current & set(h.steps)) for h in cohort),
        "steps": {step: sum(step in h.steps for h in cohort) for step in order_of(regimen)},
        "units": [sum(finished(h, unit) is not None for h in cohort) for unit in units],
        "unit1_then_purchase": sum(then(h, units[0], purchase) for h in cohort),
        "programs": conversions,
    }


def as_counted(figures: HowFar) -> dict[str, object]:
    return {"started": figures.started, "steps": step_counts(figures),
            "units": [u.readers for u in figures.units],
            "unit1_then_purchase": figures.unit1_then_purchase,
            "programs": {p.key: (p.clicked, p.finished) for p in figures.programs}}


@settings(
    max_examples=60,
    deadline=None,  # a per-example time limit is a wall-clock assertion
    database=None,  # nothing written into the repository
    # One database for every example: each empties it first.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(readers=st.lists(histories(), min_size=1, max_size=8), since_day=st.integers(0, 7))
async def test_the_queries_count_what_counting_by_hand_counts(
    db: Database, readers: list[History], since_day: int,
) -> None:
    await empty(db)
    await store(db, readers)
    since = BASE + timedelta(days=since_day)
    async with db.transaction() as session:
        for regimen in SHIPPED.values():
            figures = await how_far_of(session, regimen, since)
            assert as_counted(figures) == by_hand(regimen, readers, since_day), regimen.key
