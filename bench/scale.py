"""The author's numbers at scale: 1,000,000 readers and 3,000,000 events in PostgreSQL.

    createdb -h 127.0.0.1 -U postgres regimen_scale
    .venv/bin/python bench/scale.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/regimen_scale

Seeds in SQL (generate_series, so a million rows take seconds, not hours) unless the database
already holds the rows (`--reseed` to start again), then measures, each several times:

- GET /admin?days=30 through the real app (auth, queries, template), median of the runs;
- the funnel `regimen stats` prints (the query part, in process), median;
- GET /metrics (the gauges read from the database at each scrape), median;
- `regimen subscribers export` as a separate process writing every row to /dev/null: its
  peak resident memory, against the same process running `regimen secret generate` (the
  interpreter and the app's imports, no data), and its duration.

Readers signed up evenly over the last 365 days; ~60 % confirmed; a quarter of them to the
second shipped regimen (neck-and-shoulders), the rest to the default (sacro-iliac), one
address (a `readers` row) per subscription. Events: one confirm-page opening per reader (half
of them 5 s after the mail, as a scanner would), one regimen opening per confirmed reader, and
exercise clicks (of the reader's regimen's exercises) for the rest of the 3,000,000. Each
reader's milestones (`confirm_page_opened_at` for the person's opening only,
`regimen_opened_at`, `first_click_at`) are filled to agree with those events, as
`service.funnel.events.record` sets them. The page and the funnel are measured for every
regimen together and for each one (`?regimen=KEY`, `regimen stats --regimen KEY`).

Progress (how far readers get, service.funnel.progress_stats, on the page since issue 15): 40 %
of the confirmed readers mark steps done, in the page's order (reading it through, then each
exercise), one a day from confirming (never later than now): half of them stop inside Unit 1,
35 % right after finishing it, 15 % go on into the later units. About half of those who
finished Unit 1 click its next step's program link an hour after (PROGRAM_CLICKED); two in
three of those who got through the sacro-iliac regimen's Unit 2 click an exercise of Unit 3
(its program's purchase link) a day after; a tenth of those who stopped inside Unit 1 click
the program link before finishing it (which must not count as "then"). The exercise clicks
seeded above fall within the hour of confirming, before any unit is finished. Measured as
well, in process: the funnel report alone (`stats.report`: the page before progress) and the
progress figures alone (`progress_stats.how_far_each`), so the page's cost splits.

Lessons (service.delivery.lessons; on the page and in /admin/lessons.csv since issue 16), as if
the default regimen's three (`LESSONS`) had come mid-year: its readers who confirmed in the
last 182.5 days agreed to them (`lessons_consented_at` = `confirmed_at`, ~206,000 of whom are
still subscribed). Each lesson whose day has passed is settled at the reader's hour
(`lesson_deliveries`): ~20 % skipped, for the lesson's own rule's reason (exercise_done,
unit_done, program_clicked), the rest queued, each with its lesson mail in the outbox (sent 2 s
later). 30 % of the lessons sent are followed, 1 to 12 hours after, by a click on one of their
links (the lesson's exercise or program, or for a third of them the regimen page; the event
names the lesson), and 10 % are opened by a mail scanner 5 s after sending (the regimen link;
not counted). 3 % of the readers stop the lessons 2 to 21 hours after their first, second or
third lesson, and get none after; the readers still waiting have `next_lesson_at` set. These
events come on top of the 3,000,000. Measured alone too: the lesson figures
(`lesson_stats.lessons`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.core.migrations import migrate  # noqa: E402
from service.core.models import utcnow  # noqa: E402
from service.core.settings import load_settings  # noqa: E402
from service.funnel import lesson_stats, progress_stats, stats  # noqa: E402
from service.runtime import build_runtime  # noqa: E402
from service.web.app import create_app  # noqa: E402

RESULTS = ROOT / "bench" / "scale-results.json"
CONTENT = ROOT / "content"
# The shipped regimens (content/regimens/) and their exercises' slugs.
REGIMENS = {
    "sacro-iliac": ["gentle-back-exercise", "sacrum-self-appraisal", "arch-and-flatten",
                    "lying-side-bend", "lying-twist", "psoas-release", "hip-joint-freedom",
                    "pelvic-figure-eight", "walking-integration", "standing-balance"],
    "neck-and-shoulders": ["lying-head-turn", "shoulder-blade-slide", "arch-and-curl",
                           "neck-and-jaw-release", "shoulder-circles", "seated-integration"],
}

SEED = """
INSERT INTO readers (id, email, created_at)
SELECT i, 'reader' || i || '@example.org', now() - (i::float / {n} * interval '365 days')
FROM generate_series(1, {n}) AS i;

