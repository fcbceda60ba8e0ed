"""The `regimen` command: serve, worker, migrate, content check, embed."""

from __future__ import annotations

import asyncio
import csv
import gc
import json
import secrets
import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn, TextIO
from uuid import uuid4

import httpx
import typer
import uvicorn
from sqlalchemy import select

from service import logs, outbox, privacy, subscribers
from service import stats as funnel_stats
from service.addresses import InvalidAddress, mask, normalize_address
from service.app import create_app
from service.bots import Captcha
from service.config import ConfigError, Settings, load_settings
from service.content import ContentError, Regimen, load_regimen
from service.db import migrate as run_migrations
from service.embed import snippet
from service.models import MailKind, OutboxStatus, Subscriber, SubscriberStatus, utcnow
from service.outgoing import PermanentFailure, TemporaryFailure
from service.runtime import Runtime, build_runtime

app = typer.Typer(help="Deliver a free exercise regimen to a blog's readers, with double opt-in.",
                  no_args_is_help=True, add_completion=False)
content_app = typer.Typer(help="The regimen content file.", no_args_is_help=True)
app.add_typer(content_app, name="content")
outbox_app = typer.Typer(help="See and fix the queue of outgoing mail.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        _fail(f"The configuration cannot be used:\n{exc}")


def _runtime(settings: Settings) -> Runtime:
    try:
        return build_runtime(settings)
    except ContentError as exc:
        _fail(_content_problems(exc), code=1)


def _content_problems(exc: ContentError) -> str:
    lines = "\n".join(f"  {problem}" for problem in exc.problems)
    return f"{exc.path} has problems:\n{lines}"


def _log_to_stderr(settings: Settings) -> None:
    logs.configure(settings)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    worker: Annotated[bool, typer.Option(help="Run the outbox worker inside the web process.")]
    = True,
    workers: Annotated[int, typer.Option(min=1, help="Web processes (more than 1 needs "
                                         "--no-worker; run `regimen worker` beside).")] = 1,
) -> None:
    """Serve the web app (and, unless --no-worker, send the outbox's mail)."""
    settings = _settings()
    runtime = _runtime(settings)
    if workers > 1 and worker:
        _fail("--workers above 1 needs --no-worker: run the mail worker as `regimen worker`.")
    _log_to_stderr(settings)
    typer.echo(f"Serving {settings.base_url} (listening on http://{host}:{port}); "
               f"mail goes to {settings.mail_url.split('@')[-1]}")
    # log_config=None: keep the logging set up above (JSON in production, masked addresses).
    # proxy_headers=False: the app reads X-Forwarded-For itself, from trusted proxies only.
    options: dict[str, Any] = {"host": host, "port": port, "proxy_headers": False,
                               "log_level": "info", "log_config": None}
    if workers > 1:
        uvicorn.run("service.asgi:web", factory=True, workers=workers, **options)
    else:
        web = create_app(runtime, run_worker=worker)
        # What exists by now lives as long as the process: keep it out of the collector's full
        # passes, which under load walked it all every second or so (88 ms a pass, a tenth of
        # the time, bench/signup.py).
        gc.freeze()
        uvicorn.run(web, **options)


