"""What each mail looks like to the reader and to their mailbox provider."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import NamedTuple

import dkim
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from service.core.content import load_content
from service.core.models import MailKind, Subscriber, SubscriberStatus
from service.core.settings import Settings, load_settings
from service.delivery.lesson_mail import sample_progress
from service.delivery.outgoing import Outgoing
from service.runtime import Runtime, build_runtime
from tests.helpers import (
    DEFAULT_REGIMEN,
    PROJECT_ROOT,
    REPORT,
    URL_PATTERN,
    free_port,
    settings_for,
    shipped_single_file,
)


@pytest.fixture
def settings(tmp_path: Path, smtp_port: int) -> Settings:
    """Composing a mail reads no database: these run once, not once per database (a file
    that is never opened stands in for one)."""
    return settings_for(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}", smtp_port)


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with build_runtime(settings) as built:
        yield built


@pytest.fixture
def reader() -> Subscriber:
    return Subscriber(public_id="pub-123", email="reader@example.org", regimen=DEFAULT_REGIMEN,
                      token_version=1, status=SubscriberStatus.CONFIRMED)


class Mail(NamedTuple):
    """One of the mails the service sends: a kind, and for a lesson mail, the lesson."""

    kind: MailKind
    lesson: str | None = None

    def __str__(self) -> str:
        return f"{self.kind.value} {self.lesson}" if self.lesson else self.kind.value

    def of(self, runtime: Runtime, reader: Subscriber, key: str = "0123abcd") -> Outgoing:
        return runtime.mailer.compose(self.kind, reader, key, self.lesson,
                                      sample_progress(runtime.regimen))


# Every mail: each kind, and each lesson of the shipped example.
MAILS = [*(Mail(kind) for kind in MailKind if kind is not MailKind.LESSON),
         *(Mail(MailKind.LESSON, lesson.key)
           for lesson in load_content(PROJECT_ROOT / "content").default.lessons)]


def compose(runtime: Runtime, mail: Mail | MailKind, reader: Subscriber) -> EmailMessage:
    """Built, then parsed back from bytes, as the receiving server would see it."""
    built = (mail if isinstance(mail, Mail) else Mail(mail)).of(runtime, reader)
    parsed = message_from_bytes(built.data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def parts(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None
    assert html is not None
    return text.get_content(), html.get_content()


@pytest.mark.parametrize("mail", MAILS, ids=str)
def test_headers_every_mail_has(runtime: Runtime, reader: Subscriber, mail: Mail) -> None:
    message = compose(runtime, mail, reader)
    assert message["From"] == "Lawrence Gold <regimen@regimen.test>"
    assert message["To"] == "reader@example.org"
    assert message["Message-ID"] == "<0123abcd@regimen.test>"
    assert message["Date"].datetime is not None
    assert message.get_content_type() == "multipart/alternative"
    text, html = parts(message)
    # The same links in both parts, whichever part the reader's client shows, and each once
    # per part: filters count a mail's links (rspamd's URI_COUNT_ODD).
    text_links = URL_PATTERN.findall(text)
    html_links = re.findall(r'href="([^"]+)"', html)
    assert sorted(text_links) == sorted(set(text_links))
    assert sorted(html_links) == sorted(set(html_links))
    assert set(text_links) == set(html_links)
    assert URL_PATTERN.findall(re.sub(r'href="[^"]+"', "", html)) == [], \
        "a link's address shown as text in HTML counts as one more link"
    assert "<style" not in html, "CSS must be inlined: many mail clients drop <style>"
    assert 'style="' in html


@pytest.mark.parametrize("mail", MAILS, ids=str)
def test_no_subject_ends_with_a_question_mark(runtime: Runtime, reader: Subscriber,
                                              mail: Mail) -> None:
    # rspamd's SUBJECT_ENDS_QUESTION: a spam trait.
    assert not str(compose(runtime, mail, reader)["Subject"]).rstrip().endswith("?")


def test_confirmation_subject_says_who_asks_and_why(runtime: Runtime, reader: Subscriber) -> None:
    subject = str(compose(runtime, MailKind.CONFIRM, reader)["Subject"])
    assert "Lawrence Gold" in subject
    assert "confirm" in subject.lower()
    assert "regimen" in subject


@pytest.mark.parametrize(("after", "wording"), [
    (timedelta(days=1), "a day ago"),
    (timedelta(days=2), "2 days ago"),
    (timedelta(hours=3), "3 hours ago"),
    (timedelta(hours=1), "an hour ago"),
    (timedelta(hours=36), "36 hours ago"),
    (timedelta(minutes=90), "90 minutes ago"),
])
def test_the_reminder_says_when_the_reader_asked(
    settings: Settings, reader: Subscriber, after: timedelta, wording: str,
) -> None:
    runtime = build_runtime(settings.model_copy(update={"reminder_after": after}))
    reader.status = SubscriberStatus.PENDING
    for part in parts(compose(runtime, MailKind.REMINDER, reader)):
        assert wording in part
        assert "yesterday" not in part.lower()


@pytest.mark.parametrize(("mail_from", "base_url", "domain"), [
    # The default sender is no real domain: rspamd's MID_RHS_NOT_FQDN. The site's host is.
    ("Free Regimen <regimen@localhost>", "https://regimen.example.org", "regimen.example.org"),
    ("Lawrence Gold <regimen@mailhost>", "https://regimen.example.org", "regimen.example.org"),
    ("Lawrence Gold <regimen@lab.invalid>", "https://regimen.example.org",
     "regimen.example.org"),
    # A real sender domain is the natural right-hand side.
    ("Lawrence Gold <news@somatics.example.com>", "https://regimen.example.org",
     "somatics.example.com"),
])
def test_message_id_names_a_real_domain(settings: Settings, reader: Subscriber, mail_from: str,
                                        base_url: str, domain: str) -> None:
    runtime = build_runtime(settings.model_copy(update={"mail_from": mail_from,
                                                        "base_url": base_url}))
    for mail in MAILS:
        assert compose(runtime, mail, reader)["Message-ID"] == f"<0123abcd@{domain}>"


LONG_TITLE = "Self-relief regimen for sacro-iliac joint pain, lower back pain and stiff hips"


@pytest.mark.parametrize(("mail_from", "title"), [
    ("Lawrence Gold <regimen@regimen.test>", LONG_TITLE),
    ("Lorenz Göldner-Übermann vom Zentrum für Somatische Bildung <regimen@regimen.test>",
     "Selbsthilfe-Übungen für das Iliosakralgelenk, den unteren Rücken und steife Hüften"),
])
@pytest.mark.parametrize("mail", MAILS, ids=str)
def test_header_lines_are_folded_to_78(settings: Settings, reader: Subscriber, mail_from: str,
                                       title: str, mail: Mail, tmp_path: Path) -> None:
    # A one-file site whose one regimen keeps the shipped key (the file's name).
    content = tmp_path / f"{DEFAULT_REGIMEN}.yaml"
    content.write_text(shipped_single_file().replace(
        'title: "Self-relief regimen for sacro-iliac joint pain"', f'title: "{title}"', 1))
    runtime = build_runtime(settings.model_copy(update={"mail_from": mail_from,
                                                        "content_path": content}))
    assert runtime.regimen.title == title
    data = mail.of(runtime, reader).data
    head = data.partition(b"\r\n\r\n")[0]
    for line in head.split(b"\r\n"):
        # RFC 5322 2.1.1: 78 where it can be; only a word with no space to fold at (a long
        # unsubscribe link) may make a longer line, alone after its header's name.
        word = line.partition(b": ")[2] if line[:1] != b" " else line.strip()
        assert len(line) <= 78 or b" " not in word, line
    message = message_from_bytes(data, policy=policy.default)
    if mail.kind is MailKind.REGIMEN:
        assert re.fullmatch(r"<https://regimen\.test/unsubscribe/[^>]+>",
                            message["List-Unsubscribe"])
    if mail.kind is MailKind.LESSON:
        assert re.fullmatch(r"<https://regimen\.test/lessons/stop/[^>]+>",
                            message["List-Unsubscribe"])
    assert message["From"].addresses[0].display_name == mail_from.partition(" <")[0]
    if mail.kind is MailKind.REGIMEN:
        assert str(message["Subject"]) == f"Your free regimen: {title}"


@pytest.mark.parametrize("mail", MAILS, ids=str)
def test_replies_reach_the_author_when_reply_to_is_set(settings: Settings, reader: Subscriber,
                                                       mail: Mail) -> None:
    assert "Reply-To" not in compose(build_runtime(settings), mail, reader)
    author = settings.model_copy(update={"reply_to": "Lawrence Gold <lawrence@regimen.test>"})
    message = compose(build_runtime(author), mail, reader)
    assert message["Reply-To"] == "Lawrence Gold <lawrence@regimen.test>"


def test_confirmation_says_who_why_and_what_if_ignored(
    runtime: Runtime, reader: Subscriber,
) -> None:
    message = compose(runtime, MailKind.CONFIRM, reader)
    text, html = parts(message)
    for part in (text, html):
        assert "Lawrence Gold" in part
        assert "Yes, send me the regimen" in part
        assert "ignore this email" in part
        assert "/confirm/" in part
    assert "List-Unsubscribe" not in message


def test_regimen_mail_has_link_advice_and_one_click_unsubscribe(
    runtime: Runtime, reader: Subscriber,
) -> None:
    message = compose(runtime, MailKind.REGIMEN, reader)
    text, html = parts(message)
    for part in (text, html):
        assert "https://regimen.test/r/" in part
        assert "Read the entire regimen through, once" in part
        assert "The gentle back exercise" in part
        assert "Unit 1" in part
        assert "Unsubscribe" in part
    [unsubscribe] = re.findall(r"<(https://regimen\.test/unsubscribe/[^>]+)>",
                               message["List-Unsubscribe"])
    assert unsubscribe in text
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.fixture(scope="module")
def dkim_key() -> tuple[str, str]:
    """A fresh RSA key: (private PEM, the public key as it would be published in DNS)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(public).decode()


