"""What each mail looks like to the reader and to their mailbox provider."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from service.models import MailKind, Subscriber, SubscriberStatus
from service.runtime import Runtime
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
