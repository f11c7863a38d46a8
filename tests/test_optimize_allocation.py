"""Cross-portfolio allocation (pmkit.optimize.allocation) on the demo registry.

References: member returns recomputed here by a plain day-by-day replay of each
ledger against the market closes (Modified Dietz by hand); the two-asset
minimum-variance closed form; the optimizers run directly on those returns.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pmkit.demo import seed_demo
from pmkit.errors import (
    AllocationError,
    CurrencyMismatchError,
    InsufficientDataError,
    PermissionDenied,
    ValidationError,
)
from pmkit.optimize import Constraints, MaximumSharpe, MaximumUtility, MinimumVariance
from pmkit.optimize.allocation import allocate, allocate_group, member_returns, to_allocation
from pmkit.optimize.risk_parity import EqualRiskContribution
from pmkit.registry import ALLOCATION_TOLERANCE, Registry
from pmkit.store import open_store

LATE_START = datetime(2022, 1, 3, 9)
DEPOSIT_DAY = datetime(2021, 9, 1, 12)


@pytest.fixture(scope="module")
def market():
    from pmkit.datasets import load_market

    return load_market()


@pytest.fixture
def reg(market, tmp_path) -> Registry:
    """The demo on a temp SQLite store, plus a late-funded member and mid-history flows."""
    r = Registry(open_store(tmp_path / "alloc.sqlite"), market=market)
    seed_demo(r)
    # one concentrated position (half of NAV): above the demo's default position limit
    r.create_portfolio("client_a/late", 200_000.0, name="Late", at=LATE_START,
                       config={"max_position_weight": 0.5})
    close = float(market["close"].sel(asset="MSFT", time="2022-01-03").item())
    r.record_trade("MSFT", 300.0, close, portfolio="client_a/late", fee=1.0,
                   ts=LATE_START.replace(hour=16))
    r.add_to_group(
        "client_a", "client_a/late",
        allocation={"client_a/growth": 0.5, "client_a/income": 0.3, "client_a/late": 0.2},
    )
    # External flows that a raw value change would count as returns.
    r.record_cash(400_000.0, portfolio="client_a/growth", ts=DEPOSIT_DAY)
    r.record_cash(-30_000.0, portfolio="client_b/balanced", ts=datetime(2022, 3, 1, 12))
    return r


# -- an independent, deliberately plain computation of member returns ------------------------
def _replay(reg: Registry, pid: str, closes: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Value and external flow of one portfolio at each daily close, by walking its ledger."""
    entries = sorted(reg.store.ledger(pid), key=lambda e: e.ts)
    col = {a: j for j, a in enumerate(closes.columns)}
    prices = closes.to_numpy()
    qty: dict[str, float] = {}
    cash, i = 0.0, 0
    values, flows = [], []
    for k, t in enumerate(closes.index):
        flow = 0.0
        while i < len(entries) and entries[i].ts.date() <= t.date():
            e = entries[i]
            if e.kind == "cash":
                cash += e.amount
                flow += e.amount
            else:
                qty[e.asset] = qty.get(e.asset, 0.0) + e.quantity
                cash -= e.quantity * e.price + e.fee
            i += 1
        values.append(cash + sum(q * prices[k, col[a]] for a, q in qty.items() if q))
        flows.append(flow)
    return np.array(values), np.array(flows)


