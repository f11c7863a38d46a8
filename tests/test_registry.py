"""The registry: config shape, lifecycle, ids, queries, groups, config inheritance,
access control, isolation, valuation and bad input leaving state unchanged."""

from __future__ import annotations

import copy
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from note_configs import NOTE_001_CONFIG

from pmkit.demo import DEMO_CONFIG, open_demo
from pmkit.errors import (
    AllocationError,
    AlreadyExistsError,
    ConfigConflictError,
    ConfigError,
    CurrencyMismatchError,
    CycleError,
    InvalidIdError,
    LifecycleError,
    NotFoundError,
    OpenPositionsError,
    PermissionDenied,
    UnknownAssetError,
    ValidationError,
)
from pmkit.registry import ALLOCATION_TOLERANCE, Registry, Role
from pmkit.store import open_store

SEED_CONFIG = NOTE_001_CONFIG  # the design note's configuration, verbatim


@pytest.fixture(scope="module")
def demo_market():
    return open_demo().market


@pytest.fixture
def demo(demo_market, tmp_path):
    from pmkit.demo import seed_demo

    reg = Registry(open_store(tmp_path / "demo.sqlite"), market=demo_market)
    seed_demo(reg)
    return reg


@pytest.fixture
def seed():
    return Registry.from_config(SEED_CONFIG)


def unchanged(reg: Registry, fn, error: type[Exception], match: str | None = None):
    """Call ``fn`` expecting ``error``; assert the store did not change at all."""
    before = reg.store.dump()
    with pytest.raises(error, match=match) as info:
        fn()
    assert reg.store.dump() == before
    return info.value


# -- the design note's config and API ---------------------------------------------------
def test_from_config_accepts_the_design_note_shape(seed):
    assert [p.id for p in seed.portfolios()] == ["growth_strategy", "income_strategy"]
    g = seed.group("client_a")
    assert g.name == "Client A Portfolios"
    assert g.allocation == {"growth_strategy": 0.7, "income_strategy": 0.3}
    growth = seed.portfolio("growth_strategy")
    assert (growth.benchmark, growth.risk_profile, growth.tags) == (
        "QQQ",
        "aggressive",
        ("technology", "growth", "high_risk"),
    )
    assert seed.positions("income_strategy").cash == 500000.0
    s = seed.settings()
    assert s["default_portfolio"] == "growth_strategy"
    assert s["isolation"] == SEED_CONFIG["isolation"]
    assert s["cross_portfolio"] == SEED_CONFIG["cross_portfolio"]
    assert seed.get_active_portfolio().id == "growth_strategy"
    actions = [(a.action, a.target) for a in seed.store.audit()]
    assert actions[0] == ("registry.apply_config", "registry")
    assert ("portfolio.create", "income_strategy") in actions
    assert ("group.create", "client_a") in actions


def test_from_config_is_atomic(tmp_path):
    bad = copy.deepcopy(SEED_CONFIG)
    bad["groups"]["client_a"]["allocation"]["income_strategy"] = 0.2
    store = open_store(tmp_path / "s.sqlite")
    before = store.dump()
    with pytest.raises(AllocationError, match=r"sum to 0\.8999"):
        Registry.from_config(bad, store=store)
    assert store.dump() == before


@pytest.mark.parametrize(
    ("mutate", "error", "field"),
    [
        (lambda c: c.update(extra=1), ConfigError, "config"),
        (
            lambda c: c["portfolios"]["growth_strategy"].update(colour="red"),
            ConfigError,
            "portfolios.growth_strategy",
        ),
        (lambda c: c.update(default_portfolio="nope"), ConfigError, "default_portfolio"),
        (lambda c: c["isolation"].update(data=False), ConfigError, "isolation.data"),
        (lambda c: c["isolation"].update(events="yes"), ConfigError, "isolation.events"),
        (lambda c: c["groups"]["client_a"].update(members=[]), ConfigError, "groups.client_a"),
        (
            lambda c: c["portfolios"]["growth_strategy"].update(currency="usd"),
            ValidationError,
            "currency",
        ),
    ],
)
def test_bad_config_is_refused_naming_the_field(mutate, error, field):
    cfg = copy.deepcopy(SEED_CONFIG)
    mutate(cfg)
    store = open_store(":memory:")
    before = store.dump()
    with pytest.raises(error) as info:
        Registry.from_config(cfg, store=store)
    assert info.value.field == field
    assert store.dump() == before


