"""The smart order router (`pmkit.execution.router`): the rule table and the venue split."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hostile import FUZZ, anything
from hypothesis import event, given
from hypothesis import strategies as st
from scipy.optimize import minimize

from pmkit.errors import ValidationError
from pmkit.execution.impact import square_root_impact
from pmkit.execution.plan import ALGORITHMS
from pmkit.execution.router import (
    DEFAULT_RULES,
    SMART_ORDER,
    OrderFeatures,
    RouteDecision,
    RouteRule,
    SmartRouter,
    Venue,
    expected_cost,
    split,
)

ROUTER = SmartRouter()


def features(**changes):
    """A calm order of 0.5 % of ADV (10,000 units of a 5.00 asset, ADV 10 million)."""
    base = {"quantity": 10_000.0, "price": 5.0, "adv": 1e7, "volatility": 0.02,
            "spread_bps": 5.0, "urgency": "normal", "session_fraction_left": 1.0}
    return OrderFeatures(**(base | changes))


def reference_route(f: OrderFeatures) -> tuple[str, str, dict]:
    """The rule table as the design specifies it, written independently as if/elif."""
    p = abs(f.quantity) * f.price / f.adv
    if p < 0.001:
        return "tiny", "twap", {"horizon_fraction": 0.1}
    if f.urgency == "high":
        return "urgent", "is", {"risk_aversion": 1e-5}
    if p > 0.2 * f.session_fraction_left:
        return "very_large", "pov", {"participation": 0.1}
    if f.spread_bps > 20:
        return "wide_spread", "pov", {"participation": 0.05}
    if f.volatility > 0.03:
        return "volatile", "is", {"risk_aversion": 1e-6}
    if 0.01 <= p <= 0.2:
        return "medium", "vwap", {}
    return "default", "twap", {"horizon_fraction": 1.0}


# -- the rule table -------------------------------------------------------------------------
@pytest.mark.parametrize(("order", "rule", "algorithm", "numbers"), [
    (features(quantity=1_000.0), "tiny", "twap", ["participation 0.05% of ADV", "0.1%"]),
    (features(quantity=-30_000.0, urgency="high"), "urgent", "is", ["urgency 'high'"]),
    (features(quantity=500_000.0), "very_large", "pov",
     ["participation 25.00% of ADV", "above 20%", "2.5 sessions", "carries over"]),
    (features(quantity=30_000.0, session_fraction_left=0.05), "very_large", "pov",
     ["participation 1.50% of ADV", "5.00% of the session left", "carries over"]),
    (features(spread_bps=32.5), "wide_spread", "pov", ["spread 32.5 bp", "20 bp"]),
    (features(volatility=0.045), "volatile", "is", ["daily volatility 4.50%", "3%"]),
    (features(quantity=64_000.0), "medium", "vwap",
     ["participation 3.20% of ADV is between 1% and 20%"]),
    (features(), "default", "twap", ["participation 0.50% of ADV"]),
])
def test_each_rule_fires_with_its_numbers_in_the_reasons(order, rule, algorithm, numbers):
    decision = ROUTER.decide(order)
    assert (decision.rule, decision.algorithm) == (rule, algorithm)
    assert decision.algorithm in ALGORITHMS
    assert (decision.rule, decision.algorithm, decision.params) == reference_route(order)
    for text in numbers:
        assert text in decision.reasons[0], (text, decision.reasons)
    # one reason per rule passed over, each saying why it did not apply
    skipped = [r.name for r in DEFAULT_RULES][: [r.name for r in DEFAULT_RULES].index(rule)]
    assert [r.split(":")[0] for r in decision.reasons[1:]] == [f"not {n}" for n in skipped]
    assert all(" is not " in r for r in decision.reasons[1:])


def test_the_first_matching_rule_wins():
    # urgent, very large, wide spread and volatile at once: urgency comes first
    everything = features(quantity=600_000.0, urgency="high", spread_bps=50.0, volatility=0.1)
    assert ROUTER.decide(everything).rule == "urgent"
    assert ROUTER.decide(features(quantity=600_000.0, spread_bps=50.0, volatility=0.1)).rule \
        == "very_large"
    assert ROUTER.decide(features(spread_bps=50.0, volatility=0.1)).rule == "wide_spread"
    # a tiny order is just done, however urgent, wide or volatile
    tiny = features(quantity=100.0, urgency="high", spread_bps=50.0, volatility=0.1)
    assert ROUTER.decide(tiny).rule == "tiny"
    # the same rules in another order route the same order elsewhere
    reordered = SmartRouter((DEFAULT_RULES[3], *DEFAULT_RULES[:3], *DEFAULT_RULES[4:]))
    assert reordered.decide(everything).rule == "wide_spread"


def test_thresholds_are_strict_or_inclusive_as_documented():
    # 1,000 x 10 / 1e7 is 0.001 exactly: not below 0.1 %
    assert ROUTER.decide(features(quantity=1_000.0, price=10.0)).rule == "default"
    assert ROUTER.decide(features(quantity=10_000.0, price=10.0)).rule == "medium"  # 1 %
    assert ROUTER.decide(features(quantity=200_000.0, price=10.0)).rule == "medium"  # 20 %
    assert ROUTER.decide(features(spread_bps=20.0)).rule == "default"
    assert ROUTER.decide(features(volatility=0.03)).rule == "default"
    assert ROUTER.decide(features(urgency="low")).rule == "default"


@st.composite
def route_features(draw):
    """Orders spread over every rule, the thresholds' neighbourhoods included."""
    participation = draw(st.sampled_from([3e-5, 5e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.2, 0.4]))
    participation *= draw(st.sampled_from([1.0, 0.999, 1.001, 0.7, 1.4]))
    price, adv = draw(st.floats(0.01, 1e4)), draw(st.floats(1e3, 1e9))
    return OrderFeatures(
        quantity=draw(st.sampled_from([1.0, -1.0])) * participation * adv / price,
        price=price, adv=adv, volatility=draw(st.floats(0.0, 0.06)),
        spread_bps=draw(st.floats(0.0, 40.0)),
        urgency=draw(st.sampled_from(["low", "normal", "normal", "normal", "high"])),
        session_fraction_left=draw(st.sampled_from([1.0, 1.0, 0.5, 0.1, 0.0])))


