"""What each mail looks like to the reader and to their mailbox provider."""

from __future__ import annotations

import base64
import re
import subprocess
from email import message_from_bytes, policy
from email.message import EmailMessage

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from service.config import Settings
from service.models import MailKind, Subscriber, SubscriberStatus
from service.runtime import Runtime, build_runtime
from tests.helpers import URL_PATTERN


@pytest.fixture
def reader() -> Subscriber:
    return Subscriber(public_id="pub-123", email="reader@example.org", token_version=1,
                      status=SubscriberStatus.CONFIRMED)


def compose(runtime: Runtime, kind: MailKind, reader: Subscriber) -> EmailMessage:
    """Built, then parsed back from bytes, as the receiving server would see it."""
    built = runtime.mailer.compose(kind, reader, key="0123abcd")
    parsed = message_from_bytes(built.data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def parts(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None
    assert html is not None
    return text.get_content(), html.get_content()


@pytest.mark.parametrize("kind", list(MailKind))
def test_headers_every_mail_has(runtime: Runtime, reader: Subscriber, kind: MailKind) -> None:
    message = compose(runtime, kind, reader)
    assert message["From"] == "Lawrence Gold <regimen@regimen.test>"
    assert message["To"] == "reader@example.org"
    assert message["Message-ID"] == "<0123abcd@regimen.test>"
    assert message["Date"].datetime is not None
    assert message.get_content_type() == "multipart/alternative"
    text, html = parts(message)
    # The same links in both parts, whichever part the reader's client shows.
    text_links = set(URL_PATTERN.findall(text))
    html_links = set(re.findall(r'href="([^"]+)"', html))
    assert text_links == html_links
    assert "<style" not in html, "CSS must be inlined: many mail clients drop <style>"
    assert 'style="' in html


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


@pytest.mark.parametrize("kind", list(MailKind))
def test_dkim_signature_verifies_and_covers_the_unsubscribe_headers(
    signing_runtime: Runtime, reader: Subscriber, dkim_key: tuple[str, str], kind: MailKind,
) -> None:
    data = signing_runtime.mailer.compose(kind, reader, key="0123abcd").data

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mail2026._domainkey.regimen.test."
        return f"v=DKIM1; k=rsa; p={dkim_key[1]}".encode()

    assert dkim.verify(data, dnsfunc=dns)
    signature = message_from_bytes(data, policy=policy.default)["DKIM-Signature"]
    signed = {h.strip().lower() for h in re.search(r"h=([^;]+)", signature)[1].split(":")}
    expected = {"from", "to", "subject", "date", "message-id"}
    if kind is MailKind.REGIMEN:
        expected |= {"list-unsubscribe", "list-unsubscribe-post"}
    assert expected <= signed
    # Changing a signed header breaks the signature: it does protect them.
    assert not dkim.verify(data.replace(b"Subject: ", b"Subject: Re: ", 1), dnsfunc=dns)


SPAMASSASSIN_LIMIT = 0.5


@pytest.mark.parametrize("kind", list(MailKind))
def test_spamassassin_scores_every_mail_low(
    signing_runtime: Runtime, reader: Subscriber, kind: MailKind,
) -> None:
    data = signing_runtime.mailer.compose(kind, reader, key="0123abcd").data
    # -L: local tests only (no network); -t: report the score even for ham.
    result = subprocess.run(["spamassassin", "-L", "-t"], input=data, capture_output=True,
                            check=True, timeout=120)
    report = result.stdout.decode(errors="replace")
    status = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", report, flags=re.M)
    assert status is not None, report[:2000]
    score = float(status[1])
    assert score <= SPAMASSASSIN_LIMIT, report[report.find("Content analysis details"):]
