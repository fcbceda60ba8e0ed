"""`regimen stats` and `regimen secret generate`: the author's numbers and good secrets."""

from __future__ import annotations

import secrets
from typing import Annotated

import typer

from service.cli import common
from service.core.models import utcnow
from service.funnel import lesson_stats, progress_stats, rollups, upkeep
from service.funnel import stats as funnel_stats
from service.runtime import Runtime

secret_app = typer.Typer(help="Secrets for REGIMEN_SECRET_KEYS and REGIMEN_ADMIN_PASSWORD.",
                         no_args_is_help=True)


def stats(
    days: Annotated[int, typer.Option(min=1, max=366, help="How many days back, today included.")]
    = funnel_stats.DEFAULT_DAYS,
    regimen: Annotated[str | None, typer.Option(
        help="Only this regimen's numbers (its key, e.g. sacro-iliac); every regimen's "
             "together when not given.")] = None,
    verify: Annotated[bool, typer.Option(
        "--verify", help="Count every kept day again from the raw rows and say whether the "
                         "kept figures agree; exit status 1 when they do not.")] = False,
    rebuild: Annotated[bool, typer.Option(
        "--rebuild", help="Forget the kept daily figures and count every day again from the "
                          "raw rows.")] = False,
) -> None:
    """The funnel, day by day and in total, then how far readers get and each lesson's numbers
    (per regimen), as on the /admin page. The figures of each closed day are kept (the worker
    counts them); --verify and --rebuild check and redo that."""
    if verify or rebuild:
        common.run(_verify if verify else _rebuild)
        return

    async def work(runtime: Runtime) -> tuple[funnel_stats.Report, str | None,
                                              list[progress_stats.HowFar],
                                              list[lesson_stats.RegimenLessons]]:
        title = None
        shown = list(runtime.catalog.regimens.values())
        if regimen is not None:
            chosen = runtime.catalog.get(regimen)
            if chosen is None:
                common.fail(f"No regimen {regimen!r}; the content has: "
                            + ", ".join(runtime.catalog.keys()))
            title = chosen.title
            shown = [chosen]
        now = utcnow()
        since = funnel_stats.period_start(now, days)
        async with runtime.db.transaction() as session:
            figures = await rollups.read(session, list(runtime.catalog.regimens.values()),
                                         regimen, since, now, runtime.settings.scanner_window,
                                         runtime.settings.event_retention)
        report = funnel_stats.funnel(figures, now, days, runtime.settings.scanner_window,
                                     regimen)
        return (report, title, progress_stats.how_far_each(shown, since, figures),
                lesson_stats.lessons(shown, figures))

    report, title, progress, lessons = common.run(work)
    for line in funnel_stats.table(report, title):
        typer.echo(line)
    for figures in progress:
        typer.echo("")
        for line in progress_stats.table(figures):
            typer.echo(line)
    for line in lesson_stats.lines(lessons):
        typer.echo(line)


async def _rebuild(runtime: Runtime) -> None:
    bar = common.DaysBar("Counting every day again")
    try:
        done = await upkeep.rebuild(runtime.db, list(runtime.catalog.regimens.values()),
                                    utcnow(), runtime.settings.scanner_window,
                                    runtime.settings.event_retention, counted=bar)
    finally:
        bar.close()
    typer.echo(f"Counted the figures of {done.counted} days again from the raw rows.")


VERIFIED_PER_BATCH = 50


async def _verify(runtime: Runtime) -> None:
    regimens, now = list(runtime.catalog.regimens.values()), utcnow()
    async with runtime.db.transaction() as session:
        days = await upkeep.days_to_verify(session, regimens, now, runtime.settings.event_retention)
    differences: list[upkeep.Difference] = []
    bar = common.DaysBar("Counting the kept days again")
    try:
        for start in range(0, len(days), VERIFIED_PER_BATCH):
            async with runtime.db.transaction() as session:
                differences += await upkeep.verify_some(
                    session, regimens, days[start:start + VERIFIED_PER_BATCH],
                    runtime.settings.scanner_window)
            bar(min(len(days), start + VERIFIED_PER_BATCH),
                max(0, len(days) - start - VERIFIED_PER_BATCH))
    finally:
        bar.close()
    async with runtime.db.transaction() as session:
        differences += await upkeep.verify_months(session)
    for each in differences:
        where = f"month {each.day:%Y-%m} (its days summed)" if each.month else str(each.day)
        typer.echo(f"{each.regimen} {where}: {each.figure} {each.key!r} kept {each.kept}, "
                   f"counted {each.counted}")
    if differences:
        stale = len({(each.regimen, each.day, each.month) for each in differences})
        common.fail(f"{len(differences)} figure(s) of {stale} day(s) or month(s) differ from "
                    "the raw rows; `regimen stats --rebuild` counts them again.", code=1)
    typer.echo(f"The kept figures of {len(days)} days, and their months' sums, agree with the "
               "raw rows.")


@secret_app.command("generate")
def secret_generate() -> None:
    """Print a new random secret (64 characters)."""
    typer.echo(secrets.token_urlsafe(48))
