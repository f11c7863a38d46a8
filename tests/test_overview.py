"""Overviews and the frontier-to-proposal path, checked against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pmkit.analytics.overview import (
    TRADING_DAYS,
    group_overview,
    portfolio_overview,
    risk_overview,
)
from pmkit.demo import open_demo
from pmkit.errors import PermissionDenied, ValidationError
from pmkit.rebalance import ProposalBook, ProposalState
from pmkit.rebalance.frontier import (
    frontier_targets,
    portfolio_frontier,
    propose_frontier_point,
    returns_window,
)

GROWTH = "client_a/growth"


@pytest.fixture
def reg():
    return open_demo()


def _port_returns(reg, pid, lookback):
    """Daily returns of today's weights over the window, by hand with pandas."""
    market = reg.market
    as_of = market.indexes["time"][-1]
    closes = market["close"].transpose("time", "asset").to_pandas()
    window = closes.loc[:as_of].iloc[-(lookback + 1):].pct_change(fill_method=None).iloc[1:]
    pos = reg.positions(pid)
    prices = closes.loc[as_of]
    nav = pos.cash + sum(q * prices[a] for a, q in pos.quantities.items())
    w = pd.Series({a: q * prices[a] / nav for a, q in pos.quantities.items() if q})
    return window[w.index].to_numpy() @ w.to_numpy(), nav


def test_portfolio_overview_matches_summary_ledger_and_hand_risk(reg):
    df = portfolio_overview(reg, lookback=252, confidence=0.95)
    summary = reg.summary()
    pd.testing.assert_frame_equal(df[summary.columns], summary)
    times = reg.market.indexes["time"]
    for pid in df.index:
        # no cash flows on the last day: the day's P&L is the change in value
        change = reg.value(pid, at=times[-1]) - reg.value(pid, at=times[-2])
        assert df.loc[pid, "day_pnl"] == pytest.approx(change, abs=1e-6)
        assert df.loc[pid, "day_return"] == pytest.approx(
            change / reg.value(pid, at=times[-2]), rel=1e-12)
        r, _ = _port_returns(reg, pid, 252)
        assert df.loc[pid, "volatility"] == pytest.approx(
            np.std(r, ddof=1) * math.sqrt(TRADING_DAYS), rel=1e-9)
        assert df.loc[pid, "var"] == pytest.approx(
            np.quantile(-r, 0.95, method="inverted_cdf"), rel=1e-9)


def test_day_pnl_excludes_a_deposit_and_cache_follows_the_store(reg):
    before = portfolio_overview(reg)
    last = reg.market.indexes["time"][-1]
    reg.record_cash(50_000.0, portfolio=GROWTH, ts=last.to_pydatetime().replace(hour=12),
                    memo="top-up")
    after = portfolio_overview(reg)
    assert after.loc[GROWTH, "value"] == pytest.approx(before.loc[GROWTH, "value"] + 50_000.0)
    assert after.loc[GROWTH, "day_pnl"] == pytest.approx(before.loc[GROWTH, "day_pnl"], abs=1e-6)
    # more cash, same positions: risk per unit of value falls
    assert after.loc[GROWTH, "volatility"] < before.loc[GROWTH, "volatility"]


def test_an_uninvested_portfolio_has_no_risk(reg):
    reg.create_portfolio("client_c/cash", 1000.0, name="Cash only",
                         at=reg.market.indexes["time"][-3].to_pydatetime())
    df = portfolio_overview(reg)
    assert df.loc["client_c/cash", "value"] == pytest.approx(1000.0)
    assert math.isnan(df.loc["client_c/cash", "volatility"])
    assert math.isnan(df.loc["client_c/cash", "var"])


def test_viewer_sees_only_what_they_may_view(reg):
    alice = reg.as_user("alice")
    assert set(portfolio_overview(alice).index) == set(reg.get_group_portfolios("client_a"))
    with pytest.raises(PermissionDenied):
        risk_overview(alice, ["client_b/balanced"])


def test_group_overview_consolidates_members(reg):
    groups = group_overview(reg, lookback=252)
    ports = portfolio_overview(reg, lookback=252)
    for gid in groups.index:
        members = reg.get_group_portfolios(gid)
        assert groups.loc[gid, "members"] == len(members)
        assert groups.loc[gid, "value"] == pytest.approx(reg.group_value(gid), rel=1e-12)
        assert groups.loc[gid, "day_pnl"] == pytest.approx(ports.loc[members, "day_pnl"].sum())
    # firm risk is that of the combined book: value-weighted member return series
    series = {pid: _port_returns(reg, pid, 252) for pid in reg.get_group_portfolios("firm")}
    total = sum(nav for _, nav in series.values())
    combined = sum(r * nav / total for r, nav in series.values())
    assert groups.loc["firm", "volatility"] == pytest.approx(
        np.std(combined, ddof=1) * math.sqrt(TRADING_DAYS), rel=1e-9)
    assert groups.loc["firm", "volatility"] < ports["volatility"].max()  # diversification


