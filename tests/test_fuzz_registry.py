"""Fuzz the registry's mutating entry points with hostile strings, numbers, types and nesting.

Property (see `hostile`): each call succeeds and the file store reads back
byte-identical after close and reopen, with finite, bounded books; or it
raises a typed `pmkit.errors` error (naming the field) and the store dump is
unchanged.
"""

from __future__ import annotations

import pytest
from hostile import (
    FUZZ,
    T,
    anything,
    build_template,
    configs,
    numbers,
    run,
    spoiled,
    texts,
    wrong,
)
from hypothesis import given
from hypothesis import strategies as st

from pmkit.registry import Registry

maybe_text = st.one_of(texts, wrong)
ids = st.one_of(st.sampled_from(["p", "q", "g", "new", "client_a/new", "P", "a" * 300]), texts)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return build_template(tmp_path_factory.mktemp("fuzz-registry") / "template.db")


@FUZZ
@given(
    asset=st.one_of(st.sampled_from(["AAA", "BBB", "ZZZ"]), maybe_text),
    quantity=numbers,
    price=st.one_of(numbers, st.sampled_from([120.0, 119.0, 150.0, 1e9])),
    fee=st.one_of(numbers, st.just(0.0)),
    memo=maybe_text,
    ts=st.one_of(st.sampled_from([T, None]), anything),
    force=st.one_of(st.booleans(), anything),
    reason=st.one_of(st.none(), maybe_text),
)
def test_record_trade(template, asset, quantity, price, fee, memo, ts, force, reason):
    run(
        template,
        lambda r: r.record_trade(
            asset,
            quantity,
            price,
            portfolio="p",
            fee=fee,
            ts=ts,
            memo=memo,
            force=force,
            reason=reason,
        ),
        lambda r: r.record_trade("AAA", quantity, 120.0, portfolio="p", ts=T),
    )


@FUZZ
@given(amount=numbers, memo=maybe_text, ts=st.one_of(st.sampled_from([T, None]), anything))
def test_record_cash(template, amount, memo, ts):
    run(
        template,
        lambda r: r.record_cash(amount, portfolio="q", ts=ts, memo=memo),
        lambda r: r.record_cash(amount, portfolio="q", ts=T),
    )


PORTFOLIO = {
    "spec": "new",
    "initial_capital": 5000.0,
    "name": "New",
    "description": "a new one",
    "currency": "USD",
    "tags": ["x", "y"],
    "segment": {"client": "c"},
    "config": {"allow_short": True, "limits": [1, 2.5]},
    "status": "inactive",
}


@FUZZ
@given(
    kwargs=st.one_of(
        spoiled(PORTFOLIO),
        spoiled(PORTFOLIO, st.one_of(configs, st.lists(maybe_text, max_size=3), ids)),
    )
)
def test_create_portfolio(template, kwargs):
    run(template, lambda r: r.create_portfolio(**kwargs, at=T))


@FUZZ
@given(
    fields=st.dictionaries(
        st.sampled_from(["name", "description", "risk_profile", "benchmark", "tags", "segment"]),
        anything,
        max_size=3,
    )
)
def test_update_portfolio(template, fields):
    run(template, lambda r: r.update_portfolio("p", **fields))


GROUP = {
    "group_id": "h",
    "members": ["p", "q"],
    "name": "H",
    "description": "d",
    "allocation": {"p": 0.5, "q": 0.5},
    "config": {"price_band": 0.5},
}


@FUZZ
@given(
    kwargs=st.one_of(
        spoiled(GROUP),
        spoiled(
            GROUP,
            st.one_of(
                ids,
                configs,
                st.lists(st.sampled_from(["p", "q", "g", "h", "nope"]), max_size=3),
                st.dictionaries(st.sampled_from(["p", "q"]), numbers, max_size=2),
            ),
        ),
    )
)
def test_create_group(template, kwargs):
    run(template, lambda r: r.create_group(**kwargs))


@FUZZ
@given(
    allocation=st.one_of(
        st.none(),
        st.fixed_dictionaries({"p": numbers, "q": numbers}),
        st.just({"p": 0.25, "q": 0.75}),
        wrong,
    ),
    reason=st.one_of(st.none(), maybe_text),
    member=ids,
)
def test_group_membership_and_allocation(template, allocation, reason, member):
    run(
        template,
        lambda r: r.set_allocation("g", allocation, reason=reason),
        lambda r: r.add_to_group("g", member, allocation=allocation),
    )


@FUZZ
@given(
    target=st.sampled_from(["p", "g", "nope", "P"]),
    values=configs,
    replace=st.one_of(st.booleans(), wrong),
)
def test_set_config(template, target, values, replace):
    run(
        template,
        lambda r: r.set_config(target, values, replace=replace),
        lambda r: r.record_trade("AAA", -150.0, 120.0, portfolio="p", ts=T),  # config applies
    )


USER = {"user_id": "bob", "admin": False, "can_create": True, "display_name": "Bob"}
GRANT = {"user": "alice", "target": "q", "role": "viewer"}


@FUZZ
@given(
    user=spoiled(USER, st.one_of(anything, st.booleans())),
    grant=spoiled(GRANT, st.one_of(anything, ids, st.sampled_from(["owner", "god", "bob"]))),
)
def test_users_and_grants(template, user, grant):
    run(template, lambda r: r.add_user(**user), lambda r: r.grant(**grant))


@FUZZ
@given(
    values=st.one_of(
        st.dictionaries(
            st.sampled_from(["flush_size", "flush_interval", "max_reconnects", "nope"]),
            anything,
            max_size=3,
        ),
        configs,
    )
)
def test_set_streaming(template, values):
    run(template, lambda r: r.set_streaming(values))


SPEC = {"name": "Cfg", "initial_capital": 1000.0, "config": {"x": 1}, "tags": ["a"]}
GROUP_SPEC = {"portfolios": ["cfg"], "allocation": {"cfg": 1.0}, "name": "Grp"}


@FUZZ
@given(
    pid=st.one_of(st.just("cfg"), ids),
    spec=st.one_of(spoiled(SPEC), wrong),
    group=st.one_of(spoiled(GROUP_SPEC, st.one_of(anything, st.lists(ids, max_size=2))), wrong),
    defaults=st.one_of(st.none(), configs),
    default=st.one_of(st.none(), st.just("cfg"), ids, wrong),
)
def test_apply_config(template, pid, spec, group, defaults, default):
    config = {"portfolios": {pid: spec}, "groups": {"grp": group}, "default_portfolio": default}
    if defaults is not None:
        config["defaults"] = defaults
    run(template, lambda r: r.apply_config(config, at=T))


@FUZZ
@given(config=st.one_of(configs, st.dictionaries(texts, anything, max_size=3)))
def test_from_single_portfolio_config(template, config):
    run(
        template,
        lambda r: Registry.from_single_portfolio_config(
            config, store=r.store, portfolio_id="single"
        ),
    )