@given(route_features())
def test_the_router_matches_the_specified_table(f):
    decision = ROUTER.decide(f)
    event(decision.rule)
    assert (decision.rule, decision.algorithm, decision.params) == reference_route(f)
    # deterministic, and the record survives JSON
    assert ROUTER.decide(f) == decision
    record = json.loads(json.dumps(decision.to_record(), allow_nan=False))
    assert RouteDecision.from_record(record) == decision
    assert record["features"]["participation"] == pytest.approx(f.participation, rel=1e-15)


def test_decide_takes_a_mapping_and_refuses_strangers():
    order = features(quantity=64_000.0)
    as_dict = {k: v for k, v in order.to_dict().items() if k != "participation"}
    assert ROUTER.decide(as_dict) == ROUTER.decide(order)
    # a stored decision re-decides from its own features, participation recomputed
    stored = ROUTER.decide(order).to_record()["features"]
    assert ROUTER.decide(stored) == ROUTER.decide(order)
    assert ROUTER.decide(stored | {"participation": 0.9}) == ROUTER.decide(order)
    with pytest.raises(ValidationError) as err:
        ROUTER.decide(as_dict | {"colour": "red"})
    assert err.value.field == "features"
    with pytest.raises(ValidationError) as err:
        ROUTER.decide({"quantity": 1.0})
    assert err.value.field == "features"
    with pytest.raises(ValidationError) as err:
        ROUTER.decide("smart")
    assert err.value.field == "features"