-- The milestones as the app would have recorded them with the events below: a person's
-- confirm-page opening (odd ids, 10 min after the mail), the regimen opening; the first click
-- is filled from the clicks once they exist. A quarter subscribed to the second regimen.
INSERT INTO subscribers (id, public_id, email, regimen, status, token_version, created_at,
                         confirmed_at, unsubscribed_at, confirm_page_opened_at,
                         regimen_opened_at)
SELECT i, 'p' || i, 'reader' || i || '@example.org',
       CASE WHEN i % 8 IN (2, 5) THEN 'neck-and-shoulders' ELSE 'sacro-iliac' END,
       CASE WHEN i % 20 = 0 THEN 'unsubscribed' WHEN i % 5 < 3 THEN 'confirmed'
            ELSE 'pending' END,
       1, t, CASE WHEN i % 5 < 3 THEN t + interval '20 minutes' END,
       CASE WHEN i % 20 = 0 THEN t + interval '2 days' END,
       CASE WHEN i % 2 = 1 THEN t + interval '10 minutes' END,
       CASE WHEN i % 5 < 3 THEN t + interval '21 minutes' END
FROM (SELECT i, now() - (i::float / {n} * interval '365 days') AS t
      FROM generate_series(1, {n}) AS i) AS s;

INSERT INTO consents (subscriber_id, signed_up_at, source_url, confirmed_at)
SELECT id, created_at, 'https://blog.example.org/post-' || (id % 20), confirmed_at
FROM subscribers;

INSERT INTO outbox (key, kind, subscriber_id, status, attempts, created_at, next_attempt_at,
                    sent_at)
SELECT 'c' || id, 'confirm', id, 'sent', 1, created_at, created_at,
       created_at + interval '2 seconds'
FROM subscribers;

INSERT INTO outbox (key, kind, subscriber_id, status, attempts, created_at, next_attempt_at,
                    sent_at)
SELECT 'r' || id, 'regimen', id, 'sent', 1, confirmed_at, confirmed_at,
       confirmed_at + interval '2 seconds'
FROM subscribers WHERE confirmed_at IS NOT NULL;

-- Confirm-page openings: a scanner 5 s after the mail for even ids, a person 10 min after.
INSERT INTO events (kind, subscriber_id, created_at)
SELECT 'confirm_page_opened', id,
       created_at + CASE WHEN id % 2 = 0 THEN interval '7 seconds' ELSE interval '10 minutes' END
FROM subscribers;

INSERT INTO events (kind, subscriber_id, created_at)
SELECT 'regimen_opened', id, confirmed_at + interval '1 minute'
FROM subscribers WHERE confirmed_at IS NOT NULL;

INSERT INTO events (kind, subscriber_id, exercise, created_at)
SELECT 'exercise_clicked', s.id,
       CASE WHEN s.regimen = 'sacro-iliac' THEN ('{{{sacro}}}'::text[])[1 + (g % {n_sacro})]
            ELSE ('{{{neck}}}'::text[])[1 + (g % {n_neck})] END,
       s.confirmed_at + (g % 50) * interval '1 minute'
FROM generate_series(1, {clicks}) AS g
JOIN subscribers AS s ON s.id = 1 + ((g::bigint * 7919) % {n})
WHERE s.confirmed_at IS NOT NULL;

