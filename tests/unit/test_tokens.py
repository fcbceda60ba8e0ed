"""Signed links: each purpose its own, tamper-proof, rotatable keys, expiry without sleeping."""

from __future__ import annotations

import itertools
import json
import string
from datetime import timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode, base64_encode

from service.core.models import new_public_id
from service.readers.tokens import Claims, ExpiredToken, InvalidToken, Purpose, Tokens

OLD_KEY = "old-key-" + "a" * 40
NEW_KEY = "new-key-" + "b" * 40
CLAIMS = Claims("pub_7Hq2xZ", 3)
TOKEN_ALPHABET = string.ascii_letters + string.digits + "-_."
keys = st.text(min_size=1, max_size=64)
any_claims = st.builds(Claims, st.text(max_size=40), st.integers(min_value=0, max_value=2**31))


class _HourAgoSigner(TimestampSigner):
    def get_timestamp(self) -> int:
        return super().get_timestamp() - 3600


def _serializer(purpose: Purpose, signer: type[TimestampSigner] = TimestampSigner,
                ) -> URLSafeTimedSerializer:
    """What Tokens builds inside, to sign what Tokens never would: old or foreign payloads."""
    return URLSafeTimedSerializer(NEW_KEY, salt=f"regimen.{purpose.value}", signer=signer)


@settings(deadline=None)  # hypothesis' per-example time limit is a timing assertion
@given(purpose=st.sampled_from(Purpose), public_id=st.text(), version=st.integers())
def test_round_trip(purpose: Purpose, public_id: str, version: int) -> None:
    tokens = Tokens([NEW_KEY])
    claims = Claims(public_id, version)
    assert tokens.read(purpose, tokens.make(purpose, claims)) == claims


@pytest.mark.parametrize(("made_for", "read_as"), list(itertools.permutations(Purpose, 2)))
def test_a_token_only_opens_its_own_purpose(made_for: Purpose, read_as: Purpose) -> None:
    tokens = Tokens([NEW_KEY])
    with pytest.raises(InvalidToken):
        tokens.read(read_as, tokens.make(made_for, CLAIMS))


@pytest.mark.parametrize("purpose", list(Purpose))
def test_every_changed_character_is_refused(purpose: Purpose) -> None:
    tokens = Tokens([NEW_KEY])
    token = tokens.make(purpose, CLAIMS)
    accepted = {}
    for position, original in enumerate(token):
        for replacement in TOKEN_ALPHABET.replace(original, ""):
            try:
                accepted[position, replacement] = tokens.read(
                    purpose, token[:position] + replacement + token[position + 1:])
            except InvalidToken:
                pass
    # The 20-byte signature leaves 2 unused bits in its last base64 character, which
    # itsdangerous decodes leniently: a few spellings of that one character pass, and can only
    # ever carry the very same claims.
    assert {position for position, _ in accepted} <= {len(token) - 1}
    assert set(accepted.values()) <= {CLAIMS}


@pytest.mark.parametrize("garbage", ["", "abc", "...", "a.b.c", "é.é.é", "x" * 5000])
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(InvalidToken):
        Tokens([NEW_KEY]).read(Purpose.CONFIRM, garbage)


@settings(deadline=None)
@given(signing=keys, reading=keys, purpose=st.sampled_from(Purpose), claims=any_claims)
def test_a_token_signed_with_another_key_is_refused(signing: str, reading: str,
                                                    purpose: Purpose, claims: Claims) -> None:
    assume(signing != reading)
    token = Tokens([signing]).make(purpose, claims)
    with pytest.raises(InvalidToken):
        Tokens([reading]).read(purpose, token)


@settings(deadline=None)
@given(old_key=keys, new_key=keys, purpose=st.sampled_from(Purpose), claims=any_claims)
def test_rotation_old_keys_verify_only_the_newest_signs(old_key: str, new_key: str,
                                                        purpose: Purpose, claims: Claims) -> None:
    assume(old_key != new_key)
    old, rotated = Tokens([old_key]), Tokens([new_key, old_key])
    # Links already mailed keep working after the rotation...
    assert rotated.read(purpose, old.make(purpose, claims)) == claims
    # ...new ones are signed with the new key only, so dropping the old key later is safe.
    with pytest.raises(InvalidToken):
        old.read(purpose, rotated.make(purpose, claims))
    assert Tokens([new_key]).read(purpose, rotated.make(purpose, claims)) == claims