def test_the_table_lists_every_rule_in_order():
    table = ROUTER.table()
    assert list(table.columns) == ["name", "algorithm", "params", "when"]
    assert list(table["name"]) == [r.name for r in DEFAULT_RULES]
    assert list(table["name"]) == ["tiny", "urgent", "very_large", "wide_spread", "volatile",
                                   "medium", "default"]
    assert set(table["algorithm"]) == set(ALGORITHMS)
    assert table["when"].str.len().min() > 0
    assert SMART_ORDER == "smart" and SMART_ORDER not in ALGORITHMS


def test_rules_are_read_only_and_a_table_needs_a_catch_all():
    decision = ROUTER.decide(features(quantity=-30_000.0, urgency="high"))
    decision.params["risk_aversion"] = 1.0
    assert ROUTER.decide(features(quantity=-30_000.0, urgency="high")).params == {
        "risk_aversion": 1e-5}
    with pytest.raises(TypeError):
        DEFAULT_RULES[1].params["risk_aversion"] = 1.0  # type: ignore[index]
    partial = SmartRouter(DEFAULT_RULES[:2])
    with pytest.raises(ValidationError) as err:
        partial.decide(features())
    assert err.value.field == "rules"
    with pytest.raises(ValidationError) as err:
        SmartRouter((DEFAULT_RULES[0], DEFAULT_RULES[0]))
    assert err.value.field == "rules"
    for bad in ([], "tiny", None, [DEFAULT_RULES[0], "x"]):
        with pytest.raises(ValidationError):
            SmartRouter(bad)
    with pytest.raises(ValidationError) as err:
        RouteRule("r", "iceberg", {}, "never", lambda f: True)
    assert err.value.field == "algorithm"


# -- expected cost on a venue ---------------------------------------------------------------
def test_expected_cost_is_fee_plus_square_root_impact_plus_latency_risk():
    # latency 23.4 ms is 1e-6 of a session, an interval of 5,850 s a quarter: round factors
    venue = Venue("X", fee_bps=1.0, latency_ms=23.4, liquidity=0.1, impact_coefficient=0.5)
    cost = expected_cost(venue, 400.0, price=50.0, volatility=0.02, interval_volume=1e5,
                         interval_seconds=5850.0)
    # notional 20,000: fee 1 bp = 2; impact 0.5 x (0.02 x 0.5) x sqrt(400 / 10,000) = 0.001,
    # i.e. 20; latency 0.02 x sqrt(1e-6) = 2e-5, i.e. 0.4
    assert cost == pytest.approx(2.0 + 20.0 + 0.4, rel=1e-13)
    impact = 2e4 * square_root_impact(2e4, 0.01, 1e4 * 50.0, 0.5)
    assert impact == pytest.approx(20.0, rel=1e-13)
    assert expected_cost(venue, -400.0, 50.0, 0.02, 1e5, 5850.0) == cost
    assert expected_cost(venue, 0.0, 50.0, 0.02, 1e5, 5850.0) == 0.0
    with pytest.raises(ValidationError) as err:
        expected_cost(venue, 10_001.0, 50.0, 0.02, 1e5, 5850.0)  # capacity is 10,000
    assert err.value.field == "quantity"


# -- the venue split ------------------------------------------------------------------------
MARKET = {"price": 40.0, "volatility": 0.025, "interval_volume": 3_000.0,
          "interval_seconds": 600.0}


def brute_force(venues, lots, lot, market):
    """Least total cost over every allocation of whole lots within the capacities."""
    caps = [math.floor(v.liquidity * market["interval_volume"] / lot + 1e-9) for v in venues]
    best = math.inf
    for counts in itertools.product(*(range(c + 1) for c in caps)):
        if sum(counts) == lots:
            best = min(best, sum(expected_cost(v, k * lot, **market)
                                 for v, k in zip(venues, counts, strict=True)))
    return best


