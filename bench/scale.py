"""The author's numbers at scale: 1,000,000 readers and 3,000,000 events in PostgreSQL, the
figures kept per regimen and signup day (service.funnel.rollups) against the same figures
counted from the raw rows.

    createdb -h 127.0.0.1 -U postgres regimen_scale
    .venv/bin/python bench/scale.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/regimen_scale

Ten million readers (and 30,000,000 events: `--events` defaults to three per reader), in a
database of their own (~27 GB, from 546 MB at 200,000 readers):

    createdb -h 127.0.0.1 -U postgres regimen_scale_10m
    .venv/bin/python bench/scale.py --subscribers 10000000 --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/regimen_scale_10m

(the baseline then counts up to ten million readers a run; `--live-runs 1` shortens it).

Seeds in SQL (generate_series) unless the database already holds the rows (`--reseed` to start
again). Seeding took 9 s for 50,000 readers, 41 s for 200,000 and 243 s for a million on the
shared 2-core VM (2026-12-01); ten million 3,034 s on a faster one (2026-12-07), as its
updates rewrite pages that PostgreSQL's 128 MB of shared buffers cannot hold.

Then, on a seeded or a reused database alike, the readers of the last ten minutes are made
anew (`LIVE`: at the seeded pace, 19 at a million; uncounted by any pass, as in production) and
the kept figures are counted again from nothing
(`upkeep.rebuild` at the current time, as `regimen migrate` does after migration 0016 and
`regimen stats --rebuild`): `rebuild_seconds`, `rebuild_days` (regimen-days counted: 730 for
two regimens' year, 732 with today), `kept_rows`. 21 s at 50,000 readers, 43 s at 200,000,
75 to 183 s at a million over five runs, 346 s at ten million (2026-12-07). Then,
for 7, 30, 90 and 365 days, for every regimen together and for each one (`?regimen=KEY`,
`regimen stats --regimen KEY`), each `--runs` times after one warm-up (median, min, max):

- GET /admin, /admin/funnel.csv, /admin/progress.csv and /admin/lessons.csv through the real
  app (auth, queries, template or CSV): `admin_30d_ms`, `funnel_csv_30d_sacro-iliac_ms`...;
- `regimen stats` in process (service/cli/author.py): `rollups.read` in one transaction (the
  kept days summed in SQL, today counted from the raw rows), then `stats.funnel`,
  `progress_stats.how_far_each` and `lesson_stats.lessons`: `stats_30d_ms`...;
- the baseline, in the same run: the same builders on the figures counted from the raw rows
  alone (`rollups.count` over the whole period, per regimen shown: what the page did before
  the figures were kept), `--live-runs` times only (3 by default; a year at a million readers
  takes seconds): `live_30d_ms`..., and `ratio_30d` = the kept median over the live one;
- whether the two give the same figures, as they must (every total, and the daily series day
  by day): `kept_equals_live`, and what differs in `kept_live_differences` (the script then
  exits with an error, after writing the results);
- GET /metrics (the gauges read from the database at each scrape);
- `regimen subscribers export` as a separate process writing every row to /dev/null: its
  peak resident memory, against the same process running `regimen secret generate` (the
  interpreter and the app's imports, no data), and its duration.

A table of the medians ends the output (on stderr); the JSON goes to stdout and `--results`.

Readers signed up evenly over the last 365 days (so every day has its readers); ~60 % confirm;
a quarter of them to the second shipped regimen (neck-and-shoulders), the rest to the default
(sacro-iliac), one address (a `readers` row) per subscription; their consents come from six
source URLs, skewed (40, 25, 15, 10, 6 and 4 %). The milestones come days after signing up:
each reader decides 20 minutes to 4 days after (half of them within the day, from a hash of the
id), those who confirm open the regimen 2 minutes to 12 hours later and click its exercises up
to 10 hours after that, so confirmations, first openings and first clicks spread over the 0 to
5 days after signing up (`rows.days_to_milestone` counts them per day after); whatever would
come after now has not happened yet (those readers are still pending). A twentieth of the
readers confirm and leave 36 hours later. Events: one confirm-page opening per reader (a
scanner's 5 s after the mail for even ids, the person's a minute before deciding for odd
ids), one regimen opening per confirmed reader, and exercise clicks (of the reader's
regimen's exercises) for the rest of the 3,000,000. Each reader's milestones
(`confirm_page_opened_at` for the person's opening only, `regimen_opened_at`,
`first_click_at`) are filled to agree with those events, as `service.funnel.events.record`
sets them.

Progress (how far readers get, service.funnel.progress_stats, on the page since issue 15): 40 %
of the confirmed readers mark steps done, in the page's order (reading it through, then each
exercise), one a day from first opening the regimen (those whose day has not come yet are not
done): half of them stop inside Unit 1, 35 % right after finishing it, 15 % go on into the
later units. About half of those who finished Unit 1 click its next step's program link an
hour after (PROGRAM_CLICKED); two in three of those who got through the sacro-iliac regimen's
Unit 2 click an exercise of Unit 3 (its program's purchase link) a day after; a tenth of those
who stopped inside Unit 1 click the program link before finishing it (which must not count as
"then"). The exercise clicks seeded above fall within ten hours of opening the regimen, before
any unit is finished; nothing of the progress or the lessons comes before the reader confirmed.

Lessons (service.delivery.lessons; on the page and in /admin/lessons.csv since issue 16), as if
the default regimen's three (`LESSONS`) had come mid-year: its readers who confirmed in the
last 182.5 days agreed to them (`lessons_consented_at` = `confirmed_at`, ~206,000 of whom are
still subscribed at a million). Each lesson whose day has passed is settled at the reader's
hour (`lesson_deliveries`): ~20 % skipped, for the lesson's own rule's reason (exercise_done,
unit_done, program_clicked), the rest queued, each with its lesson mail in the outbox (sent 2 s
later). 30 % of the lessons sent are followed, 1 to 12 hours after, by a click on one of their
links (the lesson's exercise or program, or for a third of them the regimen page; the event
names the lesson), and 10 % are opened by a mail scanner 5 s after sending (the regimen link;
not counted). 3 % of the readers stop the lessons 2 to 21 hours after their first, second or
third lesson, and get none after; the readers still waiting have `next_lesson_at` set. These
events come on top of the 3,000,000.
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
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.core.content import Regimen  # noqa: E402
from service.core.migrations import migrate  # noqa: E402
from service.core.models import DailyFigure, utcnow  # noqa: E402
from service.core.settings import load_settings  # noqa: E402
from service.funnel import lesson_stats, progress_stats, rollups, stats, upkeep  # noqa: E402
from service.funnel.figures import Figures  # noqa: E402
from service.runtime import build_runtime  # noqa: E402
from service.web.app import create_app  # noqa: E402

T = TypeVar("T")

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

-- Each reader's milestones, days after signing up, from hashes of the id (u, v: 0 to 1): the
-- moment they decide (20 minutes to 4 days after signing up, half of them within a day),
-- when those who confirm (i % 5 < 3) open the regimen (2 minutes to 12 hours later) and when
-- those who leave (i % 20 = 0) do (36 hours after confirming). The person's opening of the
-- confirmation page (odd ids: the even ones only get the scanner's) is a minute before they
-- decide: pressing the button, or leaving at it. Whatever would come after now() has not
-- happened: those readers are still pending, or have not opened the regimen yet.
-- A quarter subscribed to the second regimen.
INSERT INTO subscribers (id, public_id, email, regimen, status, token_version, created_at,
                         confirmed_at, unsubscribed_at, confirm_page_opened_at,
                         regimen_opened_at)
SELECT i, 'p' || i, 'reader' || i || '@example.org',
       CASE WHEN i % 8 IN (2, 5) THEN 'neck-and-shoulders' ELSE 'sacro-iliac' END,
       CASE WHEN left_at <= now() THEN 'unsubscribed' WHEN confirm_at <= now() THEN 'confirmed'
            ELSE 'pending' END,
       1, t, CASE WHEN confirm_at <= now() THEN confirm_at END,
       CASE WHEN left_at <= now() THEN left_at END,
       CASE WHEN i % 2 = 1 AND decided - interval '1 minute' <= now()
            THEN decided - interval '1 minute' END,
       CASE WHEN regimen_at <= now() THEN regimen_at END
FROM (SELECT i, t, decided,
             CASE WHEN i % 5 < 3 THEN decided END AS confirm_at,
             CASE WHEN i % 5 < 3 THEN decided + interval '2 minutes' + v ^ 2 * interval '12 hours'
                  END AS regimen_at,
             CASE WHEN i % 20 = 0 THEN decided + interval '36 hours' END AS left_at
      FROM (SELECT i, t, t + interval '20 minutes' + u ^ 2 * interval '4 days' AS decided,
                   v
            FROM (SELECT i, now() - (i::float / {n} * interval '365 days') AS t,
                         (abs(hashint4extended(i, 1)) % 1000)::float8 / 1000 AS u,
                         (abs(hashint4extended(i, 2)) % 1000)::float8 / 1000 AS v
                  FROM generate_series(1, {n}) AS i) AS s) AS s) AS s;

-- Six sources, skewed: 40 %, 25 %, 15 %, 10 %, 6 %, 4 % of the signups.
INSERT INTO consents (subscriber_id, signed_up_at, source_url, confirmed_at)
SELECT id, created_at, CASE WHEN h < 40 THEN 'https://blog.example.org/sacroiliac-pain'
                            WHEN h < 65 THEN 'https://blog.example.org/stiff-neck'
                            WHEN h < 80 THEN 'https://blog.example.org/desk-posture'
                            WHEN h < 90 THEN 'https://blog.example.org/newsletter'
                            WHEN h < 96 THEN 'https://forum.example.net/t/back-pain/4711'
                            ELSE 'https://www.example.com/links/feldenkrais' END,
       confirmed_at
FROM (SELECT id, created_at, confirmed_at, abs(hashint4extended(id, 3)) % 100 AS h
      FROM subscribers) AS s;

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

-- Confirm-page openings: a scanner 5 s after the mail for even ids, the person's for odd ids.
INSERT INTO events (kind, subscriber_id, created_at)
SELECT 'confirm_page_opened', id,
       CASE WHEN id % 2 = 0 THEN created_at + interval '7 seconds' ELSE confirm_page_opened_at END
FROM subscribers WHERE id % 2 = 0 OR confirm_page_opened_at IS NOT NULL;

INSERT INTO events (kind, subscriber_id, created_at)
SELECT 'regimen_opened', id, regimen_opened_at
FROM subscribers WHERE regimen_opened_at IS NOT NULL;

-- Exercise clicks from the regimen's page: up to ten hours after opening it.
INSERT INTO events (kind, subscriber_id, exercise, created_at)
SELECT 'exercise_clicked', id, exercise, at
FROM (SELECT s.id,
             CASE WHEN s.regimen = 'sacro-iliac' THEN ('{{{sacro}}}'::text[])[1 + (g % {n_sacro})]
                  ELSE ('{{{neck}}}'::text[])[1 + (g % {n_neck})] END AS exercise,
             s.regimen_opened_at + (g % 50) * interval '1 minute'
             + (g / 50 % 4) * interval '3 hours' AS at
      FROM generate_series(1, {clicks}) AS g
      JOIN subscribers AS s ON s.id = 1 + ((g::bigint * 7919) % {n})
      WHERE s.regimen_opened_at IS NOT NULL) AS c
WHERE at <= now();

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
# id modulo 5, 8 and 20, which a product of the id would fall in step with.) A step a day from
# first opening the regimen (after confirming): a reader who opened it three days ago has marked
# at most four steps (`depth` stops at the days gone by), so nothing is done before the reader
# confirmed and opened the regimen, or after now.
PROGRESS_SEED = """
CREATE TEMPORARY TABLE marking AS
SELECT m.*, least(CASE WHEN g < 50 THEN 1 + g % unit1 WHEN g < 85 THEN 1 + unit1
                       ELSE 2 + unit1 + g % (cardinality(steps) - 1 - unit1) END,
                  1 + floor(extract(epoch FROM now() - m.opened_at - interval '5 minutes')
                            / 86400)::int) AS depth
