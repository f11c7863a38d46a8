"""Text limits and hostile text at every writer; rejected signals store their input once."""

from __future__ import annotations

import json
from datetime import datetime

import pandas as pd
import pytest
from hostile import BEFORE, MARKET, TIMES, T

from pmkit.coordinator import StrategyCoordinator
from pmkit.errors import ValidationError
from pmkit.registry import Registry
from pmkit.strategies import StrategyManager
from pmkit.validation import (
    MAX_MEMO_LENGTH,
    MAX_NAME_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_TEXT_LENGTH,
    check_text,
    json_value,
    safe_text,
)


@pytest.fixture
def reg():
    r = Registry.open(":memory:", market=MARKET)
    r.create_portfolio("p", 1_000_000.0, at=BEFORE)
    r.create_portfolio("q", 1_000.0, at=BEFORE)
    r.create_group("g", ["p", "q"])
    return r


BAD_TEXT = {
    "lone surrogate": "ab\ud800",
    "NUL": "a\x00b",
    "escape": "\x1b[31mred",
    "bytes": b"name",
    "number": 5,
    "list": ["a"],
}


@pytest.mark.parametrize("bad", BAD_TEXT.values(), ids=BAD_TEXT.keys())
@pytest.mark.parametrize(
    ("field", "call"),
    [
        ("memo", lambda r, v: r.record_trade("AAA", 1.0, 120.0, portfolio="p", ts=T, memo=v)),
        ("memo", lambda r, v: r.record_cash(5.0, portfolio="p", ts=T, memo=v)),
        ("name", lambda r, v: r.create_portfolio("n", 1.0, name=v)),
        ("description", lambda r, v: r.update_portfolio("p", description=v)),
        ("tags", lambda r, v: r.update_portfolio("p", tags=["ok", v])),
        ("risk_profile", lambda r, v: r.update_portfolio("p", risk_profile=v)),
        ("segment.client", lambda r, v: r.update_portfolio("p", segment={"client": v})),
        ("name", lambda r, v: r.create_group("h", ["p"], name=v)),
        ("reason", lambda r, v: r.set_allocation("g", {"p": 0.5, "q": 0.5}, reason=v)),
        ("display_name", lambda r, v: r.add_user("bob", display_name=v)),
        ("user_id", lambda r, v: r.add_user(v)),
        ("portfolio_id", lambda r, v: r.create_portfolio(v, 1.0)),
    ],
)
def test_hostile_text_is_refused_naming_the_field(reg, field, call, bad):
    before = reg.store.dump()
    with pytest.raises(ValidationError) as e:
        call(reg, bad)
    assert e.value.field == field
    assert reg.store.dump() == before


@pytest.mark.parametrize(
    ("field", "limit", "call"),
    [
        ("memo", MAX_MEMO_LENGTH, lambda r, v: r.record_cash(5.0, portfolio="p", ts=T, memo=v)),
        ("name", MAX_NAME_LENGTH, lambda r, v: r.update_portfolio("p", name=v)),
        ("description", MAX_TEXT_LENGTH, lambda r, v: r.update_portfolio("p", description=v)),
        ("tags", MAX_TAG_LENGTH, lambda r, v: r.update_portfolio("p", tags=[v])),
        ("reason", MAX_MEMO_LENGTH, lambda r, v: r.set_allocation("g", None, reason=v)),
    ],
)
def test_text_limits_are_inclusive_and_enforced(reg, field, limit, call):
    call(reg, "x" * limit)  # at the limit: accepted
    before = reg.store.dump()
    with pytest.raises(ValidationError) as e:
        call(reg, "x" * (limit + 1))
    assert e.value.field == field and reg.store.dump() == before


def test_tag_count_is_bounded_and_free_text_keeps_line_breaks(reg):
    reg.update_portfolio("p", tags=[f"t{i}" for i in range(MAX_TAGS)])
    with pytest.raises(ValidationError, match="at most"):
        reg.update_portfolio("p", tags=[f"t{i}" for i in range(MAX_TAGS + 1)])
    reg.update_portfolio("p", description="line one\n\tline two\r\n")
    assert reg.portfolio("p").description == "line one\n\tline two\r\n"
    with pytest.raises(ValidationError):
        reg.update_portfolio("p", name="two\nlines")  # names are single-line


