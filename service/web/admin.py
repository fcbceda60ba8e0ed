"""The author's cockpit: `/admin` (the funnel, its chart, sources, exercises, how far readers
get, the outbox), `/admin/funnel.csv` and `/admin/progress.csv`, behind HTTP basic auth with
REGIMEN_ADMIN_PASSWORD; absent when unset. Each reports on every regimen together, or on one
(`?regimen=KEY`, chosen on the page from a list of the regimens served); how far readers get
is always per regimen (each its own steps and units), one section or file part each.

The chart is inline SVG drawn here on the server: no script, no inline style (the CSP forbids
both); its colours come from classes in style.css.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from service.core.content import KEY_MAX_LENGTH, Catalog, Regimen
from service.core.models import utcnow
from service.funnel import lesson_stats, progress_stats, rollups, stats
from service.funnel.figures import Figures
from service.runtime import Runtime
from service.web.dependencies import PasswordOnly, Refusal, RuntimeDep, password_protected
from service.web.pages import PRIVATE_HEADERS, render
from service.web.schemas import CRASHED, PLAIN, TEXT, WRONG_TOO_OFTEN, Answers, error, page


def _refuse(status: int) -> Exception:
    if status == 404:
        return HTTPException(404)  # off: the usual not-found page, as for any other path
    return Refusal(Response(
        "Sign in with the password in REGIMEN_ADMIN_PASSWORD.\n", status_code=401,
        media_type="text/plain",
        headers={"WWW-Authenticate": 'Basic realm="regimen admin", charset="UTF-8"',
                 **PRIVATE_HEADERS}))


ADMIN = PasswordOnly("admin", "REGIMEN_ADMIN_PASSWORD")
router = APIRouter(
    default_response_class=Response, responses=CRASHED,
    dependencies=[password_protected(ADMIN, lambda settings: settings.admin_password,
                                     _refuse)],
)

PERIODS = (7, 30, 90, 365)
Days = Annotated[int, Query(ge=1, le=366, description="The period to report on, in days.")]
RegimenKey = Annotated[str, Query(
    max_length=KEY_MAX_LENGTH,
    description="The regimen to report on, by its key (e.g. `sacro-iliac`); empty or absent: "
                "every regimen together.")]
OFF = "Off (404) until REGIMEN_ADMIN_PASSWORD is set."
REFUSALS: Answers = {
    400: error("`days` is not a whole number from 1 to 366, or `regimen` is not the key of a "
               "regimen the site serves."),
    401: {"description": "The password is wrong or missing.",
          "content": {PLAIN: {"schema": TEXT}},
          "headers": {"WWW-Authenticate": {"required": True, "schema": TEXT}}},
    404: error("The cockpit is off."),
    429: WRONG_TOO_OFTEN,
}


def csv_answer(description: str) -> dict[str, object]:
    """The OpenAPI answer of a CSV download."""
    return {"description": description, "content": {"text/csv": {"schema": TEXT}},
            "headers": {"Content-Disposition": {"required": True, "schema": TEXT}}}


def chosen(catalog: Catalog, key: str) -> Regimen | None:
    """The regimen whose key the request names, or None for every regimen (no key); 400 for a
    key the content does not have."""
    if not key:
        return None
    regimen = catalog.get(key)
    if regimen is None:
        raise HTTPException(400)
    return regimen


@router.get("/admin", description=OFF,
            summary="For the author: the funnel, sources, exercises, progress, the outbox",
            responses={200: page("The cockpit for the last `days` days, for one regimen or "
                                 "every regimen together."), **REFUSALS})
async def admin_page(request: Request, runtime: RuntimeDep, days: Days = 30,
                     regimen: RegimenKey = "") -> Response:
    catalog = runtime.catalog
    selected = chosen(catalog, regimen)
    now = utcnow()
    since = stats.period_start(now, days)
    figures = await read_figures(runtime, selected, since, now)
    async with runtime.db.transaction() as session:
        report = await stats.report(session, figures, list(catalog.regimens.values()), now,
                                    days, runtime.settings.scanner_window,
                                    selected.key if selected else None)
    progress = progress_stats.how_far_each(shown(catalog, selected), since, figures)
    per_lesson = lesson_stats.lessons(shown(catalog, selected), figures)
    return render(request, "admin.html", selected or catalog.default, private=True,
                  report=report, chart=chart(report.days), progress=progress, lessons=per_lesson,
                  no_unit_before=progress_stats.NO_UNIT_BEFORE, periods=PERIODS, days=days,
                  percent=stats.percent, regimens=list(catalog.regimens.values()),
                  selected=selected, keep_regimen=f"&regimen={selected.key}" if selected else "")


async def read_figures(runtime: Runtime, selected: Regimen | None, since: datetime,
                       now: datetime) -> dict[str, Figures]:
    """The period's figures (service.funnel.rollups) of the regimen chosen, or of every one.

    Each regimen in a transaction of its own, side by side on PostgreSQL: the database works
    on them at once (every regimen's year at a million readers: 96 ms, against 120 to 138 one
    after the other; bench/scale.py). SQLite takes one writer's lock per transaction
    (service.core.database): one after the other."""
    regimens = list(runtime.catalog.regimens.values())
    if selected is not None:
        keys = [selected.key]
    else:
        async with runtime.db.transaction() as session:
            keys = await rollups.keys_of(session, regimens, since, now)

    async def one(key: str) -> Figures:
        async with runtime.db.transaction() as session:
            return (await rollups.read(session, regimens, key, since, now,
                                       runtime.settings.scanner_window,
                                       runtime.settings.event_retention))[key]

    if runtime.db.is_sqlite:
        return {key: await one(key) for key in keys}
    return dict(zip(keys, await asyncio.gather(*map(one, keys)), strict=True))


async def _period(runtime: Runtime, selected: Regimen | None, days: int,
                  ) -> tuple[datetime, datetime, dict[str, Figures]]:
    """Now, the period's start, and its figures."""
    now = utcnow()
    since = stats.period_start(now, days)
    return now, since, await read_figures(runtime, selected, since, now)


