"""The books stay finite and correctable: bounded numbers, typed refusals, trade guards."""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal

import numpy as np
import pytest
from hostile import BEFORE, MARKET, T

from pmkit.errors import (
    ConfigError,
    InsufficientCashError,
    LimitExceededError,
    PriceBandError,
    ShortSaleError,
    ValidationError,
)
from pmkit.execution import Fill, FillRecorder, Order, PaperBroker
from pmkit.ledger import LedgerEntry
from pmkit.registry import Registry
from pmkit.store import open_store
from pmkit.validation import MAX_AMOUNT, MAX_BALANCE, MAX_PRICE, MAX_QUANTITY


@pytest.fixture
def reg():
    r = Registry.open(":memory:", market=MARKET)
    r.create_portfolio("p", 1_000_000.0, at=BEFORE)
    r.record_trade("AAA", 100.0, 100.0, portfolio="p", ts=datetime(2024, 1, 1, 16))
    return r


def refused(reg, error, field, call):
    """``call`` raises ``error`` naming ``field``, and nothing in the store changed."""
    before = reg.store.dump()
    with pytest.raises(error) as info:
        call()
    assert info.value.field == field
    assert reg.store.dump() == before
    return info.value


# -- magnitudes and consequences ----------------------------------------------------------------
def test_a_trade_whose_cash_would_be_infinite_is_refused_before_it_is_written(reg):
    # 1e308 units at 10: each input finite, the product (and so cash) is not
    refused(
        reg,
        LimitExceededError,
        "quantity",
        lambda: reg.record_trade("AAA", 1e308, 120.0, portfolio="p", ts=T),
    )
    # within each bound, but quantity * price beyond MAX_AMOUNT
    err = refused(
        reg,
        LimitExceededError,
        "notional",
        lambda: reg.record_trade(
            "AAA", 1e10, 1e6, portfolio="p", ts=T, force=True, reason="bounds"
        ),
    )
    assert err.value == 1e16
    assert math.isfinite(reg.positions("p").cash)


def test_balances_beyond_their_bound_are_refused(reg):
    # three deposits of MAX_AMOUNT / 2 would leave cash above MAX_BALANCE (= MAX_AMOUNT)
    reg.record_cash(MAX_AMOUNT / 2, portfolio="p", ts=T)
    err = refused(
        reg,
        LimitExceededError,
        "cash",
        lambda: reg.record_cash(MAX_AMOUNT / 2, portfolio="p", ts=T),
    )
    assert err.value == reg.positions("p").cash + MAX_AMOUNT / 2 > MAX_BALANCE
    # a position beyond MAX_QUANTITY: BBB at 10, cheap enough to afford 1e12 - 100 units?
    # no: 1e13 notional > MAX_AMOUNT is fine, but the position bound bites first at 1e12
    reg.set_config("p", {"price_band": 1e6})
    reg.record_trade("BBB", MAX_QUANTITY / 2, 0.001, portfolio="p", ts=T, force=True, reason="test")
    err = refused(
        reg,
        LimitExceededError,
        "position",
        lambda: reg.record_trade("BBB", MAX_QUANTITY / 2 + 1, 0.001, portfolio="p", ts=T),
    )
    assert err.value == MAX_QUANTITY + 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("quantity", 10**400),
        ("quantity", Decimal("1")),
        ("quantity", True),
        ("quantity", np.bool_(True)),
        ("quantity", "1"),
        ("quantity", None),
        ("quantity", [1.0]),
        ("quantity", math.nan),
        ("price", -math.inf),
        ("price", Decimal("120")),
        ("price", 10**400),
        ("fee", math.nan),
        ("fee", -1.0),
        ("fee", "0"),
    ],
)
def test_wrong_numbers_get_a_typed_error_naming_the_field(reg, field, value):
    args = {"quantity": 1.0, "price": 120.0, "fee": 0.0, field: value}
    refused(
        reg,
        ValidationError,
        field,
        lambda: reg.record_trade(
            "AAA", args["quantity"], args["price"], fee=args["fee"], portfolio="p", ts=T
        ),
    )


