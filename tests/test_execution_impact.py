"""Impact and liquidity models (`pmkit.execution.impact`)."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pmkit.execution.impact as impact
from pmkit.core.schedules import almgren_chriss_trajectory, twap_trades
from pmkit.errors import InsufficientDataError, ValidationError
from pmkit.execution import AlmgrenChriss, CostModel, calibrate_square_root, liquidity
from pmkit.execution.impact import square_root_impact, u_shape_profile
from pmkit.model.market import market_dataset


def test_the_docstring_examples_hold():
    assert doctest.testmod(impact).failed == 0


def test_the_cost_model_prices_impact_with_the_square_root_law():
    model = CostModel(impact_coefficient=0.8)
    b = model.breakdown(10_000, 50.0, 0.02, 2e7)
    assert b.impact == pytest.approx(5e5 * square_root_impact(5e5, 0.02, 2e7, 0.8), rel=1e-15)
    # four times the notional: twice the impact per unit, eight times the cost
    b4 = model.breakdown(40_000, 50.0, 0.02, 2e7)
    assert b4.impact == pytest.approx(8 * b.impact, rel=1e-12)


def test_the_schedule_is_the_core_trajectory_with_its_cost_and_risk():
    ac = AlmgrenChriss(permanent=2.5e-7, temporary=2.5e-6, fixed=0.0625)
    plan = ac.schedule([1e6, 3e5], volatility=[0.95, 0.5], horizon=5.0, intervals=10,
                       risk_aversion=1e-6)
    want, _ = almgren_chriss_trajectory(np.array([1e6, 3e5]), np.array([0.95, 0.5]), 2.5e-6,
                                        2.5e-7, 1e-6, 5.0, intervals=10)
    np.testing.assert_allclose(plan["holdings"].values, np.asarray(want), rtol=1e-12)
    np.testing.assert_allclose(plan["trades"].sum("interval"), [1e6, 3e5], rtol=1e-12)
    # each trade is at most what is left (the last one all of it, to rounding: trades are
    # computed as sums of positive terms, not as differences of the holdings)
    assert (plan["trades"] > 0).all()
    assert (plan["trades"] <= plan["holdings"][:, :-1].values * (1 + 1e-13)).all()
    # the straight line (TWAP) has more variance and less expected cost than the optimum
    twap = ac.schedule([1e6], volatility=0.95, horizon=5.0, intervals=10)
    np.testing.assert_allclose(twap["trades"].values, twap_trades(np.array([1e6]), 10))
    assert float(twap["variance"][0]) > float(plan["variance"][0])
    assert float(twap["expected_cost"][0]) < float(plan["expected_cost"][0])


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"quantity": [0.0]}, "quantity[0]"),
    ({"quantity": [-5.0]}, "quantity[0]"),
    ({"quantity": [float("nan")]}, "quantity[0]"),
    ({"quantity": [1e13]}, "quantity[0]"),
    ({"quantity": []}, "quantity"),
    ({"quantity": "abc"}, "quantity[0]"),
    ({"volatility": -1.0}, "volatility"),
    ({"volatility": [1.0, 2.0]}, "volatility"),
    ({"horizon": 0.0}, "horizon"),
    ({"intervals": 0}, "intervals"),
    ({"intervals": True}, "intervals"),
    ({"intervals": 2.5}, "intervals"),
    ({"risk_aversion": float("inf")}, "risk_aversion"),
])
def test_bad_schedule_inputs_name_the_field(kwargs, field):
    ac = AlmgrenChriss(permanent=2.5e-7, temporary=2.5e-6)
    args = {"quantity": [1e6], "volatility": 0.95, "horizon": 5.0, "intervals": 5,
            "risk_aversion": 1e-6} | kwargs
    quantity = args.pop("quantity")
    with pytest.raises(ValidationError) as err:
        ac.schedule(quantity, **args)
    assert err.value.field == field


def test_an_impact_that_rewards_speed_is_refused():
    ac = AlmgrenChriss(permanent=1e-3, temporary=1e-6)  # eta_tilde < 0 at tau = 1
    with pytest.raises(ValidationError) as err:
        ac.schedule([100.0], volatility=1.0, horizon=5.0, intervals=5, risk_aversion=1e-6)
    assert err.value.field == "temporary"


@settings(max_examples=40, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=5), st.floats(allow_nan=True),
                 st.integers(-10**20, 10**20), st.lists(st.floats(), max_size=3)))
def test_hostile_model_parameters_raise_validation_errors(value):
    for name in ("permanent", "temporary", "fixed"):
        params = {"permanent": 1e-7, "temporary": 1e-6, "fixed": 0.01} | {name: value}
        try:
            model = AlmgrenChriss(**params)
        except ValidationError as err:
            assert err.field == name
        else:
            assert getattr(model, name) == value and float(value) >= 0


def test_calibration_recovers_a_known_coefficient_with_an_honest_standard_error():
    """Simulated fills with Y = 0.7 and noise: the fit is within 3 standard errors, and the
    standard error matches the spread of the estimates over many simulations."""
    rng = np.random.default_rng(11)
    true_y, estimates, errors = 0.7, [], []
    for _ in range(300):
        n = 200
        vol = rng.uniform(0.01, 0.03, n)
        part = rng.uniform(0.001, 0.2, n)
        realized = true_y * vol * np.sqrt(part) + rng.normal(0.0, 5e-4, n)
        fit = calibrate_square_root(realized, vol, part)
        estimates.append(fit.coefficient)
        errors.append(fit.standard_error)
        assert fit.fills == n
    estimates = np.array(estimates)
    assert abs(estimates.mean() - true_y) < 3 * estimates.std() / np.sqrt(len(estimates))
    assert np.mean(errors) == pytest.approx(estimates.std(), rel=0.15)
    assert np.mean(np.abs(estimates - true_y) < 3 * np.array(errors)) > 0.98


def test_calibration_refuses_what_it_cannot_fit():
    with pytest.raises(ValidationError) as err:
        calibrate_square_root([0.001, 0.002], [0.02], [0.1, 0.1])
    assert err.value.field == "realized"
    with pytest.raises(InsufficientDataError):
        calibrate_square_root([0.001], [0.02], [0.1])
    with pytest.raises(ValidationError) as err:
        calibrate_square_root([0.001, 0.002], [0.02, 0.02], [0.1, 0.0])
    assert err.value.field == "participation[1]"


def test_liquidity_is_estimated_from_volume_and_close():
    times = pd.bdate_range("2024-01-01", periods=30)
    rng = np.random.default_rng(5)
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.01, (30, 2)), axis=0)),
                         index=times, columns=["AAA", "BBB"])
    volume = pd.DataFrame(rng.uniform(1e5, 2e5, (30, 2)), index=times, columns=["AAA", "BBB"])
    volume.iloc[-3, 1] = np.nan  # an unknown day is skipped, not counted as zero
    market = market_dataset(close, volume)
    out = liquidity(market, window=20)
    for a in ("AAA", "BBB"):
        traded = (volume[a] * close[a]).iloc[-20:]
        assert float(out["adv"].sel(asset=a)) == pytest.approx(traded.mean(), rel=1e-12)
        r = close[a].iloc[-21:].pct_change().dropna()
        assert float(out["volatility"].sel(asset=a)) == pytest.approx(r.std(ddof=1), rel=1e-12)
    with pytest.raises(InsufficientDataError):
        liquidity(market, window=30)
    with pytest.raises(ValidationError) as err:
        liquidity(market_dataset(close), window=20)
    assert err.value.field == "volume"


def test_the_default_profile_is_a_u_shape_summing_to_one():
    p = u_shape_profile(390)
    assert p.sum() == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(p, p[::-1], rtol=1e-12)  # symmetric about midday
    assert p[0] / p[195] == pytest.approx(3.0, rel=0.01)  # ends trade 3x the middle
    assert u_shape_profile(4, ends=1.0) == pytest.approx(np.full(4, 0.25))
    with pytest.raises(ValidationError):
        u_shape_profile(0)


def test_the_frontier_is_the_schedules_cost_and_risk_over_lambda():
    ac = AlmgrenChriss(permanent=2.5e-7, temporary=2.5e-6, fixed=0.0625)
    front = ac.frontier(1e6, volatility=0.95, horizon=5.0, intervals=5)
    lams = front["risk_aversion"].values
    assert lams.size == 25 and (np.diff(front["variance"].values) < 0).all()
    assert (np.diff(front["expected_cost"].values) > 0).all()
    one = ac.schedule([1e6], volatility=0.95, horizon=5.0, intervals=5, risk_aversion=lams[7])
    assert float(front["expected_cost"][7]) == pytest.approx(float(one["expected_cost"][0]),
                                                             rel=1e-12)
    np.testing.assert_allclose(front["std"] ** 2, front["variance"], rtol=1e-12)
    with pytest.raises(ValidationError) as err:
        ac.frontier(1e6, volatility=0.95, horizon=5.0, intervals=5, risk_aversions=[1e-6, "x"])
    assert err.value.field == "risk_aversion[1]"


def test_the_frontier_chart_plots_std_against_expected_cost():
    import holoviews as hv

    from pmkit.execution.impact import plot_frontier

    ac = AlmgrenChriss(permanent=2.5e-7, temporary=2.5e-6, fixed=0.0625)
    front = ac.frontier(1e6, volatility=0.95, horizon=5.0, intervals=5,
                        risk_aversions=[1e-8, 1e-6, 1e-5])
    chart = plot_frontier(front)
    (points,) = [e for e in chart if isinstance(e, hv.Scatter)]
    np.testing.assert_allclose(points.dimension_values("std"), front["std"].values)
    np.testing.assert_allclose(points.dimension_values("expected_cost"),
                               front["expected_cost"].values)


hostile_numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                            st.integers(-10**30, 10**30), st.none(), st.text(max_size=4),
                            st.booleans())


@settings(max_examples=80, deadline=None)
@given(quantity=st.one_of(hostile_numbers, st.lists(hostile_numbers, max_size=4)),
       volatility=hostile_numbers, horizon=hostile_numbers,
       intervals=st.one_of(hostile_numbers, st.integers(-5, 500)),
       risk_aversion=hostile_numbers)
def test_any_schedule_call_succeeds_with_a_valid_plan_or_names_the_field(
        quantity, volatility, horizon, intervals, risk_aversion):
    ac = AlmgrenChriss(permanent=2.5e-7, temporary=2.5e-6, fixed=0.0625)
    try:
        plan = ac.schedule(quantity, volatility=volatility, horizon=horizon,
                           intervals=intervals, risk_aversion=risk_aversion)
    except ValidationError as err:
        assert err.field.split("[")[0] in {"quantity", "volatility", "horizon", "intervals",
                                           "risk_aversion", "temporary", "expected_cost",
                                           "variance"}
        return
    q = np.asarray([float(x) for x in quantity])
    assert np.isfinite(plan["holdings"].values).all()
    np.testing.assert_allclose(plan["trades"].sum("interval"), q, rtol=1e-9)
    assert (plan["holdings"].values >= -1e-9 * q[:, None]).all()
    assert (plan["expected_cost"].values >= 0).all() and (plan["variance"].values >= 0).all()


def test_an_estimated_profile_recovers_the_shape_behind_noisy_sessions():
    """Sessions drawn as ADV x shape x log-normal noise (mean 1): the estimate is the shape."""
    from pmkit.execution import estimate_profile

    rng = np.random.default_rng(3)
    shape = u_shape_profile(26, ends=4.0)
    days = 400
    scale = rng.uniform(1e5, 1e6, days)[:, None]  # busy and quiet days weigh the same
    noise = np.exp(0.3 * rng.standard_normal((days, 26)) - 0.045)
    got = estimate_profile(scale * shape * noise)
    assert got.sum() == pytest.approx(1.0, rel=1e-12)
    # each interval within 4 standard errors of the noise (0.3 / sqrt(400) = 1.5 %)
    np.testing.assert_allclose(got, shape, rtol=0.06)
    assert estimate_profile([[0.0] * 3, [1.0, 2.0, 1.0]]) == pytest.approx([0.25, 0.5, 0.25])
    for bad in ([1.0, 2.0], [[1.0, np.nan]], [[-1.0, 2.0]], [[0.0, 0.0]], "x"):
        with pytest.raises(ValidationError) as e:
            estimate_profile(bad)
        assert e.value.field == "volumes"