def test_single_portfolio_config_migrates_to_one_default_portfolio():
    old = {
        "name": "My Book",
        "initial_capital": 250000.0,
        "currency": "EUR",
        "risk": {"max_drawdown": 0.2},
        "rebalance": "monthly",
    }
    reg = Registry.from_single_portfolio_config(old)
    (p,) = reg.portfolios()
    assert (p.id, p.name, p.currency) == ("default", "My Book", "EUR")
    assert reg.settings()["default_portfolio"] == "default"
    assert reg.resolve_config() == {"risk": {"max_drawdown": 0.2}, "rebalance": "monthly"}
    reg.record_cash(1000.0)  # no id: acts on the default portfolio
    assert reg.positions().cash == 251000.0


def test_design_note_api_names(seed):
    from pmkit.compat import Integration

    seed = Integration(seed.store, market=seed.market)  # note 001's object: its names
    pid = seed.create_portfolio({"name": "Macro Book", "currency": "USD"}, 42.0)
    assert pid == "macro_book"
    assert seed.create_portfolio({"name": "Macro Book"}) == "macro_book_2"
    gid = seed.create_portfolio_group("Macro Books", [pid])
    assert gid == "macro_books" and seed.get_group_portfolios(gid) == [pid]
    seed.add_to_group(gid, "macro_book_2")
    assert seed.get_group_portfolios(gid) == [pid, "macro_book_2"]
    seed.remove_from_group(gid, pid)
    assert seed.get_group_portfolios(gid) == ["macro_book_2"]
    seed.set_active_portfolio(pid)
    assert seed.get_active_portfolio().id == pid
    seed.deactivate_portfolio()
    assert seed.portfolio(pid).status == "inactive"
    seed.activate_portfolio(pid)
    seed.delete_portfolio(pid)
    assert seed.portfolio(pid).status == "archived"


def test_nested_group_portfolios_are_listed_once(seed):
    seed.create_group("all", ["client_a", "growth_strategy"])
    assert seed.get_group_portfolios("all") == ["growth_strategy", "income_strategy"]


# -- ids and queries -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad", ["", "Growth", "a b", "/a", "a/", "a//b", "a/b/c/d/e", "-a", "x" * 65, 7, None]
)
def test_invalid_ids_are_refused(seed, bad):
    if bad is None:
        return  # None means "make one from the name", tested above
    err = unchanged(seed, lambda: seed.create_portfolio(bad, 1.0, name="N"), InvalidIdError)
    assert err.value == bad and err.field == "portfolio_id"


def test_ids_are_unique_across_portfolios_groups_and_tombstones(seed):
    unchanged(
        seed, lambda: seed.create_portfolio("client_a", 1.0), AlreadyExistsError, "it is a group"
    )
    unchanged(seed, lambda: seed.create_group("growth_strategy"), AlreadyExistsError)
    seed.remove_from_group("client_a", "income_strategy", allocation={"growth_strategy": 1.0})
    seed.delete("income_strategy", hard=True, force=True)
    unchanged(
        seed, lambda: seed.create_portfolio("income_strategy"), AlreadyExistsError, "stays reserved"
    )


def test_queries_by_tag_segment_status_and_namespace(demo):
    ids = lambda ps: [p.id for p in ps]  # noqa: E731
    assert ids(demo.portfolios(tags=["core"])) == ["client_b/balanced", "client_b/factors"]
    assert ids(demo.portfolios(tags=["core", "etf"])) == ["client_b/factors"]
    assert ids(demo.portfolios(segment={"client": "client_a"})) == [
        "client_a/growth",
        "client_a/income",
    ]
    assert ids(demo.portfolios(segment={"client": "client_b", "asset_class": "etf"})) == [
        "client_b/factors"
    ]
    assert ids(demo.portfolios(namespace="client_b")) == ["client_b/balanced", "client_b/factors"]
    demo.deactivate("client_b/factors")
    assert ids(demo.portfolios(status="inactive")) == ["client_b/factors"]
    with pytest.raises(ValidationError, match="segment"):
        demo.portfolios(segment={"region": "eu"})