def random_venues(rng, n):
    return [Venue(f"V{i}", fee_bps=float(rng.uniform(0, 3)), latency_ms=float(rng.uniform(0, 200)),
                  liquidity=float(rng.uniform(0.03, 0.5)),
                  impact_coefficient=float(rng.uniform(0, 1.5)))
            for i in range(n)]


@pytest.mark.parametrize("seed", range(30))
def test_the_split_is_optimal_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    venues = random_venues(rng, 2 + seed % 2)
    lot = 100.0
    caps = [math.floor(v.liquidity * MARKET["interval_volume"] / lot + 1e-9) for v in venues]
    lots = int(rng.integers(1, sum(caps) + 1))
    side = 1.0 if seed % 3 else -1.0
    result = split(side * lots * lot, venues, lot=lot, **MARKET)
    assert sum(result.quantities.values()) == side * lots * lot
    assert result.unplaced == 0.0
    assert result.total_cost == pytest.approx(brute_force(venues, lots, lot, MARKET), rel=1e-12)
    for v in venues:
        assert result.expected_costs[v.name] == pytest.approx(
            expected_cost(v, result.quantities[v.name], **MARKET), rel=1e-12)


def counted_increments(monkeypatch):
    """Count the per-lot cost evaluations `split` makes (its work, not its wall time)."""
    import pmkit.execution.router as router

    calls = [0]
    real = router._increment

    def counting(*args):
        calls[0] += 1
        return real(*args)

    monkeypatch.setattr(router, "_increment", counting)
    return calls


def test_a_large_split_matches_the_continuous_optimum_and_equalises_marginal_costs(monkeypatch):
    calls = counted_increments(monkeypatch)
    rng = np.random.default_rng(7)
    venues = random_venues(rng, 4)
    market = {"price": 25.0, "volatility": 0.02, "interval_volume": 1e7,
              "interval_seconds": 1800.0}
    quantity = 1e6
    result = split(quantity, venues, **market)
    # a bisection on the marginal cost, not a walk over the million lots
    assert calls[0] < 20_000
    caps = [v.liquidity * market["interval_volume"] for v in venues]

    def total(x):
        return sum(expected_cost(v, min(max(xi, 0.0), c), **market)
                   for v, xi, c in zip(venues, x * quantity, caps, strict=True))

    solved = minimize(lambda x: total(x) / total(np.full(4, 0.25)), np.full(4, 0.25),
                      method="SLSQP", bounds=[(0, min(1, c / quantity)) for c in caps],
                      constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1.0}],
                      options={"ftol": 1e-14, "maxiter": 500})
    assert solved.success
    continuous = total(solved.x)
    # whole units cost at least the continuous optimum, and barely more
    assert continuous * (1 - 1e-9) <= result.total_cost <= continuous * (1 + 1e-6)
    # KKT: every venue strictly inside its bounds pays the same marginal cost per unit
    def marginal(v, x):
        return expected_cost(v, x + 1, **market) - expected_cost(v, x, **market)

    inside = [marginal(v, result.quantities[v.name]) for v, c in zip(venues, caps, strict=True)
              if 0 < result.quantities[v.name] < c - 1]
    assert len(inside) >= 2
    assert max(inside) - min(inside) <= 1e-3 * max(inside)


def test_hundreds_of_billions_of_lots_split_without_placing_them_one_by_one(monkeypatch):
    calls = counted_increments(monkeypatch)
    venues = [Venue("A", 0.5, 1.0, 0.4), Venue("B", 1.0, 0.5, 0.4), Venue("C", 0.1, 30.0, 0.3)]
    result = split(-8e11, venues, price=1.0, volatility=0.02, interval_volume=1e12,
                   interval_seconds=23_400.0)
    assert calls[0] < 20_000  # logarithmic in the lots, not 8e11 evaluations
    assert sum(result.quantities.values()) == -8e11
    assert all(-4e11 <= q < 0 for q in result.quantities.values())


