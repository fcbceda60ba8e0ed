"""The author's numbers per regimen: readers of two regimens, each regimen's funnel, sources,
clicks and latest signups counting only its own subscriptions, "all regimens" the sum; the same
on the page, in the CSV, from `regimen stats --regimen`, and in the Prometheus gauges."""

from __future__ import annotations

import csv
import io
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from service.cli import app
from service.core.content import load_content
from service.core.database import Database
from service.core.models import (
    EventKind,
    MailKind,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
    utcnow,
)
from service.core.settings import Settings
from service.funnel import stats
from service.runtime import Runtime
from tests.helpers import DEFAULT_REGIMEN, PROJECT_ROOT, app_client, on_database, report_of
from tests.integration.test_admin import PASSWORD, WINDOW, add_reader, basic, seed
from tests.integration.test_metrics import samples

SECOND = "neck-and-shoulders"
POST_3 = "https://blog.example.org/post-3"

# (signups, confirm page opened, confirmed, stopped at the button, regimen opened, clicked)
# of the readers who signed up in the last 30 days, and the exercise clicks of those days.
DEFAULT_TOTALS = (3, 2, 1, 1, 1, 1)
SECOND_TOTALS = (3, 3, 2, 1, 2, 2)
DEFAULT_CLICKS, SECOND_CLICKS = 3, 4


async def seed_two(db: Database) -> datetime:
    """test_admin's readers of the default regimen, and three of the second regimen signed up
    within the hour: one of them the default regimen's confirmed reader again (an address
    subscribed to both), one who confirmed and clicked, one who stopped at the button."""
    now = await seed(db)
    start = now - timedelta(hours=1)
    await add_reader(db, "reader@example.org", start, POST_3, opened_after=[600],
                     confirmed_after=700, regimen=SECOND, events=[
                         (EventKind.REGIMEN_OPENED, None),
                         (EventKind.EXERCISE_CLICKED, "lying-head-turn"),
                         (EventKind.EXERCISE_CLICKED, "lying-head-turn"),
                         (EventKind.EXERCISE_CLICKED, "shoulder-circles")])
    await add_reader(db, "neck@example.org", start, POST_3, opened_after=[900],
                     confirmed_after=1000, regimen=SECOND, events=[
                         (EventKind.REGIMEN_OPENED, None),
                         (EventKind.EXERCISE_CLICKED, "lying-head-turn")])
    await add_reader(db, "undecided@example.org", start, None, opened_after=[5, 800],
                     regimen=SECOND)
    return now


def totals(report: stats.Report) -> tuple[int, ...]:
    t = report.totals
    return (t.signups, t.confirm_page_opened, t.confirmed, t.stopped_at_button,
            t.regimen_opened, t.clicked)


def day_sums(report: stats.Report) -> tuple[int, ...]:
    return tuple(sum(getattr(day, column) for day in report.days)
                 for column in stats.FUNNEL_COLUMNS[1:])