def _reference_returns(reg: Registry, market, members: dict[str, list[str]]) -> pd.DataFrame:
    """Daily Modified Dietz returns (flows at the start of the day) of summed member values."""
    closes = market["close"].transpose("time", "asset").to_pandas()
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    out = {}
    for member, pids in members.items():
        v = sum((cache.setdefault(p, _replay(reg, p, closes))[0] for p in pids),
                np.zeros(len(closes)))
        f = sum((cache[p][1] for p in pids), np.zeros(len(closes)))
        base = v[:-1] + f[1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(base != 0, (v[1:] - v[:-1] - f[1:]) / base, np.nan)
        out[member] = np.concatenate([[np.nan], r])
    return pd.DataFrame(out, index=closes.index)


def _as_returns(frame: pd.DataFrame) -> xr.DataArray:
    complete = frame.dropna()
    return xr.DataArray(
        complete.T.values, dims=("asset", "time"),
        coords={"asset": list(complete.columns), "time": complete.index.to_numpy()},
    )


CLIENT_A = {
    "client_a/growth": ["client_a/growth"],
    "client_a/income": ["client_a/income"],
    "client_a/late": ["client_a/late"],
}
FIRM = {
    "client_a": ["client_a/growth", "client_a/income", "client_a/late"],
    "client_b": ["client_b/balanced", "client_b/factors"],
}


# -- member return series ---------------------------------------------------------------------
@pytest.mark.parametrize(("group", "members"), [("client_a", CLIENT_A), ("firm", FIRM)])
def test_member_returns_equal_an_independent_ledger_replay(reg, market, group, members):
    got = member_returns(reg, group)
    ref = _reference_returns(reg, market, members)
    assert list(got["asset"].values) == list(members)
    np.testing.assert_array_equal(np.isnan(got.values), np.isnan(ref.T.values))
    np.testing.assert_allclose(got.values, ref.T.values, rtol=1e-10, atol=1e-13)
    # before the first deposit there is no observation (NaN), never a zero return
    late_first = pd.Timestamp(LATE_START.date())
    if group == "client_a":
        assert np.isnan(got.sel(asset="client_a/late", time=slice(None, "2021-12-31"))).all()
        assert np.isfinite(got.sel(asset="client_a/late", time=slice(late_first, None))).all()


def test_deposits_are_not_returns(reg, market):
    got = member_returns(reg, "client_a", start="2021-08-25", end="2021-09-10")
    day = pd.Timestamp(DEPOSIT_DAY.date())
    closes = market["close"].transpose("time", "asset").to_pandas()
    v, _ = _replay(reg, "client_a/growth", closes)
    i = closes.index.get_loc(day)
    raw = v[i] / v[i - 1] - 1  # counts the 400k deposit as a gain
    twr = float(got.sel(asset="client_a/growth", time=day))
    assert raw > 0.2 and abs(twr) < 0.05
    # the window starts on `start`, anchored on the previous close
    assert got.indexes["time"][0] == pd.Timestamp("2021-08-25")
    assert np.isfinite(got.sel(asset=["client_a/growth", "client_a/income"])).all()
    assert np.isnan(got.sel(asset="client_a/late")).all()  # not funded yet


# -- allocation equals the optimizer on the independent series --------------------------------
def test_erc_allocation_equals_optimizer_on_reference_returns(reg, market):
    out = allocate_group(reg, "client_a", "risk_parity", apply=False)
    ref = _as_returns(_reference_returns(reg, market, CLIENT_A))
    direct = EqualRiskContribution().fit(ref)
    assert out.returns.indexes["time"].equals(ref.indexes["time"])
    assert out.returns.indexes["time"][0] == pd.Timestamp(LATE_START.date())
    np.testing.assert_allclose(out.result.weights.values, direct.weights.values, atol=1e-10)
    # equal risk contributions 1/M, against a covariance computed here
    cov = np.cov(ref.values) * 252
    w = np.array([out.allocation[m] for m in CLIENT_A])
    rc = w * (cov @ w) / (w @ cov @ w)
    np.testing.assert_allclose(rc, np.full(3, 1 / 3), atol=1e-8)
    np.testing.assert_allclose(w, out.result.weights.values, atol=1e-12)


def test_min_variance_of_child_groups_matches_the_two_asset_closed_form(reg, market):
    out = allocate_group(reg, "firm", "min_variance", apply=False)
    ref = _as_returns(_reference_returns(reg, market, FIRM))
    s = np.cov(ref.values)
    w_a = (s[1, 1] - s[0, 1]) / (s[0, 0] + s[1, 1] - 2 * s[0, 1])
    assert 0 < w_a < 1  # interior, so the long-only optimum is the closed form
    assert out.allocation == pytest.approx({"client_a": w_a, "client_b": 1 - w_a}, abs=1e-9)
    assert list(out.result.weights["member_kind"].values) == ["group", "group"]


@pytest.mark.parametrize(
    ("name", "cls", "kwargs"),
    [
        ("risk_parity", EqualRiskContribution, {}),
        ("min_variance", MinimumVariance, {}),
        ("max_sharpe", MaximumSharpe, {"risk_free": 0.01}),
        ("max_utility", MaximumUtility, {"risk_aversion": 3.0}),
    ],
)
def test_allocate_dispatches_to_the_optimizer(reg, name, cls, kwargs):
    r = member_returns(reg, "client_a").dropna("time")
    got = allocate(r, name, **kwargs)
    want = cls(**kwargs).fit(r)
    assert got.method == want.method
    np.testing.assert_allclose(got.weights.values, want.weights.values, atol=1e-9)
    # an instance is used as given
    inst = allocate(r, cls(**kwargs))
    np.testing.assert_allclose(inst.weights.values, want.weights.values, atol=1e-12)


def test_allocate_refuses_unknown_methods_and_mixed_settings(reg):
    r = member_returns(reg, "client_b").dropna("time")
    with pytest.raises(ValidationError, match="method"):
        allocate(r, "equal_weight")
    with pytest.raises(ValidationError, match="own settings"):
        allocate(r, MinimumVariance(), constraints=Constraints(upper=0.8))


# -- writing through the registry -------------------------------------------------------------
def test_apply_writes_the_result_as_the_group_allocation(reg):
    bob = reg.as_user("bob")  # manager of firm, hence of client_a
    seen = []
    reg.bus.subscribe("group.allocation_changed", seen.append, group="client_a")
    out = allocate_group(bob, "client_a", "risk_parity")
    stored = reg.group("client_a").allocation
    assert out.applied and stored == out.allocation
    assert out.previous == {"client_a/growth": 0.5, "client_a/income": 0.3, "client_a/late": 0.2}
    assert abs(math.fsum(stored.values()) - 1.0) <= ALLOCATION_TOLERANCE
    assert all(0 <= w <= 1 for w in stored.values())
    for m, w in stored.items():
        assert w == pytest.approx(float(out.result.weights.sel(asset=m)), abs=1e-12)
    main = [a for a in reg.store.audit(target="client_a") if a.action == "group.allocation"][-1]
    assert (main.actor, main.after) == ("bob", stored)
    assert [e.topic for e in seen] == ["group.allocation_changed"]


def test_the_audit_names_the_method(reg):
    out = allocate_group(reg.as_user("bob"), "client_a", "min_variance")
    text = repr([a.after for a in reg.store.audit(target="client_a")[-2:]])
    assert "minimum variance" in text and out.reason in text


@pytest.mark.parametrize("user", ["carol", "alice"])  # viewer on firm; trader on client_a
def test_users_who_may_not_allocate_are_refused_and_nothing_changes(reg, user):
    before = reg.store.dump()
    with pytest.raises(PermissionDenied) as info:
        allocate_group(reg.as_user(user), "client_a")
    assert (info.value.user, info.value.action, info.value.needed) == (
        user, "group.allocation", "manager"
    )
    assert reg.store.dump() == before
    # viewing is enough to compute without writing
    assert allocate_group(reg.as_user(user), "client_a", apply=False).applied is False


def test_apply_false_writes_nothing(reg):
    seen = []
    reg.bus.subscribe("*", seen.append)
    before = reg.store.dump()
    out = allocate_group(reg, "firm", "max_utility", risk_aversion=4.0, apply=False)
    assert reg.store.dump() == before and not seen
    assert reg.group("firm").allocation is None and out.previous is None
    assert abs(math.fsum(out.allocation.values()) - 1.0) <= ALLOCATION_TOLERANCE


# -- ragged and missing histories ---------------------------------------------------------------
def test_member_without_history_is_a_typed_error_naming_it(reg):
    reg.create_portfolio("client_a/empty", 0.0, name="Empty")
    reg.add_to_group("client_a", "client_a/empty", allocation={
        "client_a/growth": 0.4, "client_a/income": 0.3, "client_a/late": 0.2, "client_a/empty": 0.1,
    })
    reg.create_group("hollow", [])
    reg.add_to_group("firm", "hollow")  # a child group with no portfolios has no value either
    before = reg.store.dump()
    with pytest.raises(InsufficientDataError) as info:
        allocate_group(reg, "client_a")
    assert info.value.value == "client_a/empty" and "client_a/empty: 0" in str(info.value)
    with pytest.raises(InsufficientDataError) as info:
        allocate_group(reg, "firm")
    assert info.value.value == "hollow"
    assert reg.store.dump() == before


def test_members_in_different_currencies_are_refused(reg):
    reg.create_portfolio("eur_book", 100_000.0, currency="EUR", at=datetime(2021, 1, 4, 9))
    reg.create_group("mixed", ["client_b/factors", "eur_book"])
    with pytest.raises(CurrencyMismatchError, match="EUR"):
        allocate_group(reg, "mixed", apply=False)


def test_short_history_is_named_and_start_end_select_the_window(reg):
    with pytest.raises(InsufficientDataError) as info:
        allocate_group(reg, "client_a", min_observations=300, apply=False)
    assert info.value.value == "client_a/late"
    out = allocate_group(reg, "client_b", start="2022-01-01", end="2022-06-30", apply=False)
    t = out.returns.indexes["time"]
    assert t[0] == pd.Timestamp("2022-01-03") and t[-1] == pd.Timestamp("2022-06-30")


def test_constraints_that_leave_cash_or_short_are_refused_before_writing(reg):
    before = reg.store.dump()
    for cons in (Constraints(budget=(0.9, 1.0)), Constraints(cash_floor=0.1),
                 Constraints(long_only=False)):
        with pytest.raises(ValidationError, match="constraints"):
            allocate_group(reg, "client_a", "min_variance", constraints=cons)
    assert reg.store.dump() == before
    capped = allocate_group(reg, "client_a", "min_variance", constraints=Constraints(upper=0.5))
    assert max(capped.allocation.values()) <= 0.5 + 1e-9
    assert reg.group("client_a").allocation == capped.allocation


# -- rounding to a valid allocation -------------------------------------------------------------
def test_to_allocation_removes_round_off_only():
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 7, 25):
        w = rng.dirichlet(np.ones(n))
        if n > 1:  # one member the optimizer dropped, returned as -0.000000000001
            w[0] = 0.0
            w /= w.sum()
        noisy = w + rng.normal(0, 1e-11, n)
        if n > 1:
            noisy[0] = -1e-12
        out = to_allocation({f"m{i}": x for i, x in enumerate(noisy)})
        got = np.array(list(out.values()))
        assert abs(math.fsum(got) - 1.0) <= 2e-16 and (got >= 0).all() and (got <= 1).all()
        np.testing.assert_allclose(got, np.maximum(noisy, 0), atol=1e-10)
        big = int(np.argmax(got))
        expect = np.maximum(noisy, 0) / math.fsum(np.maximum(noisy, 0))
        np.testing.assert_array_equal(np.delete(got, big), np.delete(expect, big))
    with pytest.raises(AllocationError, match="long-only"):
        to_allocation({"a": 1.05, "b": -0.05})
    with pytest.raises(AllocationError, match="sum to 1"):
        to_allocation({"a": 0.5, "b": 0.4})