# -- lifecycle ---------------------------------------------------------------------------
def test_lifecycle_transitions_and_refusals(seed):
    pid = "growth_strategy"
    unchanged(seed, lambda: seed.activate(pid), LifecycleError, "while it is 'active'")
    seed.deactivate(pid)
    unchanged(seed, lambda: seed.record_cash(1.0, portfolio=pid), LifecycleError, "inactive")
    unchanged(seed, lambda: seed.record_trade("AAPL", 1, 1.0, portfolio=pid), LifecycleError)
    seed.delete(pid)
    assert seed.portfolio(pid).status == "archived"
    unchanged(seed, lambda: seed.activate(pid), LifecycleError, "archived")
    seed.restore(pid)
    seed.activate(pid)
    assert seed.portfolio(pid).status == "active"
    statuses = [a.after["status"] for a in seed.store.audit(target=pid)[1:]]
    assert statuses == ["inactive", "archived", "inactive", "active"]


def test_hard_delete_refuses_open_positions_unless_forced_and_keeps_ledger_and_audit(seed):
    pid = "income_strategy"
    seed.record_trade("KO", 100, 50.0, portfolio=pid)
    seed.set_allocation("client_a", None)
    err = unchanged(seed, lambda: seed.delete(pid, hard=True), OpenPositionsError, "KO")
    assert err.target == pid
    ledger_before = seed.ledger(pid)
    audit_before = seed.store.audit(target=pid)
    seed.delete(pid, hard=True, force=True)
    with pytest.raises(NotFoundError):
        seed.portfolio(pid)
    assert pid not in [p.id for p in seed.portfolios()]
    assert seed.get_group_portfolios("client_a") == ["growth_strategy"]
    assert seed.ledger(pid) == ledger_before
    audit_after = seed.store.audit(target=pid)
    assert audit_after[:-1] == audit_before
    assert audit_after[-1].action == "portfolio.delete" and audit_after[-1].after["forced"]


def test_hard_delete_refused_while_an_allocation_names_it(seed):
    unchanged(
        seed, lambda: seed.delete("income_strategy", hard=True), LifecycleError, "target allocation"
    )


def test_hard_delete_of_default_clears_default(seed):
    seed.set_allocation("client_a", None)
    seed.delete("growth_strategy", hard=True)
    assert seed.settings()["default_portfolio"] is None
    with pytest.raises(ConfigError, match="no active or default"):
        seed.positions()


# -- groups -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("allocation", "match"),
    [
        ({"growth_strategy": 0.7, "income_strategy": 0.3 + 2e-9}, "sum to"),
        ({"growth_strategy": 0.7}, "without a weight"),
        ({"growth_strategy": 0.7, "income_strategy": 0.2, "x": 0.1}, "not members"),
        ({"growth_strategy": 1.2, "income_strategy": -0.2}, r"in \[0, 1\]"),
        ({"growth_strategy": float("nan"), "income_strategy": 0.3}, r"in \[0, 1\]"),
        ([0.7, 0.3], "must map"),
    ],
)
def test_allocation_must_cover_members_and_sum_to_one(seed, allocation, match):
    err = unchanged(
        seed, lambda: seed.set_allocation("client_a", allocation), AllocationError, match
    )
    assert err.field.startswith("allocation")


def test_allocation_within_tolerance_is_accepted(seed):
    seed.set_allocation(
        "client_a", {"growth_strategy": 0.7, "income_strategy": 0.3 + ALLOCATION_TOLERANCE / 2}
    )
    assert seed.group("client_a").allocation["income_strategy"] > 0.3


def test_adding_to_an_allocated_group_needs_a_new_allocation(seed):
    seed.create_portfolio("cash_book", 10.0)
    unchanged(
        seed,
        lambda: seed.add_to_group("client_a", "cash_book"),
        AllocationError,
        "pass allocation=",
    )
    seed.add_to_group(
        "client_a",
        "cash_book",
        allocation={"growth_strategy": 0.6, "income_strategy": 0.3, "cash_book": 0.1},
    )
    assert seed.group("client_a").members == ("growth_strategy", "income_strategy", "cash_book")


