"""Position sizing: hand-worked cases, closed forms, caps, lots, heat and validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from pmkit.errors import ValidationError
from pmkit.risk import sizing as z


# ---------------------------------------------------------------- fixed fractional
def test_fixed_fractional_hand_worked():
    # 1 % of 100,000 = 1,000 at risk; 2 per share to the stop -> 500 shares
    assert z.fixed_fractional_size(100_000, 0.01, 50, 48) == 500
    # short side: stop above entry, same risk per share
    assert z.fixed_fractional_size(100_000, 0.01, 50, 52) == 500


def test_fixed_fractional_rounds_down_to_lots():
    # 1,000 / 1.5 = 666.67 shares -> 600 in lots of 100, 666 in lots of 1
    assert z.fixed_fractional_size(100_000, 0.01, 50, 48.5, lot_size=100) == 600
    assert z.fixed_fractional_size(100_000, 0.01, 50, 48.5) == 666
    # exact multiple survives float rounding: 0.03 * 100,000 / 3 = 1,000 exactly
    assert z.fixed_fractional_size(100_000, 0.03, 10, 7, lot_size=100) == 1000


def test_fixed_fractional_capped_by_max_position_weight():
    # 500 wanted; 20 % of 100,000 at 50 is 400 shares
    assert z.fixed_fractional_size(100_000, 0.01, 50, 48, max_position_weight=0.2) == 400
    # cap then lots: 30 % -> 600 allowed, 500 wanted, lots of 300 -> 300
    got = z.fixed_fractional_size(100_000, 0.01, 50, 48, lot_size=300, max_position_weight=0.3)
    assert got == 300


def test_fixed_fractional_broadcasts_like_a_loop():
    entries = np.array([50.0, 20.0, 101.3])
    stops = np.array([48.0, 19.0, 97.1])
    lots = np.array([1, 10, 5])
    got = z.fixed_fractional_size(250_000, 0.005, entries, stops, lot_size=lots)
    want = [
        math.floor(0.005 * 250_000 / abs(e - s) / lot) * lot
        for e, s, lot in zip(entries, stops, lots, strict=True)
    ]
    np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------- vol target
def test_vol_target_position_vol_equals_target():
    units = z.vol_target_size(1_000_000, 0.02, 100.0, 0.2)
    assert units == 1000  # 20,000 of vol / (100 * 0.2)
    equity, target, price, vol = 731_000.0, 0.015, 37.3, 0.31
    units = z.vol_target_size(equity, target, price, vol)
    raw = target * equity / (price * vol)
    assert units == math.floor(raw)
    # rounding down never overshoots; within one unit of the target vol
    assert units * price * vol <= target * equity < (units + 1) * price * vol


# ---------------------------------------------------------------- Kelly
@pytest.mark.parametrize(
    ("p", "b", "want"),
    [(0.6, 2.0, 0.4), (0.5, 1.0, 0.0), (0.55, 1.0, 0.1), (0.3, 1.0, 0.0), (1.0, 0.5, 1.0)],
)
def test_kelly_fraction_closed_form(p, b, want):
    assert z.kelly_fraction(p, b) == pytest.approx(want, abs=1e-15)


def test_kelly_cap_and_size():
    assert z.kelly_fraction(0.6, 2.0, cap=0.25) == 0.25
    # 25 % of 100,000 at 50 -> 500 shares; lot 200 -> 400
    assert z.kelly_size(100_000, 0.6, 2.0, 50.0, cap=0.25) == 500
    assert z.kelly_size(100_000, 0.6, 2.0, 50.0, cap=0.25, lot_size=200) == 400
    assert z.kelly_size(100_000, 0.6, 2.0, 50.0, max_position_weight=0.1) == 200
    assert z.kelly_size(100_000, 0.3, 1.0, 50.0) == 0  # negative edge: no bet


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: z.fixed_fractional_size(100_000, 0.01, 50, 50), "stop"),
        (lambda: z.fixed_fractional_size(-1.0, 0.01, 50, 48), "equity"),
        (lambda: z.fixed_fractional_size(100_000, 0.0, 50, 48), "risk_fraction"),
        (lambda: z.fixed_fractional_size(100_000, 0.01, 50, 48, lot_size=0), "lot_size"),
        (lambda: z.fixed_fractional_size(100_000, 0.01, 50, 48, lot_size=1.5), "lot_size"),
        (lambda: z.fixed_fractional_size(100_000, 0.01, np.nan, 48), "entry"),
        (lambda: z.kelly_fraction(1.2, 2.0), "win_rate"),
        (lambda: z.kelly_fraction(-0.1, 2.0), "win_rate"),
        (lambda: z.kelly_fraction(0.5, 0.0), "payoff"),
        (lambda: z.kelly_fraction(0.5, -1.0), "payoff"),
        (lambda: z.kelly_size(-5.0, 0.5, 1.0, 10.0), "equity"),
        (lambda: z.vol_target_size(1e6, 0.02, 100.0, 0.0), "asset_volatility"),
        (lambda: z.vol_target_size(1e6, 0.02, 0.0, 0.2), "price"),
    ],
)
def test_bad_input_names_the_field(call, field):
    with pytest.raises(ValidationError) as err:
        call()
    assert err.value.field == field


def test_stop_equal_entry_inside_an_array_is_refused():
    with pytest.raises(ValidationError) as err:
        z.fixed_fractional_size(1e5, 0.01, np.array([50.0, 40.0]), np.array([48.0, 40.0]))
    assert err.value.field == "stop" and err.value.value == 40.0


# ---------------------------------------------------------------- heat
def _heat_inputs():
    pids, assets = ["a", "b"], ["X", "Y", "Z"]
    q = xr.DataArray(
        [[100.0, -50.0, 0.0], [10.0, 0.0, 30.0]],
        dims=("portfolio", "asset"),
        coords={"portfolio": pids, "asset": assets},
    )
    price = xr.DataArray([50.0, 20.0, 7.0], dims="asset", coords={"asset": assets})
    stop = xr.DataArray(
        [[45.0, 22.0, np.nan], [40.0, np.nan, 6.5]],
        dims=("portfolio", "asset"),
        coords={"portfolio": pids, "asset": assets},
    )
    equity = xr.DataArray([10_000.0, 2_000.0], dims="portfolio", coords={"portfolio": pids})
    return q, price, stop, equity


def test_portfolio_heat_hand_worked():
    q, price, stop, equity = _heat_inputs()
    out = z.portfolio_heat(q, price, stop, equity)
    # a: |50-45|*100 + |20-22|*50 = 500 + 100 = 600 -> 6 %; b: 10*10 + 0.5*30 = 115 -> 5.75 %
    np.testing.assert_allclose(out["open_risk"].sel(portfolio="a"), [500.0, 100.0, 0.0])
    np.testing.assert_allclose(out["heat"].values, [0.06, 0.0575])
    # batching equals a per-portfolio loop
    for p in ("a", "b"):
        one = z.portfolio_heat(q.sel(portfolio=[p]), price, stop.sel(portfolio=[p]), equity)
        assert float(one["heat"].item()) == pytest.approx(
            float(out["heat"].sel(portfolio=p)), rel=1e-15
        )


def test_heat_needs_a_stop_for_every_held_position():
    q, price, stop, equity = _heat_inputs()
    stop = stop.copy()
    stop.loc[{"portfolio": "b", "asset": "Z"}] = np.nan
    with pytest.raises(ValidationError) as err:
        z.portfolio_heat(q, price, stop, equity)
    assert err.value.field == "stop[b, Z]"
    with pytest.raises(ValidationError) as err:
        z.portfolio_heat(q, price, _heat_inputs()[2], equity * 0.0)
    assert err.value.field.startswith("equity")


# ---------------------------------------------------------------- registry integration
@pytest.fixture(scope="module")
def demo():
    from pmkit.demo import open_demo

    return open_demo()


def test_size_for_portfolio_capped_by_configured_limit(demo):
    from pmkit.risk.exposures import current_weights

    pid = "client_a/growth"
    cw = current_weights(demo, [pid])
    nav = float(cw["nav"].sel(portfolio=pid))
    price = float(cw["price"].sel(asset="AAPL"))
    held = float(cw["quantity"].sel(portfolio=pid, asset="AAPL"))
    mpw = demo.resolve_config(pid)["max_position_weight"]
    assert mpw == 0.25  # from group client_a
    wanted = math.floor(0.01 * nav / (price - 120.0))
    room = math.floor(mpw * nav / price - held)
    got = z.size_for_portfolio(
        demo, pid, "AAPL", "fixed_fractional", risk_fraction=0.01, stop=120.0
    )
    assert got == min(wanted, room)
    assert wanted > room  # the cap binds in this case
    assert (held + got) * price <= mpw * nav
    with pytest.raises(ValidationError) as err:
        z.size_for_portfolio(demo, pid, "AAPL", "fixed_fractional", risk_fraction=0.01)
    assert err.value.field == "stop"


def test_heat_from_registry_matches_manual(demo):
    from pmkit.risk.exposures import current_weights

    pid = "client_b/factors"
    cw = current_weights(demo, [pid])
    q = cw["quantity"].sel(portfolio=pid)
    held = [a for a in q.asset.values.tolist() if q.sel(asset=a) != 0]
    prices = cw["price"].sel(asset=held)
    stops = {a: 0.9 * float(prices.sel(asset=a)) for a in held}
    out = z.heat_from_registry(demo, {pid: stops}, [pid])
    manual = sum(0.1 * float(prices.sel(asset=a)) * abs(float(q.sel(asset=a))) for a in held)
    assert float(out["heat"].item()) == pytest.approx(manual / float(cw["nav"].item()), rel=1e-12)
    with pytest.raises(ValidationError):
        z.heat_from_registry(demo, {pid: dict(list(stops.items())[1:])}, [pid])