def test_limits_are_one_documented_set():
    assert (MAX_QUANTITY, MAX_PRICE, MAX_AMOUNT, MAX_BALANCE) == (1e12, 1e9, 1e15, 1e15)
    with pytest.raises(LimitExceededError) as e:
        LedgerEntry("p", "trade", T, asset="AAA", quantity=1.0, price=MAX_PRICE * 2).validated()
    assert e.value.field == "price"
    with pytest.raises(LimitExceededError) as e:
        LedgerEntry("p", "cash", T, amount=-MAX_AMOUNT * 1.5).validated()
    assert e.value.field == "amount"


def test_numpy_scalars_are_accepted_and_stored_as_python_floats(tmp_path):
    path = tmp_path / "np.db"
    store = open_store(str(path))
    reg = Registry(store, market=MARKET)
    reg.create_portfolio("p", np.float32(50_000.0), at=BEFORE)
    reg.record_trade(
        "AAA", np.int64(3), np.float32(120.5), fee=np.float64(1.25), portfolio="p", ts=T
    )
    reg.record_cash(np.int32(-7), portfolio="p", ts=T)
    reg.create_group("g", ["p"], allocation={"p": np.float64(1.0)})
    trade, cash = reg.ledger("p")[1:]
    assert (trade.quantity, trade.price, trade.fee, cash.amount) == (3.0, 120.5, 1.25, -7.0)
    assert all(type(v) is float for v in (trade.quantity, trade.price, trade.fee, cash.amount))
    before = store.dump()
    store.close()
    again = open_store(str(path))
    assert again.dump() == before  # byte-identical after reopen
    assert again.positions("p").cash == 50_000.0 - 3 * 120.5 - 1.25 - 7.0


# -- record_trade guards ----------------------------------------------------------------------
def test_a_sale_of_more_than_is_held_needs_allow_short(reg):
    err = refused(
        reg,
        ShortSaleError,
        "quantity",
        lambda: reg.record_trade("AAA", -101.0, 120.0, portfolio="p", ts=T),
    )
    assert "allow_short" in str(err)
    reg.record_trade("AAA", -100.0, 120.0, portfolio="p", ts=T)  # selling what is held is fine
    reg.create_group("shorts", ["p"], config={"allow_short": True})  # inherited from a group
    reg.record_trade("AAA", -50.0, 120.0, portfolio="p", ts=T)
    assert reg.positions("p").quantities["AAA"] == -50.0


def test_a_trade_below_zero_cash_needs_margin(reg):
    cash = reg.positions("p").cash  # 1e6 - 100 * 100 = 990,000
    units = math.floor(cash / 120.0)
    refused(
        reg,
        InsufficientCashError,
        "quantity",
        lambda: reg.record_trade("AAA", units + 1.0, 120.0, portfolio="p", ts=T),
    )
    reg.record_trade("AAA", float(units), 120.0, portfolio="p", ts=T)
    left = reg.positions("p").cash
    assert 0 <= left < 120.0
    reg.set_config("p", {"margin_limit": 1_000.0})
    reg.record_trade("AAA", 8.0, 120.0, portfolio="p", ts=T)  # 960 more: cash >= -1,000
    refused(
        reg,
        InsufficientCashError,
        "quantity",
        lambda: reg.record_trade("AAA", 1.0, 120.0, portfolio="p", ts=T),
    )
    refused(
        reg, InsufficientCashError, "amount", lambda: reg.record_cash(-100.0, portfolio="p", ts=T)
    )  # withdrawals too
    reg.record_trade("AAA", -1.0, 120.0, portfolio="p", ts=T)  # raising cash is always fine


