"""HTTP mail providers, spoken to with httpx as their documentation describes.

- Postmark: `postmark://SERVER_TOKEN@[?stream=outbound]`, POST /email with the message's fields.
- Mailgun: `mailgun://API_KEY@SENDING_DOMAIN[?region=eu]`, POST /v3/DOMAIN/messages.mime with
  the whole message, so our headers and DKIM signature travel unchanged.

`?endpoint=http://host:port` points either at another base URL (a proxy, or a test server).
Non-ASCII local parts (jörg@…): Mailgun documents support for them (SMTPUTF8) through its HTTP
API; Postmark's documentation says nothing of them, so they are not promised there.
Answers map onto our failures: the recipient refused → `RecipientRejected`; anything about our
account, our credentials or the provider's health → `TemporaryFailure`, so mail waits until the
author fixes it instead of being thrown away.
"""

from __future__ import annotations

from typing import Any

import httpx

from service.delivery.outgoing import (
    Outgoing,
    PermanentFailure,
    RecipientRejected,
    TemporaryFailure,
    needs_smtputf8,
)

# Headers that providers set themselves or that their API takes as fields.
# Our DKIM signature too: Postmark rebuilds the message from the fields and signs it itself.
_FIELDS = {"from", "to", "subject", "date", "message-id", "mime-version", "content-type",
           "content-transfer-encoding", "dkim-signature"}
POSTMARK_INACTIVE_RECIPIENT = 406


class _HttpTransport:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        # Made on first use: `regimen content check` and the like build a runtime that never
        # sends.
        self._client: httpx.AsyncClient | None = None

    async def _post(self, path: str, **request: Any) -> httpx.Response:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=30)
        try:
            return await self._client.post(self.endpoint + path, **request)
        except httpx.HTTPError as exc:
            raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _raise_for_common(response: httpx.Response) -> None:
    """Rate limits, outages and our own credentials: try again later."""
    if response.status_code in (401, 403, 429) or response.status_code >= 500:
        raise TemporaryFailure(f"HTTP {response.status_code}: {response.text[:300]}")


class PostmarkTransport(_HttpTransport):
    def __init__(self, token: str, endpoint: str | None = None, stream: str | None = None) -> None:
        super().__init__(endpoint or "https://api.postmarkapp.com")
        self.token = token
        self.stream = stream or "outbound"

    async def delivers_utf8_local_parts(self) -> bool:
        return False

    async def send(self, outgoing: Outgoing) -> None:
        if needs_smtputf8(outgoing.recipient):
            # The form refuses such addresses with this transport; one that got in earlier
            # fails once with the reason rather than being retried for days.
            raise PermanentFailure(f"Postmark does not document non-ASCII local parts: "
                                   f"not sent to {outgoing.recipient}")
        message = outgoing.message
        text, html = message.get_body(("plain",)), message.get_body(("html",))
        payload = {
            "From": str(message["From"]),
            "To": outgoing.recipient,
            "Subject": str(message["Subject"]),
            "TextBody": _lines(text.get_content()) if text is not None else "",
            "HtmlBody": _lines(html.get_content()) if html is not None else "",
            "Headers": [{"Name": name, "Value": str(value)} for name, value in message.items()
                        if name.lower() not in _FIELDS],
            "MessageStream": self.stream,
        }
        response = await self._post(
            "/email", json=payload,
            headers={"X-Postmark-Server-Token": self.token, "Accept": "application/json"},
        )
        _raise_for_common(response)
        if response.status_code == 200:
            return
        error = _json(response)
        detail = f"HTTP {response.status_code} ErrorCode {error.get('ErrorCode')}: " \
                 f"{error.get('Message', response.text[:300])}"
        if error.get("ErrorCode") == POSTMARK_INACTIVE_RECIPIENT:
            raise RecipientRejected(detail)
        if response.status_code == 422:
            # Unverified sender, account pending and the like: the author can fix it.
            raise TemporaryFailure(detail)
        raise PermanentFailure(detail)


class MailgunTransport(_HttpTransport):
    def __init__(self, api_key: str, domain: str, endpoint: str | None = None,
                 region: str | None = None) -> None:
        default = "https://api.eu.mailgun.net" if region == "eu" else "https://api.mailgun.net"
        super().__init__(endpoint or default)
        self.api_key = api_key
        self.domain = domain

    async def delivers_utf8_local_parts(self) -> bool:
        return True

    async def send(self, outgoing: Outgoing) -> None:
        response = await self._post(
            f"/v3/{self.domain}/messages.mime",
            auth=("api", self.api_key),
            data={"to": outgoing.recipient},
            files={"message": ("message.eml", outgoing.data, "message/rfc822")},
        )
        _raise_for_common(response)
        if response.status_code != 200:
            raise PermanentFailure(f"HTTP {response.status_code}: {response.text[:300]}")


def _lines(content: str) -> str:
    """Bodies as text with plain newlines: the CRLF of the wire format is SMTP's business."""
    return content.replace("\r\n", "\n")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