FROM (SELECT s.id, s.regimen, s.created_at, s.regimen_opened_at AS opened_at, r.steps,
             r.unit1, r.program, r.unit3, abs(hashint4(s.id)) % 100 AS g
      FROM subscribers AS s
      JOIN (VALUES ('sacro-iliac', '{{{sacro}}}'::text[], {sacro_unit1}, 'free_your_back',
                    'walking-integration'),
                   ('neck-and-shoulders', '{{{neck}}}'::text[], {neck_unit1}, 'free_your_neck',
                    NULL))
           AS r (key, steps, unit1, program, unit3) ON r.key = s.regimen
      WHERE s.regimen_opened_at IS NOT NULL AND abs(hashtext(s.id::text)) % 100 < 40) AS m;

INSERT INTO progress (subscriber_id, step, regimen, signed_up_at, done_at)
SELECT m.id, m.steps[k], m.regimen, m.created_at,
       m.opened_at + (k - 1) * interval '1 day' + interval '5 minutes'
FROM marking AS m CROSS JOIN LATERAL generate_series(1, m.depth) AS k
ORDER BY m.created_at DESC, m.id, k;

-- The next step's program link, a day after finishing Unit 1 (its step k = 1 + unit1).
INSERT INTO events (kind, subscriber_id, exercise, created_at)
SELECT 'program_clicked', id, program,
       least(now(), opened_at + unit1 * interval '1 day' + interval '1 hour')