async def test_each_regimen_counts_only_its_own(db: Database, runtime: Runtime) -> None:
    now = await seed_two(db)
    served = list(runtime.catalog.regimens.values())
    assert [r.key for r in served] == [SECOND, DEFAULT_REGIMEN]  # alphabetical
    async with db.transaction() as session:
        first = await report_of(session, served, now, 30, WINDOW, DEFAULT_REGIMEN)
        second = await report_of(session, served, now, 30, WINDOW, SECOND)
        every = await report_of(session, served, now, 30, WINDOW)
    assert (first.regimen, second.regimen, every.regimen) == (DEFAULT_REGIMEN, SECOND, None)
    assert totals(first) == DEFAULT_TOTALS
    assert totals(second) == SECOND_TOTALS
    assert totals(every) == tuple(a + b for a, b in zip(DEFAULT_TOTALS, SECOND_TOTALS,
                                                        strict=True))
    # Day by day, each signup day's readers: (signups, confirm page opened, confirmed, regimen
    # opened, clicks), which add up to the period's.
    assert day_sums(first) == (3, 2, 1, 1, DEFAULT_CLICKS)
    assert day_sums(second) == (3, 3, 2, 2, SECOND_CLICKS)
    assert day_sums(every) == (6, 5, 3, 3, DEFAULT_CLICKS + SECOND_CLICKS)

    def sources(report: stats.Report) -> list[tuple[str, int, int]]:
        return [(s.url, s.signups, s.confirmed) for s in report.sources]

    assert sources(first) == [("https://blog.example.org/post-1", 2, 0),
                              ("https://blog.example.org/post-2", 1, 1)]
    assert sources(second) == [(POST_3, 2, 2), ("", 1, 0)]
    assert sources(every) == [("https://blog.example.org/post-1", 2, 0), (POST_3, 2, 2),
                              ("", 1, 0), ("https://blog.example.org/post-2", 1, 1)]

    # Clicks per exercise: the regimen's own, or each regimen's in its own section.
    def clicks(report: stats.Report) -> dict[str, dict[str, tuple[int, int]]]:
        return {r.key: {e.slug: (e.clicks, e.readers) for e in r.exercises if e.clicks}
                for r in report.exercises}

    default_clicks = {"gentle-back-exercise": (2, 1), "psoas-release": (1, 1)}
    second_clicks = {"lying-head-turn": (3, 2), "shoulder-circles": (1, 1)}
    assert clicks(first) == {DEFAULT_REGIMEN: default_clicks}
    assert clicks(second) == {SECOND: second_clicks}
    assert clicks(every) == {SECOND: second_clicks, DEFAULT_REGIMEN: default_clicks}
    assert [r.key for r in every.exercises] == [SECOND, DEFAULT_REGIMEN]
    assert [e.slug for e in second.exercises[0].exercises] == [
        e.slug for e in runtime.catalog.regimens[SECOND].exercises()]
    assert (second.exercises[0].clicks, every.exercises[1].clicks) == (4, 3)

    # The latest signups: the regimen's own, each with its regimen.
    assert {r.regimen for r in first.recent} == {DEFAULT_REGIMEN}
    assert [(r.masked_email, r.regimen) for r in second.recent] == [
        ("u***@example.org", SECOND), ("n***@example.org", SECOND), ("r***@example.org", SECOND)]
    assert len(every.recent) == 6  # the period's
    assert [r.regimen for r in every.recent][:3] == [SECOND] * 3
    # The outbox is one queue: the same whichever regimen is shown.
    assert first.outbox == second.outbox == every.outbox


async def test_a_regimen_nobody_subscribed_to_counts_nothing(db: Database,
                                                             runtime: Runtime) -> None:
    now = await seed(db)
    served = list(runtime.catalog.regimens.values())
    async with db.transaction() as session:
        report = await report_of(session, served, now, 30, WINDOW, SECOND)
    assert totals(report) == (0, 0, 0, 0, 0, 0)
    assert day_sums(report) == (0, 0, 0, 0, 0)
    assert report.sources == []
    assert report.recent == []
    [shown] = report.exercises
    assert shown.key == SECOND
    assert shown.clicks == 0


async def test_clicks_on_an_exercise_two_regimens_offer_are_told_apart(
    db: Database, tmp_path: Path,
) -> None:
    """Clicks are told apart by exercise where one regimen alone offers it; an exercise both
    offer, or one no regimen offers any more, is looked up reader by reader."""
    content = tmp_path / "content"
    shutil.copytree(PROJECT_ROOT / "content", content)
    second_file = content / "regimens" / f"{SECOND}.yaml"
    second_file.write_text(second_file.read_text(encoding="utf-8").replace(
        "slug: arch-and-curl", "slug: arch-and-flatten"), encoding="utf-8")
    served = list(load_content(content).regimens.values())
    now = utcnow()
    start = now - timedelta(hours=1)
    shared = (EventKind.EXERCISE_CLICKED, "arch-and-flatten")
    await add_reader(db, "back@example.org", start, None, opened_after=[600],
                     confirmed_after=700, events=[shared, shared,
                                                  (EventKind.EXERCISE_CLICKED, "lying-twist")])
    await add_reader(db, "neck@example.org", start, None, opened_after=[600],
                     confirmed_after=700, regimen=SECOND, events=[
                         shared, (EventKind.EXERCISE_CLICKED, "retired-exercise"),
                         (EventKind.EXERCISE_CLICKED, "lying-head-turn")])
    async with db.transaction() as session:
        reports = {key: await report_of(session, served, now, 30, WINDOW, key)
                   for key in (DEFAULT_REGIMEN, SECOND, None)}

    def clicked(report: stats.Report) -> dict[str, dict[str, tuple[int, int]]]:
        return {r.key: {e.slug: (e.clicks, e.readers) for e in r.exercises if e.clicks}
                for r in report.exercises}

    assert clicked(reports[DEFAULT_REGIMEN]) == {
        DEFAULT_REGIMEN: {"arch-and-flatten": (2, 1), "lying-twist": (1, 1)}}
    assert clicked(reports[SECOND]) == {
        SECOND: {"arch-and-flatten": (1, 1), "lying-head-turn": (1, 1)}}
    assert clicked(reports[None]) == {
        SECOND: {"arch-and-flatten": (1, 1), "lying-head-turn": (1, 1)},
        DEFAULT_REGIMEN: {"arch-and-flatten": (2, 1), "lying-twist": (1, 1)}}
    # Day by day, every click of the regimen's readers, the retired exercise's too.
    assert day_sums(reports[DEFAULT_REGIMEN])[-1] == 3
    assert day_sums(reports[SECOND])[-1] == 3
    assert day_sums(reports[None])[-1] == 6


