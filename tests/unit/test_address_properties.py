"""Properties of address normalisation, over generated input: what gets stored is always one
safe, canonical form, and nothing that could smuggle a mail header in gets through."""

from __future__ import annotations

import unicodedata

import idna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.readers.addresses import (
    MAX_LENGTH,
    InvalidAddress,
    Problem,
    normalize_address,
    plain_address,
    validated_address,
)
from service.web.texts import TEXTS

PROPERTIES = settings(
    deadline=None,  # a per-example time limit is a wall-clock assertion
    database=None,  # nothing written into the repository
)

# Letters email_validator accepts in either part, with their upper-case forms, so that
# generated addresses are well formed by construction.
LOWER = "abcdefghijklmnopqrstuvwxyz" + "äöüéèñçøåæ" + "αβγδεζ" + "абвгдежз"
LETTERS = LOWER + LOWER.upper()
DIGITS = "0123456789"
LINE_BREAKS = ["\r", "\n", "\r\n"]


def atoms(alphabet: str, max_size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=1, max_size=max_size)


local_parts = st.lists(atoms(LETTERS + DIGITS + "+-_", 12), min_size=1, max_size=3).map(".".join)
# A label neither starts nor ends with a hyphen; a TLD that is also a special-use name (.test,
# .local) is refused on purpose, so these stick to ordinary ones.
labels = st.builds(lambda first, middle: first + middle, atoms(LETTERS + DIGITS, 1),
                   st.text(LETTERS + DIGITS, max_size=15))
domains = st.builds(lambda names, tld: ".".join([*names, tld]),
                    st.lists(labels, min_size=1, max_size=3),
                    st.sampled_from(["org", "com", "de", "net", "рф"]))
addresses = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains)
# Anything at all a form field or a webhook might carry, and addresses in their usual shapes.
typed = st.one_of(st.text(), st.emails(), addresses,
                  st.builds(lambda pad, address: pad + address + pad,
                            st.text(" \t\r\n", max_size=3), addresses))


def has_control_character(text: str) -> bool:
    return any(unicodedata.category(char) == "Cc" for char in text)


@PROPERTIES
@given(typed)
def test_what_comes_out_is_canonical_and_safe(raw: str) -> None:
    try:
        normalized = normalize_address(raw)
    except InvalidAddress:
        return
    assert normalize_address(normalized) == normalized
    assert normalized == normalized.lower()
    assert len(normalized) <= MAX_LENGTH
    assert not has_control_character(normalized)
    assert normalized.count("@") == 1


@PROPERTIES
@given(addresses)
def test_a_well_formed_address_is_accepted(address: str) -> None:
    assert normalize_address(address).partition("@")[0] == address.partition("@")[0].lower()


@PROPERTIES
@given(addresses, st.data())
def test_upper_and_lower_case_are_one_reader(address: str, data: st.DataObject) -> None:
    flips = data.draw(st.lists(st.booleans(), min_size=len(address), max_size=len(address)))
    variant = "".join(char.swapcase() if flip else char for char, flip in zip(address, flips,
                                                                                strict=True))
    assert normalize_address(variant) == normalize_address(address)


@PROPERTIES
@given(local_parts, st.lists(atoms(LOWER, 15), min_size=1, max_size=3),
       st.sampled_from(["org", "de", "рф"]))
def test_an_idn_domain_and_its_punycode_are_one_reader(
    local: str, names: list[str], tld: str,
) -> None:
    domain = ".".join([*names, tld])
    punycode = idna.encode(domain).decode()
    normalized = normalize_address(f"{local}@{domain}")
    assert normalize_address(f"{local}@{punycode}") == normalized
    if local.isascii():
        # The all-ASCII form, which every mail server accepts, whenever there is one.
        assert normalized == f"{local.lower()}@{punycode}"


@PROPERTIES
@given(typed.map(str.strip).filter(lambda raw: len(raw) >= 2), st.sampled_from(LINE_BREAKS),
       st.data())
def test_a_line_break_inside_is_refused(raw: str, line_break: str,
                                        data: st.DataObject) -> None:
    at = data.draw(st.integers(min_value=1, max_value=len(raw) - 1))
    with_break = raw[:at] + line_break + raw[at:]
    with pytest.raises(InvalidAddress):
        normalize_address(with_break)


@PROPERTIES
@given(addresses, st.text(" \t\r\n", min_size=1, max_size=4),
       st.text(" \t\r\n", min_size=1, max_size=4))
def test_a_line_break_around_it_is_what_pasting_leaves_and_is_dropped(
    address: str, before: str, after: str,
) -> None:
    assert normalize_address(before + address + after) == normalize_address(address)


long_addresses = st.builds(
    lambda local, names: local + "@" + ".".join([*names, "org"]),
    st.text("abcdefghij", min_size=1, max_size=64),
    st.lists(st.text("klmnopqrst", min_size=40, max_size=63), min_size=4, max_size=6),
).filter(lambda address: len(address) > MAX_LENGTH)


@PROPERTIES
@given(long_addresses)
def test_an_address_over_254_characters_is_refused_as_too_long(address: str) -> None:
    with pytest.raises(InvalidAddress) as refused:
        normalize_address(address)
    assert refused.value.problem is Problem.TOO_LONG
    assert TEXTS.address.explain(refused.value) == \
        TEXTS.address.too_long.format(limit=MAX_LENGTH)


@PROPERTIES
@given(st.text(min_size=MAX_LENGTH + 1, max_size=3 * MAX_LENGTH)
       .filter(lambda raw: len(raw.strip()) > MAX_LENGTH))
def test_any_text_over_254_characters_is_refused(raw: str) -> None:
    with pytest.raises(InvalidAddress):
        normalize_address(raw)


# Near the shortcut's edges, each part drawn from a few telling values (or plain text): runs
# of . _ + - (allowed singly), hyphen pairs (Punycode's xn--, and "ab--" labels, which are
# refused), upper case and the Kelvin sign, parts at and over their length limits (64 before
# the @, 63 a label), special-use and odd TLDs.
plain_text = st.text("az0", min_size=1, max_size=4)
edge_locals = st.one_of(plain_text, st.sampled_from([
    "Jo.Smith", "a+b", "a_b-c", "a" * 64, "a" * 65, "jo..x", ".jo", "jo.", "+jo", "\u212ao",
    "xn--a"]))
edge_labels = st.one_of(plain_text, st.sampled_from([
    "Mail", "a-b", "ab--c", "xn--p1ai", "a-", "-a", "c" * 63, "c" * 64, "0"]))
edge_addresses = st.builds(
    lambda local, names, tld: local + "@" + ".".join([*names, tld]),
    edge_locals, st.lists(edge_labels, min_size=1, max_size=2),
    st.sampled_from(["org", "Org", "test", "local", "x", "co1", "onion", "arpa"]))


@settings(PROPERTIES, max_examples=500)
@given(st.one_of(typed, edge_addresses))
def test_the_plain_address_shortcut_agrees_with_email_validator(raw: str) -> None:
    typed_address = raw.strip()
    shortcut = plain_address(typed_address)
    if shortcut is None:
        return
    assert shortcut == validated_address(typed_address)  # raises InvalidAddress if it is not


def test_the_shortcut_takes_the_usual_address_and_declines_the_rest() -> None:
    assert plain_address("Jo.Smith+regimen@Mail.Example.org") == "jo.smith+regimen@mail.example.org"
    for declined in ("jo..smith@example.org", "jo@xn--mnchen-3ya.de", "jo@example.test",
                     "jö@example.org", "jo@example", "a" * 65 + "@example.org"):
        assert plain_address(declined) is None
