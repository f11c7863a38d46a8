"""Transaction-cost analysis of parent orders (`pmkit.execution.tca`).

Reference: Perold, A. (1988), "The implementation shortfall: paper versus
reality", Journal of Portfolio Management 14(3); the expanded decomposition
into delay, trading (timing + impact), opportunity and fees as in Kissell &
Glantz, *Optimal Trading Strategies* (2003), ch. 2.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from pmkit.codec import encode
from pmkit.errors import InsufficientDataError, PmkitError, ValidationError
from pmkit.execution import CostModel, Order
from pmkit.execution.plan import ChildFill, ExecutionPlan
from pmkit.execution.tca import (
    COMPONENTS,
    TCAReport,
    calibration_error,
    shortfall,
    tca,
)
from tests.hostile import FUZZ, anything, json_like, numbers, texts


def parent(quantity, decision, arrival, fills, close, *, id="P1", portfolio="p1", asset="AAA",
           algorithm="twap", strategy=None, estimate=None, vwap=None, params=None,
           last_price=0.0):
    """A parent order as the engine stores it; ``fills`` are (q, price, market, fee[, spread,
    impact]) tuples, ``vwap`` is (market value, market volume)."""
    children = tuple(
        ChildFill(child=f"{id}-c{j}", interval=j + 1, venue="paper", ts="2024-01-02T15:00:00",
                  quantity=f[0], price=f[1], market_price=f[2], fee=f[3],
                  spread=f[4] if len(f) > 4 else 0.0, impact=f[5] if len(f) > 5 else 0.0)
        for j, f in enumerate(fills))
    value, volume = vwap or (0.0, 0.0)
    plan = ExecutionPlan(algorithm=algorithm, session="2024-01-02", intervals=max(len(fills), 1),
                         schedule=(quantity,), arrival_price=arrival, params=params or {},
                         fills=children, market_value=value, market_volume=volume,
                         last_price=last_price, close_price=close)
    # as `ExecutionEngine.parents(with_fills=True)` reads it: the stored plan plus its fills
    info = {"execution": plan.to_record() | {"fills": [encode(c) for c in children]}}
    if strategy is not None:
        info["strategy"] = strategy
    if estimate is not None:
        info["estimate"] = estimate
    return Order(id=id, portfolio=portfolio, asset=asset, quantity=quantity,
                 reference_price=decision, broker="engine",
                 filled=sum(f[0] for f in fills), fill_value=sum(f[0] * f[1] for f in fills),
                 fees=sum(f[3] for f in fills), info=info)


def test_a_worked_buy_splits_into_delay_trading_opportunity_and_fees():
    # Perold / Kissell-Glantz style example, by hand:
    # decided to buy 10,000 at 50.00; the order reached the market at 50.10;
    # fills: 4,000 at 50.25 (market 50.20), 3,000 at 50.40 (market 50.35), 0.01 $/share fee;
    # 3,000 left unfilled, close 50.60.
    #   delay       = 7,000 x (50.10 - 50.00)                     =   700
    #   timing      = 4,000 x 0.10 + 3,000 x 0.25 = 400 + 750       = 1,150
    #   impact      = 4,000 x 0.05 + 3,000 x 0.05 = 200 + 150       =   350
    #   opportunity = 3,000 x (50.60 - 50.00)                     = 1,800
    #   fees        = 40 + 30                                     =    70
    #   total                                                     = 4,070
    # Paper portfolio: 10,000 x (50.60 - 50.00) = 6,000 gain. Real: 7,000 x 50.60 = 354,200
    # worth, paid 201,000 + 151,200 + 70 = 352,270: 1,930 gain. Shortfall 6,000 - 1,930 = 4,070.
    order = parent(10_000, 50.00, 50.10,
                   [(4_000, 50.25, 50.20, 40.0), (3_000, 50.40, 50.35, 30.0)], 50.60)
    b = shortfall(order)
    assert b.delay == pytest.approx(700.0, rel=1e-12)
    assert b.timing == pytest.approx(1_150.0, rel=1e-12)
    assert b.impact == pytest.approx(350.0, rel=1e-12)
    assert b.trading == pytest.approx(1_500.0, rel=1e-12)
    assert b.opportunity == pytest.approx(1_800.0, rel=1e-12)
    assert b.fees == pytest.approx(70.0, rel=1e-12)
    assert b.total == pytest.approx(6_000.0 - 1_930.0, rel=1e-12)
    assert b.filled_fraction == pytest.approx(0.7)
    assert b.notional == pytest.approx(501_000.0)
    assert b.total_bps == pytest.approx(4_070.0 / 501_000.0 * 1e4, rel=1e-12)  # 81.24 bp
    avg = 352_200.0 / 7_000.0
    assert b.avg_price == pytest.approx(avg, rel=1e-12)
    assert b.vs_arrival_bps == pytest.approx((avg - 50.10) / 50.10 * 1e4, rel=1e-12)
    assert b.vs_close_bps == pytest.approx((avg - 50.60) / 50.60 * 1e4, rel=1e-12)
    assert b.vs_close_bps < 0 < b.vs_arrival_bps  # bought below the close, above arrival


def test_a_sell_after_the_price_fell_costs_positive_delay():
    # decided to sell 5,000 at 20.00; arrival 19.90 (fell first); one fill of 5,000 at 19.80
    # with the market at 19.85: delay = -5,000 x (19.90 - 20.00) = 500, timing = -5,000 x
    # (19.85 - 19.90) = 250, impact = -5,000 x (19.80 - 19.85) = 250, all costs.
    b = shortfall(parent(-5_000, 20.00, 19.90, [(-5_000, 19.80, 19.85, 5.0)], 19.50))
    assert b.side == "sell"
    assert (b.delay, b.timing, b.impact) == pytest.approx((500.0, 250.0, 250.0), rel=1e-12)
    assert b.opportunity == 0.0  # nothing left: the close does not matter
    assert b.total == pytest.approx(1_005.0, rel=1e-12)  # 5,000 x (20.00 - 19.80) + 5
    assert b.vs_arrival_bps == pytest.approx(0.10 / 19.90 * 1e4, rel=1e-12)
    # a sale that rallied before it worked is a delay gain (negative cost)
    up = shortfall(parent(-5_000, 20.00, 20.10, [(-5_000, 20.10, 20.10, 0.0)], 20.10))
    assert up.delay == pytest.approx(-500.0, rel=1e-12) and up.total < 0


fill_parts = st.tuples(st.floats(0.0, 1.0), st.floats(1.0, 1_000.0), st.floats(-0.05, 0.05),
                       st.floats(0.0, 50.0))


@given(side=st.sampled_from([1.0, -1.0]), quantity=st.floats(1.0, 1e6),
       decision=st.floats(1.0, 1_000.0), arrival=st.floats(1.0, 1_000.0),
       close=st.floats(1.0, 1_000.0), parts=st.lists(fill_parts, max_size=6))
def test_the_parts_sum_to_the_paper_minus_real_portfolio(side, quantity, decision, arrival,
                                                         close, parts):
    # fills take random shares of the order (at most all of it) at random market prices with
    # up to 5 % slippage either way
    q_total = side * quantity
    scale = sum(p[0] for p in parts) or 1.0
    fills = [(q_total * f / max(scale, 1.0), m * (1 + side * s), m, fee)
             for f, m, s, fee in parts]
    b = shortfall(parent(q_total, decision, arrival, fills, close))
    filled = math.fsum(q for q, *_ in fills)
    residual = q_total - filled
    # paper portfolio: all of Q at the decision price, marked at the close, for free;
    # real: the fills at their prices and fees, marked at the close
    paper = q_total * (close - decision)
    real = filled * close - math.fsum(q * p for q, p, _, _ in fills) - sum(f[3] for f in fills)
    expected = math.fsum([q * p for q, p, _, _ in fills] + [f[3] for f in fills]
                         + [residual * close, -q_total * decision])
    size = abs(q_total) * 1_000.0 + sum(f[3] for f in fills)
    assert b.total == pytest.approx(expected, abs=1e-10 * size)
    assert b.total == pytest.approx(paper - real, abs=1e-10 * size)
    assert b.trading == pytest.approx(math.fsum(q * (p - arrival) for q, p, _, _ in fills),
                                      abs=1e-10 * size)
    if fills:
        assert b.delay * side * (arrival - decision) >= 0  # delay hurts iff arrival moved away


def test_the_impact_part_is_the_paper_brokers_spread_and_impact():
    # fills priced as the paper broker prices them: the market moved against the trade by the
    # cost model's slippage, the commission charged as a fee
    model = CostModel(commission_bps=1.0, half_spread_bps=2.0, impact_coefficient=0.6)
    for side in (1.0, -1.0):
        fills, parts = [], []
        for q, m in ((3_000, 40.0), (5_000, 40.4), (2_000, 39.7)):
            cost = model.breakdown(side * q, m, 0.02, 2e7)
            price = model.execution_price(side * q, m, cost)
            fills.append((side * q, price, m, cost.commission, cost.spread, cost.impact))
            parts.append(cost)
        b = shortfall(parent(side * 10_000, 40.0, 40.0, fills, 40.2))
        assert b.impact == pytest.approx(sum(c.slippage for c in parts), rel=1e-9)
        assert b.realized_cost == pytest.approx(sum(c.total for c in parts), rel=1e-9)
        assert b.impact > 0


def test_an_unfilled_order_costs_only_its_opportunity():
    b = shortfall(parent(-2_000, 30.0, 30.5, [], 29.0))
    assert (b.delay, b.timing, b.impact, b.fees) == (0.0, 0.0, 0.0, 0.0)
    assert b.opportunity == pytest.approx(-2_000 * (29.0 - 30.0))  # a sale that fell: 2,000
    assert b.total == b.opportunity and b.filled_fraction == 0.0
    assert math.isnan(b.avg_price) and math.isnan(b.vs_arrival_bps)
    assert math.isnan(b.vs_vwap_bps) and math.isnan(b.vs_close_bps)


def test_a_working_order_values_its_residual_at_the_last_price_or_not_at_all():
    fills = [(500, 10.1, 10.0, 1.0)]
    working = shortfall(parent(1_000, 10.0, 10.0, fills, None, last_price=10.3))
    assert working.close_price == 10.3
    assert working.opportunity == pytest.approx(500 * 0.3)
    unknown = parent(1_000, 10.0, 10.0, fills, None, id="P2")
    assert math.isnan(shortfall(unknown).opportunity)
    table = tca([unknown, parent(1_000, 10.0, 10.0, fills, 10.2, id="P3")], by="portfolio")
    assert math.isnan(table.loc["p1", "total"])  # an unknown part is not summed as zero
    assert table.loc["p1", "fees"] == 2.0


def test_vwap_slippage_is_positive_when_it_hurt():
    vwap = (100.0 * 1e6, 1e6)  # interval VWAP 100
    buy = shortfall(parent(1_000, 99.0, 99.5, [(1_000, 100.5, 100.4, 0.0)], 101.0, vwap=vwap))
    sell = shortfall(parent(-1_000, 99.0, 99.5, [(-1_000, 100.5, 100.6, 0.0)], 101.0,
                            vwap=vwap))
    assert buy.interval_vwap == 100.0
    assert buy.vs_vwap_bps == pytest.approx(50.0, rel=1e-12)  # paid 0.5 over VWAP 100
    assert sell.vs_vwap_bps == pytest.approx(-50.0, rel=1e-12)  # received 0.5 more: a gain


def orders_for_aggregation():
    return [
        parent(10_000, 50.0, 50.1, [(6_000, 50.3, 50.2, 6.0), (4_000, 50.5, 50.4, 4.0)], 50.6,
               id="A", portfolio="p1", algorithm="twap", strategy="momentum",
               vwap=(50.3 * 9e5, 9e5), estimate={"commission": 5.0, "spread": 100.0,
                                                 "impact": 900.0}),
        parent(-200, 400.0, 398.0, [(-150, 397.0, 397.5, 3.0)], 395.0, id="B", portfolio="p1",
               algorithm="vwap", vwap=(398.5 * 1e4, 1e4)),
        parent(3_000, 20.0, 20.0, [(3_000, 20.02, 20.01, 1.5)], 20.1, id="C", portfolio="p2",
               algorithm="twap", strategy="momentum", vwap=(19.98 * 5e5, 5e5),
               estimate={"commission": 0.6, "spread": 12.0, "impact": 20.0}),
    ]


def test_aggregates_sum_currency_and_recompute_bps_on_notional():
    orders = orders_for_aggregation()
    parts = {o.id: shortfall(o) for o in orders}
    parents = tca(orders)
    assert list(parents.index) == ["A", "B", "C"]
    for by, groups in (("portfolio", {"p1": "AB", "p2": "C"}),
                       ("algorithm", {"twap": "AC", "vwap": "B"})):
        table = tca(orders, by=by)
        for label, ids in groups.items():
            members = [parts[i] for i in ids]
            assert table.loc[label, "count"] == len(ids)
            for column in ("delay", "timing", "impact", "opportunity", "fees", "total"):
                assert table.loc[label, column] == pytest.approx(
                    sum(getattr(m, column) for m in members), rel=1e-12)
            notional = sum(abs(m.quantity) * m.arrival_price for m in members)
            assert table.loc[label, "total_bps"] == pytest.approx(
                sum(m.total for m in members) / notional * 1e4, rel=1e-12)
            # VWAP slippage: summed currency against VWAP over the summed filled VWAP notional
            currency = sum((m.avg_price - m.interval_vwap) * m.filled for m in members)
            base = sum(abs(m.filled) * m.interval_vwap for m in members)
            assert table.loc[label, "vs_vwap_bps"] == pytest.approx(currency / base * 1e4,
                                                                    rel=1e-12)
    twap = tca(orders, by="algorithm").loc["twap"]
    # notional-weighted, not the plain mean of the parents' bps (the notionals differ)
    assert twap["total_bps"] != pytest.approx(parents.loc[["A", "C"], "total_bps"].mean())
    by_strategy = tca(orders, by="strategy")
    assert by_strategy.loc["momentum", "count"] == 2 and by_strategy["count"].sum() == 3
    assert by_strategy.loc["momentum", "estimated_cost"] == pytest.approx(1_037.6)


def test_the_estimate_is_compared_with_the_realized_cost():
    orders = orders_for_aggregation()
    a, b = shortfall(orders[0]), shortfall(orders[1])
    assert a.estimated_cost == pytest.approx(1_005.0)
    assert a.realized_cost == pytest.approx(10.0 + 6_000 * 0.1 + 4_000 * 0.1)
    assert a.estimate_error == pytest.approx(1_010.0 - 1_005.0)
    assert math.isnan(b.estimated_cost) and math.isnan(b.estimate_error)


def test_the_child_table_has_one_row_per_fill():
    orders = orders_for_aggregation()
    children = tca(orders, by="child")
    assert len(children) == 4 and list(children["parent"]) == ["A", "A", "B", "C"]
    first = children.iloc[0]
    assert first["child"] == "A-c0" and first["interval"] == 1 and first["venue"] == "paper"
    assert first["slippage_bps"] == pytest.approx((50.3 - 50.1) / 50.1 * 1e4, rel=1e-12)
    sale = children.iloc[2]
    assert sale["slippage_bps"] == pytest.approx(1.0 / 398.0 * 1e4, rel=1e-12)  # sold lower
    report = TCAReport(orders)
    pd.testing.assert_frame_equal(report.table(by="child"), children)
    pd.testing.assert_frame_equal(report.table(), tca(orders))


def test_the_summary_is_per_algorithm():
    orders = orders_for_aggregation()
    summary = TCAReport(orders).summary()
    parents = tca(orders)
    assert list(summary.index) == ["twap", "vwap"]
    assert summary.loc["twap", "count"] == 2
    assert summary.loc["twap", "notional"] == pytest.approx(10_000 * 50.1 + 3_000 * 20.0)
    assert summary.loc["twap", "total_bps_mean"] == pytest.approx(
        parents.loc[["A", "C"], "total_bps"].mean())
    assert summary.loc["vwap", "vs_vwap_bps_mean"] == pytest.approx(
        -(397.0 - 398.5) / 398.5 * 1e4)


def synthetic_orders(true_y, rng, n_orders=40, noise=2e-4):
    """Metaorders whose slices add up to the square-root law's impact with ``true_y``.

    Each parent's five slices fill at one market price; slice ``j`` pays the impact it
    adds to the parent's (``C(Q_j) - C(Q_{j-1})``, ``C(Q) = Q m Y vol sqrt(Q m / ADV)``,
    as the paper broker charges it), plus noise on the parent's total.
    """
    orders = []
    for k in range(n_orders):
        side = 1.0 if k % 2 else -1.0
        daily, adv = rng.uniform(0.01, 0.03), rng.uniform(1e7, 1e8)
        m = rng.uniform(20.0, 80.0)
        sizes = side * rng.uniform(1e3, 5e4, 5)
        eps = rng.normal(0.0, noise)

        def cost(units, m=m, daily=daily, adv=adv, eps=eps):
            value = abs(units) * m
            return value * (true_y * daily * math.sqrt(value / adv) + eps)

        fills, done = [], 0.0
        for q in sizes:
            spread = abs(q) * m * 2e-4
            impact = cost(done + q) - cost(done)
            done += q
            fills.append((q, m + side * (spread + impact) / abs(q), m, abs(q) * m * 1e-4,
                          spread, impact))
        orders.append(parent(done, 50.0, 50.0, fills, 50.0, id=f"S{k}",
                             params={"volatility": daily, "adv": adv}))
    return orders


def test_calibration_recovers_a_known_coefficient():
    rng = np.random.default_rng(7)
    orders = synthetic_orders(0.8, rng)
    result = calibration_error(orders, 0.8)
    assert result.fit.fills == 40  # one observation per parent (metaorder)
    assert abs(result.fit.coefficient - 0.8) < 3 * result.fit.standard_error
    assert abs(result.z_score) < 3 and result.error == result.fit.coefficient - 0.8
    wrong = calibration_error(orders, 0.4)  # a model at half the truth is far off
    assert wrong.z_score > 10
    # without noise the fit is exact
    exact = calibration_error(synthetic_orders(0.5, rng, n_orders=3, noise=0.0), 0.5)
    assert exact.fit.coefficient == pytest.approx(0.5, rel=1e-9)


def test_calibration_needs_volatility_and_adv():
    rng = np.random.default_rng(3)
    bare = parent(1_000, 10.0, 10.0, [(1_000, 10.01, 10.0, 0.0)], 10.0)
    with pytest.raises(InsufficientDataError) as err:
        calibration_error([bare], 0.5)
    assert err.value.field == "params.volatility"
    orders = [o.with_changes(info={"execution": {**o.info["execution"], "params": {}}})
              for o in synthetic_orders(0.5, rng, n_orders=4)]
    with pytest.raises(InsufficientDataError):
        calibration_error(orders, 0.5, volatility={"AAA": 0.02})
    fit = calibration_error(orders, 0.5, volatility={"AAA": 0.02}, adv={"AAA": 5e7})
    assert fit.fit.fills == 4
    with pytest.raises(ValidationError) as err:
        calibration_error(orders, -1.0)
    assert err.value.field == "cost_model_coefficient"


def test_the_html_escapes_hostile_labels():
    hostile = "<script>x</script>"
    orders = [parent(100, 10.0, 10.0, [(100, 10.1, 10.0, 0.1)], 10.2, asset=hostile,
                     id="<b>id</b>", algorithm="<img src=x>", strategy=hostile)]
    html = TCAReport(orders)._repr_html_()
    assert "<script>" not in html and "<img" not in html and "<b>id" not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "&lt;b&gt;id&lt;/b&gt;" in html


def test_the_plot_stacks_the_five_parts_in_bps():
    pytest.importorskip("hvplot")
    orders = orders_for_aggregation()
    report = TCAReport(orders)
    chart = report.plot()
    assert set(chart.dimension_values("Variable")) == set(COMPONENTS)
    data = chart.data
    a = shortfall(orders[0])
    row = data[(data["parent"] == "A") & (data["Variable"] == "timing")]
    assert row["value"].item() == pytest.approx(a.timing / a.notional * 1e4, rel=1e-12)
    by_algorithm = report.plot(by="algorithm")
    assert set(by_algorithm.dimension_values("algorithm")) == {"twap", "vwap"}


def test_the_module_does_not_import_hvplot():
    import subprocess
    import sys

    code = "import sys, pmkit.execution.tca; print('hvplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_bad_inputs_name_their_field():
    good = parent(100, 10.0, 10.0, [(100, 10.1, 10.0, 0.1)], 10.2)
    for orders in ([object()], "abc", 5, None, [good, good]):
        with pytest.raises(ValidationError) as err:
            tca(orders)
        assert err.value.field == "orders"
    for by in ("asset", "", None, 3, ["parent"]):
        with pytest.raises(ValidationError) as err:
            tca([good], by=by)
        assert err.value.field == "by"
    with pytest.raises(ValidationError) as err:
        TCAReport([good]).plot(by="child")
    assert err.value.field == "by"
    wrong_side = parent(100, 10.0, 10.0, [(-100, 10.1, 10.0, 0.1)], 10.2)
    with pytest.raises(ValidationError) as err:
        shortfall(wrong_side)
    assert err.value.field == "fills[0].quantity"
    with pytest.raises(ValidationError) as err:
        shortfall(good.with_changes(info={}))
    assert err.value.field == "execution"
    assert tca([]).empty and "count" in tca([], by="algorithm").columns


FIELD = re.compile(r"^(order|orders|execution|fills|quantity|reference_price|arrival_price|"
                   r"close_price|last_price|market_value|market_volume|id|portfolio|asset|"
                   r"algorithm|strategy|estimate(\.\w+)?|fills\[\d+\]\.\w+)$")
PLAN_FIELDS = ["arrival_price", "close_price", "last_price", "market_value", "market_volume",
               "algorithm", "fills", "params"]
FILL_FIELDS = ["quantity", "price", "market_price", "fee", "spread", "impact"]


ORDER_FIELDS = ["quantity", "reference_price", "id", "portfolio", "info"]
INFO_FIELDS = ["estimate", "strategy", "execution"]


@FUZZ
@given(order_changes=st.dictionaries(st.sampled_from(ORDER_FIELDS), anything, max_size=1),
       plan_changes=st.dictionaries(st.sampled_from(PLAN_FIELDS), st.one_of(anything, json_like),
                                    max_size=1),
       fill_changes=st.dictionaries(st.sampled_from(FILL_FIELDS), st.one_of(numbers, anything),
                                    max_size=2),
       info_changes=st.dictionaries(st.sampled_from(INFO_FIELDS), st.one_of(json_like, texts),
                                    max_size=1),
       side=st.sampled_from([1.0, -1.0]), label=texts)
def test_any_order_gives_a_shortfall_or_names_the_field(order_changes, plan_changes,
                                                        fill_changes, info_changes, side, label):
    base = parent(side * 1_000, 10.0, 10.0, [(side * 600, 10.1, 10.0, 0.5)], 10.3, asset=label)
    record = dict(base.info["execution"])
    record["fills"] = [dict(record["fills"][0], **fill_changes)]
    record.update(plan_changes)
    info = {"execution": record, "estimate": {"commission": 1.0, "spread": 2.0, "impact": 3.0}}
    order = base.with_changes(info=info | info_changes).with_changes(**order_changes)
    try:
        b = shortfall(order)
        report = TCAReport([order])
    except PmkitError as err:
        assert isinstance(err, ValidationError) and FIELD.match(err.field), err
        event(f"refused: {err.field}")
        return
    event("valid")
    assert all(math.isfinite(getattr(b, c)) for c in ("delay", "timing", "impact", "fees"))
    assert math.isfinite(b.opportunity) or math.isnan(b.close_price)
    assert b.total == pytest.approx(b.delay + b.timing + b.impact + b.opportunity + b.fees)
    assert "<script>" not in report._repr_html_()
    assert len(report.table(by="child")) == len(_plan_fills(order))


def _plan_fills(order):
    return ExecutionPlan.from_record(order.info["execution"]).fills


@FUZZ
@given(orders=st.one_of(anything, st.lists(anything, max_size=3)), by=anything,
       coefficient=st.one_of(numbers, anything),
       volatility=st.one_of(st.none(), anything, st.dictionaries(texts, numbers, max_size=2)))
def test_any_table_or_calibration_call_is_valid_or_names_the_field(orders, by, coefficient,
                                                                   volatility):
    good = [parent(1_000, 10.0, 10.0, [(600, 10.1, 10.0, 0.5), (400, 10.2, 10.1, 0.5)], 10.3,
                   params={"adv": 1e7})]
    for call, fields in ((lambda: tca(orders), {"orders"}),
                         (lambda: tca(good, by=by), {"by"}),
                         (lambda: calibration_error(good, coefficient, volatility=volatility),
                          {"cost_model_coefficient", "volatility", "params.volatility"})):
        try:
            out = call()
        except PmkitError as err:
            assert isinstance(err, ValidationError), err
            assert err.field in fields or err.field.startswith("volatility["), err
            continue
        assert out is not None
        if isinstance(out, pd.DataFrame) and by in ("parent", "portfolio", "algorithm"):
            assert np.isfinite(out["total"].to_numpy(dtype=float)).all()