def funnel_row(page: str, heading: str) -> str:
    found = re.search(rf"<th scope=\"row\">{re.escape(heading)}</th><td>(\d+)</td>", page)
    assert found, heading
    return found.group(1)


async def test_the_page_shows_one_regimen_or_all(settings: Settings, db: Database) -> None:
    await seed_two(db)
    async with app_client(settings, admin_password=PASSWORD) as http:
        every = (await http.get("/admin?days=30", headers=basic(PASSWORD))).text
        second = await http.get(f"/admin?days=7&regimen={SECOND}", headers=basic(PASSWORD))
        empty = await http.get("/admin?regimen=", headers=basic(PASSWORD))
        for wrong in ("nope", "Sacro-Iliac", "sacro-iliac/..", "x" * 81):
            answer = await http.get("/admin", params={"regimen": wrong},
                                    headers=basic(PASSWORD))
            assert answer.status_code == 400, wrong
            assert "could not be understood" in answer.text
            assert answer.headers["cache-control"] == "no-store"
        # The password comes first, the regimen after.
        assert (await http.get("/admin?regimen=nope")).status_code == 401
    assert second.status_code == 200
    page = second.text
    assert funnel_row(every, "Signed up") == "6"
    assert funnel_row(page, "Signed up") == "3"
    assert funnel_row(page, "Opened the regimen") == "2"
    assert funnel_row(empty.text, "Signed up") == "6"
    # The selector: a plain GET form (no script), the period kept, the regimen chosen.
    assert '<form class="regimen-choice" method="get" action="/admin">' in page
    assert '<input type="hidden" name="days" value="7">' in page
    assert re.search(r'<option value="">All regimens</option>', page)
    assert re.search(rf'<option value="{SECOND}" selected>Self-relief regimen for a stiff neck',
                     page)
    assert re.search(rf'<option value="{DEFAULT_REGIMEN}">Self-relief regimen for sacro-iliac',
                     page)
    assert '<option value="" selected>All regimens</option>' in every
    assert "<script" not in page
    assert " style=" not in page
    # The period links and the CSV keep the regimen.
    assert f'href="/admin?days=30&amp;regimen={SECOND}"' in page
    assert f'href="/admin/funnel.csv?days=7&amp;regimen={SECOND}"' in page
    assert 'href="/admin?days=7"' in every
    # Clicks: one section for the regimen shown, one per regimen for all.
    assert "Self-relief regimen for a stiff neck and tight shoulders (4 clicks)" in page
    assert "(3 clicks)" not in page
    assert "Self-relief regimen for sacro-iliac joint pain (3 clicks)" in every
    assert "Self-relief regimen for a stiff neck and tight shoulders (4 clicks)" in every
    # The latest signups name their regimen.
    assert f"<td>u***@example.org</td><td>{SECOND}</td>" in page
    assert f"<td>s***@example.org</td><td>{DEFAULT_REGIMEN}</td>" in every
    assert "s***@example.org" not in page


async def test_the_csv_per_regimen(settings: Settings, db: Database) -> None:
    await seed_two(db)

    def column_sums(text: str) -> tuple[int, ...]:
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) == 7
        return tuple(sum(int(row[column]) for row in rows)
                     for column in stats.FUNNEL_COLUMNS[1:])

    async with app_client(settings, admin_password=PASSWORD) as http:
        answers = {key: await http.get("/admin/funnel.csv", headers=basic(PASSWORD),
                                       params={"days": 7, "regimen": key})
                   for key in (DEFAULT_REGIMEN, SECOND, "")}
        wrong = await http.get("/admin/funnel.csv?regimen=nope", headers=basic(PASSWORD))
    assert wrong.status_code == 400
    assert column_sums(answers[DEFAULT_REGIMEN].text) == (3, 2, 1, 1, DEFAULT_CLICKS)
    assert column_sums(answers[SECOND].text) == (3, 3, 2, 2, SECOND_CLICKS)
    assert column_sums(answers[""].text) == (6, 5, 3, 3, DEFAULT_CLICKS + SECOND_CLICKS)
    assert answers[SECOND].headers["content-disposition"] == \
        f'attachment; filename="funnel-{SECOND}-7d.csv"'
    assert answers[""].headers["content-disposition"] == 'attachment; filename="funnel-7d.csv"'