def test_a_price_off_the_last_close_needs_force_and_a_reason(reg):
    # at T the last close is 120 (Jan 3); 151 is 25.8 % away, 149 is 24.2 %
    err = refused(
        reg,
        PriceBandError,
        "price",
        lambda: reg.record_trade("AAA", 1.0, 151.0, portfolio="p", ts=T),
    )
    assert "120" in str(err)
    reg.record_trade("AAA", 1.0, 149.0, portfolio="p", ts=T)
    # the close at or before the trade time counts: on Jan 5 (close 140) 151 is in band
    reg.record_trade("AAA", 1.0, 151.0, portfolio="p", ts=datetime(2024, 1, 5, 18))
    refused(
        reg,
        ValidationError,
        "reason",
        lambda: reg.record_trade("AAA", 1.0, 200.0, portfolio="p", ts=T, force=True),
    )
    refused(
        reg,
        ValidationError,
        "reason",
        lambda: reg.record_trade("AAA", 1.0, 200.0, portfolio="p", ts=T, force=True, reason="  "),
    )
    seq = reg.record_trade(
        "AAA", 1.0, 200.0, portfolio="p", ts=T, force=True, reason="negotiated block"
    )
    audit = [a for a in reg.store.audit(target="p") if a.action == "ledger.trade"][-1]
    assert audit.after["seq"] == seq
    assert (audit.after["force"], audit.after["reason"]) == (True, "negotiated block")
    reg.set_config("p", {"price_band": 0.7})
    reg.record_trade("AAA", 1.0, 200.0, portfolio="p", ts=T)  # 66.7 % < 70 %


def test_the_guards_hold_on_the_service_path_too(reg):
    with pytest.raises(ShortSaleError), reg.mutation("test.append", "p") as m:
        m.append_trade("p", "AAA", -500.0, 120.0, ts=T)
    with pytest.raises(PriceBandError), reg.mutation("test.append", "p") as m:
        m.append_trade("p", "AAA", 1.0, 500.0, ts=T)
    # fills are booked through the same path
    PaperBroker(reg).submit([Order("o-1", "p", "AAA", 10.0, 120.0, "paper")])
    recorder = FillRecorder(reg)
    with pytest.raises(PriceBandError):
        recorder.record(Fill("o-1", 5.0, 500.0, 0.0, T, "f-1"))
    with pytest.raises(LimitExceededError):
        recorder.record(Fill("o-1", 5.0, 121.0, 1e300, T, "f-1"))
    after = recorder.record(Fill("o-1", 5.0, np.float32(121.0), 1.0, T, "f-1"))
    assert after.filled == 5.0 and reg.positions("p").quantities["AAA"] == 105.0


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"allow_short": "yes"}, "values.allow_short"),
        ({"allow_short": 1}, "values.allow_short"),
        ({"margin_limit": -1.0}, "values.margin_limit"),
        ({"margin_limit": 1e300}, "values.margin_limit"),
        ({"price_band": 0.0}, "values.price_band"),
        ({"max_position_weight": 1.5}, "values.max_position_weight"),
        ({"deep": {"a": {"b": math.inf}}}, "values.deep.a.b"),
        ({"n": 10**400}, "values.n"),
        ({"text": "\ud800"}, "values.text"),
    ],
)
def test_config_numbers_and_guard_keys_are_checked(reg, values, field):
    err = refused(reg, ValidationError, field, lambda: reg.set_config("p", values))
    assert isinstance(err, ConfigError | LimitExceededError)


def test_check_number_contract():
    from pmkit.validation import check_number

    assert type(check_number(np.float32(0.1), "x")) is float
    assert check_number(np.float32(0.1), "x") == float(np.float32(0.1))  # exact, not rounded
    assert math.copysign(1.0, check_number(-0.0, "x")) == -1.0  # stored as given
    assert check_number(np.int64(2**53), "x", limit=1e16) == 2.0**53
    with pytest.raises(LimitExceededError):
        check_number(1e16, "x")  # default limit MAX_AMOUNT
    with pytest.raises(ConfigError, match=r"in \[0, 1\]"):
        check_number(1.5, "x", minimum=0.0, maximum=1.0, error=ConfigError)
    for bad in (np.bool_(False), Decimal("0"), "0", None, 10**400, complex(1, 0)):
        with pytest.raises(ValidationError) as e:
            check_number(bad, "x")
        assert e.value.field == "x"
