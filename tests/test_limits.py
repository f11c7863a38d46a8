"""Limits: thresholds from the inherited config, breaches on constructed cases, event routing."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from pmkit.datasets import load_market
from pmkit.demo import seed_demo
from pmkit.errors import ConfigError, ValidationError
from pmkit.registry import Registry
from pmkit.risk import limits as lim
from pmkit.store import open_store

A, B = "client_a/growth", "client_a/income"
C, D = "client_b/balanced", "client_b/factors"


@pytest.fixture(scope="module")
def market():
    return load_market()


@pytest.fixture
def reg(market):
    r = Registry(open_store(":memory:"), user="system", market=market)
    seed_demo(r)
    return r


def _metrics(pids, weights, **per_portfolio):
    assets = ["AAPL", "MSFT", "KO"]
    ds = xr.Dataset(
        {"weight": (("portfolio", "asset"), np.asarray(weights, float))},
        coords={"portfolio": pids, "asset": assets},
    )
    for name, vals in per_portfolio.items():
        ds[name] = ("portfolio", np.asarray(vals, float))
    return ds


def test_thresholds_come_from_the_inherited_config(reg):
    # demo: defaults 0.30, client_a 0.25, client_b 0.20
    m = _metrics(
        [A, C],
        [[0.26, 0.25, 0.1], [0.26, 0.21, 0.19]],
        leverage=[1.0, 1.0],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing configured lacks a metric here
        got = lim.check_limits(reg, m, publish=False)
    assert [(b.portfolio, b.limit, b.item, b.threshold, b.source) for b in got] == [
        (A, "position", "AAPL", 0.25, "group:client_a"),  # 0.25 itself is not a breach
        (C, "position", "AAPL", 0.20, "group:client_b"),
        (C, "position", "MSFT", 0.20, "group:client_b"),
    ]
    assert got[0].value == 0.26 and got[0].key == "max_position_weight"
    # a portfolio override wins over its group
    reg.set_config(A, {"max_position_weight": 0.3, "max_leverage": 0.9})
    got = lim.check_limits(reg, m, publish=False)
    assert [(b.portfolio, b.limit, b.threshold) for b in got if b.portfolio == A] == [
        (A, "leverage", 0.9)
    ]


def test_explicit_limits_and_every_metric(reg):
    m = _metrics(
        [A, B],
        [[-0.4, 0.1, 0.0], [0.1, 0.1, 0.1]],  # a short position counts by |w|
        var=[0.031, 0.01],
        drawdown=[0.05, 0.2],
        leverage=[1.6, 0.3],
        heat=[0.02, 0.08],
    )
    m["sector_weight"] = (("portfolio", "sector"), [[0.5, 0.1], [0.2, 0.35]])
    m = m.assign_coords(sector=["Tech", "Staples"])
    limits = {
        "var": 0.03,
        "max_drawdown": 0.1,
        "leverage": 1.5,
        "heat": 0.06,
        "sector": 0.3,
        B: {"position": None, "sector": 0.4},
    }
    got = lim.check_limits(reg, m, limits=limits, publish=False)
    assert [(b.portfolio, b.limit, b.item) for b in got] == [
        (A, "position", "AAPL"),
        (A, "sector", "Tech"),
        (A, "var", None),
        (A, "leverage", None),
        (B, "drawdown", None),
        (B, "heat", None),
    ]
    assert got[0].value == pytest.approx(0.4)
    assert all(b.source == "explicit" for b in got[1:])
    frame = lim.breaches_frame(got)
    assert list(frame.columns[:4]) == ["portfolio", "limit", "value", "threshold"]
    assert len(frame) == 6
    with pytest.raises(ValidationError) as err:
        lim.check_limits(reg, m, limits={"max_beta": 1.0}, publish=False)
    assert err.value.field == "limits"


def test_missing_metric_warns_and_bad_config_is_refused(reg):
    reg.set_config(A, {"max_var": 0.02})
    m = _metrics([A], [[0.1, 0.1, 0.1]])
    with pytest.warns(UserWarning, match="max_var"):
        assert lim.check_limits(reg, m, publish=False) == []
    with pytest.raises(ConfigError) as err:  # refused when it is set
        reg.set_config(A, {"max_var": "high"})
    assert err.value.field == "values.max_var"


def test_breach_events_reach_only_that_portfolio_and_its_groups(reg):
    seen: dict[str, list] = {k: [] for k in ("A", "B", "C", "client_a", "client_b", "all")}
    reg.bus.subscribe("risk.limit_breach", seen["A"].append, portfolio=A)
    reg.bus.subscribe("risk.limit_breach", seen["B"].append, portfolio=B)
    reg.bus.subscribe("risk.limit_breach", seen["C"].append, portfolio=C)
    reg.bus.subscribe("risk.*", seen["client_a"].append, group="client_a")
    reg.bus.subscribe("risk.*", seen["client_b"].append, group="client_b")
    reg.bus.subscribe("risk.limit_breach", seen["all"].append)
    m = _metrics([A, B, C], [[0.3, 0.27, 0.0], [0.1, 0.1, 0.1], [0.21, 0.0, 0.0]])
    got = lim.check_limits(reg, m)
    assert [(b.portfolio, b.item) for b in got] == [(A, "AAPL"), (A, "MSFT"), (C, "AAPL")]
    assert [(e.portfolio, e.payload["item"]) for e in seen["A"]] == [(A, "AAPL"), (A, "MSFT")]
    assert seen["B"] == []
    assert [(e.portfolio, e.payload["item"]) for e in seen["C"]] == [(C, "AAPL")]
    assert [e.portfolio for e in seen["client_a"]] == [A, A]
    assert [e.portfolio for e in seen["client_b"]] == [C]
    assert len(seen["all"]) == 3
    e = seen["A"][0]
    assert e.topic == "risk.limit_breach"
    assert e.payload == {
        "limit": "position",
        "key": "max_position_weight",
        "value": 0.3,
        "threshold": 0.25,
        "item": "AAPL",
        "source": "group:client_a",
    }


def test_limit_metrics_on_the_demo(reg):
    from pmkit.model import portfolio_values
    from pmkit.model import weights as model_weights

    m = lim.limit_metrics(reg, var={A: 0.05, C: 0.01})
    t = reg.market.indexes["time"][-1]
    ref = model_weights(reg.holdings(times=[t]), reg.market.sel(time=[t])).isel(time=0)
    np.testing.assert_allclose(m["weight"].values, ref["weight"].values, rtol=1e-14)
    np.testing.assert_allclose(m["leverage"], np.abs(ref["weight"]).sum("asset"), rtol=1e-12)
    np.testing.assert_allclose(m["sector_weight"].sum("sector"), ref["weight"].sum("asset"))
    assert np.isnan(m["var"].sel(portfolio=B)) and float(m["var"].sel(portfolio=A)) == 0.05
    # current drawdown from the daily NAV path, computed independently
    nav = portfolio_values(reg.holdings([A]), reg.market).sel(portfolio=A).values
    live = nav[nav > 0]
    want = 1 - live[-1] / live.max()
    assert float(m["drawdown"].sel(portfolio=A)) == pytest.approx(want, rel=1e-12)
    # real demo at the last date: oil and health care rallied, so XOM, CVX and LLY
    # outgrew their group caps; every reported breach is above its resolved cap,
    # and every position above its cap is reported
    got = lim.check_limits(reg, m, limits={"var": 0.03}, publish=False)
    assert [(b.portfolio, b.value) for b in got if b.limit == "var"] == [(A, 0.05)]
    reported = {(b.portfolio, b.item) for b in got if b.limit == "position"}
    caps = {p: reg.resolve_config(p)["max_position_weight"] for p in m.portfolio.values}
    above = {
        (p, a)
        for p in m.portfolio.values.tolist()
        for a in m.asset.values.tolist()
        if abs(float(m["weight"].sel(portfolio=p, asset=a))) > caps[p]
    }
    assert reported == above
    assert {(B, "XOM"), (C, "CVX"), (C, "LLY")} <= reported