@pytest.fixture
def signing_runtime(settings: Settings, dkim_key: tuple[str, str]) -> Runtime:
    signed = settings.model_copy(update={"dkim_private_key": dkim_key[0],
                                         "dkim_selector": "mail2026",
                                         "dkim_domain": "regimen.test"})
    return build_runtime(signed)


@pytest.mark.parametrize("mail", MAILS, ids=str)
def test_dkim_signature_verifies_and_covers_the_unsubscribe_headers(
    signing_runtime: Runtime, reader: Subscriber, dkim_key: tuple[str, str], mail: Mail,
) -> None:
    data = mail.of(signing_runtime, reader).data

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mail2026._domainkey.regimen.test."
        return f"v=DKIM1; k=rsa; p={dkim_key[1]}".encode()

    assert dkim.verify(data, dnsfunc=dns)
    signature = message_from_bytes(data, policy=policy.default)["DKIM-Signature"]
    signed = {h.strip().lower() for h in re.search(r"h=([^;]+)", signature)[1].split(":")}
    expected = {"from", "to", "subject", "date", "message-id"}
    if mail.kind in (MailKind.REGIMEN, MailKind.LESSON):
        expected |= {"list-unsubscribe", "list-unsubscribe-post"}
    assert expected <= signed
    # Changing a signed header breaks the signature: it does protect them.
    assert not dkim.verify(data.replace(b"Subject: ", b"Subject: Re: ", 1), dnsfunc=dns)


