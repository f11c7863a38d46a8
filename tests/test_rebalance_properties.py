"""Properties of the trade planner and the allocation transfers (hypothesis).

For random books, prices, lot sizes, targets and linear + square-root costs:
cash after the trades and their costs never drops below the floor, long-only
sales never exceed holdings, every quantity is whole lots, and the planner's
own figures agree with an independent recomputation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pmkit.rebalance import allocation_transfers, plan_trades

LOTS = st.sampled_from([1.0, 5.0, 10.0, 100.0])
PRICE = st.floats(0.5, 2_000.0, allow_nan=False)
UNITS = st.floats(0.0, 50_000.0, allow_nan=False)


@st.composite
def books(draw, negative_cash: bool = False):
    n = draw(st.integers(1, 6))
    prices = np.array(draw(st.lists(PRICE, min_size=n, max_size=n)))
    lots = np.array(draw(st.lists(LOTS, min_size=n, max_size=n)))
    held = np.array(draw(st.lists(UNITS, min_size=n, max_size=n)))
    whole = draw(st.booleans())  # whole-lot holdings, or odd lots too
    if whole:
        held = np.floor(held / lots) * lots
    sellable = float(np.floor(held / lots + 1e-9) * lots @ prices)  # value in whole lots
    raw = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)))
    invest = draw(st.floats(0.0, 1.0))
    targets = raw / raw.sum() * invest if raw.sum() > 0 else raw
    floor = draw(st.floats(0.0, 50_000.0))
    if negative_cash:
        # a transfer out: cash below the floor by less than half the whole lots' value
        assume(sellable > 20.0)
        cash = floor - draw(st.floats(1.0, 0.5 * sellable))
    else:
        cash = floor + draw(st.floats(0.0, 1e6))
    rate = draw(st.floats(0.0, 0.01))
    impact = np.array(draw(st.lists(st.floats(0.0, 0.05), min_size=n, max_size=n)))
    # raising cash from a sale needs its cost below its proceeds: no 1000-day trades there
    adv = draw(st.floats(1e8 if negative_cash else 1e5, 1e9))
    band = draw(st.sampled_from([0.0, 0.0, 0.005, 0.02, 0.1]))
    min_value = draw(st.sampled_from([0.0, 0.0, 100.0, 5_000.0]))
    return {
        "assets": [f"A{i}" for i in range(n)],
        "held": held,
        "cash": cash,
        "prices": prices,
        "lots": lots,
        "targets": targets,
        "floor": floor,
        "rate": rate,
        "impact": impact,
        "adv": adv,
        "band": band,
        "min_value": min_value,
    }


def _costs(book):
    """Linear + square-root impact in currency, the shape of `CostModel.breakdown`."""

    def costs(q):
        notional = np.abs(q) * book["prices"]
        return notional * book["rate"] + notional * book["impact"] * np.sqrt(
            notional / book["adv"]
        )

    return costs


def _plan(book):
    return plan_trades(
        book["assets"],
        book["held"],
        book["cash"],
        book["prices"],
        book["lots"],
        book["targets"],
        no_trade_band=book["band"],
        min_trade_value=book["min_value"],
        cash_floor=book["floor"],
        costs=_costs(book),
    )


def _check_common(book, plan):
    q, p, lots, held = plan.trades, book["prices"], book["lots"], book["held"]
    # whole lots
    ratio = q / lots
    assert np.allclose(ratio, np.round(ratio), atol=1e-9, rtol=0)
    # long only: never sell more than held
    assert (held + q >= -1e-9).all()
    # the planner's cash and costs, recomputed
    costs = _costs(book)(q)
    assert plan.costs == pytest.approx(costs, abs=1e-9)
    cash_after = book["cash"] - q @ p - costs.sum()
    assert plan.cash_after == pytest.approx(cash_after, rel=1e-12, abs=1e-6)
    # never overdraws below the floor
    assert cash_after >= book["floor"] - 1e-9
    # turnover from the rounded trades
    nav = book["cash"] + held @ p
    nav_after = cash_after + (held + q) @ p
    w0, w1 = held * p / nav, (held + q) * p / nav_after
    assert plan.turnover == pytest.approx(np.abs(w1 - w0).sum() / 2, rel=1e-9, abs=1e-12)
    # sells come first
    signs = [np.sign(q[i]) for i in plan.order]
    assert signs == sorted(signs)
    return w0


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(books())
def test_plan_never_overdraws_and_respects_lots_band_and_minimum(book):
    nav = book["cash"] + book["held"] @ book["prices"]
    assume(nav > 1.0)
    plan = _plan(book)
    w0 = _check_common(book, plan)
    q, p = plan.trades, book["prices"]
    ideal = book["targets"] * nav / p - book["held"]
    in_band = np.abs(book["targets"] - w0) <= book["band"]
    assert plan.raised == {}  # the cash starts at or above the floor: sales only add to it
    assert (q[in_band] == 0).all()
    traded = q != 0
    # a trade goes the ideal way and is never bigger than the ideal one
    assert (np.sign(q[traded]) == np.sign(ideal[traded])).all()
    assert (np.abs(q) <= np.abs(ideal) + 1e-9 * np.maximum(np.abs(ideal), 1.0)).all()
    assert (np.abs(q[traded]) * p[traded] >= book["min_value"] - 1e-9).all()
    # sales are the ideal rounded toward zero (buys may also be cut to fit the cash)
    sells = traded & (q < 0)
    lots = book["lots"]
    assert (np.abs(ideal[sells] - q[sells]) < lots[sells] + 1e-9).all()
    # what is left out says why
    for i, a in enumerate(book["assets"]):
        if q[i] == 0 and abs(ideal[i]) * p[i] > 1e-9 * nav:
            assert a in plan.skipped
        if a in plan.skipped:
            assert q[i] == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(books(negative_cash=True))
def test_cash_below_the_floor_is_raised_by_whole_lot_sales(book):
    plan = _plan(book)
    _check_common(book, plan)
    assert plan.cash_shortfall == 0.0
    for a, units in plan.raised.items():
        i = book["assets"].index(a)
        assert units > 0 and plan.trades[i] < 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.0, 1e9), min_size=1, max_size=6),
    st.lists(st.integers(0, 1000), min_size=6, max_size=6),
)
def test_transfers_conserve_cash_and_hit_the_targets(navs, raw):
    members = [f"p{i}" for i in range(len(navs))]
    weights = np.array(raw[: len(members)], dtype=float)
    assume(weights.sum() > 0)
    shares = dict(zip(members, weights / weights.sum(), strict=True))
    nav = dict(zip(members, navs, strict=True))
    targets, transfers = allocation_transfers(nav, shares)
    cents = {m: round(nav[m] * 100) for m in members}
    total = sum(cents.values())
    net = dict.fromkeys(members, 0)
    for t in transfers:
        assert t.amount > 0 and t.source != t.destination
        c = round(t.amount * 100)
        assert c == pytest.approx(t.amount * 100, rel=1e-12, abs=1e-6)
        net[t.source] -= c
        net[t.destination] += c
    assert sum(net.values()) == 0  # conserved, exactly
    assert sum(round(targets[m] * 100) for m in members) == total
    for m in members:
        assert cents[m] + net[m] == round(targets[m] * 100)
        assert abs(targets[m] * 100 - shares[m] * total) <= 1 + 1e-6 * max(total, 1)
    sources = {t.source for t in transfers}
    assert not sources & {t.destination for t in transfers}
    assert len(transfers) <= max(len(members) - 1, 0)


@settings(max_examples=100, deadline=None)
@given(st.floats(1.0, 1e6), st.floats(0.01, 0.99), st.sampled_from([1.0, 10.0, 100.0]),
       st.floats(1.0, 500.0))
def test_single_asset_buy_is_the_largest_whole_lot_count_that_fits(cash, w, lot, price):
    # With a 1 % linear cost, the buy is floor(min(w * cash / price, cash / (1.01 price)) / lot).
    plan = plan_trades(["A"], [0.0], cash, [price], [lot], [w],
                       costs=lambda q: np.abs(q) * price * 0.01)
    ideal_lots = w * cash / price / lot
    fit_lots = cash / (1.01 * price * lot)
    expected = math.floor(min(ideal_lots, fit_lots) + 1e-9) * lot
    assert plan.trades[0] == expected
    assert plan.cash_after >= -1e-9
