"""`regimen lessons preview`: a lesson as a reader some way in would get it, printed (its text
part) or sent, so the author can read it before readers do."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Annotated
from uuid import uuid4

import typer

from service.cli import common
from service.core.models import MailKind, Subscriber, SubscriberStatus
from service.delivery.lesson_mail import sample_progress
from service.delivery.outgoing import PermanentFailure, TemporaryFailure
from service.runtime import Runtime

lessons_app = typer.Typer(help="Read the follow-up lessons before readers do.",
                          no_args_is_help=True)


@lessons_app.command("preview")
def preview(
    regimen: Annotated[str, typer.Option(help="The regimen (its key).")],
    lesson: Annotated[str, typer.Option(help="The lesson (its key in the regimen's file).")],
    to: Annotated[str | None, typer.Option(help="Send it to this address instead of printing "
                                                "it.")] = None,
) -> None:
    """Render one lesson for a sample reader who has read the regimen through and done its
    first two exercises; print its subject and text, or send it with --to."""
    email = common.address(to) if to is not None else "preview@example.org"

    async def work(runtime: Runtime) -> str:
        chosen = runtime.catalog.get(regimen)
        if chosen is None:
            common.fail(f"No regimen {regimen!r}; the content has: "
                        + ", ".join(runtime.catalog.keys()))
        if chosen.lesson(lesson) is None:
            keys = ", ".join(each.key for each in chosen.lessons) or "none"
            common.fail(f"No lesson {lesson!r} in {regimen}; its lessons: {keys}")
        sample = Subscriber(public_id="lesson-preview", email=email, regimen=regimen,
                            token_version=0, status=SubscriberStatus.CONFIRMED)
        outgoing = runtime.mailer.compose(MailKind.LESSON, sample, f"preview-{uuid4().hex}",
                                          lesson, sample_progress(chosen))
        if to is None:
            return _as_text(outgoing.data)
        try:
            await runtime.transport.send(outgoing)
        except (TemporaryFailure, PermanentFailure) as exc:
            common.fail(f"not sent: {exc}", code=1)
        return f"sent: {lesson} to {email}"

    typer.echo(common.run(work))
    if to is not None:
        typer.echo("The links in it belong to no reader: they open a 'no longer works' page.")


def _as_text(data: bytes) -> str:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None
    return f"Subject: {message['Subject']}\n\n{body.get_content()}"
