"""Building the mails: one folder of templates per mail, one typed context per template.

Nothing a visitor typed ever reaches a template except the address the mail is sent to, which
only appears in the To header: a public form must not become a way to mail strangers words.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from email.utils import format_datetime, parseaddr
from pathlib import Path
from urllib.parse import urlsplit

import css_inline
from email_validator import EmailNotValidError, validate_email
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from service.core.content import Regimen
from service.core.content_store import ContentStore
from service.core.lessons import Lesson, promise
from service.core.models import MailKind, Subscriber, utcnow
from service.core.settings import Settings
from service.delivery import mime
from service.delivery.dkim import DkimSigner
from service.delivery.lesson_mail import for_reader
from service.delivery.outgoing import Outgoing, PermanentFailure
from service.readers.links import Links
from service.readers.progress import standing
from service.readers.tokens import Purpose


@dataclass(frozen=True)
class ConfirmContext:
    author: str
    site_name: str
    site_url: str
    regimen_title: str
    confirm_url: str
    valid_days: int
    # The regimen's promise of lessons (service.core.lessons.promise); empty when it has none.
    lessons_promise: str


@dataclass(frozen=True)
class ReminderContext(ConfirmContext):
    asked_ago: str  # "a day ago": REGIMEN_REMINDER_AFTER in words


@dataclass(frozen=True)
class RegimenContext:
    author: str
    site_name: str
    site_url: str
    regimen_title: str
    regimen_url: str
    first_exercise: str
    unsubscribe_url: str
    erase_url: str
    # For a reader who agreed to lessons: what the promise said; empty otherwise.
    lessons_promise: str


@dataclass(frozen=True)
class LessonContext:
    author: str
    site_name: str
    site_url: str
    regimen_title: str
    subject: str
    # The lesson's words for this reader (service.delivery.lesson_mail), HTML and text.
    content_html: Markup
    content_text: str
    stop_lessons_url: str
    unsubscribe_url: str
    erase_url: str


MailContext = ConfirmContext | ReminderContext | RegimenContext | LessonContext


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Prepared:
    """A mail as every reader gets it, its reader's links left as slots: the Subject header's
    value and the text and HTML parts, encoded (service.delivery.mime.PartTemplate)."""

    subject: str
    parts: tuple[mime.PartTemplate, mime.PartTemplate]


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
        values = {f.name: getattr(context, f.name) for f in dataclasses.fields(context)}
        subject = self.env.get_template(f"{name}/subject.txt").render(values)
        html = self.env.get_template(f"{name}/body.html").render(values)
        return Rendered(
            subject=" ".join(subject.split()),
            text=self.env.get_template(f"{name}/body.txt").render(values),
            html=css_inline.inline(html),
        )


class Mailer:
    """Turns an outbox row's kind and reader into a finished message."""

    def __init__(self, settings: Settings, links: Links, content: ContentStore) -> None:
        self.settings = settings
        self.links = links
        self.content = content
        self.templates = Templates(settings.email_templates_dir)
        self.dkim = DkimSigner.from_settings(settings)
        name, address = parseaddr(settings.mail_from)
        self._from = mime.mailbox(name, address)
        self._sender = address
        reply_name, reply_address = parseaddr(settings.reply_to)
        self._reply_to = mime.mailbox(reply_name, reply_address) if reply_address else None
        self._domain = message_id_domain(address.rpartition("@")[2], settings.base_url)
        # Per regimen key and kind (and for a lesson: its key and the reader's standing, and
        # for the regimen mail: whether lessons follow), with the regimen it was made from: an
        # edited regimen is a new object, and is rendered anew.
        self._cache: dict[tuple[object, ...], tuple[Regimen, Prepared]] = {}

    def regimen_of(self, subscriber: Subscriber) -> Regimen | None:
        """The subscription's regimen as served now; None once the author removed it."""
        return self.content.catalog.get(subscriber.regimen)

    def compose(self, kind: MailKind, subscriber: Subscriber, key: str,
                lesson: str | None = None, done: frozenset[str] = frozenset()) -> Outgoing:
        """The finished message; KeyError when the subscription's regimen (or for a lesson
        mail, its `lesson`) is gone (the worker asks `regimen_of` and `lesson_of` first).
        `done`: the steps the reader marked done, which a lesson speaks of."""
        regimen = self.regimen_of(subscriber)
        if regimen is None:
            raise KeyError(subscriber.regimen)
        links = self.links.each_for_subscriber(LINKS[kind], subscriber)
        if kind is MailKind.LESSON:
            found = regimen.lesson(lesson or "")
            if found is None:
                raise KeyError(lesson)
            prepared = self._lesson(regimen, found, done)
        else:
            prepared = self._rendered(
                regimen, kind, lessons=subscriber.lessons_consented_at is not None)
        recipient = wire_address(subscriber.email)
        headers = [
            ("From", self._from),
            # A non-ASCII local part has no ASCII form: it stays UTF-8 (RFC 6532), and the
            # transport sends the mail with SMTPUTF8 or not at all.
            ("To", recipient),
            ("Subject", prepared.subject),
            ("Date", format_datetime(utcnow())),
            ("Message-ID", f"<{key}@{self._domain}>"),
        ]
        if self._reply_to is not None:
            headers.append(("Reply-To", self._reply_to))
        if kind in LIST_UNSUBSCRIBE:
            # RFC 8058: an https link the mailbox provider can POST to, no cookies, no page.
            # A lesson's stops the lessons only: the reader still wants their regimen.
            headers += [("List-Unsubscribe", f"<{links[LIST_UNSUBSCRIBE[kind]]}>"),
                        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
        # Signed links are URL-safe: nothing in them needs escaping in HTML.
        data = mime.multipart_alternative(headers, prepared.parts, links, boundary=f"=_{key}")
        if self.dkim is not None:
            present = [name for name, _ in headers] + ["MIME-Version", "Content-Type"]
            data = self.dkim.sign(data, present) + data
        return Outgoing(data=data, sender=self._sender, recipient=recipient)

    def _rendered(self, regimen: Regimen, kind: MailKind,
                  lessons: bool = False) -> Prepared:
        """Each regimen's kind is rendered (and its CSS inlined) once, with placeholders where
        the reader's own links go: per mail, only the links are filled in. `lessons`: whether
        the reader agreed to lessons (the regimen mail's footer says what follows)."""
        return self._cached((regimen.key, kind, lessons), regimen, kind,
                            lambda links: self._context(kind, regimen, links, lessons))

    def _lesson(self, regimen: Regimen, lesson: Lesson,
                done: frozenset[str]) -> Prepared:
        """A lesson is rendered once per reader's standing it speaks of (the next exercise and
        how many are done: a few dozen variants at most), links filled in per mail."""
        now = standing(regimen, done)
        following = now.continue_with.slug if now.continue_with is not None else None
        count = sum(each.done for each in now.units)

        def context(links: dict[str, str]) -> MailContext:
            words = for_reader(lesson, regimen, now, links["regimen_url"])
            return LessonContext(**self._common(regimen), subject=lesson.subject,
                                 content_html=Markup(words.html), content_text=words.text,
                                 stop_lessons_url=links["stop_lessons_url"],
                                 unsubscribe_url=links["unsubscribe_url"],
                                 erase_url=links["erase_url"])

        return self._cached((regimen.key, MailKind.LESSON, lesson.key, following, count),
                            regimen, MailKind.LESSON, context)

    def _cached(self, key: tuple[object, ...], regimen: Regimen, kind: MailKind,
                context: Callable[[dict[str, str]], MailContext]) -> Prepared:
        cached = self._cache.get(key)
        if cached is None or cached[0] is not regimen:
            slots = {name: _placeholder(name) for name in LINKS[kind]}
            rendered = self.templates.render(kind.value, context(slots))
            cached = (regimen, Prepared(mime.header_value(rendered.subject), (
                mime.PartTemplate.of("plain", rendered.text, slots),
                mime.PartTemplate.of("html", rendered.html, slots))))
            self._cache[key] = cached
        return cached[1]

    @staticmethod
    def _common(regimen: Regimen) -> dict[str, str]:
        return {"author": regimen.author, "site_name": regimen.site_name,
                "site_url": regimen.site_url, "regimen_title": regimen.title}

    def _context(self, kind: MailKind, regimen: Regimen, links: dict[str, str],
                 lessons: bool) -> MailContext:
        common = self._common(regimen)
        if kind is MailKind.REGIMEN:
            return RegimenContext(**common, first_exercise=regimen.exercises()[0].title,
                                  regimen_url=links["regimen_url"],
                                  unsubscribe_url=links["unsubscribe_url"],
                                  erase_url=links["erase_url"],
                                  lessons_promise=promise(regimen.lessons) if lessons else "")
        valid_days = max(1, self.settings.confirm_max_age.days)
        if kind is MailKind.REMINDER:
            return ReminderContext(**common, confirm_url=links["confirm_url"],
                                   valid_days=valid_days, lessons_promise=promise(regimen.lessons),
                                   asked_ago=time_ago(self.settings.reminder_after))
        return ConfirmContext(**common, confirm_url=links["confirm_url"], valid_days=valid_days,
                              lessons_promise=promise(regimen.lessons))


# The links of each mail that belong to one reader, and the token purpose of each.
LINKS: dict[MailKind, dict[str, Purpose]] = {
    MailKind.CONFIRM: {"confirm_url": Purpose.CONFIRM},
    MailKind.REMINDER: {"confirm_url": Purpose.CONFIRM},
    MailKind.REGIMEN: {"regimen_url": Purpose.REGIMEN, "unsubscribe_url": Purpose.UNSUBSCRIBE,
                       "erase_url": Purpose.ERASE},
    MailKind.LESSON: {"regimen_url": Purpose.REGIMEN, "stop_lessons_url": Purpose.LESSONS,
                      "unsubscribe_url": Purpose.UNSUBSCRIBE, "erase_url": Purpose.ERASE},
}
# The link of each mail that one-click unsubscribe (List-Unsubscribe) posts to.
LIST_UNSUBSCRIBE = {MailKind.REGIMEN: "unsubscribe_url", MailKind.LESSON: "stop_lessons_url"}


def _placeholder(name: str) -> str:
    # Letters only: unchanged by HTML escaping, CSS inlining and line wrapping alike.
    return f"REGIMENLINK{name.replace('_', '').upper()}REGIMENLINK"


def time_ago(delta: timedelta) -> str:
    """`delta` in words, in the largest unit that says it exactly ("a day ago", "36 hours ago"):
    the reminder goes out once this long has passed since the signup, or a little later."""
    minutes = round(delta.total_seconds() / 60)
    for unit, size in (("day", 24 * 60), ("hour", 60), ("minute", 1)):
        if minutes >= size and minutes % size == 0:
            count = minutes // size
            if count == 1:
                return f"{'an' if unit == 'hour' else 'a'} {unit} ago"
            return f"{count} {unit}s ago"
    return "a moment ago"


# Top-level names that no public host has (RFC 2606, 6761, 6762, 8375 and private habits):
# rspamd scores a Message-ID ending in one (MID_RHS_NOT_FQDN), as in the default sender's
# regimen@localhost.
NOT_PUBLIC = {"localhost", "local", "localdomain", "test", "invalid", "example", "internal",
              "lan", "home", "corp", "onion", "arpa"}


def is_public_domain(domain: str) -> bool:
    labels = domain.lower().rstrip(".").split(".")
    return len(labels) > 1 and labels[-1] not in NOT_PUBLIC and not labels[-1].isdigit()


def message_id_domain(sender_domain: str, base_url: str) -> str:
    """The sender's domain, or the site's host when only that is a public one."""
    if is_public_domain(sender_domain):
        return sender_domain
    host = urlsplit(base_url).hostname or ""
    return host if is_public_domain(host) else sender_domain


def wire_address(address: str) -> str:
    """The address as it goes on the envelope and in To: the domain in its ASCII (IDNA) form,
    which every server takes; the local part as the reader typed it."""
    local, _, domain = address.rpartition("@")
    if domain.isascii():
        return address
    try:
        # The form checks addresses with email_validator: the same IDNA rules (2008, UTS 46).
        ascii_domain = validate_email(address, check_deliverability=False).ascii_domain
    except EmailNotValidError as exc:
        raise PermanentFailure(f"cannot write {address} for sending: {exc}") from exc
    return f"{local}@{ascii_domain}"
