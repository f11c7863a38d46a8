"""Rebalance proposals: trade lists, costs, risk, group transfers, permissions.

Closed forms on hand-built books for the pure trade planner; on the demo
registry (real prices), every proposal figure is recomputed independently
from the ledger, the market and the cost model.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from pmkit.demo import open_demo
from pmkit.errors import (
    AllocationError,
    InvalidIdError,
    NotFoundError,
    PermissionDenied,
    UnknownAssetError,
    ValidationError,
)
from pmkit.execution import CostModel
from pmkit.model import simple_returns
from pmkit.optimize import Constraints, MaximumSharpe, MinimumVariance
from pmkit.rebalance import (
    ProposalState,
    RebalanceProposal,
    allocation_transfers,
    group_shares,
    lots_toward_zero,
    plan_trades,
    propose_rebalance,
    risk_snapshot,
)

AT = "2022-06-30"
GROWTH = "client_a/growth"
INCOME = "client_a/income"


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def system():
    return open_demo()


@pytest.fixture(scope="module")
def alice(system):
    return system.as_user("alice")


@pytest.fixture(scope="module")
def market(system):
    return system.market


@pytest.fixture(scope="module")
def window(market):
    """The 756 daily returns ending at AT, recomputed here from the closes."""
    close = market["close"].sel(time=slice(None, AT)).isel(time=slice(-757, None))
    return (close / close.shift(time=1) - 1.0).isel(time=slice(1, None))


@pytest.fixture(scope="module")
def mv_proposal(alice):
    return propose_rebalance(alice, GROWTH, MinimumVariance(), at=AT)


@pytest.fixture(scope="module")
def group_proposal(alice):
    return propose_rebalance(alice, "client_a", at=AT)


def _close(market, asset):
    return float(market["close"].sel(asset=asset, time=pd.Timestamp(AT)))


def _book(system, pid):
    """Units and cash of ``pid`` at AT, from the ledger replay (independent of the builder)."""
    h = system.holdings([pid], times=[pd.Timestamp(AT)]).isel(time=0)
    q = h["quantity"].sel(portfolio=pid).to_series()
    return {a: float(x) for a, x in q.items() if x != 0}, float(h["cash"].sel(portfolio=pid))


def _flows(proposal, pid):
    return sum(t.amount for t in proposal.transfers if t.destination == pid) - sum(
        t.amount for t in proposal.transfers if t.source == pid
    )


# -- trade list closed forms ------------------------------------------------------------------


def test_buy_from_cash_is_exact_whole_lots():
    # NAV 100,000 all cash, price 50, lot 10, target 0.3 -> 30,000 / 50 = 600 units = 60 lots.
    plan = plan_trades(["A"], [0.0], 100_000.0, [50.0], [10], [0.3])
    assert plan.trades.tolist() == [600.0]
    assert plan.cash_after == pytest.approx(70_000.0, abs=1e-9)
    # 0.2937 -> 587.4 units: rounded down to 58 lots.
    plan = plan_trades(["A"], [0.0], 100_000.0, [50.0], [10], [0.2937])
    assert plan.trades.tolist() == [580.0]
    assert plan.weights_after[0] == pytest.approx(580 * 50 / 100_000)


def test_sells_round_toward_zero_and_come_first():
    # 1,000 A at 50 (50,000) + 50,000 cash; A -> 0.2937 wants to sell 412.6: sells 410.
    plan = plan_trades(["A", "B"], [1000.0, 0.0], 50_000.0, [50.0, 25.0], [10, 100], [0.2937, 0.5])
    assert plan.trades[0] == -410.0
    # B: 50,000 / 25 = 2,000 units = 20 lots exactly
    assert plan.trades[1] == 2000.0
    assert plan.order == [0, 1]
    plan = plan_trades(["B", "A"], [0.0, 1000.0], 50_000.0, [25.0, 50.0], [100, 10], [0.5, 0.2937])
    assert plan.order == [1, 0]  # the sale of A first, though listed second


def test_lot_multiples_and_below_one_lot():
    prices, lots = [7.0, 13.0, 900.0], [100, 3, 10]
    plan = plan_trades(["A", "B", "C"], [0.0] * 3, 10_000.0, prices, lots, [0.3, 0.3, 0.3])
    # A: 3,000 / 7 = 428.6 -> 400; B: 3,000 / 13 = 230.8 -> 228; C: 3.33 units < one lot of 10
    assert plan.trades.tolist() == [400.0, 228.0, 0.0]
    assert plan.skipped == {"C": "below one lot"}
    assert lots_toward_zero([-19.0, 19.0, 20.0 - 1e-12], 10).tolist() == [-10.0, 10.0, 20.0]


def test_no_trade_band():
    # A is 50 % of NAV 100,000; target 52 %: a 2-point gap.
    args = (["A"], [1000.0], 50_000.0, [50.0], [1], [0.52])
    inside = plan_trades(*args, no_trade_band=0.02)
    assert inside.trades.tolist() == [0.0]
    assert inside.skipped == {"A": "band"}
    outside = plan_trades(*args, no_trade_band=0.019)
    assert outside.trades.tolist() == [40.0]  # 2,000 / 50
    assert outside.skipped == {}


def test_minimum_trade_value():
    args = (["A"], [0.0], 100_000.0, [50.0], [1], [0.02])  # 2,000 of A
    assert plan_trades(*args, min_trade_value=2_000.0).trades.tolist() == [40.0]
    dropped = plan_trades(*args, min_trade_value=2_000.01)
    assert dropped.trades.tolist() == [0.0]
    assert dropped.skipped == {"A": "min_trade_value"}


def test_buys_scaled_to_fit_cash_and_costs():
    # 10,000 cash, all into A at 100 with 1 % linear cost: 100 units would cost 10,100.
    # The most units that fit: n * 101 <= 10,000 -> 99.
    plan = plan_trades(
        ["A"], [0.0], 10_000.0, [100.0], [1], [1.0], costs=lambda q: np.abs(q) * 100.0 * 0.01
    )
    assert plan.trades.tolist() == [99.0]
    assert plan.cash_after == pytest.approx(10_000 - 99 * 101)
    assert plan.scaled == {"A": 100.0}
    assert 0.99 <= plan.buy_scale < 1.0
    # A cash floor of 500 leaves room for 94 units (94 * 101 = 9,494 <= 9,500).
    floored = plan_trades(
        ["A"], [0.0], 10_000.0, [100.0], [1], [1.0], cash_floor=500.0,
        costs=lambda q: np.abs(q) * 100.0 * 0.01,
    )
    assert floored.trades.tolist() == [94.0]
    assert floored.cash_after >= 500.0


def test_cash_below_floor_is_raised_by_selling_the_most_overweight_first():
    # After a 5,000 transfer out: cash -5,000, 200 A at 50 and 100 B at 100 -> NAV 15,000.
    # A band of 1 blocks every ordinary trade; A is the more overweight (66.7 % vs target 40 %).
    plan = plan_trades(
        ["A", "B"], [200.0, 100.0], -5_000.0, [50.0, 100.0], [1, 1], [0.4, 0.6], no_trade_band=1.0
    )
    assert plan.trades.tolist() == [-100.0, 0.0]  # 5,000 / 50
    assert plan.raised == {"A": 100.0}
    assert plan.cash_after == pytest.approx(0.0, abs=1e-9)


def test_full_exit_leaves_the_odd_lot():
    plan = plan_trades(["A"], [25.0], 0.0, [10.0], [10], [0.0])
    assert plan.trades.tolist() == [-20.0]
    assert plan.odd_lots == {"A": 5.0}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"no_trade_band": -0.01}, "no_trade_band"),
        ({"min_trade_value": -1.0}, "min_trade_value"),
        ({"cash_floor": float("nan")}, "cash_floor"),
    ],
)
def test_planner_rejects_bad_parameters(kwargs, field):
    with pytest.raises(ValidationError) as err:
        plan_trades(["A"], [0.0], 1000.0, [1.0], [1], [0.5], **kwargs)
    assert err.value.field == field


def test_planner_rejects_shorts_and_bad_prices():
    with pytest.raises(ValidationError) as err:
        plan_trades(["A", "B"], [0.0, 0.0], 1000.0, [1.0, 1.0], [1, 1], [0.5, -0.1])
    assert err.value.field == "target_weights[B]"
    with pytest.raises(ValidationError) as err:
        plan_trades(["A", "B"], [0.0, 0.0], 1000.0, [1.0, 0.0], [1, 1], [0.5, 0.1])
    assert err.value.field == "prices[B]"


def test_allocation_transfers_closed_form():
    targets, transfers = allocation_transfers({"a": 600.0, "b": 400.0}, {"a": 0.7, "b": 0.3})
    assert targets == {"a": 700.0, "b": 300.0}
    assert [(t.source, t.destination, t.amount) for t in transfers] == [("b", "a", 100.0)]
    # 300.01 split three ways: 100.01 + 100.00 + 100.00 (largest remainder, first on ties)
    targets, transfers = allocation_transfers(
        {"a": 100.0, "b": 100.0, "c": 100.01}, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    )
    assert targets == {"a": 100.01, "b": 100.0, "c": 100.0}
    assert [(t.source, t.destination, t.amount) for t in transfers] == [("c", "a", 0.01)]
    with pytest.raises(AllocationError):
        allocation_transfers({"a": 1.0}, {"a": 0.5, "b": 0.5})


# -- costs: lines, totals and the optimizer's cost term ----------------------------------------


def test_line_costs_equal_cost_model_estimates(mv_proposal, market):
    model = CostModel()
    assert mv_proposal.cost_model == model.to_dict()
    assert mv_proposal.trades
    for line in mv_proposal.trades:
        est = model.estimate(market, line.asset, line.quantity, _close(market, line.asset), AT)
        assert line.price == _close(market, line.asset)
        assert line.commission == pytest.approx(est.commission, rel=1e-12)
        assert line.spread == pytest.approx(est.spread, rel=1e-12)
        assert line.impact == pytest.approx(est.impact, rel=1e-12)
    total = sum(t.commission + t.spread + t.impact for t in mv_proposal.trades)
    assert mv_proposal.estimated_cost == pytest.approx(total, rel=1e-12)
    assert mv_proposal.info["estimated_cost"][GROWTH] == pytest.approx(total, rel=1e-12)


def test_optimizer_cost_term_agrees_with_cost_model_in_currency(mv_proposal, market, system):
    # Two paths: TransactionCosts in weights (what the optimizer minimises) times V versus the
    # sum of CostModel breakdowns of the very trades proposed.
    model = CostModel()
    units, _ = _book(system, GROWTH)
    v = mv_proposal.info["nav_planned"][GROWTH]
    assets = sorted({*units, *(t.asset for t in mv_proposal.trades)})
    w0 = {a: units.get(a, 0.0) * _close(market, a) / v for a in assets}
    w1 = dict(w0)
    for t in mv_proposal.trades:
        w1[t.asset] += t.quantity * t.price / v
    tc = model.transaction_costs(market, assets, v, AT)
    resolved = Constraints(current_weights=w0, costs=tc).resolve(assets)
    in_weights = resolved.cost(np.array([w1[a] for a in assets]))
    assert in_weights * v == pytest.approx(mv_proposal.estimated_cost, rel=1e-9)
    # and for one small trade of 10 AAPL
    price = _close(market, "AAPL")
    one = Constraints(current_weights={"AAPL": 0.0}, costs=model.transaction_costs(
        market, ["AAPL"], 1e6, AT)).resolve(["AAPL"]).cost(np.array([10 * price / 1e6]))
    assert one * 1e6 == pytest.approx(model.estimate(market, "AAPL", 10, price, AT).total, rel=1e-9)


# -- portfolio proposal from an optimizer --------------------------------------------------------


def test_portfolio_proposal_fields(mv_proposal):
    p = mv_proposal
    assert p.state is ProposalState.PROPOSED
    assert p.id.startswith("rb-") and len(p.id) == 3 + 32
    assert p.created_by == "alice"
    assert (p.scope, p.scope_kind, p.portfolios) == (GROWTH, "portfolio", [GROWTH])
    assert p.method == "MinimumVariance"
    assert p.as_of == "2022-06-30T00:00:00"
    created = datetime.fromisoformat(p.created_at)
    assert datetime.fromisoformat(p.expires_at) - created == timedelta(days=1)
    assert p.transfers == [] and p.history == []
    assert p.info["optimizer"]["costs_in_optimizer"] is True
    assert p.info["window"] == {
        "start": "2019-07-02T00:00:00", "end": "2022-06-30T00:00:00", "periods": 756
    }
    sells = [t.quantity < 0 for t in p.trades]
    assert sells == sorted(sells, reverse=True)  # every sale before every purchase
    # JSON round trip, as the workflow will store it
    assert RebalanceProposal.from_record(json.loads(json.dumps(p.to_record()))) == p


def test_targets_are_the_cost_aware_optimizer_refit(mv_proposal, market, window, system):
    model = CostModel()
    units, cash = _book(system, GROWTH)
    v = cash + sum(q * _close(market, a) for a, q in units.items())
    assets = [str(a) for a in window["asset"].values]
    w0 = {a: q * _close(market, a) / v for a, q in units.items()}
    tc = model.transaction_costs(market, assets, v, AT)
    ref = MinimumVariance(Constraints(current_weights=w0, costs=tc)).fit(window).weights
    got = mv_proposal.target_weights[GROWTH]
    for a in assets:
        assert got.get(a, 0.0) == pytest.approx(max(float(ref.sel(asset=a)), 0.0), abs=1e-6)
    # the target is not the cost-free optimum: costs keep it nearer the holdings
    free = MinimumVariance().fit(window).weights
    assert float(np.abs(free - ref).sum()) > 1e-4


def test_rounded_trades_land_within_one_lot_of_the_targets(alice, market, system):
    # A 1 % cash floor in the optimizer leaves room for the costs, so no buy is scaled:
    # every asset ends strictly less than one lot from its ideal holding.
    opt = MinimumVariance(Constraints(cash_floor=0.01))
    p = propose_rebalance(alice, GROWTH, opt, at=AT)
    assert p.info["buy_scale"][GROWTH] == 1.0
    assert opt.constraints.costs is None and opt.constraints.current_weights is None
    units, cash = _book(system, GROWTH)
    v = cash + sum(q * _close(market, a) for a, q in units.items())
    lots = market["lot_size"].to_series()
    for a in {*units, *p.target_weights[GROWTH]}:
        ideal = p.target_weights[GROWTH].get(a, 0.0) * v / _close(market, a)
        traded = sum(t.quantity for t in p.trades if t.asset == a)
        assert abs(units.get(a, 0.0) + traded - ideal) < lots[a]
        assert traded % lots[a] == 0


def test_turnover_cash_and_risk_recomputed(mv_proposal, market, window, system):
    p = mv_proposal
    units, cash = _book(system, GROWTH)
    v = cash + sum(q * _close(market, a) for a, q in units.items())
    after_units = dict(units)
    for t in p.trades:
        after_units[t.asset] = after_units.get(t.asset, 0.0) + t.quantity
        assert after_units[t.asset] >= 0  # long only: never sold more than held
    cash_after = cash - sum(t.quantity * t.price + t.estimated_cost for t in p.trades)
    assert cash_after >= 0
    assert p.info["cash_after"][GROWTH] == pytest.approx(cash_after, abs=1e-6)
    v_after = cash_after + sum(q * _close(market, a) for a, q in after_units.items())
    assert v_after == pytest.approx(v - p.estimated_cost, rel=1e-12)
    assets = sorted(after_units)
    w0 = np.array([units.get(a, 0.0) * _close(market, a) / v for a in assets])
    w1 = np.array([after_units[a] * _close(market, a) / v_after for a in assets])
    assert p.turnover[GROWTH] == pytest.approx(np.abs(w1 - w0).sum() / 2, rel=1e-9)
    assert p.turnover[GROWTH] > 0.5  # minimum variance leaves the tech-heavy book
    # risk after, from the weights the rounded trades leave
    r = window.sel(asset=assets).values.T
    vol = math.sqrt(w1 @ np.cov(r, rowvar=False, ddof=1) @ w1 * 252)
    assert p.risk_after[GROWTH].volatility == pytest.approx(vol, rel=1e-9)
    var = np.quantile(-(r @ w1), 0.95, method="inverted_cdf")
    assert p.risk_after[GROWTH].var == pytest.approx(var, rel=1e-9)
    assert p.risk_after[GROWTH].cash == pytest.approx(cash_after / v_after, abs=1e-12)
    vol0 = math.sqrt(w0 @ np.cov(r, rowvar=False, ddof=1) @ w0 * 252)
    assert p.risk_before[GROWTH].volatility == pytest.approx(vol0, rel=1e-9)
    assert p.risk_after[GROWTH].volatility < p.risk_before[GROWTH].volatility


def test_optimizer_that_refuses_costs_is_fitted_without_them(alice):
    p = propose_rebalance(alice, GROWTH, MaximumSharpe(), at=AT, no_trade_band=0.01)
    opt = p.info["optimizer"]
    assert opt["costs_in_optimizer"] is False
    assert "refused transaction costs" in opt["note"]
    for asset, reason in p.info["skipped"][GROWTH].items():
        if reason == "band":
            gap = p.target_weights[GROWTH].get(asset, 0.0) - p.current_weights[GROWTH].get(
                asset, 0.0
            )
            assert abs(gap) <= 0.01
            assert all(t.asset != asset for t in p.trades)


def test_explicit_targets_band_and_minimum_trade(alice, market, system):
    units, cash = _book(system, GROWTH)
    v = cash + sum(q * _close(market, a) for a, q in units.items())
    now = {a: q * _close(market, a) / v for a, q in units.items()}
    targets = {a: w for a, w in now.items()}
    targets["AAPL"] = now["AAPL"] + 0.004  # inside a 0.5 % band
    targets["MSFT"] = now["MSFT"] - 0.02  # outside it
    targets["XOM"] = 0.006  # a buy of about 6,800: outside the band, below a 10,000 minimum
    p = propose_rebalance(
        alice, GROWTH, target_weights=targets, at=AT, no_trade_band=0.005, min_trade_value=10_000.0
    )
    assert p.method == "target_weights"
    traded = {t.asset: t.quantity for t in p.trades}
    assert set(traded) == {"MSFT"}
    assert traded["MSFT"] == -math.floor(0.02 * v / _close(market, "MSFT"))
    assert p.info["skipped"][GROWTH]["AAPL"] == "band"
    assert p.info["skipped"][GROWTH]["XOM"] == "min_trade_value"


# -- group proposal ----------------------------------------------------------------------------


def test_group_transfers_meet_the_allocation(group_proposal, system):
    p = group_proposal
    assert p.scope_kind == "group" and set(p.portfolios) == {GROWTH, INCOME}
    assert p.method == "current_weights"
    navs = {pid: system.value(pid, at=AT) for pid in p.portfolios}
    total = sum(navs.values())
    # conservation, exactly in cents
    assert sum(round(_flows(p, pid) * 100) for pid in p.portfolios) == 0
    assert all(t.amount > 0 and round(t.amount * 100) == t.amount * 100 for t in p.transfers)
    for pid, share in {GROWTH: 0.7, INCOME: 0.3}.items():
        assert navs[pid] + _flows(p, pid) == pytest.approx(share * total, abs=0.01)
    # growth is under 70 % at AT: income pays it
    assert [(t.source, t.destination) for t in p.transfers] == [(INCOME, GROWTH)]
    assert RebalanceProposal.from_record(json.loads(json.dumps(p.to_record()))) == p


def test_group_members_trade_on_their_post_transfer_nav(group_proposal, market, system):
    p = group_proposal
    for pid in p.portfolios:
        units, cash = _book(system, pid)
        cash += _flows(p, pid)
        trades = [t for t in p.trades if t.portfolio == pid]
        cash_after = cash - sum(t.quantity * t.price + t.estimated_cost for t in trades)
        assert cash_after >= -1e-9
        after = dict(units)
        for t in trades:
            after[t.asset] = after.get(t.asset, 0.0) + t.quantity
        v_after = cash_after + sum(q * _close(market, a) for a, q in after.items())
        # each member keeps its own mix, resized: within one unit of each asset's target
        for a, w in p.target_weights[pid].items():
            ideal = w * p.info["nav_planned"][pid] / _close(market, a)
            assert abs(after[a] - ideal) < 1 + 1e-9 + (1 - p.info["buy_scale"][pid]) * ideal
        assert v_after == pytest.approx(
            p.info["nav_planned"][pid] - sum(t.estimated_cost for t in trades), rel=1e-12
        )


def test_nested_group_shares_multiply_down():
    reg = open_demo()
    with pytest.raises(AllocationError) as err:
        group_shares(reg, "firm")
    assert err.value.field == "allocation[firm]"
    with pytest.raises(AllocationError):
        propose_rebalance(reg, "firm", at=AT)
    reg.set_allocation("firm", {"client_a": 0.6, "client_b": 0.4})
    shares = group_shares(reg, "firm")
    expected = {GROWTH: 0.42, INCOME: 0.18, "client_b/balanced": 0.3, "client_b/factors": 0.1}
    assert shares.keys() == expected.keys()
    for k, v in expected.items():
        assert shares[k] == pytest.approx(v, abs=1e-15)


def test_cash_floor_is_kept_after_costs(alice, market, system):
    p = propose_rebalance(
        alice, GROWTH, target_weights={"AAPL": 0.5, "MSFT": 0.5}, at=AT, cash_floor=50_000.0
    )
    _, cash = _book(system, GROWTH)
    cash_after = cash - sum(t.quantity * t.price + t.estimated_cost for t in p.trades)
    assert 50_000.0 <= cash_after < 50_000.0 + _close(market, "AAPL") + _close(market, "MSFT")
    assert p.info["cash_after"][GROWTH] == pytest.approx(cash_after, abs=1e-6)
    assert set(p.info["scaled_buys"][GROWTH]) == {"AAPL", "MSFT"}


def test_group_with_per_portfolio_targets(alice):
    targets = {GROWTH: {"AAPL": 0.5, "MSFT": 0.45}, INCOME: {"KO": 0.6, "PG": 0.35}}
    p = propose_rebalance(alice, "client_a", target_weights=targets, at=AT)
    assert p.target_weights == targets
    assert {t.asset for t in p.trades if t.portfolio == INCOME} >= {"JNJ", "PEP", "XOM"}


# -- risk snapshot ---------------------------------------------------------------------------------


def test_risk_snapshot_closed_forms(window, market):
    w = {"AAPL": 0.3, "MSFT": 0.2, "XOM": 0.1, "USMV": 0.15}
    snap = risk_snapshot(w, simple_returns(market).sel(time=window.time), market)
    assets = list(w)
    x = np.array(list(w.values()))
    r = window.sel(asset=assets).values.T
    assert snap.volatility == pytest.approx(
        math.sqrt(x @ np.cov(r, rowvar=False, ddof=1) @ x * 252), rel=1e-10
    )
    assert snap.var == pytest.approx(np.quantile(-(r @ x), 0.95, method="inverted_cdf"), rel=1e-10)
    assert snap.confidence == 0.95
    assert snap.cash == pytest.approx(0.25)
    assert sum(snap.sectors.values()) == pytest.approx(0.75)
    sectors = market["sector"].to_series()
    by_hand = pd.Series(w).groupby(sectors.reindex(assets).values).sum().to_dict()
    assert snap.sectors == pytest.approx(by_hand)
    cash_only = risk_snapshot({}, window, market, confidence=0.99)
    assert (cash_only.volatility, cash_only.var, cash_only.cash) == (0.0, 0.0, 1.0)


# -- permissions and bad inputs ----------------------------------------------------------------


def test_viewer_may_not_propose_and_nothing_is_written(system, alice):
    carol = system.as_user("carol")
    before = system.store.dump()
    for scope in ("client_a", GROWTH):
        with pytest.raises(PermissionDenied) as err:
            propose_rebalance(carol, scope, MinimumVariance(), at=AT)
        assert err.value.action == "proposal.create"
    # permission is checked before the arguments
    with pytest.raises(PermissionDenied):
        propose_rebalance(carol, GROWTH, MinimumVariance(), no_trade_band=-1.0)
    # a successful proposal is a value: the store is untouched too
    propose_rebalance(alice, GROWTH, target_weights={"AAPL": 0.5}, at=AT)
    assert system.store.dump() == before


@pytest.mark.parametrize(
    ("scope", "kwargs", "error", "field"),
    [
        (GROWTH, {"target_weights": {"AAPL": 0.5}, "no_trade_band": -0.01}, ValidationError,
         "no_trade_band"),
        (GROWTH, {"target_weights": {"AAPL": 0.7, "MSFT": 0.4}}, ValidationError,
         "target_weights"),
        (GROWTH, {"target_weights": {"ZZZZ": 0.1}}, UnknownAssetError, "target_weights[ZZZZ]"),
        (GROWTH, {"target_weights": {"AAPL": -0.1}}, ValidationError, "target_weights[AAPL]"),
        (GROWTH, {"target_weights": {"client_b/factors": {"AAPL": 0.1}}}, ValidationError,
         "target_weights[client_b/factors]"),
        (GROWTH, {}, ValidationError, "optimizer"),
        (GROWTH, {"target_weights": {"AAPL": 0.5}, "optimizer": MinimumVariance()},
         ValidationError, "target_weights"),
        (GROWTH, {"target_weights": {"AAPL": 0.5}, "lookback": 10}, ValidationError, "lookback"),
        (GROWTH, {"target_weights": {"AAPL": 0.5}, "universe": ["AAPL", "NOPE"]},
         UnknownAssetError, "universe[NOPE]"),
        (GROWTH, {"target_weights": {"AAPL": 0.5}, "at": "1980-01-01"}, ValidationError, "at"),
        ("client_a/nope", {"target_weights": {"AAPL": 0.5}}, NotFoundError, None),
        ("Not An Id", {"target_weights": {"AAPL": 0.5}}, InvalidIdError, "scope"),
    ],
)
def test_bad_inputs_raise_typed_errors(alice, scope, kwargs, error, field):
    kwargs = {"at": AT, **kwargs}
    with pytest.raises(error) as err:
        propose_rebalance(alice, scope, **kwargs)
    if field is not None:
        assert err.value.field == field