def test_small_orders_go_to_the_cheaper_venue_and_large_ones_spread():
    cheap, dear = Venue("cheap", 0.5, 1.0, 0.3), Venue("dear", 2.0, 1.0, 0.3)
    small = split(100.0, [dear, cheap], lot=100.0, **MARKET)
    assert small.quantities == {"dear": 0.0, "cheap": 100.0}
    large = split(800.0, [dear, cheap], lot=100.0, **MARKET)
    # impact grows with each venue's share: the dearer venue is worth using, never more than
    # the cheaper one
    assert 0 < large.quantities["dear"] <= large.quantities["cheap"]
    assert large.total_cost == pytest.approx(brute_force([dear, cheap], 8, 100.0, MARKET),
                                             rel=1e-12)
    # without impact the cost is linear: fill the cheaper venue to capacity, then the other
    flat = split(-1_500.0, [dear, cheap], price=40.0, volatility=0.0, interval_volume=3_000.0,
                 interval_seconds=600.0, lot=100.0)
    assert flat.quantities == {"dear": -600.0, "cheap": -900.0}


def test_a_venue_without_capacity_gets_nothing():
    venues = [Venue("open", 1.0, 1.0, 0.5), Venue("halted", 0.0, 0.0, 0.0),
              Venue("thin", 0.0, 0.0, 0.03)]  # 0.03 x 3,000 = 90 units: under a lot
    result = split(700.0, venues, lot=100.0, **MARKET)
    assert result.quantities == {"open": 700.0, "halted": 0.0, "thin": 0.0}
    assert result.expected_costs["halted"] == result.expected_costs["thin"] == 0.0
    assert any(r.startswith("halted: no capacity") for r in result.reasons)


def test_beyond_capacity_every_venue_is_full_and_the_rest_is_unplaced():
    venues = [Venue("A", 1.0, 1.0, 0.2), Venue("B", 2.0, 1.0, 0.1)]  # 6 and 3 lots of 100
    result = split(-1_234.0, venues, lot=100.0, **MARKET)
    assert result.quantities == {"A": -600.0, "B": -300.0}
    assert result.unplaced == pytest.approx(-334.0)
    assert any("can take 9 of 12 lots" in r for r in result.reasons)
    odd = split(250.0, venues, lot=100.0, **MARKET)
    assert sum(odd.quantities.values()) == 200.0 and odd.unplaced == pytest.approx(50.0)
    assert any("less than a lot" in r for r in odd.reasons)
    assert ROUTER.split(-1_234.0, venues, lot=100.0, **MARKET) == result
    zero = split(0.0, venues, **MARKET)
    assert zero.quantities == {"A": 0.0, "B": 0.0} and zero.unplaced == 0.0


venue_st = st.builds(Venue, name=st.sampled_from(["A", "B", "C", "D"]),
                     fee_bps=st.floats(0, 50), latency_ms=st.floats(0, 1e4),
                     liquidity=st.floats(0, 1), impact_coefficient=st.floats(0, 5))


@given(quantity=st.floats(-1e7, 1e7), venues=st.lists(venue_st, min_size=1, max_size=4,
                                                      unique_by=lambda v: v.name),
       lot=st.sampled_from([1.0, 10.0, 100.0, 0.5]), interval_volume=st.floats(0, 1e7),
       volatility=st.floats(0, 0.2), interval_seconds=st.floats(1, 23_400))