@app.command(name="worker")
def run_worker() -> None:
    """Send the outbox's mail until stopped (SIGTERM or Ctrl-C finishes the batch in hand)."""
    settings = _settings()
    runtime = _runtime(settings)
    _log_to_stderr(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await runtime.worker().run(stop)
        finally:
            await runtime.db.dispose()

    asyncio.run(main())


@app.command()
def migrate() -> None:
    """Create or update the database tables."""
    settings = _settings()
    run_migrations(settings.database_url)
    typer.echo("Database is up to date.")


@content_app.command("check")
def content_check(
    online: Annotated[bool, typer.Option(help="Also open every link and report broken ones.")]
    = False,
) -> None:
    """Validate the regimen file; list placeholder links still to replace."""
    settings = _settings()
    try:
        regimen = load_regimen(settings.content_path)
    except ContentError as exc:
        _fail(_content_problems(exc), code=1)
    count = len(regimen.exercises())
    typer.echo(f"{settings.content_path}: OK — {len(regimen.units)} units, {count} exercises.")
    examples = regimen.example_urls()
    if examples:
        typer.secho(f"{len(examples)} example addresses are still to be replaced:",
                    fg=typer.colors.YELLOW)
        for url in examples:
            typer.echo(f"  {url}")
    if online:
        broken = asyncio.run(_broken_links(regimen))
        for url, reason in broken:
            typer.secho(f"  broken: {url} ({reason})", fg=typer.colors.RED)
        if broken:
            raise typer.Exit(1)
        typer.echo("Every link answered.")


async def _broken_links(regimen: Regimen) -> list[tuple[str, str]]:
    urls = sorted({regimen.site_url, *(regimen.destination(e) for e in regimen.exercises())})
    async with httpx.AsyncClient(follow_redirects=True, timeout=15) as client:
        results = await asyncio.gather(*(_probe(client, url) for url in urls))
    return [(url, reason) for url, reason in zip(urls, results, strict=True) if reason]


async def _probe(client: httpx.AsyncClient, url: str) -> str:
    """Empty when the link works. Some sites refuse HEAD, so a refused HEAD is retried as GET."""
    try:
        response = await client.head(url)
        if response.status_code >= 400:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return f"HTTP {response.status_code}" if response.status_code >= 400 else ""


@app.command()
def embed(
    source: Annotated[str, typer.Option(help="Address of the blog post the form goes into, "
                                        "recorded with each signup.")] = "",
) -> None:
    """Print the HTML form to paste into a blog post."""
    settings = _settings()
    typer.echo(snippet(settings.base_url, source, Captcha.from_settings(settings)), nl=False)


@app.command("send-test")
def send_test(address: Annotated[str, typer.Argument(help="Where to send the samples.")]) -> None:
    """Send one of every mail the service sends to ADDRESS, right now, to see how they look."""
    try:
        email = normalize_address(address)
    except InvalidAddress as exc:
        _fail(str(exc))
    runtime = _runtime(_settings())
    sample = Subscriber(public_id="send-test", email=email, token_version=0,
                        status=SubscriberStatus.PENDING)

    async def main() -> list[str]:
        problems = []
        try:
            for kind in MailKind:
                try:
                    key = f"send-test-{kind.value}-{uuid4().hex}"
                    await runtime.transport.send(runtime.mailer.compose(kind, sample, key))
                    typer.echo(f"sent: {kind.value}")
                except (TemporaryFailure, PermanentFailure) as exc:
                    problems.append(f"{kind.value}: {exc}")
        finally:
            await runtime.transport.close()
            await runtime.db.dispose()
        return problems

    problems = asyncio.run(main())
    for problem in problems:
        typer.secho(f"not sent: {problem}", fg=typer.colors.RED, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo("The links in these samples belong to no reader: they open a 'no longer works' "
               "page.")


@outbox_app.command("list")
def outbox_list(
    status: Annotated[OutboxStatus | None, typer.Option(help="Only messages in this state.")]
    = None,
    limit: Annotated[int, typer.Option(help="How many of the newest to show.")] = 20,
) -> None:
    """Counts by kind and state, then the newest messages, addresses masked."""
    runtime = _runtime(_settings())

    async def main() -> None:
        async with runtime.db.transaction() as session:
            totals = await outbox.counts(session)
            rows = await outbox.listing(session, status, limit)
        await runtime.db.dispose()
        for (kind, state), number in sorted(totals.items()):
            typer.echo(f"{kind.value:<10} {state.value:<10} {number:>8}")
        if rows:
            typer.echo("")
        for message, email in rows:
            typer.echo(f"#{message.id:<7} {message.kind.value:<9} {message.status.value:<9} "
                       f"tries {message.attempts:<3} {message.created_at:%Y-%m-%d %H:%M} "
                       f"{mask(email)}  {message.last_error or ''}"[:160])

    asyncio.run(main())


@outbox_app.command("retry")
def outbox_retry(
    message_id: Annotated[int | None, typer.Option("--id", help="Only this message.")] = None,
) -> None:
    """Queue failed messages again (e.g. after fixing the mail settings)."""
    runtime = _runtime(_settings())

    async def main() -> int:
        async with runtime.db.transaction() as session:
            number = await outbox.requeue_failed(session, utcnow(), message_id)
        await runtime.db.dispose()
        return number

    typer.echo(f"{asyncio.run(main())} message(s) queued again.")


@outbox_app.command("purge")
def outbox_purge(
    older_than: Annotated[int, typer.Option(help="Age in days.")] = 30,
    failed: Annotated[bool, typer.Option(help="Also delete failed messages.")] = False,
) -> None:
    """Delete sent and cancelled messages older than --older-than days."""
    runtime = _runtime(_settings())
    statuses = [OutboxStatus.SENT, OutboxStatus.CANCELLED] + ([OutboxStatus.FAILED] if failed
                                                              else [])

    async def main() -> int:
        async with runtime.db.transaction() as session:
            number = await outbox.purge(session, utcnow() - timedelta(days=older_than), statuses)
        await runtime.db.dispose()
        return number

    typer.echo(f"{asyncio.run(main())} message(s) deleted.")


def _address(raw: str) -> str:
    try:
        return normalize_address(raw)
    except InvalidAddress as exc:
        _fail(str(exc))


# The author's numbers, the list in and out, and secrets (issue 8).

subscribers_app = typer.Typer(help="The list in and out, and one reader's data shown or erased.",
                              no_args_is_help=True)
app.add_typer(subscribers_app, name="subscribers")
secret_app = typer.Typer(help="Secrets for REGIMEN_SECRET_KEYS and REGIMEN_ADMIN_PASSWORD.",
                         no_args_is_help=True)
app.add_typer(secret_app, name="secret")


@app.command()
def stats(
    days: Annotated[int, typer.Option(min=1, max=366, help="How many days back, today included.")]
    = funnel_stats.DEFAULT_DAYS,
) -> None:
    """The funnel, day by day and in total, as on the /admin page."""
    settings = _settings()
    runtime = _runtime(settings)

    async def main() -> funnel_stats.Report:
        try:
            async with runtime.db.transaction() as session:
                return await funnel_stats.funnel(session, utcnow(), days,
                                                 settings.scanner_window)
        finally:
            await runtime.db.dispose()

    for line in funnel_stats.table(asyncio.run(main())):
        typer.echo(line)


@secret_app.command("generate")
def secret_generate() -> None:
    """Print a new random secret (64 characters)."""
    typer.echo(secrets.token_urlsafe(48))


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
    runtime = _runtime(_settings())
    if email is not None:
        address = _address(email)

        async def one() -> dict[str, object] | None:
            try:
                async with runtime.db.transaction() as session:
                    return await privacy.export(session, address)
            finally:
                await runtime.db.dispose()

        data = asyncio.run(one())
        if data is None:
            _fail(f"No reader with the address {address}.", code=1)
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return

    async def main(target: TextIO) -> None:
        writer = csv.writer(target, lineterminator="\n")
        writer.writerow(subscribers.EXPORT_COLUMNS)
        try:
            async for row in subscribers.export_rows(runtime.db):
                writer.writerow(row)
        finally:
            await runtime.db.dispose()

    if output is None:
        asyncio.run(main(sys.stdout))
        sys.stdout.flush()
    else:
        with output.open("w", newline="", encoding="utf-8") as target:
            asyncio.run(main(target))


@subscribers_app.command("import")
def subscribers_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                         help="CSV with an `email` column (see README).")],
    per_hour: Annotated[int, typer.Option(min=1, help="Confirmation mails per hour, for the "
                                          "rows without recorded consent.")]
    = subscribers.DEFAULT_PER_HOUR,
) -> None:
    """Bring in an existing list: readers with recorded consent (`consented_at`) as confirmed,
    the others are sent the confirmation mail, paced at --per-hour."""
    runtime = _runtime(_settings())
    with file.open(newline="", encoding="utf-8-sig") as counting:
        total = max(sum(1 for _ in counting) - 1, 0)
    result = subscribers.ImportResult()

    async def main() -> None:
        try:
            with file.open(newline="", encoding="utf-8-sig") as source, \
                    typer.progressbar(length=total, label="Importing", file=sys.stderr) as bar:
                rows = subscribers.read_rows(source, result)
                await subscribers.import_rows(runtime.db, rows, utcnow(), per_hour, result,
                                              runtime.settings.secret_keys[0], progress=bar)
        finally:
            await runtime.db.dispose()

    try:
        asyncio.run(main())
    except subscribers.ImportProblem as exc:
        _fail(f"{file}: {exc}")
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
    address = _address(email)
    runtime = _runtime(_settings())

    async def main() -> bool:
        async with runtime.db.transaction() as session:
            reader = await session.scalar(select(Subscriber).where(Subscriber.email == address))
            if reader is not None:
                await privacy.erase(session, reader, runtime.settings.secret_keys[0], utcnow())
        await runtime.db.dispose()
        return reader is not None

    if not asyncio.run(main()):
        _fail(f"No reader with the address {address}.", code=1)
    typer.echo(f"Erased {mask(address)}.")


if __name__ == "__main__":
    app()