@settings(deadline=None)
@given(old_key=keys, new_key=keys, claims=any_claims)
def test_a_mails_links_signed_together_are_each_their_purposes_own(old_key: str, new_key: str,
                                                                   claims: Claims) -> None:
    assume(old_key != new_key)
    made = Tokens([new_key, old_key]).make_each({each.value: each for each in Purpose}, claims)
    assert set(made) == {each.value for each in Purpose}
    for purpose in Purpose:
        # Plain itsdangerous with the newest key alone reads it, as it reads `make`'s...
        plain = URLSafeTimedSerializer(new_key, salt=f"regimen.{purpose.value}")
        assert plain.loads(made[purpose.value]) == [claims.public_id, claims.version]
        # ...and it opens no other purpose.
        for other in set(Purpose) - {purpose}:
            with pytest.raises(InvalidToken):
                Tokens([new_key]).read(other, made[purpose.value])


@settings(deadline=None)
@given(purpose=st.sampled_from(Purpose), claims=any_claims, data=st.data())
def test_any_edit_of_a_token_is_refused(purpose: Purpose, claims: Claims,
                                        data: st.DataObject) -> None:
    tokens = Tokens([NEW_KEY])
    token = tokens.make(purpose, claims)
    at = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    char = data.draw(st.sampled_from(TOKEN_ALPHABET))
    edited = data.draw(st.sampled_from([
        token[:at] + char + token[at + 1:],  # a character changed
        token[:at] + token[at + 1:],  # one left out
        token[:at] + char + token[at:],  # one put in
    ]))
    assume(edited != token)
    try:
        read = tokens.read(purpose, edited)
    except InvalidToken:
        return
    # Only the signature's last character has spare bits (see the test above): another
    # spelling of it can pass, and then only with the very same claims.
    assert edited[:-1] == token[:-1]
    assert read == claims


def test_no_key_is_a_mistake() -> None:
    with pytest.raises(ValueError, match="secret key"):
        Tokens([])


def test_an_old_token_expires_and_says_whose_it_was() -> None:
    token = _serializer(Purpose.CONFIRM, _HourAgoSigner).dumps(["pub_old", 2])
    tokens = Tokens([NEW_KEY])
    with pytest.raises(ExpiredToken) as expired:
        tokens.read(Purpose.CONFIRM, token, max_age=timedelta(seconds=60))
    assert expired.value.claims == Claims("pub_old", 2)
    assert tokens.read(Purpose.CONFIRM, token, max_age=timedelta(hours=2)) == Claims("pub_old", 2)
    assert tokens.read(Purpose.CONFIRM, token) == Claims("pub_old", 2)


def test_a_tampered_old_token_is_invalid_not_expired() -> None:
    token = _serializer(Purpose.CONFIRM, _HourAgoSigner).dumps(["pub_old", 2])
    forged = base64_encode(json.dumps(["pub_someone_else", 2])).decode()
    with pytest.raises(InvalidToken):
        Tokens([NEW_KEY]).read(Purpose.CONFIRM, forged + "." + token.split(".", 1)[1],
                               max_age=timedelta(seconds=60))


@pytest.mark.parametrize("payload", [{"email": "reader@example.org"}, ["pub", "3"], ["pub"], 7])
def test_a_genuine_signature_over_a_foreign_payload_is_refused(payload: object) -> None:
    token = _serializer(Purpose.REGIMEN).dumps(payload)
    with pytest.raises(InvalidToken):
        Tokens([NEW_KEY]).read(Purpose.REGIMEN, token)


def test_the_payload_is_only_the_public_id_and_version() -> None:
    token = Tokens([NEW_KEY]).make(Purpose.CONFIRM, CLAIMS)
    # Anyone holding the link can decode this part: it must not reveal who the reader is.
    assert json.loads(base64_decode(token.split(".")[0])) == [CLAIMS.public_id, CLAIMS.version]



def test_links_are_the_tokens_itsdangerous_itself_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Our signing takes shortcuts (a copied keyed HMAC, no zlib attempt); for the ids
    # readers really get, the result must be itsdangerous's own, byte for byte.
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: 1_800_000_000.5)
    tokens = Tokens([NEW_KEY, OLD_KEY])
    for version in range(1, 201):
        claims = Claims(new_public_id(), version)
        made = tokens.make_each({purpose: purpose for purpose in Purpose}, claims)
        for purpose in Purpose:
            assert made[purpose] == _serializer(purpose).dumps([claims.public_id, version])