def test_cycles_are_refused(seed):
    seed.create_group("outer", ["client_a"])
    seed.create_group("top", ["outer"])
    for group, member in [("client_a", "top"), ("client_a", "outer"), ("outer", "outer")]:
        err = unchanged(seed, lambda g=group, m=member: seed.add_to_group(g, m), CycleError)
        assert err.value == member
    assert seed.ancestors("growth_strategy") == ["client_a", "outer", "top"]


def test_group_lifecycle_applies_to_every_member_in_one_transaction(seed):
    seed.create_group("top", ["client_a"])
    n_audit = len(seed.store.audit())
    seed.deactivate_group("top")
    assert {p.status for p in seed.portfolios()} == {"inactive"}
    assert {g.status for g in seed.groups()} == {"inactive"}
    new = seed.store.audit()[n_audit:]
    assert {a.ts for a in new} == {new[0].ts}  # one commit
    assert sorted(a.target for a in new) == sorted(
        ["top", "client_a", "growth_strategy", "income_strategy"]
    )
    seed.activate_group("top")
    assert {p.status for p in seed.portfolios()} == {"active"}
    seed.delete_group("top")
    assert seed.group("top").status == "archived"
    seed.delete_group("top", hard=True)
    assert seed.ancestors("growth_strategy") == ["client_a"]
    with pytest.raises(NotFoundError):
        seed.group("top")


# -- configuration inheritance ----------------------------------------------------------------
def test_config_inherits_from_groups_with_explicit_override(demo):
    cfg = demo.resolve_config("client_a/growth")
    assert cfg == {
        "max_position_weight": 0.25,
        "rebalance_band": 0.05,
        "var_confidence": 0.99,
        "base_currency": "USD",
    }
    assert cfg.sources == {
        "max_position_weight": "group:client_a",
        "rebalance_band": "group:client_a",
        "var_confidence": "defaults",
        "base_currency": "group:firm",
    }
    b = demo.resolve_config("client_b/balanced")
    assert b["rebalance_band"] == 0.03 and b.sources["rebalance_band"] == "group:firm"
    demo.set_config("client_a/growth", {"max_position_weight": 0.4})
    cfg = demo.resolve_config("client_a/growth")
    assert cfg["max_position_weight"] == 0.4 and cfg.sources["max_position_weight"] == "portfolio"
    demo.set_config("client_a/growth", {"max_position_weight": None})
    assert demo.resolve_config("client_a/growth").sources["max_position_weight"] == "group:client_a"


def test_config_conflict_between_sibling_groups_is_an_error_until_overridden(seed):
    seed.create_group("risk_desk", ["growth_strategy"], config={"var_confidence": 0.95})
    seed.set_config("client_a", {"var_confidence": 0.99})
    err = unchanged(seed, lambda: seed.resolve_config("growth_strategy"), ConfigConflictError)
    assert err.value == {"client_a": 0.99, "risk_desk": 0.95}
    seed.set_config("growth_strategy", {"var_confidence": 0.975})
    assert seed.resolve_config("growth_strategy")["var_confidence"] == 0.975
    unchanged(seed, lambda: seed.set_config("client_a", {"x": float("nan")}), ConfigError)
    unchanged(seed, lambda: seed.set_config("client_a", {"x": object()}), ConfigError)