FROM marking WHERE g >= 70 AND g % 5 <> 0 AND depth >= 1 + unit1;

-- Into Unit 3 of the sacro-iliac regimen (8 of its 10 exercises done): its program's link.
INSERT INTO events (kind, subscriber_id, exercise, created_at)
SELECT 'exercise_clicked', id, unit3, least(now(), opened_at + 9 * interval '1 day')
FROM marking WHERE unit3 IS NOT NULL AND depth >= 9 AND g % 3 <> 0;

-- Before finishing Unit 1: not "then".
INSERT INTO events (kind, subscriber_id, exercise, created_at)
SELECT 'program_clicked', id, program, least(now(), opened_at + interval '30 minutes')
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
# leave 36 hours after confirming, before the first lesson, 2 days after confirming); the
# stopper's own lesson was sent.
LESSON_SEED = """
CREATE TEMPORARY TABLE lesson AS
SELECT * FROM (VALUES {lessons}) AS l (no, key, after_days, reason, kind, link);

CREATE TEMPORARY TABLE lessoned AS
SELECT id, created_at, confirmed_at, status, unsubscribed_at, stop_after,
       CASE WHEN h % 100 < 3 THEN confirmed_at
            + (SELECT after_days FROM lesson WHERE no = stop_after) * interval '1 day'
            + (2 + h / 100 % 20) * interval '1 hour' END AS stop_at
FROM (SELECT id, created_at, confirmed_at, status, unsubscribed_at, h,
             1 + h / 10000 % 3 AS stop_after
      FROM (SELECT id, created_at, confirmed_at, status, unsubscribed_at,
                   abs(hashint4extended(id, 16)) AS h
            FROM subscribers
            WHERE regimen = 'sacro-iliac'
              AND confirmed_at >= now() - interval '182 days 12 hours') AS s) AS s;

CREATE TEMPORARY TABLE settled AS
SELECT r.id, r.created_at, l.no, l.key, l.reason, l.kind, l.link,
       r.confirmed_at + l.after_days * interval '1 day' AS at,
       abs(hashint4extended(r.id, l.no)) % 100 < 20
         AND NOT (r.stop_at IS NOT NULL AND r.stop_after = l.no) AS skipped
FROM lessoned AS r CROSS JOIN lesson AS l
WHERE r.confirmed_at + l.after_days * interval '1 day' <= now()
  AND (r.stop_at IS NULL OR r.confirmed_at + l.after_days * interval '1 day' < r.stop_at)
  AND (r.unsubscribed_at IS NULL
       OR r.confirmed_at + l.after_days * interval '1 day' < r.unsubscribed_at);

INSERT INTO lesson_deliveries (subscriber_id, lesson, regimen, outcome, reason, at,
                               signed_up_at)
SELECT id, key, 'sacro-iliac', CASE WHEN skipped THEN 'skipped' ELSE 'queued' END,
       CASE WHEN skipped THEN reason END, at, created_at
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


async def _connect(url: str) -> asyncpg.Connection:
    """A plain asyncpg connection to the database of `url` (SQLAlchemy's form)."""
    target = make_url(url)
    return await asyncpg.connect(host=target.host, port=target.port or 5432,
                                 user=target.username, database=target.database)


async def seed(url: str, subscribers: int, events: int,
               reseed: bool) -> tuple[dict[str, int], float | None]:
    """Seed unless the database holds readers already (or `reseed`); return the rows' counts
    and how long seeding took (None when the rows were there)."""
    conn = await _connect(url)
    seconds: float | None = None
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
                               "progress, lesson_deliveries, lessons_seen, worker_heartbeats, "
                               "daily_figures, figure_days, stale_figure_days "
                               "RESTART IDENTITY CASCADE")
            confirmed = subscribers * 3 // 5
            # What is left of the events after openings and regimen openings; clicks land on
            # confirmed readers only, so ask for enough rows that ~that many survive the join.
            clicks = max(events - subscribers - confirmed, 0)
            print(f"seeding {subscribers} readers and ~{max(events, subscribers)} events",  # noqa: T201
                  file=sys.stderr)
            started = time.perf_counter()
            sacro, neck = REGIMENS["sacro-iliac"], REGIMENS["neck-and-shoulders"]
            await conn.execute(SEED.format(n=subscribers, clicks=clicks * 5 // 3 + 1,
                                           sacro=",".join(sacro), n_sacro=len(sacro),
                                           neck=",".join(neck), n_neck=len(neck)))
            await seed_progress(conn)
            await seed_lessons(conn)
            await conn.execute("VACUUM ANALYZE")  # not in a transaction: a statement alone
            seconds = round(time.perf_counter() - started, 1)
            print(f"seeded in {seconds:.0f} s", file=sys.stderr)  # noqa: T201
        counts = {
            "readers": await conn.fetchval("SELECT count(*) FROM readers"),
            "subscribers": await conn.fetchval("SELECT count(*) FROM subscribers"),
            "confirmed": await conn.fetchval(
                "SELECT count(*) FROM subscribers WHERE confirmed_at IS NOT NULL"),
            "sources": await conn.fetchval("SELECT count(DISTINCT source_url) FROM consents"),
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
        # How many days after signing up each milestone came (the spread the issue asks for).
        counts["days_to_milestone"] = {
            what: dict(await conn.fetch(
                f"SELECT floor(extract(epoch FROM {column} - created_at) / 86400)::int AS d, "
                f"count(*) FROM subscribers WHERE {column} IS NOT NULL GROUP BY d ORDER BY d"))
            for what, column in (("confirmed", "confirmed_at"),
                                 ("regimen_opened", "regimen_opened_at"),
                                 ("first_click", "first_click_at"))}
        return counts, seconds
    finally:
        await conn.close()


# The readers of the last ten minutes, at the seeded pace (a year's readers over the year's
# ten-minute spans: 19 at a million), which no pass of the worker has counted yet (it counts up
# to ten minutes ago): a view counts them from the raw rows, as it does in production. Three in
# five confirm, open the regimen and click its first exercise within the span. Made again at
# each run, before the kept figures are rebuilt.
LIVE = """
DELETE FROM subscribers WHERE email LIKE '%@live.example.org';
DELETE FROM readers WHERE email LIKE '%@live.example.org';
CREATE TEMPORARY TABLE live AS
SELECT (SELECT max(id) FROM subscribers) + i AS id, i, gap,
       now() - i * gap AS t, i % 5 < 3 AS confirms,
       CASE WHEN i % 8 IN (2, 5) THEN 'neck-and-shoulders' ELSE 'sacro-iliac' END AS regimen,
       CASE WHEN i % 8 IN (2, 5) THEN '{neck}' ELSE '{sacro}' END AS exercise
FROM generate_series(1, {live}) AS i, (SELECT interval '600 seconds' / {live} AS gap) AS g;
INSERT INTO readers (id, email, created_at)
SELECT (SELECT max(id) FROM readers) + i, 'live' || i || '@live.example.org', t FROM live;
INSERT INTO subscribers (id, public_id, email, regimen, status, token_version, created_at,
                         confirmed_at, confirm_page_opened_at, regimen_opened_at, first_click_at)
SELECT id, 'live' || i, 'live' || i || '@live.example.org', regimen,
       CASE WHEN confirms THEN 'confirmed' ELSE 'pending' END, 1, t,
       CASE WHEN confirms THEN t + 0.4 * gap END, CASE WHEN confirms THEN t + 0.2 * gap END,
       CASE WHEN confirms THEN t + 0.6 * gap END, CASE WHEN confirms THEN t + 0.8 * gap END
FROM live;
INSERT INTO consents (subscriber_id, signed_up_at, source_url, confirmed_at)
SELECT id, t, 'https://blog.example.org/sacroiliac-pain',
       CASE WHEN confirms THEN t + 0.4 * gap END FROM live;
INSERT INTO events (kind, subscriber_id, exercise, created_at)
SELECT kind, id, CASE WHEN kind = 'exercise_clicked' THEN exercise END, t + k * gap
FROM live, (VALUES ('confirm_page_opened', 0.2), ('regimen_opened', 0.6),
                   ('exercise_clicked', 0.8)) AS e (kind, k)
WHERE confirms;
DROP TABLE live;
"""


async def add_live_readers(url: str) -> int:
    """The readers of the last ten minutes (LIVE); return how many."""
    conn = await _connect(url)
    try:
        seeded = await conn.fetchval(
            "SELECT count(*) FROM subscribers WHERE email NOT LIKE '%@live.example.org'")
        live = max(1, round(int(seeded) / 365 / 144))
        async with conn.transaction():
            await conn.execute(LIVE.format(live=live, sacro=REGIMENS["sacro-iliac"][0],
                                           neck=REGIMENS["neck-and-shoulders"][0]))
        return live
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


PERIODS = (7, 30, 90, 365)
# What the author downloads besides the page, each with the page's query.
CSVS = ("funnel", "progress", "lessons")


@dataclass
class Built:
    """What `regimen stats` prints, from a period's figures (kept or counted live)."""

    figures: dict[str, Figures]
    report: stats.Report
    progress: list[progress_stats.HowFar]
    lessons: list[lesson_stats.RegimenLessons]


def build(figures: dict[str, Figures], now: datetime, since: datetime, days: int,
          scanner_window: timedelta, key: str | None, shown: list[Regimen]) -> Built:
    """The builders `regimen stats` runs on the figures (service/cli/author.py)."""
    return Built(figures, stats.funnel(figures, now, days, scanner_window, key),
                 progress_stats.how_far_each(shown, since, figures),
                 lesson_stats.lessons(shown, figures))


def differences(kept: dict[str, Figures], live: dict[str, Figures]) -> list[str]:
    """Where the kept figures (rollups.read) and those counted from the raw rows differ, per
    regimen: every total, and the daily figures per day (rollups.read sums each exercise's
    clicks of a kept day into one; the raw count keeps them apart, so both are summed)."""
    out = []
    for key in sorted(set(kept) | set(live)):
        a, b = kept.get(key, Figures()), live.get(key, Figures())
        for item in sorted(set(+a.total) | set(+b.total)):
            if a.total[item] != b.total[item]:
                out.append(f"{key} total {item[0]} {item[1]!r}: kept {a.total[item]}, "
                           f"live {b.total[item]}")
        per_day_a, per_day_b = _per_day(a), _per_day(b)
        for day, figure in sorted(set(per_day_a) | set(per_day_b)):
            if per_day_a[day, figure] != per_day_b[day, figure]:
                out.append(f"{key} {day} {figure}: kept {per_day_a[day, figure]}, "
                           f"live {per_day_b[day, figure]}")
    return out


def _per_day(figures: Figures) -> Counter[tuple[date, str]]:
    out: Counter[tuple[date, str]] = Counter()
    for day, counts in figures.days.items():
        for (figure, _), n in counts.items():
            out[day, figure] += n
    return +out


async def timed(runs: int, work: Callable[[], Awaitable[T]]) -> tuple[dict[str, float], T]:
    """`work` once to warm the pool and caches (not counted), then `runs` times; the timings
    (`_ms`) and the last result."""
    result = await work()
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        result = await work()
        timings.append(time.perf_counter() - started)
    return _ms(timings), result


async def measure(url: str, runs: int, live_runs: int) -> dict[str, Any]:
    password = "bench-admin-password-" + "z" * 20
    settings = load_settings(_env_file=None, database_url=url, admin_password=password,
                             secret_keys=["bench-key-" + "x" * 40],
                             content_path=CONTENT)
    runtime = build_runtime(settings)
    app = create_app(runtime, run_worker=False)
    auth = {"Authorization": "Basic " + base64.b64encode(f"a:{password}".encode()).decode()}
    regimens = list(runtime.catalog.regimens.values())
    window, retention = settings.scanner_window, settings.event_retention
    out: dict[str, Any] = {}

    # The kept figures, from nothing: what `regimen migrate` does after migration 0016 (and
    # `regimen stats --rebuild`), at the time the measurements start.
    def counted(done: int, left: int) -> None:
        if done and (left == 0 or done % 100 == 0):
            print(f"rebuild: {done} days counted, {left} left", file=sys.stderr)  # noqa: T201

    out["live_readers"] = await add_live_readers(url)
    started = time.perf_counter()
    rebuilt = await upkeep.rebuild(runtime.db, regimens, utcnow(), window, retention,
                                   counted=counted)
    out["rebuild_seconds"] = round(time.perf_counter() - started, 1)
    out["rebuild_days"] = rebuilt.counted
    print(f"rebuilt the kept figures of {rebuilt.counted} days in "  # noqa: T201
          f"{out['rebuild_seconds']} s", file=sys.stderr)
    async with runtime.db.transaction() as session:
        out["kept_rows"] = await session.scalar(select(func.count()).select_from(DailyFigure))
        # What autovacuum does soon after in production; it is off on these machines, and the
        # planner must know the kept tables are no longer empty.
        await session.execute(text("ANALYZE daily_figures, figure_days"))

    # Every regimen (no key), then each one.
    scopes: list[str | None] = [None, *REGIMENS]

    def name(what: str, days: int, key: str | None) -> str:
        return f"{what}_{days}d" + (f"_{key}" if key else "")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://bench") as http:
        async def get(path: str) -> httpx.Response:
            response = await http.get(path, headers=auth)
            assert response.status_code == 200, (path, response.status_code)
            return response

        for days in PERIODS:
            for key in scopes:
                query = f"?days={days}" + (f"&regimen={key}" if key else "")
                out[name("admin", days, key) + "_ms"], _ = await timed(
                    runs, partial(get, "/admin" + query))
                for csv in CSVS:
                    out[name(f"{csv}_csv", days, key) + "_ms"], _ = await timed(
                        runs, partial(get, f"/admin/{csv}.csv" + query))
        out["metrics_ms"], _ = await timed(runs, partial(get, "/metrics"))

    # `regimen stats` in process: the kept days summed and today counted (rollups.read), then
    # the builders; against the same figures counted from the raw rows over the whole period
    # (rollups.count per regimen shown: the page before rollups), which must be equal.
    disagreements: dict[str, list[str]] = {}
    for days in PERIODS:
        for key in scopes:
            shown = [r for r in regimens if key is None or r.key == key]

            # One moment for both, so that a run across midnight compares the same days.
            now = utcnow()

            async def kept(days: int = days, key: str | None = key,
                           shown: list[Regimen] = shown, now: datetime = now) -> Built:
                since = stats.period_start(now, days)
                async with runtime.db.transaction() as session:
                    figures = await rollups.read(session, regimens, key, since, now, window,
                                                 retention)
                return build(figures, now, since, days, window, key, shown)

            async def live(days: int = days, key: str | None = key,
                           shown: list[Regimen] = shown, now: datetime = now) -> Built:
                since = stats.period_start(now, days)
                async with runtime.db.transaction() as session:
                    figures = {each.key: await rollups.count(
                        session, each.key, each, since, since + timedelta(days=days), window)
                               for each in shown}
                return build(figures, now, since, days, window, key, shown)

            kept_ms, from_kept = await timed(runs, kept)
            live_ms, from_live = await timed(live_runs, live)
            out[name("stats", days, key) + "_ms"] = kept_ms
            out[name("live", days, key) + "_ms"] = live_ms
            out[name("ratio", days, key)] = round(kept_ms["median"] / live_ms["median"], 4) \
                if live_ms["median"] else None
            out[name("stats", days, key) + "_signups"] = from_kept.report.totals.signups
            different = differences(from_kept.figures, from_live.figures)
            if different:
                disagreements[name("stats", days, key)] = different
                print(f"kept and live figures differ, {days} days, "  # noqa: T201
                      f"{key or 'all regimens'}: {len(different)} figure(s), e.g. "
                      f"{different[:3]}", file=sys.stderr)
            out[name("progress", days, key) + "_figures"] = {
                f.key: {"started": f.started, "unit1_finished": f.unit1_finished,
                        "unit1_then_purchase": f.unit1_then_purchase,
                        "programs": {p.key: [p.clicked, p.finished] for p in f.programs}}
                for f in from_kept.progress}
            out[name("lessons", days, key) + "_figures"] = {
                each.key: {lesson.key: {"sent": lesson.sent, "skipped": lesson.skipped,
                                        "opened": lesson.opened,
                                        "clicked_within_7_days": lesson.clicked_within_7_days,
                                        "stopped_after": lesson.stopped_after}
                           for lesson in each.lessons}
                for each in from_kept.lessons}
    out["kept_equals_live"] = not disagreements
    out["kept_live_differences"] = disagreements
    await runtime.aclose()
    return out


def _ms(timings: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(timings) * 1000, 1),
            "min": round(min(timings) * 1000, 1), "max": round(max(timings) * 1000, 1)}