UPDATE subscribers AS s SET first_click_at = e.first
FROM (SELECT subscriber_id, min(created_at) AS first FROM events
      WHERE kind = 'exercise_clicked' GROUP BY subscriber_id) AS e
WHERE s.id = e.subscriber_id;

SELECT setval(pg_get_serial_sequence('subscribers', 'id'), {n});
SELECT setval(pg_get_serial_sequence('readers', 'id'), {n});
"""

# Who marks how much, from two hashes of the id (whether; g: how far, 0-99), per regimen: its
# steps in the page's order, the size of its Unit 1, its Unit 1's next-step program and an
# exercise of its Unit 3. (Hashes, not id arithmetic: the rest of the seed spreads readers by
# id modulo 5, 8 and 20, which a product of the id would fall in step with.)
PROGRESS_SEED = """
CREATE TEMPORARY TABLE marking AS
SELECT m.*, CASE WHEN g < 50 THEN 1 + g % unit1 WHEN g < 85 THEN 1 + unit1
                 ELSE 2 + unit1 + g % (cardinality(steps) - 1 - unit1) END AS depth
FROM (SELECT s.id, s.regimen, s.created_at, s.confirmed_at, r.steps, r.unit1, r.program,
             r.unit3, abs(hashint4(s.id)) % 100 AS g
      FROM subscribers AS s
      JOIN (VALUES ('sacro-iliac', '{{{sacro}}}'::text[], {sacro_unit1}, 'free_your_back',
                    'walking-integration'),
                   ('neck-and-shoulders', '{{{neck}}}'::text[], {neck_unit1}, 'free_your_neck',
                    NULL))
           AS r (key, steps, unit1, program, unit3) ON r.key = s.regimen
      WHERE s.confirmed_at IS NOT NULL AND abs(hashtext(s.id::text)) % 100 < 40) AS m;

INSERT INTO progress (subscriber_id, step, regimen, signed_up_at, done_at)
SELECT m.id, m.steps[k], m.regimen, m.created_at,
       least(now(), m.confirmed_at + (k - 1) * interval '1 day' + interval '5 minutes')
FROM marking AS m CROSS JOIN LATERAL generate_series(1, m.depth) AS k
ORDER BY m.created_at DESC, m.id, k;

-- The next step's program link, a day after finishing Unit 1 (its step k = 1 + unit1).
INSERT INTO events (kind, subscriber_id, exercise, created_at)
SELECT 'program_clicked', id, program,
       least(now(), confirmed_at + unit1 * interval '1 day' + interval '1 hour')
FROM marking WHERE g >= 70 AND g % 5 <> 0;

-- Into Unit 3 of the sacro-iliac regimen (8 of its 10 exercises done): its program's link.
INSERT INTO events (kind, subscriber_id, exercise, created_at)
SELECT 'exercise_clicked', id, unit3, least(now(), confirmed_at + 9 * interval '1 day')
FROM marking WHERE unit3 IS NOT NULL AND depth >= 9 AND g % 3 <> 0;

-- Before finishing Unit 1: not "then".
INSERT INTO events (kind, subscriber_id, exercise, created_at)
SELECT 'program_clicked', id, program, confirmed_at + interval '30 minutes'
FROM marking WHERE g < 50 AND g % 10 = 3;

UPDATE subscribers AS s SET first_click_at = least(s.first_click_at, e.first)
FROM (SELECT subscriber_id, min(created_at) AS first FROM events
      WHERE kind = 'exercise_clicked' GROUP BY subscriber_id) AS e
WHERE s.id = e.subscriber_id AND (s.first_click_at IS NULL OR e.first < s.first_click_at);

