"""Property tests of the paper broker: for random holdings, cash, orders, sessions and
participation, no fill takes cash below zero (or below -margin x NAV with margin), sales
never go short, order records add up their ledger trades, and positions replay."""

from __future__ import annotations

from datetime import datetime

import hypothesis.strategies as st
import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings

from pmkit.datasets import load_market
from pmkit.execution import Order, PaperBroker
from pmkit.ledger import Positions
from pmkit.registry import Registry

MARKET = load_market()
TIMES = MARKET.indexes["time"]
POOL = ["AAPL", "KO", "PG", "XOM", "MSFT", "JPM"]
PID = "prop/book"
FIRST = TIMES.get_loc(pd.Timestamp("2022-06-01"))
LAST_CLOSE = MARKET["close"].ffill("time")


def close(asset: str, t) -> float:
    return float(LAST_CLOSE.sel(asset=asset, time=t))


def run(cash, holdings, orders, start, sessions, *, margin=0.0, participation=None):
    """A fresh registry: deposit, buy ``holdings`` at the start close, submit ``orders``
    to a paper broker and step through ``sessions`` market times."""
    reg = Registry.open(":memory:", market=MARKET)
    t0 = TIMES[start - 1]
    cost = sum(q * close(a, t0) for a, q in holdings.items())
    # the books allow what the broker's margin does (an amount; the broker's bound is tighter)
    config = {"margin_limit": 1e12} if margin else None
    reg.create_portfolio(PID, cash + cost, at=t0.to_pydatetime(), config=config)
    for a, q in holdings.items():
        reg.record_trade(a, float(q), close(a, t0), portfolio=PID, ts=t0.to_pydatetime())
    paper = PaperBroker(reg, margin=margin, participation=participation)
    paper.submit(
        [
            Order(f"ord-{i}", PID, a, float(q), close(a, t0), "paper", created_at=f"{i:03d}")
            for i, (a, q) in enumerate(orders)
        ]
    )
    for t in TIMES[start : start + sessions]:
        paper.step(t)
    return reg


def overdrafts(reg, margin: float) -> list[tuple[int, float, float]]:
    """Fills that took cash below ``-margin * NAV`` (NAV at the fill's closes before it),
    found by replaying the ledger here: ``(seq, cash after, floor)``."""
    pos = Positions()
    bad = []
    for e in reg.store.ledger(PID):
        if e.kind == "trade" and e.memo.startswith("ord-"):
            nav = pos.cash + sum(q * close(a, e.ts) for a, q in pos.quantities.items())
            floor = -margin * max(nav, 0.0)
            before = pos.cash
            pos.apply(e)
            slack = 1e-9 * abs(nav) if margin else 0.0  # NAV summed in another order
            if pos.cash < min(floor, before) - slack:
                bad.append((e.seq, pos.cash, floor))
        else:
            pos.apply(e)
    return bad


def check_books(reg) -> None:
    assert reg.store.positions(PID) == reg.store.replay(PID)
    trades = [e for e in reg.store.ledger(PID) if e.memo.startswith("ord-")]
    for rec in reg.store.list("order"):
        mine = [e.quantity for e in trades if e.memo == rec.id]
        o = rec.data
        assert o["filled"] == sum(mine) if mine else o["filled"] == 0
        assert abs(o["filled"]) <= abs(o["quantity"])
        assert all(np.sign(q) == np.sign(o["quantity"]) for q in mine)
        assert rec.status == (
            "filled" if o["filled"] == o["quantity"] else "partially_filled" if mine else "open"
        )
    pos = Positions()
    for e in reg.store.ledger(PID):
        pos.apply(e)
        assert all(q >= 0 for q in pos.quantities.values())  # no shorts by default


holdings_st = st.dictionaries(st.sampled_from(POOL), st.integers(1, 800), max_size=4)
orders_st = st.lists(
    st.tuples(st.sampled_from(POOL), st.integers(-900, 900).filter(bool)), min_size=1, max_size=6
)
common = {
    "cash": st.floats(0.0, 3e5),
    "holdings": holdings_st,
    "orders": orders_st,
    "start": st.integers(FIRST, FIRST + 100),
    "sessions": st.integers(1, 4),
    "participation": st.one_of(st.none(), st.floats(1e-5, 1e-3)),
}
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(**common)
def test_without_margin_no_fill_takes_cash_below_zero(
    cash, holdings, orders, start, sessions, participation
):
    reg = run(cash, holdings, orders, start, sessions, participation=participation)
    assert overdrafts(reg, 0.0) == []
    pos = Positions()
    floor = None
    for e in reg.store.ledger(PID):
        if e.memo.startswith("ord-") and floor is None:
            # the set-up's deposit and purchases may leave -1e-14 of round-off
            floor = min(0.0, pos.cash)
        pos.apply(e)
        if floor is not None:
            assert pos.cash >= floor
    check_books(reg)


@SETTINGS
@given(**common, margin=st.floats(0.01, 1.0))
def test_with_margin_no_fill_takes_cash_below_minus_margin_nav(
    cash, holdings, orders, start, sessions, participation, margin
):
    reg = run(cash, holdings, orders, start, sessions, margin=margin, participation=participation)
    assert overdrafts(reg, margin) == []
    check_books(reg)


def test_margin_really_lets_cash_go_negative_and_the_check_catches_an_overdraft():
    args = ({"KO": 1000}, [("PG", 900), ("AAPL", 900)], FIRST + 10, 2)
    plain = run(10_000.0, *args)
    levered = run(10_000.0, *args, margin=0.5)
    assert plain.store.positions(PID).cash >= 0
    assert levered.store.positions(PID).cash < 0  # borrowed ...
    assert overdrafts(levered, 0.5) == []  # ... within the limit
    assert overdrafts(levered, 0.0) != []  # and the zero-margin check would have failed it
    bought = [
        sum(e.quantity for e in r.store.ledger(PID) if e.memo.startswith("ord-") and e.quantity > 0)
        for r in (plain, levered)
    ]
    assert bought[1] > bought[0]


def test_fill_times_are_session_times():
    reg = run(50_000.0, {}, [("KO", 300)], FIRST, 3, participation=1e-4)
    stamps = [e.ts for e in reg.store.ledger(PID) if e.memo.startswith("ord-")]
    assert stamps and set(stamps) <= {t.to_pydatetime() for t in TIMES[FIRST : FIRST + 3]}
    assert all(isinstance(s, datetime) for s in stamps)
