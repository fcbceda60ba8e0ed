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

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from service.addresses import InvalidAddress, normalize_address
from service.models import utcnow
from service.runtime import Runtime
from service.signup import SuppressionReason, suppress

router = APIRouter(prefix="/webhooks")

# Mailgun signs the time; older notifications are replays.
MAILGUN_MAX_SKEW_SECONDS = 15 * 60
POSTMARK_HARD_BOUNCES = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


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


@router.post("/postmark")
async def postmark(request: Request) -> Response:
    runtime = _runtime(request)
    secret = runtime.settings.webhook_secret
    if not secret:
        return JSONResponse({"error": "not configured"}, status_code=404)
    if not _basic_auth_password_is(request.headers.get("authorization", ""), secret):
        return JSONResponse({"error": "unauthorized"}, status_code=401,
                            headers={"WWW-Authenticate": 'Basic realm="webhooks"'})
    event = await _payload(request)
    record = event.get("RecordType")
    reason = None
    if record == "SpamComplaint":
        reason = SuppressionReason.COMPLAINT
    elif record == "Bounce" and str(event.get("Type")) in POSTMARK_HARD_BOUNCES:
        reason = SuppressionReason.BOUNCE
    return await _apply(runtime, event.get("Email"), reason)


@router.post("/mailgun")
async def mailgun(request: Request) -> Response:
    runtime = _runtime(request)
    key = runtime.settings.mailgun_signing_key
    if not key:
        return JSONResponse({"error": "not configured"}, status_code=404)
    event = await _payload(request)
    signature = event.get("signature")
    if not isinstance(signature, dict) or not _mailgun_signed(key, signature):
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    data = event.get("event-data")
    data = data if isinstance(data, dict) else {}
    reason = None
    if data.get("event") == "complained":
        reason = SuppressionReason.COMPLAINT
    elif data.get("event") == "failed" and data.get("severity") == "permanent":
        reason = SuppressionReason.BOUNCE
    return await _apply(runtime, data.get("recipient"), reason)


def _basic_auth_password_is(header: str, secret: str) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        _, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except ValueError:  # not base64, not ASCII, not UTF-8
        return False
    return hmac.compare_digest(password.encode(), secret.encode())


def _mailgun_signed(key: str, signature: dict[str, Any]) -> bool:
    timestamp, token, given = (str(signature.get(k, "")) for k in ("timestamp", "token",
                                                                   "signature"))
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) or \
            abs(time.time() - int(timestamp)) > MAILGUN_MAX_SKEW_SECONDS:
        return False
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), given.encode())