DROP TABLE marking;
"""
# Each regimen's steps in the page's order, and how many of them make its Unit 1.
STEPS = {key: ["read-it-through", *slugs] for key, slugs in REGIMENS.items()}
UNIT1 = {"sacro-iliac": 5, "neck-and-shoulders": 3}

# The default regimen's lessons (content/regimens/sacro-iliac.yaml; the other has none), in
# their file's order: key, day, why one is skipped (service.delivery.lessons.Skip: each has one
# rule), and the link a reader follows from it (an event's kind and its `exercise`).
LESSONS = [("how-it-should-feel", 2, "exercise_done", "exercise_clicked", "gentle-back-exercise"),
           ("next-free-exercise", 5, "unit_done", "exercise_clicked", "arch-and-flatten"),
           ("after-unit-1", 12, "program_clicked", "program_clicked", "free_your_back")]

# Who agrees to lessons, who stops them and when (h: a hash of the id, apart from the
# progress seed's two): a stopper (h % 100 < 3) stops a few hours after lesson `stop_after`.
# Nothing is settled for anyone after they stopped or unsubscribed (the seed's unsubscribers
# leave 2 days after signing up, before the first lesson); the stopper's own lesson was sent.
LESSON_SEED = """
CREATE TEMPORARY TABLE lesson AS
SELECT * FROM (VALUES {lessons}) AS l (no, key, after_days, reason, kind, link);

CREATE TEMPORARY TABLE lessoned AS
SELECT id, confirmed_at, status, unsubscribed_at, stop_after,
       CASE WHEN h % 100 < 3 THEN confirmed_at
            + (SELECT after_days FROM lesson WHERE no = stop_after) * interval '1 day'
            + (2 + h / 100 % 20) * interval '1 hour' END AS stop_at
FROM (SELECT id, confirmed_at, status, unsubscribed_at, h, 1 + h / 10000 % 3 AS stop_after
      FROM (SELECT id, confirmed_at, status, unsubscribed_at,
                   abs(hashint4extended(id, 16)) AS h
            FROM subscribers
            WHERE regimen = 'sacro-iliac'
              AND confirmed_at >= now() - interval '182 days 12 hours') AS s) AS s;

CREATE TEMPORARY TABLE settled AS
SELECT r.id, l.no, l.key, l.reason, l.kind, l.link,
       r.confirmed_at + l.after_days * interval '1 day' AS at,
       abs(hashint4extended(r.id, l.no)) % 100 < 20
         AND NOT (r.stop_at IS NOT NULL AND r.stop_after = l.no) AS skipped
FROM lessoned AS r CROSS JOIN lesson AS l
WHERE r.confirmed_at + l.after_days * interval '1 day' <= now()
  AND (r.stop_at IS NULL OR r.confirmed_at + l.after_days * interval '1 day' < r.stop_at)
  AND (r.unsubscribed_at IS NULL
       OR r.confirmed_at + l.after_days * interval '1 day' < r.unsubscribed_at);

INSERT INTO lesson_deliveries (subscriber_id, lesson, regimen, outcome, reason, at)
SELECT id, key, 'sacro-iliac', CASE WHEN skipped THEN 'skipped' ELSE 'queued' END,
       CASE WHEN skipped THEN reason END, at
FROM settled ORDER BY at, id;

INSERT INTO outbox (key, kind, subscriber_id, lesson, status, attempts, created_at,
                    next_attempt_at, sent_at)
SELECT 'l' || id || '-' || no, 'lesson', id, key, 'sent', 1, at, at, at + interval '2 seconds'
FROM settled WHERE NOT skipped ORDER BY at, id;

-- Followed (30 %): the lesson's own link, or for a third of them the regimen page's.
INSERT INTO events (kind, subscriber_id, exercise, lesson, created_at)
SELECT CASE WHEN f / 100 % 3 = 0 THEN 'regimen_opened' ELSE kind END,
       id, CASE WHEN f / 100 % 3 = 0 THEN NULL ELSE link END, key, clicked_at
FROM (SELECT *, at + (1 + f / 1000 % 12) * interval '1 hour' AS clicked_at
      FROM (SELECT *, abs(hashint4extended(id, 10 + no)) AS f FROM settled
            WHERE NOT skipped) AS q) AS q
