"""Liquidity from real volumes: cvxportfolio's wheel ships 2014 daily dollar volumes of 28 Dow
stocks (issue 16, point 1: "use real data where it exists"). The bundled demo data has none."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pandas as pd
import pytest

try:
    DIST = importlib.metadata.distribution("cvxportfolio")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - `make test` installs it
    pytest.skip("cvxportfolio (pmkit[bench]) is not installed", allow_module_level=True)

from pmkit.datasets import load_market, load_traded_values, load_volume_market
from pmkit.errors import ValidationError
from pmkit.execution import CostModel, liquidity, simulate_session


def raw(name):
    """The shipped file, read here with plain pandas (an independent path)."""
    return pd.read_csv(DIST.locate_file(f"cvxportfolio/tests/{name}"), index_col=0,
                       parse_dates=[0])


def test_adv_is_the_mean_of_the_real_dollar_volume():
    market = load_volume_market()
    liq = liquidity(market, window=20)
    values = raw("volumes.csv")
    last20 = values.loc[market.indexes["time"][-20:]]
    for asset in ("AAPL", "KO", "GS", "WMT"):
        assert liq["adv"].sel(asset=asset) == pytest.approx(last20[asset].mean(), rel=1e-12)
    # real magnitudes: Apple traded about $5bn a day at the end of 2014, Travelers far less
    assert 3e9 < float(liq["adv"].sel(asset="AAPL")) < 8e9
    assert float(liq["adv"].sel(asset="TRV")) < float(liq["adv"].sel(asset="AAPL")) / 10


def test_volatility_is_that_of_the_real_returns():
    market = load_volume_market()
    liq = liquidity(market, window=20)
    returns = raw("returns.csv").loc[market.indexes["time"][-20:]]
    for asset in ("AAPL", "JPM"):
        assert liq["volatility"].sel(asset=asset) == pytest.approx(
            returns[asset].std(ddof=1), rel=1e-9)


def test_traded_values_round_trip_the_file():
    da = load_traded_values("2014-03-01", "2014-03-31")
    values = raw("volumes.csv").loc["2014-03-01":"2014-03-31"]
    np.testing.assert_array_equal(da.sel(asset="KO").values, values["KO"].values)
    with pytest.raises(ValidationError) as e:
        load_traded_values("2015-01-01")
    assert e.value.field == "start"


def test_a_session_on_real_volumes_trades_the_real_adv():
    market = load_volume_market()
    day = market.indexes["time"][-1]
    sess = simulate_session(market, day, assets=["AAPL", "KO"], intervals=390,
                            volume_noise=0.0)
    liq = liquidity(market.isel(time=slice(0, -1)), window=20)
    for i, asset in enumerate(sess.assets):
        assert sess.adv[i] == pytest.approx(float(liq["adv"].sel(asset=asset)), rel=1e-12)
        assert sess.volumes[i].sum() * sess.prices[i, 0] == pytest.approx(sess.adv[i], rel=1e-12)
    # the cost model takes the real ADVs: AAPL's impact for $10m is far below TRV's
    model = CostModel(adv=liq["adv"].to_series().to_dict())
    assert model.adv_of("AAPL") == pytest.approx(float(liq["adv"].sel(asset="AAPL")))


def test_the_demo_market_has_no_volumes_and_says_so():
    with pytest.raises(ValidationError) as e:
        liquidity(load_market(), window=20)
    assert e.value.field == "volume"
