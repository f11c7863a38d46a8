"""Cross-portfolio operations (`pmkit.analytics.cross`, design note 001 "API Extensions").

References are independent of the code under test: each portfolio's ledger is
replayed by hand here (units x real close + cash, numpy), its daily Modified
Dietz returns computed in numpy, and the statistics, correlations and the
diversification ratio checked against numpy formulas and closed forms.
"""

from __future__ import annotations

import json
import math
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import xarray as xr
from note_configs import NOTE_001_CONFIG

from pmkit.analytics import cross
from pmkit.datasets import load_market
from pmkit.demo import open_demo
from pmkit.errors import (
    ConfigError,
    CurrencyMismatchError,
    DuplicateLabelError,
    InsufficientDataError,
    NotFoundError,
    PermissionDenied,
    ValidationError,
)
from pmkit.registry import Registry

START = "2021-01-04"
DEMO_IDS = ["client_a/growth", "client_a/income", "client_b/balanced", "client_b/factors"]


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def market():
    return load_market()


@pytest.fixture(scope="module")
def demo():
    return open_demo()


def _day(market, day) -> pd.Timestamp:
    return pd.Timestamp(market.indexes["time"][market.indexes["time"].get_loc(pd.Timestamp(day))])


def _close(market, asset: str, day) -> float:
    return float(market["close"].sel(asset=asset, time=pd.Timestamp(day)).item())


def _buy(reg: Registry, pid: str, market, asset: str, budget: float, day) -> None:
    """Buy ``budget`` worth of ``asset`` (whole units) at the day's real close."""
    price = _close(market, asset, day)
    qty = math.floor(budget / price)
    reg.record_trade(asset, float(qty), price, portfolio=pid,
                     ts=pd.Timestamp(day).to_pydatetime().replace(hour=16))


def _fund(reg: Registry, pid: str, capital: float, day, currency: str = "USD") -> None:
    reg.create_portfolio(pid, capital, name=pid, currency=currency,
                         at=pd.Timestamp(day).to_pydatetime().replace(hour=9))


def _book(market, *, flags: dict | None = None) -> Registry:
    """Four portfolios on real prices.

    ``one/aapl`` and ``two/xom`` each hold one asset (the closed-form case);
    ``mix/both`` holds both, so assets overlap; ``late/msft`` is funded ten
    market days before the end.
    """
    reg = Registry.open(":memory:", market=market)
    if flags is not None:
        reg.apply_config({"cross_portfolio": flags})
    _fund(reg, "one/aapl", 100_000.0, START)
    _buy(reg, "one/aapl", market, "AAPL", 99_000.0, START)
    _fund(reg, "two/xom", 300_000.0, START)
    _buy(reg, "two/xom", market, "XOM", 297_000.0, START)
    _fund(reg, "mix/both", 200_000.0, START)
    _buy(reg, "mix/both", market, "AAPL", 100_000.0, START)
    _buy(reg, "mix/both", market, "XOM", 90_000.0, START)
    late = market.indexes["time"][-10]
    _fund(reg, "late/msft", 50_000.0, late)
    _buy(reg, "late/msft", market, "MSFT", 45_000.0, late)
    return reg


@pytest.fixture(scope="module")
def book(market):
    return _book(market)


# -- the independent reference ---------------------------------------------------------------------
def reference(reg: Registry, market, pid: str) -> pd.DataFrame:
    """Value, flow and daily Modified Dietz return of one portfolio, by hand from its ledger.

    An entry belongs to the market day of its calendar date; value = units x
    close + cash; r[t] = (V[t] - V[t-1] - F[t]) / (V[t-1] + F[t]) where the
    denominator is not zero.
    """
    times = pd.DatetimeIndex(market.indexes["time"])
    close = market["close"].to_pandas().T  # time x asset
    units = pd.DataFrame(0.0, index=times, columns=close.columns)
    cash = pd.Series(0.0, index=times)
    flow = pd.Series(0.0, index=times)
    for e in reg.ledger(pid):
        day = times[times.searchsorted(pd.Timestamp(e.ts).normalize())]
        if e.kind == "cash":
            cash[day] += e.amount
            flow[day] += e.amount
        else:
            units.loc[day, e.asset] += e.quantity
            cash[day] -= e.quantity * e.price + e.fee
    units, cash = units.cumsum(), cash.cumsum()
    value = (units * close.fillna(0.0)).sum(axis=1) + cash
    prev = value.shift(1).fillna(0.0)
    denominator = prev + flow
    ret = (value - prev - flow) / denominator.where(denominator != 0)
    return pd.DataFrame({"value": value, "flow": flow, "ret": ret})


