"""Overviews and the frontier-to-proposal path, checked against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr

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
from pmkit.risk import STANDARD_WINDOWS

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


def _with_unpriced_asset(reg):
    """The demo's store over its market plus NEWC, an asset with no close at all."""
    from pmkit.registry import Registry

    market = reg.market
    newc = market.isel(asset=[0]).assign_coords(asset=["NEWC"])
    newc["close"][:] = np.nan
    newc["close_filled"][:] = False
    return Registry(reg.store, user="system", market=xr.concat([market, newc], dim="asset"))


@pytest.fixture
def odd_books():
    """The demo plus an empty book, a cash-only book and a book holding an unpriced asset.

    Returns the registry, the plain demo's overviews (computed first) and the
    unpriced book's trade.
    """
    demo = open_demo()
    before = (portfolio_overview(demo), group_overview(demo))
    reg = _with_unpriced_asset(demo)
    times = reg.market.indexes["time"]
    reg.create_portfolio("client_c/empty", 0.0, name="Empty")
    reg.create_portfolio("client_c/cash", 1000.0, name="Cash only",
                         at=times[-3].to_pydatetime())
    reg.create_portfolio("client_c/ipo", 10_000.0, name="Pre-IPO", at=times[-5].to_pydatetime())
    # an allocation before the listing: no close to check the price against, hence force
    reg.record_trade("NEWC", 10, 50.0, portfolio="client_c/ipo", ts=times[-4].to_pydatetime(),
                     fee=1.0, force=True, reason="IPO allocation")
    reg.create_group("client_c", ["client_c/empty", "client_c/cash"], name="Client C")
    for pid in ("client_c/empty", "client_c/cash", "client_c/ipo"):
        reg.add_to_group("firm", pid)
    return reg, before, times[-4]


def test_books_without_value_or_prices_blank_no_other_row(odd_books):
    reg, (ports0, groups0), traded = odd_books
    ports, groups = portfolio_overview(reg), group_overview(reg)
    demo_ids = list(ports0.index)
    # every other book's figures are those of the plain demo, and finite
    cols = ["value", "day_pnl", "day_return", "volatility", "var"]
    pd.testing.assert_frame_equal(ports.loc[demo_ids, cols], ports0[cols])
    assert np.isfinite(ports.loc[demo_ids, cols].to_numpy(float)).all()
    pd.testing.assert_frame_equal(groups.loc[["client_a", "client_b"], cols],
                                  groups0.loc[["client_a", "client_b"], cols])
    # risk of a book of cash is zero, not unknown; a book with no value has none
    assert ports.loc["client_c/cash", ["value", "volatility", "var"]].tolist() == [1000.0, 0, 0]
    assert ports.loc["client_c/empty", "value"] == 0.0
    assert ports.loc["client_c/empty", ["volatility", "var", "day_return"]].isna().all()
    assert groups.loc["client_c", ["value", "volatility", "var"]].tolist() == [1000.0, 0, 0]
    # the unpriced position is marked at its trade price, and the screen can say when
    assert ports.loc["client_c/ipo", "value"] == pytest.approx(10_000.0 - 1.0)
    assert ports.loc["client_c/ipo", "priced_at"] == traded.normalize()
    assert ports.loc["client_c/ipo", ["volatility", "var"]].isna().all()  # no returns at all
    # the firm holds it: its value adds up, its risk cannot be measured, nobody else's goes
    assert groups.loc["firm", "value"] == pytest.approx(
        groups0.loc["firm", "value"] + 1000.0 + 9_999.0, rel=1e-12)
    assert groups.loc["firm", ["volatility", "var"]].isna().all()
    assert groups.loc["firm", "priced_at"] == traded.normalize()
    assert groups.loc["client_a", "priced_at"] == reg.market.indexes["time"][-1]
    assert pd.isna(ports.loc["client_c/cash", "priced_at"])  # no position to price

    ds = risk_overview(reg, lookback=252)
    shown = [str(p) for p in ds["portfolio"].values]
    assert shown == [*demo_ids, "client_c/ipo"]  # invested books only: not empty, not cash
    plain = risk_overview(open_demo(), lookback=252)
    for name in ("es", "var", "volatility"):
        np.testing.assert_allclose(ds[name].sel(portfolio=demo_ids), plain[name], rtol=1e-12)
    assert np.isnan(float(ds["es"].sel(portfolio="client_c/ipo")))
    # NEWC was listed in no crisis window: the stress replays none of that book
    assert ds["stress_coverage"].sel(portfolio="client_c/ipo").values.tolist() == [0.0, 0.0]


def test_cash_deposited_after_the_last_close_counts_at_once():
    reg = open_demo()
    before_p, before_g = portfolio_overview(reg), group_overview(reg)
    last = reg.market.indexes["time"][-1]
    pid = reg.create_portfolio("client_c/new", 100_000.0, name="New")  # dated now, years later
    assert reg.ledger(pid)[0].ts > last.to_pydatetime()
    reg.add_to_group("firm", pid)
    ports, groups = portfolio_overview(reg), group_overview(reg)
    row = ports.loc[pid]
    assert (row["cash"], row["value"], row["day_pnl"]) == (100_000.0, 100_000.0, 0.0)
    assert (row["volatility"], row["var"]) == (0.0, 0.0)
    assert groups.loc["firm", "value"] == pytest.approx(before_g.loc["firm", "value"] + 100_000)
    # a deposit is a flow, not a gain: the firm's day P&L is the same
    assert groups.loc["firm", "day_pnl"] == pytest.approx(before_g.loc["firm", "day_pnl"])
    assert groups.loc["firm", "value"] == pytest.approx(ports["value"].sum(), rel=1e-12)

    # a trade booked today is valued at the last close, not left out
    price = float(reg.market["close"].sel(asset="AAPL", time=last))
    reg.record_trade("AAPL", 100, price * 1.01, portfolio=pid, fee=2.0)
    row = portfolio_overview(reg).loc[pid]
    assert row["cash"] == pytest.approx(100_000.0 - 100 * price * 1.01 - 2.0)
    assert row["value"] == pytest.approx(row["cash"] + 100 * price)
    assert row["day_pnl"] == pytest.approx(100 * price - 100 * price * 1.01 - 2.0)
    assert row["priced_at"] == last and ports.attrs["as_of"] == last
    assert before_p.loc["client_a/growth", "value"] == ports.loc["client_a/growth", "value"]


