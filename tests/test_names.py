"""Names and other text: bounded length, no control or bidirectional formatting characters.

The reference for what is refused is Unicode's own character data
(`unicodedata`), not the patterns in `pmkit.validation`: control characters
are category ``Cc``, the explicit bidirectional formatting characters have
bidi classes LRE, RLE, LRO, RLO, PDF, LRI, RLI, FSI and PDI, and names (one
line) also refuse the three direction marks and the line and paragraph
separators (categories ``Zl``, ``Zp``).
"""

from __future__ import annotations

import unicodedata

import pytest
from hostile import BEFORE, MARKET
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmkit.errors import PmkitError, ValidationError
from pmkit.registry import Registry
from pmkit.validation import MAX_NAME_LENGTH, MAX_TAG_LENGTH, check_text, safe_text

EXPLICIT = {"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}
MARKS = {"LEFT-TO-RIGHT MARK", "RIGHT-TO-LEFT MARK", "ARABIC LETTER MARK"}
#: Every character Unicode gives one of those bidi classes or names, found by scanning.
BIDI = sorted(chr(c) for c in range(0x110000)
              if unicodedata.bidirectional(chr(c)) in EXPLICIT
              or unicodedata.name(chr(c), "") in MARKS)

PROPS = settings(max_examples=min(60, settings.default.max_examples), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


def refused_in_name(ch: str) -> bool:
    """Whether a single-line text (a name) may not hold ``ch``, from Unicode's data."""
    return (unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cs")
            or unicodedata.bidirectional(ch) in EXPLICIT
            or unicodedata.name(ch, "") in MARKS)


def refused_in_free_text(ch: str) -> bool:
    """Whether free text (a description, a note) may not hold ``ch``."""
    return ((unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\t\n\r")
            or unicodedata.bidirectional(ch) in EXPLICIT)


def test_the_bidi_set_is_what_the_documentation_lists():
    # U+202A..U+202E, U+2066..U+2069 and the marks U+200E, U+200F, U+061C: 12 characters
    assert [f"{ord(c):04X}" for c in BIDI] == [
        "061C", "200E", "200F", "202A", "202B", "202C", "202D", "202E",
        "2066", "2067", "2068", "2069"]


def books() -> Registry:
    """Fresh books for each example: portfolio p in group g."""
    r = Registry.open(":memory:", market=MARKET)
    r.create_portfolio("p", 1_000.0, name="P", at=BEFORE)
    r.create_group("g", ["p"], name="G")
    return r


#: Every writer of a name (or name-like single-line text), as a user calls it.
NAME_WRITERS = {
    "new portfolio": ("name", lambda r, v: r.create_portfolio("n", 1.0, name=v)),
    "renamed portfolio": ("name", lambda r, v: r.update_portfolio("p", name=v)),
    "new group": ("name", lambda r, v: r.create_group("h", ["p"], name=v)),
    "new user": ("display_name", lambda r, v: r.add_user("bob", display_name=v)),
    "segment": ("segment.client", lambda r, v: r.update_portfolio("p", segment={"client": v})),
}

#: Any text, with the characters at the edges of the rules drawn often (a list, not
#: ``st.text``: that merges the alphabet into one pool where the few specials are rare).
tricky = st.lists(st.one_of(st.characters(), st.sampled_from(
    [*BIDI, "\u2028", "\u2029", "\x85", "\x9f", "\t", "\n", "\r", "\x00", "\x1b", "ع"])),
    max_size=30).map("".join)

plain = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp"),
                              exclude_characters="".join(BIDI)), min_size=1, max_size=20)


@PROPS
@given(writer=st.sampled_from(sorted(NAME_WRITERS)), left=plain, right=plain,
       bidi=st.sampled_from(BIDI))
def test_a_name_with_a_bidi_character_is_refused_naming_field_and_value(writer, left,
                                                                   right, bidi):
    reg = books()
    field, call = NAME_WRITERS[writer]
    name = left + bidi + right
    before = reg.store.dump()
    with pytest.raises(ValidationError) as e:
        call(reg, name)
    assert e.value.field == field and e.value.value == name
    assert f"U+{ord(bidi):04X}" in str(e.value)
    assert reg.store.dump() == before


@PROPS
@given(text=st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"),
                                  exclude_characters="".join(BIDI)), min_size=1, max_size=20),
       bidi=st.sampled_from(BIDI))
def test_free_text_refuses_the_overrides_and_keeps_the_marks(text, bidi):
    reg = books()
    before = reg.store.dump()
    described = text + bidi
    if unicodedata.bidirectional(bidi) in EXPLICIT:
        with pytest.raises(ValidationError) as e:
            reg.update_portfolio("p", description=described)
        assert e.value.field == "description" and reg.store.dump() == before
    else:  # a direction mark is ordinary in right-to-left prose
        reg.update_portfolio("p", description=described)
        assert reg.portfolio("p").description == described


@PROPS
@given(length=st.integers(1, 2 * MAX_NAME_LENGTH), letter=st.sampled_from("aé名ع"),
       writer=st.sampled_from(sorted(NAME_WRITERS)))
def test_names_are_refused_past_the_documented_length(length, letter, writer):
    reg = books()
    field, call = NAME_WRITERS[writer]
    name = letter * length
    before = reg.store.dump()
    if length <= MAX_NAME_LENGTH:
        call(reg, name)  # accepted up to the limit, inclusive
        if writer == "renamed portfolio":
            assert reg.portfolio("p").name == name
    else:
        with pytest.raises(ValidationError) as e:
            call(reg, name)
        assert e.value.field == field and str(length) in str(e.value.value)
        assert str(MAX_NAME_LENGTH) in str(e.value)
        assert reg.store.dump() == before


def test_right_to_left_names_are_ordinary_names():
    reg = books()
    for name in ("صندوق النمو", "קרן צמיחה", "Growth – צמיחה 2024"):
        pid = reg.create_portfolio(None, 10.0, name=name)
        assert reg.portfolio(pid).name == name


@PROPS
@given(text=tricky)
def test_check_text_agrees_with_the_unicode_reference(text):
    for multiline, refused in ((False, refused_in_name), (True, refused_in_free_text)):
        expected = not any(refused(c) for c in text)
        try:
            got = check_text(text, "f", max_length=MAX_TAG_LENGTH, multiline=multiline)
        except ValidationError as e:
            assert e.field == "f"
            assert not expected, (text, multiline, e)
        else:
            assert expected, (text, multiline)
            assert got == text


@PROPS
@given(text=tricky)
def test_safe_text_leaves_no_bidi_character_to_reorder_a_screen(text):
    kept = safe_text(text)
    assert not any(c in BIDI or unicodedata.category(c) in ("Zl", "Zp", "Cs") or c == "\x00"
                   for c in kept)
    if not any(c in BIDI or unicodedata.category(c) in ("Zl", "Zp", "Cs") or c == "\x00"
               for c in text):
        assert kept == text  # nothing to defang: kept as given


@PROPS
@given(name=tricky)
def test_any_name_is_stored_as_given_or_refused_with_the_store_unchanged(name):
    reg = books()
    before = reg.store.dump()
    try:
        pid = reg.create_portfolio("n", 1.0, name=name)
    except PmkitError as e:
        assert isinstance(e, ValidationError) and e.field == "name"
        assert reg.store.dump() == before
        assert not name.strip() or any(refused_in_name(c) for c in name)
    else:
        assert reg.portfolio(pid).name == (name or "n")
        assert not any(refused_in_name(c) for c in name)