WHERE f % 100 < 30 AND clicked_at <= now()
ORDER BY clicked_at, id;

-- A mail scanner opening the regimen link 5 s after the mail was sent (10 %).
INSERT INTO events (kind, subscriber_id, lesson, created_at)
SELECT 'regimen_opened', id, key, at + interval '7 seconds'
FROM settled WHERE NOT skipped AND abs(hashint4extended(id, 20 + no)) % 10 = 0
ORDER BY at, id;

UPDATE subscribers AS s
SET lessons_consented_at = s.confirmed_at,
    lessons_stopped_at = CASE WHEN r.stop_at <= now() THEN r.stop_at END,
    next_lesson_at = CASE WHEN s.status = 'confirmed'
                               AND (r.stop_at IS NULL OR r.stop_at > now()) THEN
        (SELECT min(s.confirmed_at + after_days * interval '1 day') FROM lesson
         WHERE s.confirmed_at + after_days * interval '1 day' > now()) END
FROM lessoned AS r WHERE s.id = r.id;

UPDATE subscribers AS s SET first_click_at = least(s.first_click_at, e.first)
FROM (SELECT subscriber_id, min(created_at) AS first FROM events
      WHERE kind = 'exercise_clicked' AND lesson IS NOT NULL GROUP BY subscriber_id) AS e
WHERE s.id = e.subscriber_id AND (s.first_click_at IS NULL OR e.first < s.first_click_at);

-- A regimen's first lessons are promised to every reader who agreed to lessons
-- (service.delivery.lessons.note_content).
INSERT INTO lessons_seen (regimen, lesson, first_seen_at, after_days)
SELECT 'sacro-iliac', key, timestamptz '1970-01-01 00:00:00+00', after_days FROM lesson;

DROP TABLE settled, lessoned, lesson;
"""


async def seed(url: str, subscribers: int, events: int, reseed: bool) -> dict[str, int]:
    target = make_url(url)
    conn = await asyncpg.connect(host=target.host, port=target.port or 5432,
                                 user=target.username, database=target.database)
    try:
        held = await conn.fetchval("SELECT count(*) FROM subscribers")
        if held and not reseed:
            print(f"using the {held} readers already in the database", file=sys.stderr)  # noqa: T201
            # A database seeded before progress or lessons were: add what is missing.
            for table, seed_part in (("progress", seed_progress),
                                     ("lesson_deliveries", seed_lessons)):
                if not await conn.fetchval(f"SELECT count(*) FROM {table}"):
                    started = time.perf_counter()
                    await seed_part(conn)
                    await conn.execute("VACUUM ANALYZE")
                    print(f"seeded {table} in {time.perf_counter() - started:.0f} s",  # noqa: T201
                          file=sys.stderr)
        else:
            await conn.execute("TRUNCATE readers, subscribers, consents, outbox, events, "
                               "progress, lesson_deliveries, lessons_seen, worker_heartbeats "
                               "RESTART IDENTITY CASCADE")
            confirmed = subscribers * 3 // 5
            # What is left of the events after openings and regimen openings; clicks land on
            # confirmed readers only, so ask for enough rows that ~that many survive the join.
            clicks = max(events - subscribers - confirmed, 0)
            started = time.perf_counter()
            sacro, neck = REGIMENS["sacro-iliac"], REGIMENS["neck-and-shoulders"]
            await conn.execute(SEED.format(n=subscribers, clicks=clicks * 5 // 3 + 1,
                                           sacro=",".join(sacro), n_sacro=len(sacro),
                                           neck=",".join(neck), n_neck=len(neck)))
            await seed_progress(conn)
            await seed_lessons(conn)
            await conn.execute("VACUUM ANALYZE")  # not in a transaction: a statement alone
            print(f"seeded in {time.perf_counter() - started:.0f} s", file=sys.stderr)  # noqa: T201
        return {
            "readers": await conn.fetchval("SELECT count(*) FROM readers"),
            "subscribers": await conn.fetchval("SELECT count(*) FROM subscribers"),
            "events": await conn.fetchval("SELECT count(*) FROM events"),
            "outbox": await conn.fetchval("SELECT count(*) FROM outbox"),
            "progress": await conn.fetchval("SELECT count(*) FROM progress"),
            "progress_readers": await conn.fetchval(
                "SELECT count(DISTINCT subscriber_id) FROM progress"),
            "program_clicks": await conn.fetchval(
                "SELECT count(*) FROM events WHERE kind = 'program_clicked'"),
            "lessons_consented": await conn.fetchval(
                "SELECT count(*) FROM subscribers WHERE lessons_consented_at IS NOT NULL"),
            "lessons_stopped": await conn.fetchval(
                "SELECT count(*) FROM subscribers WHERE lessons_stopped_at IS NOT NULL"),
            "lesson_deliveries": await conn.fetchval("SELECT count(*) FROM lesson_deliveries"),
            "lessons_skipped": await conn.fetchval(
                "SELECT count(*) FROM lesson_deliveries WHERE outcome = 'skipped'"),
            "lesson_mails": await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE kind = 'lesson'"),
            "lesson_events": await conn.fetchval(
                "SELECT count(*) FROM events WHERE lesson IS NOT NULL"),
        }
    finally:
        await conn.close()


async def seed_progress(conn: asyncpg.Connection) -> None:
    """The readers' progress and the purchase clicks that follow it (PROGRESS_SEED)."""
    await conn.execute(PROGRESS_SEED.format(
        sacro=",".join(STEPS["sacro-iliac"]), sacro_unit1=UNIT1["sacro-iliac"],
        neck=",".join(STEPS["neck-and-shoulders"]), neck_unit1=UNIT1["neck-and-shoulders"]))