# -- access control ----------------------------------------------------------------------------
def test_permissions_follow_roles_and_group_roles_apply_to_members(demo):
    alice, bob, carol, dave = (demo.as_user(u) for u in ("alice", "bob", "carol", "dave"))
    # alice trades client_a (through the group), but cannot deactivate or touch client_b
    alice.record_trade("AAPL", 1, 100.0, portfolio="client_a/growth")
    assert alice.can("ledger.trade", "client_a/income")
    assert not alice.can("portfolio.deactivate", "client_a/growth")
    assert not alice.can("view", "client_b/factors")
    err = unchanged(demo, lambda: alice.deactivate("client_a/growth"), PermissionDenied)
    assert (err.user, err.action, err.target, err.needed) == (
        "alice",
        "portfolio.deactivate",
        "client_a/growth",
        "manager",
    )
    unchanged(demo, lambda: alice.record_cash(1.0, portfolio="client_b/factors"), PermissionDenied)
    assert [p.id for p in alice.portfolios()] == ["client_a/growth", "client_a/income"]
    with pytest.raises(PermissionDenied):
        alice.positions("client_b/factors")
    # bob manages the firm group: two levels of nesting down
    bob.deactivate("client_b/factors")
    unchanged(demo, lambda: bob.delete("client_b/factors"), PermissionDenied, "owner")
    # carol views everything and changes nothing
    assert len(carol.portfolios()) == 4
    unchanged(demo, lambda: carol.record_cash(1.0, portfolio="client_a/growth"), PermissionDenied)
    unchanged(demo, lambda: carol.create_portfolio("carol/x"), PermissionDenied, "create")
    # dave owns client_b
    dave.delete("client_b/factors")
    unchanged(demo, lambda: dave.grant("carol", "client_a", "owner"), PermissionDenied)
    dave.grant("carol", "client_b/balanced", Role.TRADER)
    carol.record_cash(5.0, portfolio="client_b/balanced")
    assert demo.role_of("carol", "client_b/balanced") == Role.TRADER
    assert demo.role_of("carol", "client_a/growth") == Role.VIEWER
    actors = {a.actor for a in demo.store.audit() if a.action.startswith("ledger")}
    assert {"alice", "carol"} <= actors


def test_creator_owns_and_adding_a_member_needs_ownership_of_it(demo):
    bob = demo.as_user("bob")
    bob.create_portfolio("bob/new", 10.0)
    assert demo.role_of("bob", "bob/new") == Role.OWNER
    bob.create_group("bob_books", ["bob/new"])
    # bob manages client_a/growth (via firm) but does not own it: he may not pull it
    # into a group of his own, whose role holders would gain roles on it
    err = unchanged(
        demo, lambda: bob.add_to_group("bob_books", "client_a/growth"), PermissionDenied
    )
    assert err.action == "group.join"


def test_only_admins_add_users_and_unknown_users_cannot_act(demo):
    unchanged(demo, lambda: demo.as_user("bob").add_user("eve"), PermissionDenied, "admin")
    with pytest.raises(NotFoundError, match="eve"):
        demo.as_user("eve")
    unchanged(demo, lambda: demo.add_user("bob"), AlreadyExistsError)
    unchanged(demo, lambda: demo.add_user("Bad User"), InvalidIdError)
    unchanged(demo, lambda: demo.grant("bob", "client_a", "superuser"), ValidationError, "role")


# -- isolation -------------------------------------------------------------------------------
def _rows_of(reg: Registry, pid: str) -> dict:
    d = reg.store.dump()
    return {
        "entities": [r for r in d["entities"] if r[1] == pid],
        "ledger": [r for r in d["ledger"] if r[1] == pid],
        "positions": [r for r in d["positions"] if r[0] == pid],
        "cash": [r for r in d["cash"] if r[0] == pid],
        "grants": [r for r in d["grants"] if r[1] == pid],
        "audit": [r for r in d["audit"] if r[4] == pid],
        "config": reg.resolve_config(pid),
    }


def test_no_operation_on_a_changes_b(demo):
    a, b = "client_a/growth", "client_a/income"
    before = _rows_of(demo, b)
    got_b = []
    demo.bus.subscribe("*", got_b.append, portfolio=b)
    demo.record_trade("KO", 10, 60.0, portfolio=a)
    demo.record_cash(-1000.0, portfolio=a)
    demo.set_config(a, {"max_position_weight": 0.5})
    demo.update_portfolio(a, tags=["x"])
    demo.grant("carol", a, "trader")
    demo.deactivate(a)
    demo.activate(a)
    demo.delete(a)
    assert _rows_of(demo, b) == before
    assert got_b == []


