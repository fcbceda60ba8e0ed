"""The HTTP mail providers against a local server that speaks their documented APIs: Postmark's
POST /email and Mailgun's POST /v3/DOMAIN/messages.mime, with their authentication and answers.

The server checks each request the way the provider does and answers the documented success;
a test can script another answer, which the server only gives to a request it found valid."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from python_multipart import parse_form

from service.delivery.outgoing import (
    Outgoing,
    PermanentFailure,
    RecipientRejected,
    TemporaryFailure,
)
from service.delivery.providers import MailgunTransport, PostmarkTransport
from service.delivery.transports import transport_from_url
from tests.helpers import free_port

TOKEN = "0c5a7b2e-postmark-server-token"
KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
DOMAIN = "mg.example.org"
SENDER = "regimen@regimen.example.org"
INACTIVE = "gone@example.org"
TEXT = "Your regimen: https://regimen.example.org/r/t0k3n\n"
HTML = '<p>Your <a href="https://regimen.example.org/r/t0k3n">regimen</a></p>\n'
UNSUBSCRIBE = "<https://regimen.example.org/unsubscribe/t0k3n>"
# Stands in for a DKIM signature, put in front of the message as service.delivery.messages does.
SIGNATURE = b"DKIM-Signature: v=1; a=rsa-sha256; d=regimen.example.org; s=mail; b=c2lnbmVk\r\n"


def outgoing(recipient: str = "reader@example.org", sender: str = SENDER) -> Outgoing:
    message = EmailMessage()
    message["From"] = f"Lawrence Gold <{sender}>"
    message["To"] = recipient
    message["Subject"] = "Your regimen"
    message["Date"] = "Wed, 01 May 2024 09:00:00 +0000"
    message["Message-ID"] = "<20240501.k3y@regimen.example.org>"
    message["List-Unsubscribe"] = UNSUBSCRIBE
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(TEXT)
    message.add_alternative(HTML, subtype="html")
    return Outgoing(data=SIGNATURE + message.as_bytes(policy=policy.SMTP), sender=sender,
                    recipient=recipient)


@dataclass
class Received:
    path: str
    headers: Message
    body: bytes
    # Mailgun's multipart form: field name → (content type, bytes).
    form: dict[str, tuple[str | None, bytes]] = field(default_factory=dict)


class Provider(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ProviderHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.received: list[Received] = []
        self.scripted: tuple[int, Any] | None = None


class ProviderHandler(BaseHTTPRequestHandler):
    server: Provider

    def do_POST(self) -> None:
        received = Received(self.path, self.headers,
                            self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.server.received.append(received)
        if self.path == "/email":
            status, answer = self.postmark(received)
        elif self.path == f"/v3/{DOMAIN}/messages.mime":
            status, answer = self.mailgun(received)
        else:
            status, answer = 404, {"message": "Not Found"}
        if status == 200 and self.server.scripted is not None:
            status, answer = self.server.scripted
        body = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type",
                         "text/plain" if isinstance(answer, str) else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def postmark(self, received: Received) -> tuple[int, Any]:
        if self.headers.get("X-Postmark-Server-Token") != TOKEN:
            return 401, {"ErrorCode": 10, "Message": "Bad or missing API token"}
        if self.headers.get("Accept") != "application/json" \
                or self.headers.get_content_type() != "application/json":
            return 422, {"ErrorCode": 300, "Message": "Invalid email request: send JSON"}
        payload = json.loads(received.body)
        fields = {"From", "To", "Subject", "TextBody", "HtmlBody", "MessageStream", "Headers"}
        if missing := fields - payload.keys():
            return 422, {"ErrorCode": 300, "Message": f"Invalid email request: no {missing}"}
        if not all(isinstance(h, dict) and h.keys() == {"Name", "Value"}
                   for h in payload["Headers"]):
            return 422, {"ErrorCode": 300, "Message": "Invalid email request: bad Headers"}
        if f"<{SENDER}>" not in payload["From"]:
            return 422, {"ErrorCode": 400, "Message": "Sender signature not found"}
        if payload["To"] == INACTIVE:
            return 422, {"ErrorCode": 406, "Message": "You tried to send to recipient(s) that "
                         "have been marked as inactive. Found inactive addresses: "
                         f"{INACTIVE}. Inactive recipients are ones that have generated a hard "
                         "bounce, a spam complaint, or a manual suppression."}
        return 200, {"To": payload["To"], "SubmittedAt": "2024-05-01T09:00:00.1234567Z",
                     "MessageID": "b7bc2f4a-e38e-4336-af7d-e6c392c2f817", "ErrorCode": 0,
                     "Message": "OK"}

    def mailgun(self, received: Received) -> tuple[int, Any]:
        expected = "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            return 401, "Forbidden"
        if self.headers.get_content_type() != "multipart/form-data":
            return 400, {"message": "expected multipart/form-data"}

        def keep(part: Any) -> None:
            if hasattr(part, "file_object"):
                part.file_object.seek(0)
                received.form[part.field_name.decode()] = (part.content_type,
                                                           part.file_object.read())
            else:
                received.form[part.field_name.decode()] = (None, part.value)
            part.close()

        parse_form({"Content-Type": self.headers["Content-Type"].encode(),
                    "Content-Length": str(len(received.body)).encode()},
                   io.BytesIO(received.body), keep, keep)
        for name in ("to", "message"):
            if name not in received.form:
                return 400, {"message": f"{name} parameter is missing"}
        return 200, {"id": f"<20240501090000.1.ABCDEF@{DOMAIN}>",
                     "message": "Queued. Thank you."}

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test output is for the tests, not for an access log


@pytest.fixture
def provider() -> Iterator[Provider]:
    server = Provider()
    # A short poll keeps shutdown() from waiting half a second per test.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    yield server
    server.shutdown()
    thread.join()
    server.server_close()


def postmark_url(provider: Provider, token: str = TOKEN, query: str = "") -> str:
    return f"postmark://{token}@?endpoint={provider.url}{query}"


def mailgun_url(provider: Provider, key: str = KEY) -> str:
    return f"mailgun://{key}@{DOMAIN}?endpoint={provider.url}"


async def send(url: str, data_dir: Path, mail: Outgoing | None = None) -> None:
    transport = transport_from_url(url, data_dir)
    try:
        await transport.send(mail or outgoing())
    finally:
        await transport.close()


@pytest.mark.parametrize(("query", "stream"), [("", "outbound"), ("&stream=broadcast",
                                                                     "broadcast")])
async def test_postmark_sends_the_fields_and_list_headers(
    provider: Provider, tmp_path: Path, query: str, stream: str,
) -> None:
    await send(postmark_url(provider, query=query), tmp_path)

    [request] = provider.received
    assert request.headers["X-Postmark-Server-Token"] == TOKEN
    payload = json.loads(request.body)
    assert payload["From"] == f"Lawrence Gold <{SENDER}>"
    assert payload["To"] == "reader@example.org"
    assert payload["Subject"] == "Your regimen"
    # Plain newlines: the wire format's CRLF is not Postmark's concern.
    assert "\r" not in payload["TextBody"] + payload["HtmlBody"]
    assert payload["TextBody"].splitlines() == TEXT.splitlines()
    assert payload["HtmlBody"].splitlines() == HTML.splitlines()
    assert payload["MessageStream"] == stream
    headers = {header["Name"].lower(): header["Value"] for header in payload["Headers"]}
    assert headers["list-unsubscribe"] == UNSUBSCRIBE
    assert headers["list-unsubscribe-post"] == "List-Unsubscribe=One-Click"
    assert not headers.keys() & {"from", "to", "subject"}


async def test_postmark_is_not_given_our_dkim_signature(provider: Provider, tmp_path: Path) -> None:
    await send(postmark_url(provider), tmp_path)

    [request] = provider.received
    names = {header["Name"].lower() for header in json.loads(request.body)["Headers"]}
    # Postmark builds its own MIME from the fields, which our signature does not cover: it would
    # fail to verify next to the one Postmark adds.
    assert "dkim-signature" not in names


async def test_postmark_inactive_recipient_is_rejected(provider: Provider, tmp_path: Path) -> None:
    with pytest.raises(RecipientRejected, match="marked as inactive"):
        await send(postmark_url(provider), tmp_path, outgoing(recipient=INACTIVE))


@pytest.mark.parametrize(("mail", "token", "answer"), [
    (outgoing(), "wrong-token", "Bad or missing API token"),
    (outgoing(sender="someone@else.example.org"), TOKEN, "Sender signature not found"),
])
async def test_postmark_problems_with_our_account_keep_mail_waiting(
    provider: Provider, tmp_path: Path, mail: Outgoing, token: str, answer: str,
) -> None:
    with pytest.raises(TemporaryFailure, match=answer):
        await send(postmark_url(provider, token=token), tmp_path, mail)


@pytest.mark.parametrize(("status", "answer"), [
    (422, {"ErrorCode": 300, "Message": "Invalid email request"}),
    (422, {"ErrorCode": 401, "Message": "Sender signature not confirmed"}),
    (429, {"ErrorCode": 429, "Message": "Rate limit exceeded, retry later"}),
    (500, {"ErrorCode": 500, "Message": "Internal Server Error"}),
])
async def test_postmark_failures_that_may_pass_are_temporary(
    provider: Provider, tmp_path: Path, status: int, answer: dict[str, Any],
) -> None:
    provider.scripted = status, answer
    with pytest.raises(TemporaryFailure, match=re.escape(answer["Message"])):
        await send(postmark_url(provider), tmp_path)


async def test_mailgun_sends_the_exact_bytes(provider: Provider, tmp_path: Path) -> None:
    mail = outgoing()
    await send(mailgun_url(provider), tmp_path, mail)

    [request] = provider.received
    assert request.form["to"] == (None, b"reader@example.org")
    content_type, data = request.form["message"]
    # Byte for byte: a re-serialised message would break the DKIM signature.
    assert data == mail.data
    assert content_type == "message/rfc822"


async def test_mailgun_bad_key_keeps_mail_waiting(provider: Provider, tmp_path: Path) -> None:
    with pytest.raises(TemporaryFailure, match="Forbidden"):
        await send(mailgun_url(provider, key="key-wrong"), tmp_path)


async def test_mailgun_bad_request_is_permanent_but_no_rejection(
    provider: Provider, tmp_path: Path,
) -> None:
    provider.scripted = 400, {"message": "'to' parameter is not a valid address"}
    with pytest.raises(PermanentFailure, match="not a valid address") as caught:
        await send(mailgun_url(provider), tmp_path)
    assert type(caught.value) is PermanentFailure


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_mailgun_overload_and_outages_are_temporary(
    provider: Provider, tmp_path: Path, status: int,
) -> None:
    provider.scripted = status, {"message": f"scripted {status}"}
    with pytest.raises(TemporaryFailure, match=f"scripted {status}"):
        await send(mailgun_url(provider), tmp_path)


@pytest.mark.parametrize("url", ["postmark://{key}@?endpoint=http://127.0.0.1:{port}",
                                 "mailgun://{key}@mg.example.org?endpoint=http://127.0.0.1:{port}"])
async def test_nothing_listening_is_temporary(tmp_path: Path, url: str) -> None:
    with pytest.raises(TemporaryFailure):
        await send(url.format(key=KEY, port=free_port()), tmp_path)


@pytest.mark.parametrize(("url", "kind", "endpoint"), [
    ("postmark://TOKEN@", PostmarkTransport, "https://api.postmarkapp.com"),
    ("mailgun://KEY@mg.example.org", MailgunTransport, "https://api.mailgun.net"),
    ("mailgun://KEY@mg.example.org?region=eu", MailgunTransport, "https://api.eu.mailgun.net"),
])
async def test_default_endpoints(
    tmp_path: Path, url: str, kind: type[PostmarkTransport | MailgunTransport], endpoint: str,
) -> None:
    transport = transport_from_url(url, tmp_path)
    try:
        assert isinstance(transport, PostmarkTransport | MailgunTransport)
        assert type(transport) is kind
        assert transport.endpoint == endpoint
    finally:
        await transport.close()


UTF8_READER = "jörg@xn--exmple-cua.com"  # jörg@exämple.com, its domain as stored (IDNA)


async def test_mailgun_takes_a_non_ascii_local_part(provider: Provider, tmp_path: Path) -> None:
    # Mailgun's documentation: internationalized addresses (SMTPUTF8) are supported when
    # sending through its HTTP API.
    transport = transport_from_url(mailgun_url(provider), tmp_path)
    try:
        assert await transport.delivers_utf8_local_parts() is True
    finally:
        await transport.close()
    await send(mailgun_url(provider), tmp_path, outgoing(recipient=UTF8_READER))
    [request] = provider.received
    assert request.form["to"] == (None, UTF8_READER.encode())


async def test_postmark_refuses_a_non_ascii_local_part_without_asking(
    provider: Provider, tmp_path: Path,
) -> None:
    # Postmark's documentation says nothing of internationalized addresses: not promised, and a
    # mail that reaches the worker anyway fails for good with the reason instead of retrying.
    transport = transport_from_url(postmark_url(provider), tmp_path)
    try:
        assert await transport.delivers_utf8_local_parts() is False
    finally:
        await transport.close()
    with pytest.raises(PermanentFailure, match="non-ASCII") as caught:
        await send(postmark_url(provider), tmp_path, outgoing(recipient=UTF8_READER))
    assert type(caught.value) is PermanentFailure
    assert provider.received == []
