"""`regimen stats` and `regimen secret generate`: the author's numbers and good secrets."""

from __future__ import annotations

import secrets
from typing import Annotated

import typer

from service.cli import common
from service.core.models import utcnow
from service.funnel import stats as funnel_stats
from service.runtime import Runtime

secret_app = typer.Typer(help="Secrets for REGIMEN_SECRET_KEYS and REGIMEN_ADMIN_PASSWORD.",
                         no_args_is_help=True)


def stats(
    days: Annotated[int, typer.Option(min=1, max=366, help="How many days back, today included.")]
    = funnel_stats.DEFAULT_DAYS,
) -> None:
    """The funnel, day by day and in total, as on the /admin page."""

    async def work(runtime: Runtime) -> funnel_stats.Report:
        async with runtime.db.transaction() as session:
            return await funnel_stats.funnel(session, utcnow(), days,
                                             runtime.settings.scanner_window)

    for line in funnel_stats.table(common.run(work)):
        typer.echo(line)


@secret_app.command("generate")
def secret_generate() -> None:
    """Print a new random secret (64 characters)."""
    typer.echo(secrets.token_urlsafe(48))