def test_risk_overview_contributions_stress_and_drawdowns(reg):
    ds = risk_overview(reg, confidence=0.95, lookback=504)
    assert ds["volatility"].attrs["annualized"] == 1  # labelled like every shown volatility
    np.testing.assert_allclose(ds["contribution"].sum("asset"), ds["es"], atol=1e-12)
    assert (ds["es"] >= ds["var"]).all()
    navs = {pid: reg.value(pid) for pid in ds["portfolio"].values}
    for pid, nav in navs.items():
        np.testing.assert_allclose(ds["stress_pnl"].sel(portfolio=pid),
                                   ds["stress_return"].sel(portfolio=pid) * nav, rtol=1e-9)
    # growth had no external flows after its start: its drawdown is that of its value,
    # which a hand replay of the ledger over the closes gives
    times = ds.indexes["time"]
    closes = reg.market["close"].transpose("time", "asset").to_pandas()
    days = closes.index[(closes.index >= times[0] - pd.Timedelta(days=7))
                        & (closes.index <= times[-1])]
    days = days[days.searchsorted(times[0]) - 1:]  # the day before the first return
    entries = reg.ledger(GROWTH)
    assert [e.kind for e in entries].count("cash") == 1
    values = []
    for day in days:
        done = [e for e in entries if pd.Timestamp(e.ts).normalize() <= day]
        cash = sum(e.amount - e.fee - e.quantity * e.price for e in done)
        held: dict[str, float] = {}
        for e in done:
            if e.kind == "trade":
                held[e.asset] = held.get(e.asset, 0.0) + e.quantity
        values.append(cash + sum(q * closes.at[day, a] for a, q in held.items()))
    wealth = np.array(values[1:]) / values[0]
    expected = wealth / np.maximum(np.maximum.accumulate(wealth), 1.0) - 1.0
    np.testing.assert_allclose(ds["drawdown"].sel(portfolio=GROWTH).values, expected,
                               atol=1e-12)
    assert float(ds["drawdown"].max()) <= 0.0


def test_risk_overview_is_cached_until_a_change(reg):
    a = risk_overview(reg, lookback=252)
    a["es"][:] = 99.0  # the caller's copy; the cache must not see this
    b = risk_overview(reg, lookback=252)
    assert float(b["es"].max()) < 1.0


def test_frontier_respects_the_cap_and_turns_into_a_proposal(reg):
    alice = reg.as_user("alice")
    window = returns_window(alice, GROWTH, lookback=252)
    assert not bool(window.isnull().any()) and window.sizes["time"] == 252
    frontier = portfolio_frontier(alice, GROWTH, points=6, lookback=252)
    cap = reg.resolve_config(GROWTH)["max_position_weight"]
    assert float(frontier.weights.max()) <= cap + 1e-7
    targets = frontier_targets(frontier, 3)
    assert sum(targets.values()) == pytest.approx(1.0, abs=1e-5)
    proposal = propose_frontier_point(alice, GROWTH, frontier, 3)
    stored = ProposalBook(reg).get(proposal.id)
    assert stored.state == ProposalState.PROPOSED and stored.created_by == "alice"
    assert stored.reason == "efficient frontier point 3"
    assert stored.target_weights[GROWTH] == pytest.approx(targets)


def test_frontier_proposal_refused_changes_nothing(reg):
    frontier = portfolio_frontier(reg, GROWTH, points=4, lookback=252)
    snapshot = reg.store.dump()
    with pytest.raises(PermissionDenied):
        propose_frontier_point(reg.as_user("carol"), GROWTH, frontier, 1)
    with pytest.raises(ValidationError, match="point"):
        propose_frontier_point(reg.as_user("alice"), GROWTH, frontier, 4)
    with pytest.raises(ValidationError, match="frontier"):
        propose_frontier_point(reg.as_user("alice"), "client_a/income", frontier, 1)
    assert reg.store.dump() == snapshot


def test_bad_arguments_are_named(reg):
    with pytest.raises(ValidationError, match="confidence"):
        portfolio_overview(reg, confidence=1.5)
    with pytest.raises(ValidationError, match="lookback"):
        group_overview(reg, lookback=5)
    with pytest.raises(ValidationError, match="lookback"):
        returns_window(reg, GROWTH, lookback=10)

