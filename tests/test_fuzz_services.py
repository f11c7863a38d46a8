"""Fuzz the services' mutating entry points: signals, proposals, orders and fills, strategies.

Same property as `test_fuzz_registry` (see `hostile`), with one documented
exception: a signal that fails validation past its portfolio is recorded as
rejected *before* the typed error is raised, so there the store gains exactly
that rejection record.
"""

from __future__ import annotations

import pandas as pd
import pytest
from hostile import (
    FUZZ,
    TIMES,
    Books,
    anything,
    build_template,
    json_like,
    numbers,
    run,
    spoiled,
    texts,
    wrong,
)
from hypothesis import given
from hypothesis import strategies as st
from proposal_fixtures import hand_proposal

from pmkit.coordinator import StrategyCoordinator
from pmkit.errors import PmkitError, ValidationError
from pmkit.execution import FillRecorder, Order, PaperBroker
from pmkit.execution.broker import Fill
from pmkit.rebalance import CashTransfer, ProposalBook, TradeLine
from pmkit.registry import Registry
from pmkit.strategies import StrategyManager

maybe_text = st.one_of(texts, wrong)
RETURNS = pd.Series([0.01, -0.005, 0.002, 0.004, -0.001], index=TIMES)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    path = build_template(tmp_path_factory.mktemp("fuzz-services") / "template.db")
    books = Books(path)
    books.reg.add_user("bob")
    books.reg.grant("bob", "p", "manager")
    StrategyManager(books.reg, "p").register_strategy("alpha", RETURNS, 0.5)
    books.store.close()
    import shutil

    shutil.copy(books.path, path)
    books.close()
    return path


SIGNAL = {
    "symbol": "AAA",
    "side": "long",
    "entry": 140.0,
    "stop": 130.0,
    "target": 160.0,
    "confidence": 0.6,
    "strategy": "alpha",
    "portfolio": "p",
}


@FUZZ
@given(
    changes=st.dictionaries(
        st.one_of(st.sampled_from([*sorted(SIGNAL), "time"]), texts), anything, max_size=3
    ),
)
def test_process_signal(template, changes):
    books = Books(template)
    try:
        coord = StrategyCoordinator(books.reg)
        before = books.store.dump()
        try:
            out = coord.process_signal({**SIGNAL, **changes})
        except ValidationError as exc:
            assert isinstance(exc.field, str) and exc.field
            after = books.store.dump()
            new = [r for r in after["entities"] if r not in before["entities"]]
            # the portfolio is checked before any write; other fields after receipt
            expected = [] if exc.field in ("portfolio", "portfolio_id") else ["rejected"]
            assert [r[2] for r in new] == expected  # (kind, id, status, ...)
        except PmkitError:
            assert books.store.dump() == before
        else:
            assert books.store.get("signal", out.id) is not None
        books.round_trip()
        StrategyCoordinator(books.reg)  # every stored signal reloads
    finally:
        books.close()


PROPOSAL = {
    "quantity": 10.0,
    "price": 120.0,
    "commission": 1.0,
    "amount": 1000.0,
    "pid": "rb-1",
    "reason": "too risky",
    "note": "looks fine",
}


@FUZZ
@given(args=spoiled(PROPOSAL, st.one_of(anything, numbers)))
def test_proposals(template, args):
    def propose(reg):
        p = hand_proposal(
            [TradeLine("p", "AAA", args["quantity"], args["price"], args["commission"])],
            args["pid"],
            by="system",
            scope="g",
            kind="group",
            portfolios=["p", "q"],
            transfers=[CashTransfer("q", "p", args["amount"])],
        )
        ProposalBook(reg).propose(p, note=args["note"])

    run(
        template,
        propose,
        lambda r: ProposalBook(r.as_user("bob")).reject("rb-1", args["reason"]),
        lambda r: ProposalBook(r.as_user("bob")).approve("rb-1", note=args["note"]),
    )


@FUZZ
@given(
    order_id=st.one_of(st.just("ord-1"), maybe_text),
    quantity=st.one_of(st.just(10.0), numbers),
    reference=st.one_of(st.just(120.0), numbers),
    limit_price=st.one_of(st.none(), numbers),
    fill_quantity=numbers,
    fill_price=st.one_of(st.just(120.0), numbers),
    fee=st.one_of(st.just(1.0), numbers),
    fill_id=st.one_of(st.just("x-1"), maybe_text),
    margin=st.one_of(st.just(0.0), numbers),
)
def test_orders_and_fills(
    template,
    order_id,
    quantity,
    reference,
    limit_price,
    fill_quantity,
    fill_price,
    fee,
    fill_id,
    margin,
):
    def submit(reg):
        order = Order(order_id, "p", "AAA", quantity, reference, "paper", limit_price=limit_price)
        PaperBroker(reg, margin=margin).submit([order])

    def fill(reg):
        f = Fill("ord-1", fill_quantity, fill_price, fee, TIMES[2].to_pydatetime(), fill_id)
        FillRecorder(reg).record(f)

    run(
        template,
        submit,
        fill,
        lambda r: PaperBroker(r).step(TIMES[3]),
    )


@FUZZ
@given(
    name=st.one_of(st.sampled_from(["beta", "alpha", "beta\n"]), maybe_text),
    allocation=numbers,
    mapping=st.one_of(
        st.dictionaries(st.one_of(st.just("alpha"), texts), numbers, max_size=2), wrong
    ),
    reason=maybe_text,
    drifted=st.one_of(st.booleans(), anything),
    active=st.one_of(st.booleans(), anything),
    returns=st.one_of(
        st.lists(numbers, min_size=2, max_size=5).map(
            lambda xs: pd.Series(xs, index=TIMES[: len(xs)], dtype=object)
        ),
        wrong,
    ),
)
def test_strategy_manager(template, name, allocation, mapping, reason, drifted, active, returns):
    def manager(reg: Registry) -> StrategyManager:
        return StrategyManager(reg, "p")

    run(
        template,
        lambda r: manager(r).register_strategy(name, RETURNS, allocation),
        lambda r: manager(r).set_allocation(mapping, reason=reason, drifted=drifted),
        lambda r: manager(r).update_strategy_status("alpha", active),
        lambda r: manager(r).update_strategy_returns("alpha", returns),
    )


@FUZZ
@given(
    result=st.one_of(st.none(), json_like, wrong),
    rule=st.one_of(st.sampled_from(["fifo", "highest_priority", "nope"]), anything),
    reason=maybe_text,
)
def test_signal_execution_and_settings(template, result, rule, reason):
    run(
        template,
        lambda r: StrategyCoordinator(r).process_signal(SIGNAL),  # sig-000000001
        lambda r: StrategyCoordinator(r).mark_signal_executed("sig-000000001", result),
        lambda r: StrategyCoordinator(r).set_resolution_strategy(rule, "p"),
        lambda r: ProposalBook(r).cancel("rb-x", reason),
    )
