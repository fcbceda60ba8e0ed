"""Signed links. One salt per purpose, so a token made for one route is refused by the others.

A token carries the subscriber's random public id and their token version, never the address
or the row id. Keys come newest first; every key still verifies, only the newest signs.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TypeVar

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, int_to_bytes, want_bytes

Name = TypeVar("Name")


class Purpose(enum.StrEnum):
    CONFIRM = "confirm"
    REGIMEN = "regimen"
    UNSUBSCRIBE = "unsubscribe"
    ERASE = "erase"
    # Stops a regimen's lessons only (the lesson mails' one-click List-Unsubscribe).
    LESSONS = "lessons"


@dataclass(frozen=True)
class Claims:
    public_id: str
    version: int


class InvalidToken(Exception):
    """Tampered, made for another purpose, or signed with a key we no longer hold."""


class ExpiredToken(Exception):
    """Genuine but too old; `claims` says whose it was, so a fresh link can be offered."""

    def __init__(self, claims: Claims) -> None:
        super().__init__("token expired")
        self.claims = claims


class _Signer(TimestampSigner):
    """itsdangerous's signer, deriving the signing key from the newest key and the salt once
    rather than at every signature: a lesson mail carries four signed links, and deriving was
    a third of signing each (bench/mail.py)."""

    @cached_property
    def _signing_key(self) -> bytes:
        return super().derive_key()

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        return self._signing_key if secret_key is None else super().derive_key(secret_key)

    @cached_property
    def _keyed_mac(self) -> hmac.HMAC:
        return hmac.new(self._signing_key, digestmod=hashlib.sha1)

    def get_signature(self, value: str | bytes) -> bytes:
        # The same HMAC-SHA1 (itsdangerous's default digest, which ours keep), from a copy of
        # one keyed with the signing key: itsdangerous passes hmac.new a Python function for
        # SHA-1, which takes hmac's pure Python path, and was half of signing a link. Nor the
        # one-call hmac.digest: it lets go of the GIL for every signature, and taking it back
        # from the SQLite driver's thread cost a worker 8.6 us a link against 1.1 this way.
        mac = self._keyed_mac.copy()
        mac.update(want_bytes(value))
        return base64_encode(mac.digest())


class Tokens:
    def __init__(self, secret_keys: list[str]) -> None:
        if not secret_keys:
            raise ValueError("at least one secret key is needed")
        # itsdangerous signs with the last key of the list; ours come newest first.
        keys = list(reversed(secret_keys))
        self._serializers = {
            purpose: URLSafeTimedSerializer(keys, salt=f"regimen.{purpose.value}",
                                            signer=_Signer)
            for purpose in Purpose
        }
        # One signer a purpose, kept with its derived key (the serializer makes one a call).
        self._signers = {purpose: serializer.make_signer()
                         for purpose, serializer in self._serializers.items()}
        # The signers' separator between payload, timestamp and signature (all share one).
        self._sep = want_bytes(self._signers[Purpose.CONFIRM].sep)
        self._form = URLSafeTimedSerializer(keys, salt="regimen.form")

    def form_stamp(self) -> str:
        """A signed 'this form was shown now', for the hosted form's hidden field."""
        return str(self._form.dumps(0))

    def form_age(self, stamp: str) -> float | None:
        """Seconds since the stamp was made; None if it is not one of ours."""
        try:
            _, made = self._form.loads(stamp, return_timestamp=True)
        except BadSignature:
            return None
        age: float = (datetime.now(UTC) - made).total_seconds()
        return age

    def make(self, purpose: Purpose, claims: Claims) -> str:
        return self.make_each({purpose: purpose}, claims)[purpose]

    def make_each(self, purposes: Mapping[Name, Purpose], claims: Claims) -> dict[Name, str]:
        """A token for each purpose, by name: what `make` makes, with the claims encoded once
        (they are the same for every purpose; only the salt, so the signature, differs)."""
        # The serializer's payload as itsdangerous writes it uncompressed: it tries zlib on
        # every payload, which never wins on a random id and an int, and cost half of
        # signing a lesson mail's four links.
        payload = base64_encode(json.dumps([claims.public_id, claims.version],
                                           ensure_ascii=False, separators=(",", ":")).encode())
        # One timestamp for all (TimestampSigner.sign's own, written once): a mail's links
        # are signed in the same second.
        stamped = payload + self._sep + base64_encode(int_to_bytes(int(time.time())))
        return {name: (stamped + self._sep + self._signers[purpose].get_signature(stamped))
                .decode() for name, purpose in purposes.items()}

    def read(self, purpose: Purpose, token: str, max_age: timedelta | None = None) -> Claims:
        serializer = self._serializers[purpose]
        try:
            payload = serializer.loads(
                token, max_age=int(max_age.total_seconds()) if max_age is not None else None)
        except SignatureExpired as exc:
            # The signature was checked before the age, so the payload is genuine.
            if exc.payload is None:
                raise InvalidToken() from None
            raise ExpiredToken(_claims(serializer.load_payload(exc.payload))) from None
        except BadSignature:
            raise InvalidToken() from None
        return _claims(payload)


def _claims(payload: object) -> Claims:
    match payload:
        case [str(public_id), int(version)]:
            return Claims(public_id, version)
    raise InvalidToken()