def test_check_text_and_json_value_contracts():
    assert check_text("<script>alert(1)</script>", "f") == "<script>alert(1)</script>"  # escaped
    # on display, not refused
    with pytest.raises(ValidationError, match="surrogate"):
        check_text("\udfff", "f")
    assert json_value({"a": [1, 2.5, None, True, "x"]}, "c") == {"a": [1, 2.5, None, True, "x"]}
    with pytest.raises(ValidationError) as e:
        json_value({"a": {"b": [0, float("nan")]}}, "c")
    assert e.value.field == "c.a.b[1]"
    nested = {}
    for _ in range(40):
        nested = {"k": nested}
    with pytest.raises(ValidationError, match="deeper"):
        json_value(nested, "c")
    with pytest.raises(ValidationError, match="keys must be strings"):
        json_value({1: "a"}, "c")
    assert safe_text("a\ud800b\x00c") == "a\\ud800bc"
    assert len(safe_text("y" * 5000)) == MAX_MEMO_LENGTH


def _coordinator(reg):
    returns = pd.Series([0.01, -0.005, 0.002, 0.004, -0.001], index=TIMES)
    StrategyManager(reg, "p").register_strategy("alpha", returns, 0.5)
    return StrategyCoordinator(reg)


def test_a_rejected_signal_stores_its_input_once_and_bounded(reg):
    coord = _coordinator(reg)
    marker = "unique-payload-marker-" + "z" * 50
    before = reg.store.dump()
    with pytest.raises(ValidationError) as e:
        coord.process_signal(
            {
                "symbol": "AAA",
                "side": "sideways",
                "entry": 140.0,
                "stop": 130.0,
                "target": 160.0,
                "strategy": "alpha",
                "portfolio": "p",
                "note": marker,
                "blob": "b" * 1_000_000,
                "bad": "\ud800",
            }
        )
    assert e.value.field == "side"
    after = reg.store.dump()
    new_rows = {t: [r for r in rows if r not in before[t]] for t, rows in after.items()}
    text = json.dumps(new_rows, default=str)
    assert text.count(marker) == 1  # on the rejection record only, not also in the audit
    [rec] = [r for r in new_rows["entities"] if r[0] == "signal"]
    stored = json.loads(rec[3])["input"]
    assert stored["note"] == marker and stored["bad"] == "\\ud800"
    assert len(stored["blob"]) == MAX_MEMO_LENGTH  # bounded: a flood is not stored
    assert len(text) < 20_000
    # an accepted signal records its input on the received audit (its record is normalized)
    ok = coord.process_signal(
        {
            "symbol": "AAA",
            "side": "long",
            "entry": 140.0,
            "stop": 130.0,
            "target": 160.0,
            "strategy": "alpha",
            "portfolio": "p",
            "note": marker,
            "time": datetime(2024, 1, 5),
        }
    )
    received = [a for a in reg.store.audit(target=ok.id) if a.action == "signal.received"]
    assert received[0].after["input"]["note"] == marker


def test_signal_fields_and_metadata_are_checked(reg):
    coord = _coordinator(reg)
    base = {
        "symbol": "AAA",
        "side": "long",
        "entry": 140.0,
        "stop": 130.0,
        "target": 160.0,
        "strategy": "alpha",
        "portfolio": "p",
    }
    for change, field in [
        ({"entry": 10**400}, "entry"),
        ({"entry": 2e9}, "entry"),
        ({"confidence": True}, "confidence"),
        ({"strategy": "al\x00pha"}, "strategy"),
        ({"extra": float("nan")}, "metadata.extra"),
        ({"extra": {"k": object()}}, "metadata.extra.k"),
        ({"extra": ["e" * 5_000] * 4}, "metadata"),
        ({"time": "2024-13-01"}, "time"),
    ]:
        with pytest.raises(ValidationError) as e:
            coord.process_signal({**base, **change})
        assert e.value.field == field, change
