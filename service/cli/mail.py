"""`regimen send-test` and `regimen outbox …`: looking at the mail and its queue."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from uuid import uuid4

import typer

from service.cli import common
from service.core import outbox
from service.core.logs import mask_addresses
from service.core.models import MailKind, OutboxStatus, Subscriber, SubscriberStatus, utcnow
from service.delivery.lesson_mail import sample_progress
from service.delivery.outgoing import PermanentFailure, TemporaryFailure
from service.readers.addresses import mask
from service.runtime import Runtime

outbox_app = typer.Typer(help="See and fix the queue of outgoing mail.", no_args_is_help=True)


def send_test(address: Annotated[str, typer.Argument(help="Where to send the samples.")]) -> None:
    """Send one of every mail the service sends to ADDRESS, right now, to see how they look."""
    email = common.address(address)
    async def work(runtime: Runtime) -> list[str]:
        sample = Subscriber(public_id="send-test", email=email, regimen=runtime.regimen.key,
                            token_version=0, status=SubscriberStatus.PENDING)
        problems = []
        regimen = runtime.regimen
        # Each lesson of the default regimen, as to a reader some way in.
        mails: list[tuple[MailKind, str | None]] = [
            (kind, None) for kind in MailKind if kind is not MailKind.LESSON]
        mails += [(MailKind.LESSON, lesson.key) for lesson in regimen.lessons]
        for kind, lesson in mails:
            name = f"{kind.value} {lesson}" if lesson else kind.value
            try:
                key = f"send-test-{kind.value}-{uuid4().hex}"
                await runtime.transport.send(runtime.mailer.compose(
                    kind, sample, key, lesson, sample_progress(regimen)))
                typer.echo(f"sent: {name}")
            except (TemporaryFailure, PermanentFailure) as exc:
                problems.append(f"{name}: {exc}")
        return problems

    problems = common.run(work)
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

    async def work(runtime: Runtime) -> None:
        async with runtime.db.transaction() as session:
            totals = await outbox.counts(session)
            rows = await outbox.listing(session, status, limit)
        for (kind, state), number in sorted(totals.items()):
            typer.echo(f"{kind.value:<10} {state.value:<10} {number:>8}")
        if rows:
            typer.echo("")
        for message, email in rows:
            typer.echo(f"#{message.id:<7} {message.kind.value:<9} {message.status.value:<9} "
                       f"tries {message.attempts:<3} {message.created_at:%Y-%m-%d %H:%M} "
                       f"{mask(email)}  {mask_addresses(message.last_error or '')}"[:160])

    common.run(work)


@outbox_app.command("retry")
def outbox_retry(
    message_id: Annotated[int | None, typer.Option("--id", help="Only this message.")] = None,
) -> None:
    """Queue failed messages again (e.g. after fixing the mail settings)."""

    async def work(runtime: Runtime) -> int:
        async with runtime.db.transaction() as session:
            return await outbox.requeue_failed(session, utcnow(), message_id)

    typer.echo(f"{common.run(work)} message(s) queued again.")


@outbox_app.command("purge")
def outbox_purge(
    older_than: Annotated[int, typer.Option(help="Age in days.")] = 30,
    failed: Annotated[bool, typer.Option(help="Also delete failed messages.")] = False,
) -> None:
    """Delete sent and cancelled messages older than --older-than days."""
    statuses = [OutboxStatus.SENT, OutboxStatus.CANCELLED] + ([OutboxStatus.FAILED] if failed
                                                              else [])

    async def work(runtime: Runtime) -> int:
        async with runtime.db.transaction() as session:
            return await outbox.purge(session, utcnow() - timedelta(days=older_than), statuses)

    typer.echo(f"{common.run(work)} message(s) deleted.")