def test_stats_for_one_regimen(author_env: str) -> None:
    on_database(seed_two, author_env)
    runner = CliRunner()

    def printed(*options: str) -> list[str]:
        result = runner.invoke(app, ["stats", "--days", "7", *options])
        assert result.exit_code == 0, result.output
        return result.output.splitlines()

    def signups(lines: list[str]) -> tuple[int, int]:
        days = [line.split() for line in lines[2:9]]
        return sum(int(day[1]) for day in days), sum(int(day[5]) for day in days)

    second = printed("--regimen", SECOND)
    assert second[0].endswith(f", Self-relief regimen for a stiff neck and tight shoulders "
                              f"({SECOND})")
    assert signups(second) == (3, SECOND_CLICKS)
    assert "  confirmed                                 2  67% of signups" in second
    first = printed("--regimen", DEFAULT_REGIMEN)
    assert signups(first) == (3, DEFAULT_CLICKS)
    assert "  confirmed                                 1  33% of signups" in first
    every = printed()
    assert every[0].endswith(", all regimens")
    assert signups(every) == (6, DEFAULT_CLICKS + SECOND_CLICKS)
    assert "  confirmed                                 3  50% of signups" in every

    result = runner.invoke(app, ["stats", "--regimen", "nope"])
    assert result.exit_code == 2
    assert f"No regimen 'nope'; the content has: {SECOND}, {DEFAULT_REGIMEN}" in result.output


async def test_metrics_are_labelled_by_regimen(settings: Settings, db: Database) -> None:
    await seed_two(db)
    async with db.transaction() as session:
        reader = await session.scalar(select(Subscriber.id).where(
            Subscriber.email == "neck@example.org", Subscriber.regimen == SECOND))
        assert reader is not None
        session.add(OutboxMessage(kind=MailKind.REGIMEN, subscriber_id=reader,
                                  status=OutboxStatus.FAILED))
    async with app_client(settings) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    found = samples(response.text)

    def regimen(name: str, key: str) -> float:
        return found[(name, (("regimen", key),))]

    assert (regimen("regimen_signups", DEFAULT_REGIMEN), regimen("regimen_signups", SECOND)) \
        == (4, 3)
    assert (regimen("regimen_confirmations", DEFAULT_REGIMEN),
            regimen("regimen_confirmations", SECOND)) == (2, 2)

    def mails(key: str, kind: str, status: str) -> float:
        return found[("regimen_mails", (("kind", kind), ("regimen", key), ("status", status),
                                        ("transport", "smtp")))]

    # One sent confirmation mail per subscription; the queued regimen mail of the default
    # regimen's reader who stopped at the button, the failed one of the second's.
    assert mails(DEFAULT_REGIMEN, "confirm", "sent") == 4
    assert mails(SECOND, "confirm", "sent") == 3
    assert (mails(DEFAULT_REGIMEN, "regimen", "queued"), mails(SECOND, "regimen", "queued")) \
        == (1, 0)
    assert (mails(DEFAULT_REGIMEN, "regimen", "failed"), mails(SECOND, "regimen", "failed")) \
        == (0, 1)
    # Every kind and state of every regimen served, even at 0.
    labelled = [labels for (name, labels) in found if name == "regimen_mails"]
    assert len(labelled) == 2 * len(MailKind) * len(OutboxStatus)
    # The outbox's depth is the one queue's.
    assert found[("regimen_outbox_depth", ())] == 1


async def test_metrics_report_every_served_regimen_from_the_start(settings: Settings,
                                                                  db: Database) -> None:
    async with app_client(settings) as http:
        found = samples((await http.get("/metrics")).text)
    assert found[("regimen_signups", (("regimen", DEFAULT_REGIMEN),))] == 0
    assert found[("regimen_signups", (("regimen", SECOND),))] == 0
    assert found[("regimen_confirmations", (("regimen", SECOND),))] == 0
