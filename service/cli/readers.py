"""`regimen subscribers …`: the list in and out, and one reader's data shown or erased."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, TextIO

import typer
from sqlalchemy import select

from service.cli import common
from service.core.models import Reader, utcnow
from service.readers import import_export, privacy
from service.readers.addresses import mask
from service.runtime import Runtime

subscribers_app = typer.Typer(help="The list in and out, and one reader's data shown or erased.",
                              no_args_is_help=True)


@subscribers_app.command("export")
def subscribers_export(
    email: Annotated[str | None, typer.Option(
        help="Only this reader: everything held about them, as JSON (a data access request)."
    )] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", dir_okay=False,
                      help="File to write; standard output when not given.")] = None,
) -> None:
    """Every reader as CSV (addresses in full: keep the file safe), streamed row by row; with
    --email, one reader's whole record as JSON."""
    settings = common.settings()
    if email is not None:
        address = common.address(email)

        async def one(runtime: Runtime) -> dict[str, object] | None:
            async with runtime.db.transaction() as session:
                return await privacy.export(session, address)

        data = common.run(one, settings)
        if data is None:
            common.fail(f"No reader with the address {address}.", code=1)
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return

    def every_reader(target: TextIO) -> None:
        async def work(runtime: Runtime) -> None:
            writer = csv.writer(target, lineterminator="\n")
            writer.writerow(import_export.EXPORT_COLUMNS)
            async for row in import_export.export_rows(runtime.db):
                writer.writerow(row)

        common.run(work, settings)

    if output is None:
        every_reader(sys.stdout)
        sys.stdout.flush()
    else:
        with output.open("w", newline="", encoding="utf-8") as target:
            every_reader(target)


@subscribers_app.command("import")
def subscribers_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                         help="CSV with an `email` column (see README).")],
    per_hour: Annotated[int, typer.Option(min=1, help="Confirmation mails per hour, for the "
                                          "rows without recorded consent.")]
    = import_export.DEFAULT_PER_HOUR,
    regimen: Annotated[str | None, typer.Option(help="The regimen they subscribed to (its key); "
                                                "the site's default when not given.")] = None,
) -> None:
    """Bring in an existing list: readers with recorded consent (`consented_at`) as confirmed,
    the others are sent the confirmation mail, paced at --per-hour."""
    settings = common.settings()
    with file.open(newline="", encoding="utf-8-sig") as counting:
        total = max(sum(1 for _ in counting) - 1, 0)
    result = import_export.ImportResult()

    async def work(runtime: Runtime) -> None:
        key = regimen or runtime.regimen.key
        if runtime.catalog.get(key) is None:
            common.fail(f"No regimen {key!r}; the content has: "
                        + ", ".join(runtime.catalog.keys()))
        with file.open(newline="", encoding="utf-8-sig") as source, \
                typer.progressbar(length=total, label="Importing", file=sys.stderr) as bar:
            rows = import_export.read_rows(source, result)
            await import_export.import_rows(runtime.db, rows, utcnow(), per_hour, result,
                                            settings.secret_keys[0], key, progress=bar)

    try:
        common.run(work, settings)
    except import_export.ImportProblem as exc:
        common.fail(f"{file}: {exc}")
    for problem in result.problems:
        typer.secho(f"skipped: {problem}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"{result.confirmed} imported as confirmed (recorded consent), "
               f"{result.mailed} sent the confirmation mail, "
               f"{result.already_held} already on the list, {result.erased} erased at their "
               f"request (left out), {len(result.problems)} skipped.")
    if result.last_mail_at is not None:
        typer.echo(f"The confirmation mails go out at {per_hour} an hour; the last at "
                   f"{result.last_mail_at:%Y-%m-%d %H:%M} UTC.")


@subscribers_app.command("erase")
def subscribers_erase(
    email: Annotated[str, typer.Option(help="The reader to forget.")],
) -> None:
    """Delete a reader's personal data for good (a keyed hash of the address remains, so an
    imported list cannot bring them back)."""
    address = common.address(email)

    async def work(runtime: Runtime) -> bool:
        async with runtime.db.transaction() as session:
            reader = await session.scalar(select(Reader).where(Reader.email == address))
            if reader is not None:
                await privacy.erase(session, address, runtime.settings.secret_keys[0], utcnow())
        return reader is not None

    if not common.run(work):
        common.fail(f"No reader with the address {address}.", code=1)
    typer.echo(f"Erased {mask(address)}.")
