"""`regimen stats` and `regimen secret generate`: the author's numbers and good secrets."""

from __future__ import annotations

import secrets
from typing import Annotated

import typer

from service.cli import common
from service.core.models import utcnow
from service.funnel import lesson_stats, progress_stats
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
) -> None:
    """The funnel, day by day and in total, then how far readers get and each lesson's numbers
    (per regimen), as on the /admin page."""

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
        async with runtime.db.transaction() as session:
            report = await funnel_stats.funnel(session, list(runtime.catalog.regimens.values()),
                                               utcnow(), days, runtime.settings.scanner_window,
                                               regimen)
            progress = await progress_stats.how_far_each(session, shown, report.since)
            lessons = await lesson_stats.lessons(session, shown, report.since,
                                                 runtime.settings.scanner_window)
        return report, title, progress, lessons

    report, title, progress, lessons = common.run(work)
    for line in funnel_stats.table(report, title):
        typer.echo(line)
    for figures in progress:
        typer.echo("")
        for line in progress_stats.table(figures):
            typer.echo(line)
    for line in lesson_stats.lines(lessons):
        typer.echo(line)


@secret_app.command("generate")
def secret_generate() -> None:
    """Print a new random secret (64 characters)."""
    typer.echo(secrets.token_urlsafe(48))
