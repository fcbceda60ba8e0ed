"""Bounce and complaint notifications from the HTTP mail providers.

A hard bounce or a complaint suppresses the address for good; a complaint also unsubscribes.
Each endpoint is off (404) until its secret is configured, and refuses (401) any request that
does not prove it comes from the provider.

- Postmark: POST /webhooks/postmark, with the secret as the HTTP basic-auth password in the
  webhook URL you give Postmark (https://postmark:SECRET@your-host/webhooks/postmark).
- Mailgun: POST /webhooks/mailgun, signed with your webhook signing key (HMAC-SHA256 of the
  timestamp and token).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from service.core.models import utcnow
from service.readers.addresses import InvalidAddress, normalize_address
from service.readers.signup import SuppressionReason, suppress
from service.runtime import Runtime
from service.web.dependencies import (
    PasswordOnly,
    Refusal,
    RuntimeDep,
    count_wrong_password,
    not_locked_out,
    password_protected,
)
from service.web.schemas import (
    CRASHED,
    JSON,
    TEXT,
    TOO_LARGE,
    WRONG_TOO_OFTEN,
    Answer,
    Answers,
    Sent,
    request_body,
)

router = APIRouter(prefix="/webhooks", responses=CRASHED)

# Mailgun signs the time; older notifications are replays.
MAILGUN_MAX_SKEW_SECONDS = 15 * 60
POSTMARK_HARD_BOUNCES = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}


class WebhookAck(Sent):
    status: Literal["ok"]


class WebhookRefusal(Sent):
    error: Literal["unauthorized", "not configured"]


# The providers' bodies are read by hand: anything unexpected in them is acknowledged and
# ignored, never refused, or the provider would retry it forever. These models only describe
# them.
class PostmarkEvent(BaseModel):
    """A Postmark bounce or spam-complaint webhook. A hard bounce or a complaint suppresses
    the address; anything else is acknowledged and ignored."""

    record_type: str = Field("", alias="RecordType", examples=["Bounce", "SpamComplaint"])
    type: str = Field("", alias="Type", examples=["HardBounce", "SoftBounce"])
    email: str = Field("", alias="Email", json_schema_extra={"format": "email"})


class MailgunSignature(BaseModel):
    timestamp: str = Field(pattern="^[0-9]+$",
                           description="Unix time; older than 15 minutes is a replay.")
    token: str
    signature: str = Field(pattern="^[0-9a-f]{64}$",
                           description="HMAC-SHA256 of timestamp + token.")


class MailgunEventData(BaseModel):
    event: str = Field("", examples=["failed", "complained"])
    severity: str = Field("", examples=["permanent", "temporary"])
    recipient: str = Field("", json_schema_extra={"format": "email"})


class MailgunEvent(BaseModel):
    """A Mailgun webhook, signed with the webhook signing key. A permanent failure or a
    complaint suppresses the address; anything else is acknowledged and ignored."""

    signature: MailgunSignature
    event_data: MailgunEventData = Field(default_factory=MailgunEventData, alias="event-data")


def _refuse(status: int) -> Exception:
    return Refusal(JSONResponse(
        {"error": "not configured" if status == 404 else "unauthorized"}, status_code=status,
        headers={"WWW-Authenticate": 'Basic realm="webhooks"'} if status == 401 else None))


POSTMARK = PasswordOnly("postmark", "REGIMEN_WEBHOOK_SECRET")
POSTMARK_ONLY = password_protected(POSTMARK, lambda settings: settings.webhook_secret, _refuse)


def answers(refused: str, *, challenged: bool = False) -> Answers:
    """Both endpoints' answers; `refused` says when the 401 comes, `challenged` that it
    asks for basic auth."""
    unauthorized: Answer = {"description": refused, "model": WebhookRefusal}
    if challenged:
        unauthorized["headers"] = {"WWW-Authenticate": {"required": True, "schema": TEXT}}
    return {200: {"description": "Acknowledged, acted on or not.", "model": WebhookAck},
            401: unauthorized,
            404: {"description": "The endpoint is off.", "model": WebhookRefusal},
            413: TOO_LARGE,
            429: WRONG_TOO_OFTEN}


async def _payload(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        return {}
    return body if isinstance(body, dict) else {}


async def _apply(runtime: Runtime, email: object, reason: SuppressionReason | None) -> Response:
    if reason is not None and isinstance(email, str):
        try:
            address = normalize_address(email)
        except InvalidAddress:
            address = ""
        if address:
            async with runtime.db.transaction() as session:
                await suppress(session, address, reason, utcnow())
    # Anything we do not act on is still acknowledged, or the provider would retry it forever.
    return JSONResponse({"status": "ok"})


@router.post(
    "/postmark", dependencies=[POSTMARK_ONLY],
    summary="Postmark bounce and complaint notifications",
    description="Off (404) until REGIMEN_WEBHOOK_SECRET is set; that secret is the basic auth "
                "password in the webhook URL given to Postmark.",
    responses=answers("Not Postmark: the password is wrong or missing.",
                      challenged=True),
    openapi_extra=request_body(PostmarkEvent, JSON, required=True),
)
async def postmark(request: Request, runtime: RuntimeDep) -> Response:
    event = await _payload(request)
    record = event.get("RecordType")
    reason = None
    if record == "SpamComplaint":
        reason = SuppressionReason.COMPLAINT
    elif record == "Bounce" and str(event.get("Type")) in POSTMARK_HARD_BOUNCES:
        reason = SuppressionReason.BOUNCE
    return await _apply(runtime, event.get("Email"), reason)


@router.post(
    "/mailgun", summary="Mailgun bounce and complaint notifications",
    description="Off (404) until REGIMEN_MAILGUN_SIGNING_KEY is set.",
    responses=answers("Not Mailgun: the signature is wrong, missing or too old."),
    openapi_extra=request_body(MailgunEvent, JSON, required=True),
)
async def mailgun(request: Request, runtime: RuntimeDep) -> Response:
    key = runtime.settings.mailgun_signing_key
    if not key:
        return JSONResponse({"error": "not configured"}, status_code=404)
    await not_locked_out(request, runtime)
    event = await _payload(request)
    signature = event.get("signature")
    if not isinstance(signature, dict) or not _mailgun_signed(key, signature):
        await count_wrong_password(request, runtime)
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    data = event.get("event-data")
    data = data if isinstance(data, dict) else {}
    reason = None
    if data.get("event") == "complained":
        reason = SuppressionReason.COMPLAINT
    elif data.get("event") == "failed" and data.get("severity") == "permanent":
        reason = SuppressionReason.BOUNCE
    return await _apply(runtime, data.get("recipient"), reason)


def _mailgun_signed(key: str, signature: dict[str, Any]) -> bool:
    timestamp, token, given = (str(signature.get(k, "")) for k in ("timestamp", "token",
                                                                   "signature"))
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) or \
            abs(time.time() - int(timestamp)) > MAILGUN_MAX_SKEW_SECONDS:
        return False
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), given.encode())