def summary(results: dict[str, Any]) -> list[str]:
    """The medians as a table (ms): the page, its CSVs, `regimen stats` on the kept figures and
    on the raw rows, and their ratio."""
    heads = ("days", "regimens", "/admin", "funnel", "progress", "lessons", "stats",
             f"live (n={results['live_runs']})", "ratio")
    row = "{:>4} {:<18} {:>8} {:>8} {:>8} {:>8} {:>8} {:>12} {:>7}"
    lines = [f"medians in ms; kept: {results['runs']} runs, live (from the raw rows): "
             f"{results['live_runs']} runs, each after one warm-up; rebuild: "
             f"{results['rebuild_days']} days in {results['rebuild_seconds']} s",
             row.format(*heads)]
    for days in PERIODS:
        for key in [None, *REGIMENS]:
            tail = f"_{days}d" + (f"_{key}" if key else "")
            lines.append(row.format(
                days, key or "all", *(results[what + tail + "_ms"]["median"] for what in (
                    "admin", "funnel_csv", "progress_csv", "lessons_csv", "stats", "live")),
                results["ratio" + tail]))
    lines.append("kept figures equal to the live ones: "
                 + ("yes" if results["kept_equals_live"] else "NO (kept_live_differences)"))
    return lines


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
    parser.add_argument("--subscribers", type=int, default=1_000_000,
                        help="Readers to seed (10000000 works too; see the top of the file).")
    parser.add_argument("--events", type=int, default=None,
                        help="Events to seed besides the progress and lessons' (default: three "
                             "per reader).")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--live-runs", type=int, default=3,
                        help="Runs of the baseline counted from the raw rows (slow: seconds "
                             "each for a year at a million readers).")
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="Where to write the measurements (JSON).")
    options = parser.parse_args()
    migrate(options.database_url)
    events = options.events if options.events is not None else 3 * options.subscribers
    counts, seed_seconds = asyncio.run(seed(options.database_url, options.subscribers, events,
                                            options.reseed))
    results: dict[str, Any] = {"rows": counts, "seed_seconds": seed_seconds,
                               "runs": options.runs, "live_runs": options.live_runs}
    results.update(asyncio.run(measure(options.database_url, options.runs,
                                       options.live_runs)))
    baseline_mb, _ = peak_rss_mb(["secret", "generate"], options.database_url)
    export_mb, export_s = peak_rss_mb(["subscribers", "export", "-o", os.devnull],
                                      options.database_url)
    results["export"] = {"peak_rss_mb": export_mb, "baseline_rss_mb": baseline_mb,
                         "seconds": export_s}
    results["machine"] = f"{os.cpu_count()} CPUs, {resource.getpagesize()} B pages"
    options.results.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(json.dumps(results, indent=2, default=str))  # noqa: T201
    for line in summary(results):
        print(line, file=sys.stderr)  # noqa: T201
    if not results["kept_equals_live"]:
        sys.exit("the kept figures differ from those counted from the raw rows: see "
                 "kept_live_differences")


if __name__ == "__main__":
    main()