OVERSIGNED = ["From", "To", "Subject", "Date", "Message-ID", "Reply-To", "List-Unsubscribe",
              "List-Unsubscribe-Post", "MIME-Version", "Content-Type"]


@pytest.mark.parametrize("mail", MAILS, ids=str)
def test_dkim_signature_breaks_when_a_signed_header_is_added(
    signing_runtime: Runtime, reader: Subscriber, dkim_key: tuple[str, str], mail: Mail,
) -> None:
    data = mail.of(signing_runtime, reader).data

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return f"v=DKIM1; k=rsa; p={dkim_key[1]}".encode()

    assert dkim.verify(data, dnsfunc=dns)
    head, _, body = data.partition(b"\r\n\r\n")
    for name in OVERSIGNED:
        added = f"{name}: <https://evil.example/x>".encode() + b"\r\n"
        # On top, where relays add headers (a verifier reads a header's instances bottom up,
        # so without oversigning the added one is simply not looked at), and at the bottom.
        for forged in (added + data, head + b"\r\n" + added.rstrip() + b"\r\n\r\n" + body):
            assert not dkim.verify(forged, dnsfunc=dns), f"a second {name} kept it valid"


def test_a_non_ascii_local_part_is_written_in_utf8(
    signing_runtime: Runtime, dkim_key: tuple[str, str],
) -> None:
    jorg = Subscriber(public_id="pub-456", email="jörg@exämple.com", regimen=DEFAULT_REGIMEN,
                      token_version=1, status=SubscriberStatus.PENDING)
    outgoing = signing_runtime.mailer.compose(MailKind.CONFIRM, jorg, key="0123abcd")
    # The domain as IDNA (what every server takes), the local part as typed: in UTF-8, the
    # only form it has (RFC 6532; the transport sends it with SMTPUTF8).
    assert outgoing.recipient == "jörg@xn--exmple-cua.com"
    assert "To: jörg@xn--exmple-cua.com\r\n".encode() in outgoing.data
    message = message_from_bytes(outgoing.data, policy=policy.default)
    assert str(message["To"]) == "jörg@xn--exmple-cua.com"
    # Everything but the address is still ASCII.
    assert outgoing.data.replace("jörg".encode(), b"").isascii()

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return f"v=DKIM1; k=rsa; p={dkim_key[1]}".encode()

    assert dkim.verify(outgoing.data, dnsfunc=dns)


