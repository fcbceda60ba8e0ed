"""Building the mails: one folder of templates per mail, one typed context per template.

Nothing a visitor typed ever reaches a template except the address the mail is sent to, which
only appears in the To header: a public form must not become a way to mail strangers words.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path

import css_inline
import dkim
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from service.config import Settings
from service.content import Regimen
from service.links import Links
from service.models import MailKind, Subscriber, utcnow
from service.outgoing import Outgoing
from service.tokens import Purpose


@dataclass(frozen=True)
class ConfirmContext:
    author: str
    site_name: str
    site_url: str
    regimen_title: str
    confirm_url: str
    valid_days: int


@dataclass(frozen=True)
class RegimenContext:
    author: str
    site_name: str
    site_url: str
    regimen_title: str
    regimen_url: str
    first_exercise: str
    unsubscribe_url: str


MailContext = ConfirmContext | RegimenContext


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class Templates:
    def __init__(self, directory: Path) -> None:
        self.env = Environment(
            loader=FileSystemLoader(directory),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

    def render(self, name: str, context: MailContext) -> Rendered:
        values = dataclasses.asdict(context)
        subject = self.env.get_template(f"{name}/subject.txt").render(values)
        html = self.env.get_template(f"{name}/body.html").render(values)
        return Rendered(
            subject=" ".join(subject.split()),
            text=self.env.get_template(f"{name}/body.txt").render(values),
            html=css_inline.inline(html),
        )


class DkimSigner:
    """Signs the headers a receiver checks, including the unsubscribe headers, so that no one on
    the way can swap the link."""

    HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe",
               "List-Unsubscribe-Post", "MIME-Version", "Content-Type")

    def __init__(self, private_key: bytes, selector: str, domain: str) -> None:
        self.private_key = private_key
        self.selector = selector.encode()
        self.domain = domain.encode()

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        if not settings.dkim_private_key:
            return None
        return cls(settings.dkim_key_bytes(), settings.dkim_selector, settings.dkim_domain)

    def sign(self, data: bytes, message: EmailMessage) -> bytes:
        headers = [name.encode() for name in self.HEADERS if name in message]
        signature: bytes = dkim.sign(data, self.selector, self.domain, self.private_key,
                                     include_headers=headers)
        return signature


class Mailer:
    """Turns an outbox row's kind and reader into a finished message."""

    def __init__(self, settings: Settings, links: Links, regimen: Regimen) -> None:
        self.settings = settings
        self.links = links
        self.regimen = regimen
        self.templates = Templates(settings.email_templates_dir)
        self.dkim = DkimSigner.from_settings(settings)

    def compose(self, kind: MailKind, subscriber: Subscriber, key: str) -> Outgoing:
        if kind is MailKind.REGIMEN:
            context = self.regimen_context(subscriber)
            message = self._message(subscriber.email, self.templates.render("regimen", context),
                                    key)
            # RFC 8058: an https link the mailbox provider can POST to, no cookies, no page.
            message["List-Unsubscribe"] = f"<{context.unsubscribe_url}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        else:
            rendered = self.templates.render(kind.value, self.confirm_context(subscriber))
            message = self._message(subscriber.email, rendered, key)
        data = message.as_bytes(policy=policy.SMTP)
        if self.dkim is not None:
            data = self.dkim.sign(data, message) + data
        return Outgoing(message=message, data=data, sender=self.settings.mail_from_address,
                        recipient=subscriber.email)

    def confirm_context(self, subscriber: Subscriber) -> ConfirmContext:
        return ConfirmContext(
            author=self.regimen.author,
            site_name=self.regimen.site_name,
            site_url=self.regimen.site_url,
            regimen_title=self.regimen.title,
            confirm_url=self.links.for_subscriber(Purpose.CONFIRM, subscriber),
            valid_days=max(1, self.settings.confirm_max_age // 86400),
        )

    def regimen_context(self, subscriber: Subscriber) -> RegimenContext:
        return RegimenContext(
            author=self.regimen.author,
            site_name=self.regimen.site_name,
            site_url=self.regimen.site_url,
            regimen_title=self.regimen.title,
            regimen_url=self.links.for_subscriber(Purpose.REGIMEN, subscriber),
            first_exercise=self.regimen.exercises()[0].title,
            unsubscribe_url=self.links.for_subscriber(Purpose.UNSUBSCRIBE, subscriber),
        )

    def _message(self, to: str, rendered: Rendered, key: str) -> EmailMessage:
        name, address = parseaddr(self.settings.mail_from)
        domain = address.rpartition("@")[2]
        message = EmailMessage()
        message["From"] = Address(display_name=name, addr_spec=address)
        message["To"] = to
        message["Subject"] = rendered.subject
        message["Date"] = format_datetime(utcnow())
        message["Message-ID"] = f"<{key}@{domain}>"
        message.set_content(rendered.text)
        message.add_alternative(rendered.html, subtype="html")
        return message