def test_split_conserves_respects_capacity_and_keeps_the_side(quantity, venues, lot,
                                                            interval_volume, volatility,
                                                            interval_seconds):
    market = {"price": 30.0, "volatility": volatility, "interval_volume": interval_volume,
              "interval_seconds": interval_seconds}
    result = split(quantity, venues, lot=lot, **market)
    placed = sum(result.quantities.values())
    assert placed + result.unplaced == pytest.approx(quantity, rel=1e-12, abs=1e-6)
    capacity = sum(math.floor(v.liquidity * interval_volume / lot + 1e-9) for v in venues) * lot
    whole = math.floor(abs(quantity) / lot + 1e-9) * lot
    assert abs(placed) == pytest.approx(min(whole, capacity), rel=1e-12)
    for v in venues:
        q = result.quantities[v.name]
        assert q * quantity >= 0  # never the opposite side
        assert abs(q) <= v.liquidity * interval_volume * (1 + 1e-9)
        assert abs(q / lot - round(q / lot)) < 1e-9
        assert result.expected_costs[v.name] >= 0


# -- hostile inputs -------------------------------------------------------------------------
VALID_FEATURES = {"quantity": -2_000.0, "price": 12.5, "adv": 3e6, "volatility": 0.02,
                  "spread_bps": 4.0, "urgency": "normal", "session_fraction_left": 0.5}
VALID_VENUE = {"name": "LIT", "fee_bps": 0.3, "latency_ms": 2.0, "liquidity": 0.2,
               "impact_coefficient": 0.5}
VALID_SPLIT = {"quantity": 1_500.0, "price": 30.0, "volatility": 0.02,
               "interval_volume": 20_000.0, "interval_seconds": 300.0, "lot": 100.0}


def refused_naming(err: ValidationError, field: str) -> None:
    assert err.field == field or err.field.startswith(f"{field}["), (err.field, field)


def refused_naming_or_over_capacity(err: ValidationError, field: str) -> None:
    """A hostile market can shrink the venue below the quantity asked: refused as such."""
    if err.field == "quantity" and "capacity" in err.reason:
        return
    refused_naming(err, field)


@FUZZ
@given(field=st.sampled_from(sorted(VALID_FEATURES)), value=anything)
def test_hostile_order_features_are_refused_by_name(field, value):
    try:
        decision = ROUTER.decide(VALID_FEATURES | {field: value})
    except ValidationError as err:
        refused_naming(err, field)
    else:
        assert decision.algorithm in ALGORITHMS and decision.reasons
        json.dumps(decision.to_record(), allow_nan=False)


@FUZZ
@given(field=st.sampled_from(sorted(VALID_VENUE)), value=anything)
def test_hostile_venues_are_refused_by_name(field, value):
    try:
        venue = Venue(**(VALID_VENUE | {field: value}))
    except ValidationError as err:
        refused_naming(err, field)
    else:
        cost = expected_cost(venue, 100.0, price=30.0, volatility=0.02,
                             interval_volume=1e4, interval_seconds=60.0) \
            if venue.liquidity * 1e4 >= 100.0 else 0.0
        assert math.isfinite(cost) and cost >= 0


@FUZZ
@given(field=st.sampled_from([*sorted(VALID_SPLIT), "venues"]), value=anything)
def test_hostile_split_inputs_are_refused_by_name(field, value):
    venues = [Venue(**VALID_VENUE), Venue(**(VALID_VENUE | {"name": "DARK", "fee_bps": 0.1}))]
    kwargs = VALID_SPLIT | {"venues": venues} | {field: value}
    try:
        result = split(kwargs.pop("quantity"), kwargs.pop("venues"), **kwargs)
    except ValidationError as err:
        refused_naming(err, field)
    else:
        assert all(math.isfinite(c) and c >= 0 for c in result.expected_costs.values())
        assert math.isfinite(result.unplaced)
        json.dumps(result.to_record(), allow_nan=False)
    if field in ("lot", "venues"):
        return
    try:
        cost = expected_cost(venues[0], **{k: v for k, v in kwargs.items() if k != "lot"},
                             quantity=value if field == "quantity" else 100.0)
    except ValidationError as err:
        refused_naming_or_over_capacity(err, field)
    else:
        assert math.isfinite(cost) and cost >= 0