SPAMASSASSIN_LIMIT = 0.5


@pytest.mark.parametrize("mail", MAILS, ids=str)
def test_spamassassin_scores_every_mail_low(
    signing_runtime: Runtime, reader: Subscriber, mail: Mail,
) -> None:
    data = mail.of(signing_runtime, reader).data
    # -L: local tests only (no network); -t: report the score even for ham.
    result = subprocess.run(["spamassassin", "-L", "-t"], input=data, capture_output=True,
                            check=True, timeout=120)
    report = result.stdout.decode(errors="replace")
    status = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", report, flags=re.M)
    assert status is not None, report[:2000]
    score = float(status[1])
    REPORT.append(f"SpamAssassin {mail}: {score}")
    assert score <= SPAMASSASSIN_LIMIT, report[report.find("Content analysis details"):]


# rspamd scores a mail that comes with its connection: client IP, host name, HELO, and DNS
# answers about all of them. Offline there is neither, and these symbols then describe the test
# bench, not the mail; every other symbol counts.
RSPAMD_NOT_THE_MAILS_DOING = {
    "HFILTER_HOSTNAME_UNKNOWN": "the sending host's name: no connection behind the scan",
    "RDNS_NONE": "the sending host's reverse DNS",
    "RDNS_DNSFAIL": "the sending host's reverse DNS",
    "HFILTER_FROMHOST_NORES_A_OR_MX": "a DNS lookup of the sender's domain",
    "HFILTER_FROMHOST_NORESOLVE_MX": "a DNS lookup of the sender's domain",
    "HFILTER_MID_NORES_A_OR_MX": "a DNS lookup of the Message-ID's domain",
    "HFILTER_MID_NORESOLVE_MX": "a DNS lookup of the Message-ID's domain",
}


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config,
           ) -> Iterator[str]:
    """Debian's rspamd (3.x) scanning on a free loopback port, offline, for this module: its
    own configuration directory on top of the packaged one, only the scanning worker, and a
    resolver that points at a port where nothing answers, so that no check reaches the network
    and the DNS ones fail at once. `rspamc` and `rspamadm` cannot scan without a daemon."""
    binary = shutil.which("rspamd")
    assert binary is not None, "rspamd is not installed: .ci/run installs Debian's package"
    home = tmp_path_factory.mktemp("rspamd")
    # The compiled TLD list and regular expressions: the first start builds them (about 8 s),
    # later ones load them (under 1 s). pytest's cache keeps them between runs (about 90 MB,
    # ignored by git and Docker, removed by `make clean`).
    cache = pytestconfig.cache.mkdir("rspamd") if pytestconfig.cache else home / "db"
    cache.mkdir(exist_ok=True)
    port = free_port()
    for name, text in {
        "local.d/worker-normal.inc": f'bind_socket = "127.0.0.1:{port}";\ncount = 1;\n',
        "override.d/worker-controller.inc": "enabled = false;\n",
        "override.d/worker-proxy.inc": "enabled = false;\n",
        "override.d/worker-fuzzy.inc": "enabled = false;\n",
        # Fuzzy hashes are checked against rspamd.com's servers by IP, past the resolver.
        "override.d/fuzzy_check.conf": "enabled = false;\n",
        "local.d/options.inc": f'dns {{ nameserver = ["127.0.0.1:{free_port()}"]; '
                               f"timeout = 0.1s; retransmits = 0; }}\n",
        "override.d/logging.inc": 'type = "console";\nlevel = "error";\n',
    }.items():
        (home / name).parent.mkdir(exist_ok=True)
        (home / name).write_text(text)
    command = [binary, "-f", "-c", "/etc/rspamd/rspamd.conf", f"--var=LOCAL_CONFDIR={home}",
               f"--var=DBDIR={cache}", f"--var=RUNDIR={home}", f"--var=LOGDIR={home}"]
    if os.geteuid() == 0:
        command.append("-i")  # CI runs as root; rspamd wants to be told that is fine
    url = f"http://127.0.0.1:{port}"
    with (home / "rspamd.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (home / "rspamd.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "rspamd did not start within 120 s"
            try:
                if httpx.get(f"{url}/ping", timeout=1).text.strip() == "pong":
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def deployed_runtime(tmp_path_factory: pytest.TempPathFactory,
                     dkim_key: tuple[str, str]) -> Runtime:
    """Mail as a real deployment sends it: public domains (regimen.test links are "suspicious"
    to rspamd, as any unknown top-level domain is), DKIM-signed."""
    return build_runtime(load_settings(
        _env_file=None,
        data_dir=tmp_path_factory.mktemp("deployed"),
        base_url="https://regimen.example.com",
        secret_keys=["test-key-" + "x" * 40],
        mail_url="file:///dev/null",
        mail_from="Lawrence Gold <regimen@example.com>",
        content_path=PROJECT_ROOT / "content",
        dkim_private_key=dkim_key[0], dkim_selector="mail2026", dkim_domain="example.com",
    ))


@pytest.mark.parametrize("mail", MAILS, ids=str)
def test_rspamd_scores_every_mail_at_most_zero(
    rspamd: str, deployed_runtime: Runtime, mail: Mail,
) -> None:
    reader = Subscriber(public_id="Zx3k9QpL2mN8vB4cR7tY1w", email="reader@example.org",
                        regimen=DEFAULT_REGIMEN, token_version=1,
                        status=SubscriberStatus.PENDING)
    if mail.kind in (MailKind.REGIMEN, MailKind.LESSON):
        reader.status = SubscriberStatus.CONFIRMED
    outgoing = mail.of(deployed_runtime, reader, key="5f0e2c9a8b7d4e1f")
    answer = httpx.post(f"{rspamd}/checkv2", content=outgoing.data, timeout=30,
                        headers={"From": outgoing.sender, "Rcpt": outgoing.recipient}).json()
    symbols = {name: symbol["score"] for name, symbol in answer["symbols"].items()}
    counted = {name: score for name, score in symbols.items()
               if name not in RSPAMD_NOT_THE_MAILS_DOING}
    total = round(sum(counted.values()), 2)
    REPORT.append(f"rspamd {mail}: {total} counted, {answer['score']:.2f} in all; "
                  f"{sorted((n, s) for n, s in symbols.items() if s)}")
    assert total <= 0, sorted(counted.items(), key=lambda item: -item[1])


@pytest.mark.parametrize("mail", MAILS, ids=str)
def test_nothing_the_reader_typed_is_in_the_mail_but_the_address_in_to(
    runtime: Runtime, mail: Mail,
) -> None:
    """A public form must not become a way to mail strangers words: the only thing a visitor
    typed that reaches a mail, lessons included, is the address, in To."""
    typed = Subscriber(public_id="pub-789", email="words.of.a.stranger@example.org",
                       regimen=DEFAULT_REGIMEN, token_version=1,
                       status=SubscriberStatus.CONFIRMED)
    data = mail.of(runtime, typed).data
    assert data.count(b"words.of.a.stranger") == 1
    assert b"To: words.of.a.stranger@example.org\r\n" in data