def ref_returns(reg, market, ids) -> pd.DataFrame:
    """Daily returns (time x portfolio), from the first day any of them has one."""
    frame = pd.DataFrame({p: reference(reg, market, p)["ret"] for p in ids})
    return frame.loc[frame.notna().any(axis=1).idxmax():]


# -- compare_portfolios ----------------------------------------------------------------------------
def test_compare_matches_numpy_on_the_demo_ledgers(demo, market):
    ids = ["client_b/factors", "client_a/growth", "client_a/income"]  # not sorted: order kept
    metrics = ["sharpe", "volatility", "annual_return", "sharpe_ratio", "observations"]
    table = cross.compare_portfolios(demo, ids, metrics)
    assert list(table.index) == ids and list(table.columns) == metrics
    ref = ref_returns(demo, market, ids)
    for pid in ids:
        r = ref[pid].dropna().to_numpy()
        assert table.loc[pid, "observations"] == len(r) > 400
        vol = r.std(ddof=1) * math.sqrt(252)
        assert table.loc[pid, "volatility"] == pytest.approx(vol, rel=1e-9)
        assert table.loc[pid, "sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252),
                                                         rel=1e-9)
        cagr = np.prod(1 + r) ** (252 / len(r)) - 1
        assert table.loc[pid, "annual_return"] == pytest.approx(cagr, rel=1e-9)
    # a short name is the full statistic, same number and units
    assert table["sharpe"].equals(table["sharpe_ratio"])
    assert table.attrs["units"]["volatility"] == "fraction, annualized"
    assert table.attrs["statistics"]["annual_return"] == "cagr"
    assert table.attrs["start"] == START and table.attrs["currency"] == "USD"


def test_compare_defaults_to_every_visible_portfolio_and_every_statistic(demo):
    table = cross.compare_portfolios(demo)
    assert list(table.index) == DEMO_IDS
    assert "max_drawdown" in table.columns and "calmar_ratio" in table.columns
    assert (table["max_drawdown"] <= 0).all()  # performance_table's sign: a loss is negative


def test_compare_window_total_return_is_the_value_ratio(book, market):
    start, end = "2022-03-01", "2022-09-30"
    table = cross.compare_portfolios(book, ["one/aapl", "two/xom"], ["total_return"],
                                     start=start, end=end)
    ref = {p: reference(book, market, p)["value"] for p in ("one/aapl", "two/xom")}
    times = pd.DatetimeIndex(market.indexes["time"])
    before = times[times.searchsorted(pd.Timestamp(start)) - 1]
    last = times[times.searchsorted(pd.Timestamp(end), "right") - 1]
    for pid, value in ref.items():  # no flows in the window: the return is the value ratio
        assert table.loc[pid, "total_return"] == pytest.approx(value[last] / value[before] - 1,
                                                               rel=1e-9)
    assert table.attrs["start"] == "2022-03-01" and table.attrs["end"] == str(last.date())


def test_an_unknown_metric_is_named_with_the_valid_ones(demo):
    with pytest.raises(ValidationError) as info:
        cross.compare_portfolios(demo, DEMO_IDS[:2], ["sharpe", "alpha_romeo"])
    assert info.value.value == "alpha_romeo"
    assert "sharpe_ratio" in str(info.value) and "volatility" in str(info.value)
    with pytest.raises(DuplicateLabelError):
        cross.compare_portfolios(demo, DEMO_IDS[:2], ["sharpe", "sharpe"])


def test_bad_portfolio_lists_are_refused(demo):
    with pytest.raises(ValidationError):
        cross.compare_portfolios(demo, [])
    with pytest.raises(DuplicateLabelError):
        cross.calculate_correlation(demo, ["client_a/growth", "client_a/growth"])
    with pytest.raises(ValidationError):
        cross.calculate_correlation(demo, DEMO_IDS, method="euclid")
    with pytest.raises(ValidationError):
        cross.analyze_diversification(demo, DEMO_IDS, min_observations=1)
    with pytest.raises(InsufficientDataError):
        cross.compare_portfolios(demo, DEMO_IDS, start="2030-01-01")