async def seed_lessons(conn: asyncpg.Connection) -> None:
    """The default regimen's lessons since mid-year: who agreed, what each was sent or spared,
    the mails, the links followed, who stopped (LESSON_SEED)."""
    await conn.execute(LESSON_SEED.format(lessons=", ".join(
        f"({no}, '{key}', {day}, '{reason}', '{kind}', '{link}')"
        for no, (key, day, reason, kind, link) in enumerate(LESSONS, 1))))


async def measure_web(url: str, runs: int) -> dict[str, Any]:
    password = "bench-admin-password-" + "z" * 20
    settings = load_settings(_env_file=None, database_url=url, admin_password=password,
                             secret_keys=["bench-key-" + "x" * 40],
                             content_path=CONTENT)
    runtime = build_runtime(settings)
    app = create_app(runtime, run_worker=False)
    auth = {"Authorization": "Basic " + base64.b64encode(f"a:{password}".encode()).decode()}
    out: dict[str, Any] = {}
    # Every regimen (no key), then each one.
    scopes: list[str | None] = [None, *REGIMENS]

    def name(what: str, days: int, key: str | None) -> str:
        return f"{what}_{days}d" + (f"_{key}" if key else "")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://bench") as http:
        for days in (30, 365):
            for key in scopes:
                path = f"/admin?days={days}" + (f"&regimen={key}" if key else "")
                timings = []
                for _ in range(runs + 1):  # the first warms the pool and caches, not counted
                    started = time.perf_counter()
                    response = await http.get(path, headers=auth)
                    timings.append(time.perf_counter() - started)
                    assert response.status_code == 200, response.status_code
                out[name("admin", days, key) + "_ms"] = _ms(timings[1:])
        timings = []
        for _ in range(runs + 1):
            started = time.perf_counter()
            response = await http.get("/metrics")
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200, response.status_code
        out["metrics_ms"] = _ms(timings[1:])
    regimens = list(runtime.catalog.regimens.values())
    for days in (30, 365):
        for key in scopes:
            timings = []
            for _ in range(runs + 1):
                started = time.perf_counter()
                async with runtime.db.transaction() as session:
                    report = await stats.funnel(session, regimens, utcnow(), days,
                                                settings.scanner_window, key)
                timings.append(time.perf_counter() - started)
            out[name("stats", days, key) + "_ms"] = _ms(timings[1:])
            out[name("stats", days, key) + "_signups"] = report.totals.signups
    # The page's parts apart: the funnel report (all the page held before progress), the
    # progress figures (one section per regimen shown) and the lesson figures (one per regimen
    # shown that has lessons; the page reads them after the progress, in the same transaction,
    # while the report runs in another).
    for days in (30, 365):
        for key in scopes:
            shown = [r for r in regimens if key is None or r.key == key]
            since = stats.period_start(utcnow(), days)
            report_timings, progress_timings, lesson_timings = [], [], []
            for _ in range(runs + 1):
                started = time.perf_counter()
                async with runtime.db.transaction() as session:
                    await stats.report(session, regimens, utcnow(), days,
                                       settings.scanner_window, key)
                report_timings.append(time.perf_counter() - started)
                started = time.perf_counter()
                async with runtime.db.transaction() as session:
                    figures = await progress_stats.how_far_each(session, shown, since)
                progress_timings.append(time.perf_counter() - started)
                started = time.perf_counter()
                async with runtime.db.transaction() as session:
                    lesson_figures = await lesson_stats.lessons(session, shown, since,
                                                                settings.scanner_window)
                lesson_timings.append(time.perf_counter() - started)
            out[name("report", days, key) + "_ms"] = _ms(report_timings[1:])
            out[name("progress", days, key) + "_ms"] = _ms(progress_timings[1:])
            out[name("lessons", days, key) + "_ms"] = _ms(lesson_timings[1:])
            out[name("lessons", days, key) + "_figures"] = {
                each.key: {lesson.key: {"sent": lesson.sent, "skipped": lesson.skipped,
                                        "opened": lesson.opened,
                                        "clicked_within_7_days": lesson.clicked_within_7_days,
                                        "stopped_after": lesson.stopped_after}
                           for lesson in each.lessons}
                for each in lesson_figures}
            out[name("progress", days, key) + "_figures"] = {
                f.key: {"started": f.started, "unit1_finished": f.unit1_finished,
                        "unit1_then_purchase": f.unit1_then_purchase,
                        "programs": {p.key: [p.clicked, p.finished] for p in f.programs}}
                for f in figures}
    await runtime.aclose()
    return out