# -- ledger and valuation ------------------------------------------------------------------------
def test_trades_are_checked_against_market_data(demo):
    pid = "client_a/growth"
    unchanged(demo, lambda: demo.record_trade("ZZZZ", 1, 1.0, portfolio=pid), UnknownAssetError)
    for bad in [dict(quantity=0), dict(price=0.0), dict(price=float("inf")), dict(fee=-1.0)]:
        kw = {"quantity": 1, "price": 1.0, "fee": 0.0, **bad}
        err = unchanged(
            demo,
            lambda kw=kw: demo.record_trade(
                "AAPL", kw["quantity"], kw["price"], fee=kw["fee"], portfolio=pid
            ),
            ValidationError,
        )
        assert err.field == next(iter(bad))
    unchanged(
        demo,
        lambda: demo.record_trade(
            "AAPL", 1, 1.0, portfolio=pid, ts=datetime(2021, 1, 1).astimezone()
        ),
        ValidationError,
        "tz-naive",
    )
    unchanged(demo, lambda: demo.record_cash(0.0, portfolio=pid), ValidationError, "non-zero")


def test_values_equal_positions_times_closes_plus_cash(demo):
    market = demo.market
    t = market.indexes["time"][-1]
    for p in demo.portfolios():
        pos = demo.positions(p.id)
        assert pos == demo.store.replay(p.id)
        by_hand = pos.cash + sum(
            q * float(market["close"].sel(asset=a, time=t)) for a, q in pos.quantities.items()
        )
        assert demo.value(p.id) == pytest.approx(by_hand, rel=1e-12)
    firm = demo.group_value("firm")
    assert firm == pytest.approx(sum(demo.value(p.id) for p in demo.portfolios()), rel=1e-12)
    assert demo.group_value("client_a") == pytest.approx(
        demo.value("client_a/growth") + demo.value("client_a/income"), rel=1e-12
    )


def test_value_at_a_past_date_counts_only_entries_up_to_it(demo):
    before_trades = pd.Timestamp("2020-12-31")
    assert demo.value("client_a/growth", at=before_trades) == 0.0  # capital arrives 2021-01-04
    day = pd.Timestamp("2021-01-04")
    pos = demo.positions("client_a/income")
    close = demo.market["close"].sel(time=day)
    expected = pos.cash + sum(q * float(close.sel(asset=a)) for a, q in pos.quantities.items())
    assert demo.value("client_a/income", at=day) == pytest.approx(expected, rel=1e-12)


def test_group_holdings_consolidate_members(demo):
    h = demo.group_holdings("client_a")
    for asset in ("AAPL", "KO", "XOM"):
        expected = sum(
            demo.positions(p).quantities.get(asset, 0.0)
            for p in ("client_a/growth", "client_a/income")
        )
        assert float(h["quantity"].sel(asset=asset)) == expected
    assert float(h["cash"]) == pytest.approx(
        demo.positions("client_a/growth").cash + demo.positions("client_a/income").cash
    )


def test_group_value_refuses_mixed_currencies(demo):
    demo.create_portfolio("eur/book", 100.0, currency="EUR")
    demo.create_group("mixed", ["eur/book", "client_a/growth"])
    unchanged(demo, lambda: demo.group_value("mixed"), CurrencyMismatchError, "EUR")
    unchanged(
        demo,
        lambda: demo.record_trade("AAPL", 1, 1.0, portfolio="eur/book"),
        CurrencyMismatchError,
        "USD",
    )


def test_a_market_without_currencies_trades_in_the_portfolio_currency(demo):
    """Currencies are optional market metadata: without them nothing is a mismatch."""
    demo.create_portfolio("eur/book", 1_000.0, currency="EUR")
    market = demo.market.drop_vars("currency")
    demo.market = market
    price = float(market["close"].sel(asset="AAPL").isel(time=-1))
    demo.record_trade("AAPL", 1, price, portfolio="eur/book")
    assert demo.positions("eur/book").quantities == {"AAPL": 1.0}
    # the asset check still holds, and the tables follow a new market object
    unchanged(demo, lambda: demo.record_trade("ZZZZ", 1, 1.0, portfolio="eur/book"),
              UnknownAssetError)
    demo.market = market.assign_coords(currency=("asset", ["USD"] * market.sizes["asset"]))
    unchanged(demo, lambda: demo.record_trade("AAPL", 1, price, portfolio="eur/book"),
              CurrencyMismatchError, "USD")