# -- calculate_correlation -------------------------------------------------------------------------
def test_correlation_matches_numpy_corrcoef(demo, market):
    corr = cross.calculate_correlation(demo, DEMO_IDS)
    assert corr.dims == ("portfolio", "portfolio_j")
    assert list(corr["portfolio"].values) == DEMO_IDS == list(corr["portfolio_j"].values)
    ref = ref_returns(demo, market, DEMO_IDS).dropna()  # the demo portfolios start together
    expected = np.corrcoef(ref.to_numpy().T)
    np.testing.assert_allclose(corr.values, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(np.diag(corr.values), 1.0)
    np.testing.assert_array_equal(corr.values, corr.values.T)
    assert corr.attrs["n_observations"] == len(ref) and corr.attrs["method"] == "pearson"
    assert corr.sel(portfolio="client_a/growth", portfolio_j="client_b/factors") == pytest.approx(
        expected[0, 3], rel=1e-9)


def test_rank_correlation_matches_scipy(demo, market):
    corr = cross.calculate_correlation(demo, DEMO_IDS[:2], method="spearman")
    ref = ref_returns(demo, market, DEMO_IDS[:2]).dropna()
    rho = scipy.stats.spearmanr(ref.iloc[:, 0], ref.iloc[:, 1]).statistic
    assert float(corr[0, 1]) == pytest.approx(rho, rel=1e-9)


def test_correlation_is_pairwise_and_refuses_a_short_overlap(book, market):
    with pytest.raises(InsufficientDataError) as info:
        cross.calculate_correlation(book, ["one/aapl", "late/msft"])
    assert "one/aapl" in info.value.field and "late/msft" in info.value.field
    assert info.value.value == 10  # funded ten market days before the end
    corr = cross.calculate_correlation(book, ["one/aapl", "two/xom", "late/msft"],
                                       min_observations=10)
    ref = ref_returns(book, market, ["one/aapl", "two/xom", "late/msft"])
    pair = ref[["one/aapl", "late/msft"]].dropna()
    assert len(pair) == 10 and corr.attrs["n_observations"] == 10
    assert float(corr.sel(portfolio="one/aapl", portfolio_j="late/msft")) == pytest.approx(
        np.corrcoef(pair.to_numpy().T)[0, 1], rel=1e-9)
    # the long pair uses its whole common history, not the late portfolio's ten days
    long_pair = ref[["one/aapl", "two/xom"]].dropna()
    assert float(corr.sel(portfolio="one/aapl", portfolio_j="two/xom")) == pytest.approx(
        np.corrcoef(long_pair.to_numpy().T)[0, 1], rel=1e-9)


# -- analyze_diversification -----------------------------------------------------------------------
def test_diversification_ratio_closed_form_for_two_single_asset_portfolios(book, market):
    ids = ["one/aapl", "two/xom"]
    d = cross.analyze_diversification(book, ids)
    ref = ref_returns(book, market, ids).dropna()
    v = np.array([reference(book, market, p)["value"].iloc[-1] for p in ids])
    w1, w2 = v / v.sum()
    s1, s2 = ref.std(ddof=1).to_numpy() * math.sqrt(252)
    rho = np.corrcoef(ref.to_numpy().T)[0, 1]
    combined = math.sqrt(w1**2 * s1**2 + w2**2 * s2**2 + 2 * w1 * w2 * rho * s1 * s2)
    ratio = (w1 * s1 + w2 * s2) / combined
    assert d.diversification_ratio == pytest.approx(ratio, rel=1e-9)
    assert d.diversification_ratio > 1  # correlation below 1 diversifies
    assert d.combined_volatility == pytest.approx(combined, rel=1e-9)
    assert d.effective_portfolios_correlated == pytest.approx(ratio**2, rel=1e-9)
    assert d.effective_portfolios == pytest.approx(1 / (w1**2 + w2**2), rel=1e-12)
    assert d.average_correlation == pytest.approx(rho, rel=1e-9)
    np.testing.assert_allclose(d.weights.to_numpy(), [w1, w2], rtol=1e-12)
    np.testing.assert_allclose(d.volatility.to_numpy(), [s1, s2], rtol=1e-9)
    assert d.observations == len(ref) and d.start == pd.Timestamp(START)
    # one asset each: the consolidated book is two positions
    units = {p: book.positions(p).quantities for p in ids}
    pos = np.array([units["one/aapl"]["AAPL"] * _close(market, "AAPL", d.as_of),
                    units["two/xom"]["XOM"] * _close(market, "XOM", d.as_of)])
    assert d.asset_herfindahl == pytest.approx((pos**2).sum() / pos.sum() ** 2, rel=1e-12)
    assert d.effective_assets == pytest.approx(1 / d.asset_herfindahl)
    # nothing in common; the diagonal is each portfolio's invested fraction
    assert float(d.overlap[0, 1]) == 0.0
    np.testing.assert_allclose(np.diag(d.overlap.values), pos / v, rtol=1e-12)
    json.dumps(d.to_dict())


def test_overlap_is_the_value_held_in_common(book, market):
    d = cross.analyze_diversification(book, ["one/aapl", "mix/both"])
    t = d.as_of
    one = book.positions("one/aapl").quantities["AAPL"] * _close(market, "AAPL", t)
    one_value = reference(book, market, "one/aapl")["value"].iloc[-1]
    mix = book.positions("mix/both").quantities["AAPL"] * _close(market, "AAPL", t)
    mix_value = reference(book, market, "mix/both")["value"].iloc[-1]
    expected = min(one / one_value, mix / mix_value)  # only AAPL is held by both
    assert float(d.overlap.sel(portfolio="one/aapl", portfolio_j="mix/both")) == pytest.approx(
        expected, rel=1e-12)
    np.testing.assert_array_equal(d.overlap.values, d.overlap.values.T)


def test_diversification_needs_a_common_history(book):
    with pytest.raises(InsufficientDataError):
        cross.analyze_diversification(book, ["one/aapl", "late/msft"])


# -- generate_consolidated_report ------------------------------------------------------------------
def test_consolidated_holdings_are_the_sum_of_the_portfolios(book, market):
    ids = ["one/aapl", "two/xom", "mix/both"]
    report = cross.generate_consolidated_report(book, ids)
    h = report.holdings
    for asset in ("AAPL", "XOM"):  # the ledger replay (positions), a second path
        assert h.loc[asset, "quantity"] == sum(book.positions(p).quantities.get(asset, 0.0)
                                               for p in ids)
        assert h.loc[asset, "portfolios"] == 2
    assert set(h.index) == {"AAPL", "XOM", cross.CASH_LABEL}
    assert h.loc[cross.CASH_LABEL, "value"] == pytest.approx(sum(book.positions(p).cash
                                                                 for p in ids), rel=1e-12)
    values = book.values(ids)  # the registry's own valuation
    assert h["value"].sum() == pytest.approx(float(values.sum()), rel=1e-12)
    assert h["weight"].sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(report.summary["value"], values.values, rtol=1e-12)
    np.testing.assert_allclose(report.summary["cash"], [book.positions(p).cash for p in ids])
    assert report.summary["share"].sum() == pytest.approx(1.0)
    assert report.total["value"] == pytest.approx(float(values.sum()), rel=1e-12)


def test_report_statistics_and_the_consolidated_book(book, market):
    ids = ["one/aapl", "two/xom", "mix/both"]
    report = cross.generate_consolidated_report(book, ids)
    ref = {p: reference(book, market, p) for p in ids}
    for pid in ids:  # one deposit, no later flow: the total return is value over deposit
        assert report.summary.loc[pid, "total_return"] == pytest.approx(
            ref[pid]["value"].iloc[-1] / ref[pid]["flow"].sum() - 1, rel=1e-9)
    combined = sum(r["value"].iloc[-1] for r in ref.values()) / sum(
        r["flow"].sum() for r in ref.values())
    assert report.total["total_return"] == pytest.approx(combined - 1, rel=1e-9)
    frame = report.to_frame()
    assert list(frame.index) == [*ids, cross.TOTAL_LABEL]
    assert report.correlation is not None and report.correlation.shape == (3, 3)
    assert report.diversification is not None
    assert report.diversification.observations == report.correlation.attrs["n_observations"]
    out = json.loads(json.dumps(report.to_dict()))
    assert out["summary"]["one/aapl"]["currency"] == "USD" and out["currency"] == "USD"
    assert out["holdings"]["AAPL"]["portfolios"] == 2


def test_report_html_escapes_every_string(market):
    reg = Registry.open(":memory:", market=market)
    evil = "<script>alert('x')</script> & co"
    reg.create_portfolio("desk/a", 10_000.0, name=evil, at=datetime(2021, 1, 4, 9))
    _buy(reg, "desk/a", market, "AAPL", 9_000.0, START)
    reg.create_portfolio("desk/b", 10_000.0, name="B", at=datetime(2021, 1, 4, 9))
    _buy(reg, "desk/b", market, "KO", 9_000.0, START)
    page = cross.generate_consolidated_report(reg)._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page and "&amp; co" in page
    assert "AAPL" in page and "Diversification" in page


# -- permissions -----------------------------------------------------------------------------------
CALLS = {
    "compare": lambda reg, ids: cross.compare_portfolios(reg, ids, ["sharpe"]),
    "correlation": lambda reg, ids: cross.calculate_correlation(reg, ids),
    "diversification": lambda reg, ids: cross.analyze_diversification(reg, ids),
    "report": lambda reg, ids: cross.generate_consolidated_report(reg, ids),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_a_portfolio_the_user_may_not_view_fails_as_a_direct_lookup(demo, call):
    alice = demo.as_user("alice")  # trader on client_a only
    with pytest.raises(PermissionDenied) as direct:
        alice.portfolio("client_b/balanced")
    with pytest.raises(PermissionDenied) as info:
        CALLS[call](alice, ["client_a/growth", "client_b/balanced"])
    assert str(info.value) == str(direct.value)
    with pytest.raises(NotFoundError) as direct:
        alice.portfolio("client_a/nope")
    with pytest.raises(NotFoundError) as info:
        CALLS[call](alice, ["client_a/growth", "client_a/nope"])
    assert str(info.value) == str(direct.value)


def test_defaults_cover_only_what_the_user_may_view(demo):
    alice = demo.as_user("alice")
    assert list(cross.compare_portfolios(alice, metrics=["sharpe"]).index) == DEMO_IDS[:2]
    report = cross.generate_consolidated_report(alice)
    assert list(report.summary.index) == DEMO_IDS[:2]
    held = {a for p in DEMO_IDS[:2] for a, q in demo.positions(p).quantities.items() if q}
    assert set(report.holdings.index) - {cross.CASH_LABEL} == held
    assert list(report.diversification.overlap["portfolio"].values) == DEMO_IDS[:2]


# -- settings --------------------------------------------------------------------------------------
def test_defaults_of_the_flags_are_on(demo):
    assert cross.cross_portfolio_flags(demo) == {
        "enable_analysis": True, "enable_reporting": True, "correlation_analysis": True}


def test_analysis_off_refuses_analysis_and_thins_the_report(market):
    reg = _book(market, flags={"enable_analysis": False})
    ids = ["one/aapl", "two/xom"]
    for call in ("compare", "correlation", "diversification"):
        with pytest.raises(ConfigError) as info:
            CALLS[call](reg, ids)
        assert info.value.field == "cross_portfolio.enable_analysis"
    report = cross.generate_consolidated_report(reg, ids)
    assert report.correlation is None and report.diversification is None
    assert "sharpe_ratio" not in report.summary.columns
    assert report.holdings["weight"].sum() == pytest.approx(1.0)
    assert "enable_analysis is off" in report._repr_html_()


def test_reporting_off_refuses_the_report_only(market):
    reg = _book(market, flags={"enable_reporting": False})
    with pytest.raises(ConfigError) as info:
        cross.generate_consolidated_report(reg, ["one/aapl", "two/xom"])
    assert info.value.field == "cross_portfolio.enable_reporting"
    assert len(cross.compare_portfolios(reg, ["one/aapl", "two/xom"], ["sharpe"])) == 2


def test_correlation_off_refuses_correlation_and_leaves_out_its_parts(market):
    reg = _book(market, flags={"correlation_analysis": False})
    ids = ["one/aapl", "two/xom"]
    with pytest.raises(ConfigError) as info:
        cross.calculate_correlation(reg, ids)
    assert info.value.field == "cross_portfolio.correlation_analysis"
    d = cross.analyze_diversification(reg, ids)
    assert d.average_correlation is None and d.diversification_ratio is None
    assert d.combined_volatility is None and d.effective_portfolios_correlated is None
    assert d.effective_portfolios > 1 and d.asset_herfindahl > 0  # no correlation needed
    report = cross.generate_consolidated_report(reg, ids)
    assert report.correlation is None and report.diversification is not None
    assert "sharpe_ratio" in report.summary.columns


# -- currencies ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def euro(market):
    """A USD portfolio and a EUR one holding only cash, with EUR rates that move."""
    reg = Registry.open(":memory:", market=market)
    _fund(reg, "us/aapl", 100_000.0, START)
    _buy(reg, "us/aapl", market, "AAPL", 99_000.0, START)
    _fund(reg, "eu/cash", 80_000.0, START, currency="EUR")
    times = market.indexes["time"]
    eur = 1.0 + 0.1 * np.sin(np.arange(len(times)) / 50.0)  # USD per EUR
    fx = xr.DataArray(np.vstack([np.ones(len(times)), eur]), dims=("currency", "time"),
                      coords={"currency": ["USD", "EUR"], "time": times}, name="rate")
    return reg, fx


def test_mixed_currencies_need_fx_to_be_added(euro):
    reg, fx = euro
    with pytest.raises(CurrencyMismatchError):
        cross.generate_consolidated_report(reg)
    with pytest.raises(CurrencyMismatchError):
        cross.analyze_diversification(reg)
    with pytest.raises(ValidationError):  # rates alone do not say which currency to report in
        cross.generate_consolidated_report(reg, fx=fx)
    report = cross.generate_consolidated_report(reg, fx=fx, currency="USD")
    rate = float(fx.sel(currency="EUR", time=report.as_of))
    assert report.summary.loc["eu/cash", "value"] == pytest.approx(80_000.0)
    assert report.summary.loc["eu/cash", "report_value"] == pytest.approx(80_000.0 * rate)
    assert report.holdings["weight"].sum() == pytest.approx(1.0)
    assert report.total["value"] == pytest.approx(float(report.summary["report_value"].sum()))


def test_returns_in_a_common_currency_carry_the_fx_move(euro, market):
    reg, fx = euro
    own = cross.compare_portfolios(reg, ["eu/cash"], ["total_return", "volatility"])
    assert own.loc["eu/cash", "total_return"] == 0.0 and own.attrs["currency"] == "EUR"
    usd = cross.compare_portfolios(reg, ["eu/cash"], ["total_return"], fx=fx, currency="USD")
    path = fx.sel(currency="EUR")
    expected = float(path.isel(time=-1) / path.sel(time=pd.Timestamp(START))) - 1
    assert usd.loc["eu/cash", "total_return"] == pytest.approx(expected, rel=1e-9)
    with pytest.raises(CurrencyMismatchError):
        cross.compare_portfolios(reg, ["eu/cash"], currency="USD")


def test_a_cash_only_portfolio_has_no_correlation(euro):
    reg, _ = euro
    corr = cross.calculate_correlation(reg)  # each portfolio in its own currency
    assert corr.sel(portfolio="us/aapl", portfolio_j="us/aapl") == 1.0
    assert np.isnan(corr.sel(portfolio="eu/cash")).all()


# -- design note 001 -------------------------------------------------------------------------------
def test_note_001_calls_on_the_note_config_with_history(market):
    """The note's four calls and expected shapes, on its config funded with real trades."""
    integration = Registry.from_config(NOTE_001_CONFIG, market=market, at=datetime(2021, 1, 4, 9))
    _buy(integration, "growth_strategy", market, "AAPL", 500_000.0, START)
    _buy(integration, "growth_strategy", market, "MSFT", 450_000.0, START)
    _buy(integration, "income_strategy", market, "KO", 240_000.0, START)
    _buy(integration, "income_strategy", market, "PG", 240_000.0, START)
    portfolio_ids, metrics = ["growth_strategy", "income_strategy"], ["sharpe", "volatility"]
    comparison = cross.compare_portfolios(integration, portfolio_ids, metrics)
    correlation = cross.calculate_correlation(integration, portfolio_ids)
    diversification = cross.analyze_diversification(integration, portfolio_ids)
    consolidated_report = cross.generate_consolidated_report(integration, portfolio_ids)
    assert list(comparison.index) == portfolio_ids and list(comparison.columns) == metrics
    assert np.allclose(np.diag(np.asarray(correlation, dtype=float)), 1.0)
    assert diversification is not None and consolidated_report is not None


def test_note_001_as_written_has_one_day_of_history(market):
    """Funded at the last close with no trade (tests/test_design_notes.py's setup): one return.

    Sharpe and volatility need two returns, correlation a history: the
    operations say so by name instead of inventing numbers.
    """
    from pmkit.strategies import RiskManager

    integration = RiskManager(NOTE_001_CONFIG, market=market).registry
    with pytest.raises(InsufficientDataError, match="growth_strategy"):
        cross.compare_portfolios(integration, ["growth_strategy", "income_strategy"], ["sharpe"])
    with pytest.raises(InsufficientDataError):
        cross.calculate_correlation(integration, ["growth_strategy", "income_strategy"])