def _ms(timings: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(timings) * 1000, 1),
            "min": round(min(timings) * 1000, 1), "max": round(max(timings) * 1000, 1)}


def peak_rss_mb(args: list[str], url: str) -> tuple[float, float]:
    """Peak resident memory (MiB) and duration (s) of one `regimen ...` process."""
    env = {**os.environ, "REGIMEN_DATABASE_URL": url,
           "REGIMEN_CONTENT_PATH": str(CONTENT),
           "REGIMEN_SECRET_KEYS": "bench-key-" + "x" * 40}
    script = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
              "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
              "time.perf_counter() - t)")
    output = subprocess.run([sys.executable, "-c", script, sys.executable, "-m", "service.cli",
                             *args], env=env, check=True, capture_output=True, text=True,
                            cwd=ROOT).stdout.split()
    return round(int(output[0]) / 1024, 1), round(float(output[1]), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="Where to write the measurements (JSON).")
    options = parser.parse_args()
    migrate(options.database_url)
    counts = asyncio.run(seed(options.database_url, options.subscribers, options.events,
                              options.reseed))
    results: dict[str, Any] = {"rows": counts, "runs": options.runs}
    results.update(asyncio.run(measure_web(options.database_url, options.runs)))
    baseline_mb, _ = peak_rss_mb(["secret", "generate"], options.database_url)
    export_mb, export_s = peak_rss_mb(["subscribers", "export", "-o", os.devnull],
                                      options.database_url)
    results["export"] = {"peak_rss_mb": export_mb, "baseline_rss_mb": baseline_mb,
                         "seconds": export_s}
    results["machine"] = f"{os.cpu_count()} CPUs, {resource.getpagesize()} B pages"
    options.results.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