def test_group_tree_targets_and_actual_weights(demo):
    tree = demo.group_tree()
    nodes = {n.id: n for _, n in tree.walk()}
    a = nodes["client_a"]
    assert [c.id for c in a.children] == ["client_a/growth", "client_a/income"]
    assert [c.target for c in a.children] == [0.7, 0.3]
    assert sum(c.actual for c in a.children) == pytest.approx(1.0, abs=1e-12)
    assert a.children[0].actual == pytest.approx(
        demo.value("client_a/growth") / demo.group_value("client_a"), rel=1e-12
    )
    assert nodes["firm"].value == pytest.approx(demo.group_value("firm"), rel=1e-12)
    html = tree._repr_html_()
    for name in ("Firm", "Client A Portfolios", "Client B Portfolios", "70.0%"):
        assert name in html


def test_summary_table(demo):
    s = demo.summary()
    assert list(s.index) == sorted(DEMO_CONFIG["portfolios"])
    assert np.allclose(s["value"], [demo.value(p) for p in s.index], rtol=1e-12)
    assert (s["status"] == "active").all()


def test_valuation_without_market_is_a_clear_error(seed):
    with pytest.raises(ConfigError, match="market"):
        seed.value("growth_strategy")
    assert seed.summary()["value"].isna().all()


def test_rich_reprs(demo):
    html = demo._repr_html_()
    assert "client_b/factors" in html and "Firm" in html
    assert "aggressive" in demo.portfolio("client_a/growth")._repr_html_()
    assert "70.0%" in demo.group("client_a")._repr_html_()
    escaped = demo.create_portfolio("x", 1.0, name="<script>")
    assert "<script>" not in demo.portfolio(escaped)._repr_html_()


# -- bad input at every public entry point: typed error, field named, nothing changed ---------
BAD_CALLS = [
    ("create_portfolio id", lambda r: r.create_portfolio("Bad Id"), InvalidIdError, "portfolio_id"),
    ("create_portfolio capital", lambda r: r.create_portfolio("n", -1.0), ValidationError,
     "initial_capital"),
    ("create_portfolio nan capital", lambda r: r.create_portfolio("n", float("nan")),
     ValidationError, "initial_capital"),
    ("create_portfolio currency", lambda r: r.create_portfolio("n", currency="US"),
     ValidationError, "currency"),
    ("create_portfolio tags", lambda r: r.create_portfolio("n", tags="growth"), ValidationError,
     "tags"),
    ("create_portfolio segment", lambda r: r.create_portfolio("n", segment={"desk": "x"}),
     ValidationError, "segment"),
    ("create_portfolio status", lambda r: r.create_portfolio("n", status="archived"),
     ValidationError, "status"),
    ("create_portfolio config", lambda r: r.create_portfolio("n", config={"f": {1, 2}}),
     ConfigError, "config.f"),
    ("update_portfolio field", lambda r: r.update_portfolio("growth_strategy", currency="EUR"),
     ValidationError, "fields"),
    ("update_portfolio name", lambda r: r.update_portfolio("growth_strategy", name=" "),
     ValidationError, "name"),
    ("activate unknown", lambda r: r.activate("nope"), NotFoundError, None),
    ("delete unknown", lambda r: r.delete("nope", hard=True), NotFoundError, None),
    ("create_group duplicate member",
     lambda r: r.create_group("g", ["growth_strategy", "growth_strategy"]), ValidationError,
     "members"),
    ("create_group unknown member", lambda r: r.create_group("g", ["nope"]), NotFoundError, None),
    ("create_group bad id", lambda r: r.create_group("G!"), InvalidIdError, "group_id"),
    ("create_group allocation", lambda r: r.create_group(
        "g", ["growth_strategy"], allocation={"growth_strategy": 0.5}), AllocationError,
     "allocation"),
    ("add_to_group twice", lambda r: r.add_to_group("client_a", "growth_strategy",
                                                    allocation={"growth_strategy": 1.0}),
     ValidationError, "member_id"),
    ("remove_from_group non-member", lambda r: r.remove_from_group("client_a", "client_a"),
     NotFoundError, None),
    ("set_allocation unknown group", lambda r: r.set_allocation("nope", None), NotFoundError, None),
    ("set_config unknown target", lambda r: r.set_config("nope", {"a": 1}), NotFoundError, None),
    ("set_default_portfolio unknown", lambda r: r.set_default_portfolio("nope"), NotFoundError,
     None),
    ("set_active_portfolio unknown", lambda r: r.set_active_portfolio("nope"), NotFoundError, None),
    ("add_user bad id", lambda r: r.add_user("A B"), InvalidIdError, "user_id"),
    ("grant unknown user", lambda r: r.grant("nobody", "client_a", "viewer"), NotFoundError, None),
    ("grant bad role", lambda r: r.grant("system", "client_a", 5), ValidationError, "role"),
    ("revoke missing grant", lambda r: r.revoke("system", "client_a"), NotFoundError, None),
    ("record_trade quantity", lambda r: r.record_trade("AAPL", float("nan"), 1.0),
     ValidationError, "quantity"),
    ("record_trade asset", lambda r: r.record_trade("", 1.0, 1.0), ValidationError, "asset"),
    ("record_cash amount", lambda r: r.record_cash(float("inf")), ValidationError, "amount"),
    ("record_cash ts", lambda r: r.record_cash(1.0, ts="2021-01-01"), ValidationError, "ts"),
    ("delete_group unknown", lambda r: r.delete_group("nope"), NotFoundError, None),
    ("activate_group unknown", lambda r: r.activate_group("nope"), NotFoundError, None),
]


