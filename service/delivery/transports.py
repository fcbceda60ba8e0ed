"""Where mail goes, chosen by `REGIMEN_MAIL_URL`.

- `console:` prints each mail (links visible) and keeps a copy as .eml under DATA_DIR/mail
- `file:///some/dir` writes .eml files only
- `smtp://[user:pass@]host[:port]` plain SMTP, upgraded with STARTTLS when the server offers it
- `smtps://[user:pass@]host[:port]` SMTP over implicit TLS
- `postmark://TOKEN@` and `mailgun://KEY@DOMAIN` HTTP APIs (see `service.delivery.providers`)

Every transport is given an `Outgoing` and raises the failures of `service.delivery.outgoing`.
SMTP itself is `service.delivery.smtp`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from service.core.mail_url import parse_mail_url
from service.delivery.outgoing import (
    Outgoing,
    Transport,
)
from service.delivery.providers import MailgunTransport, PostmarkTransport
from service.delivery.smtp import SmtpTransport


class FileTransport:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, outgoing: Outgoing) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = str(outgoing.message["Message-ID"]).strip("<>").partition("@")[0]
        (self.directory / f"{name}.eml").write_bytes(outgoing.data)

    async def close(self) -> None:
        pass

    async def delivers_utf8_local_parts(self) -> bool:
        return True


class ConsoleTransport:
    """For trying the service out: the confirmation link shows up right in the terminal."""

    def __init__(self, copies: FileTransport) -> None:
        self.copies = copies

    async def send(self, outgoing: Outgoing) -> None:
        await self.copies.send(outgoing)
        message = outgoing.message
        text = message.get_body(("plain",))
        # The wire format's CRLF would put a stray \r at the end of every printed line (and
        # of a link copied from the terminal).
        body = text.get_content().replace("\r\n", "\n") if text is not None else ""
        rule = "=" * 72
        sys.stdout.write(
            f"\n{rule}\nMAIL to {message['To']}: {message['Subject']}\n{rule}\n{body}\n"
            f"(saved under {self.copies.directory})\n{rule}\n"
        )
        sys.stdout.flush()

    async def close(self) -> None:
        pass

    async def delivers_utf8_local_parts(self) -> bool:
        return True


def transport_from_url(url: str, data_dir: Path, connections: int = 4) -> Transport:
    """The transport `REGIMEN_MAIL_URL` names; ValueError when it names none."""
    mail = parse_mail_url(url)
    if mail.scheme == "console":
        return ConsoleTransport(FileTransport(data_dir / "mail"))
    if mail.scheme == "file":
        assert mail.path is not None
        return FileTransport(mail.path)
    if mail.scheme == "postmark":
        assert mail.username is not None
        return PostmarkTransport(mail.username, endpoint=mail.query.get("endpoint"),
                                 stream=mail.query.get("stream"))
    if mail.scheme == "mailgun":
        assert mail.username is not None
        assert mail.host is not None
        return MailgunTransport(mail.username, mail.host, endpoint=mail.query.get("endpoint"),
                                region=mail.query.get("region"))
    assert mail.host is not None
    implicit_tls = mail.scheme == "smtps"
    return SmtpTransport(
        host=mail.host,
        port=mail.port or (465 if implicit_tls else 587),
        username=mail.username,
        password=mail.password,
        implicit_tls=implicit_tls,
        connections=connections,
    )