@router.get(
    "/admin/funnel.csv", summary="For the author: the daily funnel as CSV", description=OFF,
    responses={200: csv_answer("One row a day, for one regimen or every regimen "
                                    "together."),
               **REFUSALS},
)
async def funnel_csv(runtime: RuntimeDep, days: Days = 30, regimen: RegimenKey = "") -> Response:
    selected = chosen(runtime.catalog, regimen)
    now, _, figures = await _period(runtime, selected, days)
    report = stats.funnel(figures, now, days, runtime.settings.scanner_window,
                          selected.key if selected else None)
    return csv_download("funnel", selected, days, stats.FUNNEL_COLUMNS,
                        (day.row() for day in report.days))


@router.get(
    "/admin/progress.csv", summary="For the author: how far readers get, as CSV",
    description=OFF,
    responses={200: csv_answer("One row per figure (" + ", ".join(
                         progress_stats.PROGRESS_COLUMNS) + ") of the readers who signed up "
                     "in the period, for one regimen or each regimen in turn: each step "
                     "marked done (`step`), each unit finished (`unit`), Unit 1 finished then "
                     "a purchase link clicked (`unit1_then_purchase`), each program's "
                     "conversion (`program`). `of_readers` is whom `readers` are a part of: "
                     "the readers who marked any step, who finished Unit 1, who finished the "
                     "unit before the program (empty when it has none: no rate)."),
               **REFUSALS},
)
async def progress_csv(runtime: RuntimeDep, days: Days = 30,
                       regimen: RegimenKey = "") -> Response:
    selected = chosen(runtime.catalog, regimen)
    _, since, figures = await _period(runtime, selected, days)
    progress = progress_stats.how_far_each(shown(runtime.catalog, selected), since, figures)
    return csv_download("progress", selected, days, progress_stats.PROGRESS_COLUMNS,
                        (row for figures in progress for row in progress_stats.rows(figures)))


@router.get(
    "/admin/lessons.csv", summary="For the author: each lesson's numbers, as CSV",
    description=OFF,
    responses={200: csv_answer("One row per lesson (" + ", ".join(lesson_stats.COLUMNS)
                     + ") of one regimen or each regimen that has lessons, for the readers "
                     "who signed up in the period: sent, skipped by the reader's progress, readers "
                     "who followed one of its links, who clicked an exercise or purchase link "
                     "within 7 days, and for whom it was the last lesson before they stopped."),
               **REFUSALS},
)
async def lessons_csv(runtime: RuntimeDep, days: Days = 30,
                      regimen: RegimenKey = "") -> Response:
    selected = chosen(runtime.catalog, regimen)
    _, _, figures = await _period(runtime, selected, days)
    return csv_download("lessons", selected, days, lesson_stats.COLUMNS, lesson_stats.rows(
        lesson_stats.lessons(shown(runtime.catalog, selected), figures)))


def shown(catalog: Catalog, selected: Regimen | None) -> list[Regimen]:
    """The regimens whose progress is shown: the one chosen, or each one served."""
    return [selected] if selected else list(catalog.regimens.values())


def csv_download(what: str, selected: Regimen | None, days: int, columns: Sequence[str],
                 rows: Iterable[Sequence[object]]) -> Response:
    """A CSV file to save, named for what it holds, whose and how many days
    (`funnel-sacro-iliac-30d.csv`, `funnel-30d.csv` for every regimen)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    name = f"{what}-{selected.key}-{days}d.csv" if selected else f"{what}-{days}d.csv"
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{name}"', **PRIVATE_HEADERS,
    })



@dataclass(frozen=True)
class Series:
    name: str
    css: str
    points: str
    total: int


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    top: int
    left: int
    bottom: int
    peak: int
    series: list[Series]
    first_day: str
    last_day: str


SERIES = (("signups", "Signed up", "s-signups"),
          ("confirm_page_opened", "Opened the confirm page", "s-opened"),
          ("confirmed", "Confirmed", "s-confirmed"),
          ("regimen_opened", "Opened the regimen", "s-regimen"),
          ("exercise_clicks", "Exercise links clicked", "s-clicks"))


def chart(days: list[stats.Day], width: int = 720, height: int = 260) -> Chart:
    """One polyline per funnel step, days along x, a shared y scale from 0 to the peak."""
    left, right, top, bottom = 44, 8, 10, height - 28
    peak = max([1, *(getattr(d, attr) for d in days for attr, _, _ in SERIES)])
    step = (width - left - right) / max(len(days) - 1, 1)
    series = []
    for attribute, name, css in SERIES:
        values = [getattr(d, attribute) for d in days]
        points = " ".join(
            f"{left + i * step:.1f},{bottom - (bottom - top) * v / peak:.1f}"
            for i, v in enumerate(values))
        series.append(Series(name=name, css=css, points=points, total=sum(values)))
    return Chart(width=width, height=height, top=top, left=left, bottom=bottom, peak=peak,
                 series=series, first_day=days[0].day.isoformat() if days else "",
                 last_day=days[-1].day.isoformat() if days else "")