def test_positions_are_marked_at_the_last_real_close():
    """A close missing for longer than the fill limit keeps the last real one, and says so."""
    from pmkit.registry import Registry

    demo = open_demo()
    market = demo.market.copy(deep=True)
    times = market.indexes["time"]
    held = demo.positions("client_a/growth").quantities
    gap = market["close"].sel(asset="AAPL").copy()
    gap.loc[{"time": times[-8:]}] = np.nan  # suspended for the last 8 days
    market["close"].loc[{"asset": "AAPL"}] = gap
    # MSFT's last close forward-filled from the day before, as market validation does
    msft = {"asset": "MSFT", "time": times[-1]}
    market["close"].loc[msft] = float(market["close"].sel(asset="MSFT", time=times[-2]))
    market["close_filled"].loc[msft] = True
    reg = Registry(demo.store, user="system", market=market)
    ports = portfolio_overview(reg)
    closes = demo.market["close"].sel(time=times[-1])
    mark = {"AAPL": times[-9], "MSFT": times[-2]}
    expected = reg.positions("client_a/growth").cash + sum(
        q * float(demo.market["close"].sel(asset=a, time=mark[a])) if a in mark
        else q * float(closes.sel(asset=a))
        for a, q in held.items())
    assert ports.loc["client_a/growth", "value"] == pytest.approx(expected, rel=1e-12)
    assert ports.loc["client_a/growth", "priced_at"] == times[-9]  # the oldest price behind it
    assert ports.loc["client_a/income", "priced_at"] == times[-1]
    # the risk overview values the same books at the same prices, and says so
    risk = risk_overview(reg, ["client_a/growth", "client_a/income"], drawdown=False)
    assert risk["priced_at"].to_series().to_dict() == \
        ports.loc[["client_a/growth", "client_a/income"], "priced_at"].to_dict()


def test_stress_says_how_much_of_the_book_it_covers(reg):
    ds = risk_overview(reg, lookback=252)
    closes = reg.market["close"].transpose("time", "asset").to_pandas()
    for pid in ds["portfolio"].values:
        pos = reg.positions(str(pid)).quantities
        value = {a: abs(q) * closes[a].iloc[-1] for a, q in pos.items() if q}
        for scenario in ds["scenario"].values:
            # listed: a close on the trading day before the window's first day
            start = pd.Timestamp(STANDARD_WINDOWS[str(scenario)][0])
            base = closes.index[closes.index.searchsorted(start) - 1]
            listed = sum(v for a, v in value.items() if np.isfinite(closes.at[base, a]))
            assert float(ds["stress_coverage"].sel(portfolio=pid, scenario=scenario)) == \
                pytest.approx(listed / sum(value.values()), rel=1e-12)
    # the factor ETFs listed in 2014: Lehman replays none of that book, so its 0 is no figure
    lehman = ds.sel(portfolio="client_b/factors", scenario="Lehman")
    assert float(lehman["stress_coverage"]) == 0.0 and float(lehman["stress_return"]) == 0.0
    assert float(ds["stress_coverage"].sel(portfolio=GROWTH, scenario="Covid crash")) == 1.0


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



def test_other_users_and_new_books_reuse_the_compiled_programs(reg, caplog):
    """Risk batches are padded: fewer books, or one more, compile no new JAX program."""
    import logging

    import jax

    lookback = 321  # a window no other test uses, so its programs are compiled here first
    risk_overview(reg, lookback=lookback)
    portfolio_overview(reg, lookback=lookback)
    group_overview(reg, lookback=lookback)
    alice = reg.as_user("alice")  # two portfolios where the administrator sees four
    reg.create_portfolio("client_c/new", 5_000.0, name="New")
    caplog.clear()
    with caplog.at_level(logging.WARNING), jax.log_compiles(True):
        ds = risk_overview(alice, lookback=lookback)
        portfolio_overview(alice, lookback=lookback)
        portfolio_overview(reg, lookback=lookback)  # five books now
        group_overview(alice, lookback=lookback)
    compiled = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
    assert compiled == []
    assert [str(p) for p in ds["portfolio"].values] == reg.get_group_portfolios("client_a")


def test_warm_up_computes_every_overview_once(reg):
    from pmkit.analytics.overview import warm_up

    took = warm_up(reg)
    assert set(took) == {"portfolios", "groups", "risk"} and min(took.values()) > 0
    entries = len(reg.derived)
    portfolio_overview(reg), group_overview(reg), risk_overview(reg)
    assert len(reg.derived) == entries  # all served from what the warm-up computed
    # nothing invested yet: the risk overview refuses, so the warm-up leaves it out
    from pmkit.registry import Registry
    from pmkit.store import open_store

    fresh = Registry(open_store(":memory:"), market=reg.market)
    fresh.create_portfolio("desk/cash", 100.0)
    assert set(warm_up(fresh)) == {"portfolios", "groups"}
