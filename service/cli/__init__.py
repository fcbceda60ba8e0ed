"""The `regimen` command: one module per group of subcommands, put together here."""

from __future__ import annotations

import typer

from service.cli import author, content, lessons, mail, readers, server

app = typer.Typer(help="Deliver a free exercise regimen to a blog's readers, with double opt-in.",
                  no_args_is_help=True, add_completion=False)
app.command()(server.serve)
app.command(name="worker")(server.worker)
app.command()(server.migrate)
app.add_typer(content.content_app, name="content")
app.command()(content.embed)
app.command("send-test")(mail.send_test)
app.add_typer(mail.outbox_app, name="outbox")
app.command()(author.stats)
app.add_typer(readers.subscribers_app, name="subscribers")
app.add_typer(author.secret_app, name="secret")
app.add_typer(lessons.lessons_app, name="lessons")