@pytest.mark.parametrize(("call", "error", "field"), [c[1:] for c in BAD_CALLS],
                         ids=[c[0] for c in BAD_CALLS])
def test_bad_input_at_every_entry_point_changes_nothing(seed, call, error, field):
    events = []
    seed.bus.subscribe("*", events.append)
    err = unchanged(seed, lambda: call(seed), error)
    if field is not None:
        assert err.field == field
        assert field in str(err)
    assert events == []


def test_summary_cash_and_value_are_as_of_the_same_time(demo):
    prev = demo.market.indexes["time"][-2]
    before, before_prev = demo.summary(), demo.value("client_a/income", at=prev)
    demo.record_cash(1_000.0, portfolio="client_a/income", ts=datetime(2026, 1, 5))
    s = demo.summary()
    t = demo.market.indexes["time"][-1]
    assert s.attrs["as_of"] == t
    # a deposit after the last close is cash at once, valued with positions at that close
    pos = demo.positions("client_a/income")  # now: includes the 2026 deposit
    assert s.loc["client_a/income", "cash"] == pytest.approx(pos.cash, rel=1e-12)
    assert s.loc["client_a/income", "value"] == pytest.approx(
        before.loc["client_a/income", "value"] + 1_000.0, rel=1e-12)
    # ...but not at an earlier close: that replay stops at its own day
    assert demo.value("client_a/income", at=prev) == before_prev
    early = demo.summary(at="2021-01-04")
    assert early.loc["client_a/income", "value"] == pytest.approx(
        demo.value("client_a/income", at=pd.Timestamp("2021-01-04")), rel=1e-12)


def test_generated_ids_are_audited_under_the_real_id(seed):
    pid = seed.create_portfolio({"name": "Event Driven"})
    (rec,) = seed.store.audit(target=pid)
    assert (pid, rec.action, rec.after["id"]) == ("event_driven", "portfolio.create", pid)
    assert seed.store.audit(target="?") == []


def test_group_tree_of_a_restricted_user_starts_at_the_groups_they_may_view(demo):
    tree = demo.as_user("alice").group_tree()  # trader on client_a, nothing on firm
    assert [c.id for c in tree.children] == ["client_a"]
    assert [c.id for c in tree.children[0].children] == ["client_a/growth", "client_a/income"]
    assert tree.children[0].value == pytest.approx(demo.group_value("client_a"), rel=1e-12)


def test_group_tree_does_not_add_currencies(demo):
    demo.create_portfolio("eur/book", 100.0, currency="EUR", at=datetime(2022, 1, 3))
    demo.create_portfolio("eur/book2", 50.0, currency="EUR", at=datetime(2022, 1, 3))
    demo.create_group("mixed", ["eur/book", "client_a/growth"])
    demo.create_group("euros", ["eur/book", "eur/book2"])
    nodes = {n.id: n for _, n in demo.group_tree().walk()}
    assert nodes["mixed"].value is None
    assert (nodes["euros"].value, nodes["euros"].currency) == (150.0, "EUR")
