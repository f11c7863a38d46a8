"""The execution engine on a simulated session: schedules worked through child orders.

Invariants (issue 16): shares conserved (children's fills == the parent's filled ==
the ledger's change), schedules sum to the order, no child exceeds its parent or the
participation cap, a restart mid-schedule gives the same fills as an uninterrupted
run; and the paths that act: a proposal executed by the engine, pause / resume /
cancel, the limit-price guard, end of day (cancel and carry), alerts, permissions and
audit, a push-delivering (wall-clock) venue.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proposal_fixtures import AT, hand_proposal, line
from store_spy import opened_transactions

from pmkit.demo import open_demo
from pmkit.errors import PermissionDenied, PmkitError, TransitionError, ValidationError
from pmkit.execution import (
    AlmgrenChriss,
    Broker,
    CostModel,
    ExecutionService,
    Fill,
    Order,
    OrderStatus,
    PaperBroker,
)
from pmkit.execution.engine import ExecutionEngine, ac_impact
from pmkit.execution.plan import ExecutionPlan, plan_of
from pmkit.execution.session import simulate_session
from pmkit.rebalance import ProposalBook, ProposalState

GROWTH = "client_a/growth"
INTERVALS = 26  # 15-minute intervals: the invariants do not depend on the grid


def next_day(market, t=AT):
    idx = market.indexes["time"]
    return idx[idx.get_loc(t) + 1]


@pytest.fixture(scope="module")
def demo_market():
    return open_demo().market


@pytest.fixture
def reg():
    return open_demo()


def session_of(market, assets, *, day=None, intervals=INTERVALS, seed=3, **kw):
    return simulate_session(market, next_day(market) if day is None else day, assets=assets,
                            intervals=intervals, seed=seed, **kw)


def engine_of(reg, *, participation=None, **kw):
    alice = reg.as_user("alice")
    return ExecutionEngine(alice, PaperBroker(alice, participation=participation), **kw)


def close_at(market, asset, t=AT):
    return float(market["close"].sel(asset=asset, time=t))


def fills_of(engine, parent_id):
    return [f for c in engine.children(parent_id) for f in c.info.get("fills", [])]


# -- the simulated session ------------------------------------------------------------------
def test_session_prices_are_the_live_feeds_replay_path(demo_market):
    """A ``pmkit feed`` replay started the day before sends exactly the session's prices."""
    pytest.importorskip("websockets")
    from pmkit.stream.server import FeedServer

    day = next_day(demo_market)
    prev = demo_market.indexes["time"][demo_market.indexes["time"].get_loc(day) - 1]
    sess = session_of(demo_market, ["KO", "MSFT"], intervals=INTERVALS, seed=11)
    feed = FeedServer(demo_market, symbols=["KO", "MSFT"], start=prev, steps_per_day=INTERVALS,
                      seed=11)
    for i, sym in enumerate(sess.assets):
        path = feed._paths[sym]()
        ticks = [path.next()[0] for _ in range(INTERVALS)]
        np.testing.assert_array_equal(ticks, sess.prices[i, 1:])
    assert sess.prices[0, -1] == close_at(demo_market, "KO", day)  # ends at the real close
    assert sess.prices[0, 0] == close_at(demo_market, "KO", prev)


def test_session_volumes_follow_the_profile_and_adv(demo_market):
    sess = session_of(demo_market, ["KO"], intervals=390, adv={"KO": 2e8}, volume_noise=0.0)
    from pmkit.execution import u_shape_profile

    want = 2e8 / sess.prices[0, 0] * u_shape_profile(390)
    np.testing.assert_allclose(sess.volumes[0], want, rtol=1e-12)
    noisy = session_of(demo_market, ["KO"], intervals=390, adv={"KO": 2e8}, volume_noise=0.3)
    # the log-normal factor has mean 1: the day's volume is the ADV within sampling error
    assert noisy.volumes[0].sum() * noisy.prices[0, 0] == pytest.approx(2e8, rel=0.1)


def test_session_refuses_bad_inputs_by_name(demo_market):
    day = next_day(demo_market)
    for kw, name in [({"intervals": 0}, "intervals"), ({"seed": -1}, "seed"),
                     ({"assets": ["NOPE"]}, "assets"), ({"open_time": "25:00"}, "open_time"),
                     ({"profile": [1.0, -1.0]}, "profile"), ({"volume_noise": math.nan},
                                                              "volume_noise")]:
        with pytest.raises(PmkitError) as e:
            simulate_session(demo_market, day, **kw)
        assert e.value.field == name
    with pytest.raises(ValidationError) as e:
        simulate_session(demo_market, demo_market.indexes["time"][0])
    assert e.value.field == "session"


# -- intraday paper fills -------------------------------------------------------------------
def test_paper_slices_of_a_parent_pay_the_metaorders_impact(reg):
    """Two slices at one price pay together exactly the square-root impact of their sum."""
    eng = engine_of(reg)
    price = close_at(reg.market, "MSFT")
    eng.place(GROWTH, "MSFT", -1000.0, reference_price=price, id="meta")
    paper = eng.venues["paper"]
    day = next_day(reg.market)
    for k, q in ((1, -400.0), (2, -600.0)):
        paper.submit([Order(f"meta.{k}", GROWTH, "MSFT", q, price, "paper", parent_id="meta",
                            info={"interval": k})])
        paper.step(day, prices={"MSFT": price}, ts=pd.Timestamp(day).to_pydatetime())
    fills = fills_of(eng, "meta")
    model = CostModel()
    vol = model.daily_volatility(reg.market, "MSFT", AT)  # known at the previous close
    whole = model.breakdown(1000.0, price, vol, model.adv_of("MSFT"))
    assert [f["quantity"] for f in fills] == [-400.0, -600.0]
    assert sum(f["impact"] for f in fills) == pytest.approx(whole.impact, rel=1e-12)
    assert sum(f["spread"] for f in fills) == pytest.approx(whole.spread, rel=1e-12)
    # the second slice pays more per unit than the first: the metaorder's impact grows
    assert fills[1]["impact"] / 600.0 > fills[0]["impact"] / 400.0
    got = eng._load("meta")
    assert got.filled == -1000.0 and got.status == OrderStatus.FILLED


# -- the algorithms, end to end ---------------------------------------------------------------
ORDERS = [("twap", "KO", 2000.0), ("vwap", "AAPL", -500.0), ("is", "MSFT", -400.0),
          ("pov", "JPM", 300.0)]


@pytest.fixture
def worked(reg):
    eng = engine_of(reg, participation=0.3)
    sess = session_of(reg.market, [a for _, a, _ in ORDERS])
    before = reg.store.positions(GROWTH).quantities
    for alg, asset, q in ORDERS:
        eng.place(GROWTH, asset, q, reference_price=close_at(reg.market, asset), algorithm=alg,
                  id=f"p-{alg}")
    result = eng.run(sess)
    return reg, eng, sess, before, result


def test_shares_are_conserved_from_children_to_parent_to_ledger(worked):
    reg, eng, _, before, result = worked
    after = reg.store.positions(GROWTH).quantities
    for alg, asset, q in ORDERS:
        parent = eng._load(f"p-{alg}")
        fills = fills_of(eng, parent.id)
        assert sum(f["quantity"] for f in fills) == pytest.approx(parent.filled, abs=1e-9)
        assert parent.filled == pytest.approx(q)  # the session was long enough
        assert after.get(asset, 0.0) - before.get(asset, 0.0) == pytest.approx(parent.filled)
        ledger = [e for e in reg.store.ledger(GROWTH) if e.memo and e.memo.startswith(parent.id)]
        assert sum(e.quantity for e in ledger) == pytest.approx(parent.filled)
        plan = plan_of(parent)
        assert plan.schedule[-1] == pytest.approx(q)  # schedules sum to the order
        assert plan.state == "done" and plan.end_reason == "filled"
        assert parent.fill_value == pytest.approx(sum(f["quantity"] * f["price"] for f in fills))
    assert reg.store.positions(GROWTH) == reg.store.replay(GROWTH)
    assert len(result.fills) == sum(len(fills_of(eng, f"p-{a}")) for a, _, _ in ORDERS)


def test_no_child_exceeds_its_parent_or_the_participation_caps(worked):
    _, eng, sess, _, _ = worked
    for alg, asset, q in ORDERS:
        i = sess.assets.index(asset)
        for child in eng.children(f"p-{alg}"):
            assert np.sign(child.quantity) == np.sign(q)
            assert abs(child.quantity) <= abs(q) + 1e-9
            volume = sess.volumes[i, child.info["interval"] - 1]
            assert abs(child.quantity) <= 0.25 * volume + 1e-9  # the engine's cap
            assert abs(child.filled) <= 0.3 * volume + 1e-9  # the paper broker's cap
            for f in child.info.get("fills", []):
                assert f["market_price"] == sess.prices[i, child.info["interval"]]


def test_twap_fills_follow_the_straight_line(worked):
    _, eng, sess, _, _ = worked
    filled = np.zeros(sess.intervals + 1)
    for child in eng.children("p-twap"):
        filled[child.info["interval"]] += child.filled
    cum = np.cumsum(filled)[1:]
    target = 2000.0 * np.arange(1, sess.intervals + 1) / sess.intervals
    # whole lots (1 unit) behind the line, never ahead, done at the end
    assert np.all(cum <= target + 1e-9) and np.all(cum > target - 1.0 - 1e-9)
    assert cum[-1] == 2000.0


def test_implementation_shortfall_is_the_almgren_chriss_trajectory(worked):
    _, eng, sess, _, _ = worked
    plan = plan_of(eng._load("p-is"))
    i = sess.assets.index("MSFT")
    price = sess.prices[i, 0]
    eta, gamma = ac_impact(price, sess.adv[i], CostModel())
    ac = AlmgrenChriss(permanent=gamma, temporary=eta)
    want = ac.schedule([400.0], volatility=sess.volatility[i] * price, horizon=1.0,
                       intervals=sess.intervals, risk_aversion=1e-6)
    np.testing.assert_allclose(-np.asarray(plan.schedule),
                               np.cumsum(want["trades"].values[0]), rtol=1e-10, atol=1e-9)
    # a risk-averse seller front-loads: more than TWAP's share done by mid-session
    assert -plan.schedule[sess.intervals // 2 - 1] > 400.0 * (sess.intervals // 2) / sess.intervals


def test_pov_children_follow_realized_volume(worked):
    _, eng, sess, _, _ = worked
    i = sess.assets.index("JPM")
    for child in eng.children("p-pov")[:-1]:
        want = math.floor(0.1 * sess.volumes[i, child.info["interval"] - 1])
        assert child.quantity == want


def test_every_slice_is_audited_and_the_events_reach_only_the_desk(reg):
    eng = engine_of(reg)
    seen, other = [], []
    reg.bus.subscribe("execution.*", seen.append, portfolio=GROWTH)
    reg.bus.subscribe("execution.*", other.append, portfolio="client_b/balanced")
    eng.place(GROWTH, "KO", 500.0, reference_price=close_at(reg.market, "KO"), id="aud")
    eng.run(session_of(reg.market, ["KO"]))
    audits = [a for a in reg.view().audit("aud") if a.action == "execution.slice"]
    assert len(audits) == INTERVALS
    assert all(a.before["next_interval"] + 1 == a.after["next_interval"] for a in audits)
    topics = [e.topic for e in seen]
    assert topics.count("execution.slice") == INTERVALS
    assert "execution.planned" in topics and "execution.done" in topics
    assert other == []


def test_a_viewer_cannot_place_and_nothing_is_stored(reg):
    carol = reg.as_user("carol")
    eng = ExecutionEngine(carol, PaperBroker(carol))
    dump = reg.store.dump()
    with pytest.raises(PermissionDenied):
        eng.place(GROWTH, "KO", 10.0, reference_price=50.0)
    assert reg.store.dump() == dump


# -- a proposal executed by the engine ---------------------------------------------------------
def test_an_approved_proposal_is_worked_by_the_engine_to_filled(reg):
    eng = engine_of(reg)
    trades = [line(reg.market, GROWTH, "KO", 1500.0), line(reg.market, GROWTH, "MSFT", -300.0)]
    ProposalBook(reg.as_user("alice")).propose(hand_proposal(trades, "rb-x"))
    ProposalBook(reg.as_user("bob")).approve("rb-x")
    ProposalBook(reg.as_user("alice")).submit("rb-x", eng)
    planned = eng.start(session_of(reg.market, ["KO", "MSFT"]))
    assert {p.id for p in planned} == {"rb-x-1", "rb-x-2"}
    eng.run(session_of(reg.market, ["KO", "MSFT"]))
    p = ProposalBook(reg.as_user("alice")).get("rb-x")
    assert p.state == ProposalState.FILLED
    for t in p.trades:
        assert t.filled == pytest.approx(t.quantity)
        parent = eng._load(f"rb-x-{1 if t.asset == 'KO' else 2}")
        assert t.fill_value == pytest.approx(parent.fill_value)
        assert t.fees == pytest.approx(parent.fees)


def test_cancelling_the_proposal_mid_session_cancels_the_children(reg):
    eng = engine_of(reg)
    ProposalBook(reg.as_user("alice")).propose(
        hand_proposal([line(reg.market, GROWTH, "KO", 1500.0)], "rb-c"))
    ProposalBook(reg.as_user("bob")).approve("rb-c")
    ProposalBook(reg.as_user("alice")).submit("rb-c", eng)
    sess = session_of(reg.market, ["KO"])
    eng.start(sess)
    eng.on_tick(sess.tick(1))  # a child sent, not yet filled
    assert any(c.is_open for c in eng.children("rb-c-1"))
    ProposalBook(reg.as_user("alice")).cancel("rb-c", "changed my mind", broker=eng)
    assert not any(c.is_open for c in eng.children("rb-c-1"))
    parent = eng._load("rb-c-1")
    assert parent.status == OrderStatus.CANCELLED and plan_of(parent).state == "done"
    assert eng.on_tick(sess.tick(2)) == []


# -- control -------------------------------------------------------------------------------------
def test_pause_sends_nothing_and_resume_replans_without_a_burst(reg):
    eng = engine_of(reg)
    sess = session_of(reg.market, ["KO"])
    eng.place(GROWTH, "KO", 1300.0, reference_price=close_at(reg.market, "KO"), id="pz",
              algorithm="twap")
    paper = eng.venues["paper"]
    eng.start(sess)

    def tick(k):
        t = sess.tick(k)
        eng.on_tick(t)
        paper.step(sess.session, prices=t.prices, volumes=t.volumes, ts=t.ts.to_pydatetime())

    for k in range(1, 6):
        tick(k)
    assert eng._load("pz").filled == pytest.approx(250.0)
    eng.pause("pz")
    with pytest.raises(TransitionError):
        eng.pause("pz")
    for k in range(6, 14):
        tick(k)
    assert eng._load("pz").filled == pytest.approx(250.0)
    eng.resume("pz")
    for k in range(14, INTERVALS + 1):
        tick(k)
    kids = [c for c in eng.children("pz") if c.info["interval"] >= 14]
    assert eng._load("pz").filled == pytest.approx(1300.0)
    # the 1,050 left are spread over the 13 intervals left, not sent at once
    assert max(c.quantity for c in kids) <= math.ceil(1050.0 / 13) + 1


def test_the_limit_guard_holds_the_order_until_the_limit_is_replaced(reg):
    eng = engine_of(reg)
    sess = session_of(reg.market, ["KO"])
    low = float(sess.prices[0].min()) * 0.9  # below every price of the session
    seen = []
    reg.bus.subscribe("execution.alert", seen.append, portfolio=GROWTH)
    eng.place(GROWTH, "KO", 1000.0, reference_price=close_at(reg.market, "KO"), id="lim",
              limit_price=low)
    eng.run(sess, until=10)
    assert eng.children("lim") == [] and eng._load("lim").filled == 0.0
    assert [e.payload["kind"] for e in seen].count("held") == 1  # raised once, not per tick
    eng.replace("lim", limit_price=None)
    eng.run(sess)
    assert eng._load("lim").filled == pytest.approx(1000.0)


def test_end_of_day_cancels_the_residual_and_alerts_behind(reg):
    eng = engine_of(reg, max_participation=0.001)
    sess = session_of(reg.market, ["MSFT"])
    seen = []
    reg.bus.subscribe("execution.alert", seen.append, portfolio=GROWTH)
    eng.place(GROWTH, "MSFT", -1000.0, reference_price=close_at(reg.market, "MSFT"), id="big")
    eng.run(sess)
    parent = eng._load("big")
    plan = plan_of(parent)
    assert parent.status == OrderStatus.CANCELLED and plan.end_reason == "end_of_day"
    assert -1000.0 < parent.filled < 0
    assert plan.close_price == sess.prices[0, -1]
    assert "behind" in [e.payload["kind"] for e in seen]
    assert reg.store.positions(GROWTH) == reg.store.replay(GROWTH)


def test_carry_replans_the_residual_over_the_next_session(reg):
    day1 = next_day(reg.market)
    # a cap letting about 400 of the 600 through on the first day
    cap = 400.0 / session_of(reg.market, ["MSFT"], day=day1).volumes.sum()
    eng = engine_of(reg, max_participation=cap, end_of_day="carry")
    eng.place(GROWTH, "MSFT", -600.0, reference_price=close_at(reg.market, "MSFT"), id="car")
    eng.run(session_of(reg.market, ["MSFT"], day=day1))
    first = eng._load("car")
    assert first.is_open and -600.0 < first.filled < 0
    day2 = next_day(reg.market, day1)
    eng.run(session_of(reg.market, ["MSFT"], day=day2))
    done = eng._load("car")
    assert done.filled == pytest.approx(-600.0) and plan_of(done).session == str(day2.date())
    assert plan_of(done).arrival_price == plan_of(first).arrival_price  # measured from day 1


# -- restart ----------------------------------------------------------------------------------
def _ledger(reg):
    return [(e.asset, e.quantity, e.price, e.fee, e.ts, e.memo) for e in reg.store.ledger(GROWTH)]


def test_a_restart_mid_schedule_gives_the_same_fills(tmp_path):
    def orders(eng, market):
        for alg, asset, q in ORDERS:
            eng.place(GROWTH, asset, q, reference_price=close_at(market, asset), algorithm=alg,
                      id=f"r-{alg}")

    straight = open_demo(str(tmp_path / "a.db"))
    eng = engine_of(straight, participation=0.3)
    orders(eng, straight.market)
    eng.run(session_of(straight.market, [a for _, a, _ in ORDERS]))

    path = str(tmp_path / "b.db")
    first = open_demo(path)
    eng = engine_of(first, participation=0.3)
    orders(eng, first.market)
    sess = session_of(first.market, [a for _, a, _ in ORDERS])
    eng.run(sess, until=11)
    first.store.close()
    again = open_demo(path)  # a new process: nothing but the store
    engine_of(again, participation=0.3).run(sess)
    assert _ledger(again) == _ledger(straight)
    kids = [r.id for r in again.view().records("order") if r.data.get("parent_id")]
    assert len(kids) == len(set(kids))


# -- a venue that pushes fills (a real broker's shape) -----------------------------------------
class PushVenue(Broker):
    """Fills every child in full at its reference price, pushing the fill on submit."""

    name = "push"

    def __init__(self):
        super().__init__()
        self.orders: dict[str, Order] = {}
        self.submits = 0

    def submit(self, orders, **_):
        out = []
        for o in orders:
            self.submits += 1
            if o.id in self.orders:  # idempotent per client order id
                out.append(self.orders[o.id])
                continue
            self.orders[o.id] = o
            self.emit(Fill(o.id, o.quantity, o.reference_price, 0.0,
                           pd.Timestamp(o.created_at).to_pydatetime(), f"x-{o.id}",
                           reference_price=o.reference_price))
            out.append(o)
        return out

    def cancel(self, order_id):
        return self.orders[order_id]

    def open_orders(self):
        return []


def test_a_push_venue_driven_by_ticks_fills_the_parent(reg):
    alice = reg.as_user("alice")
    venue = PushVenue()
    ExecutionService(alice, venue).attach()
    eng = ExecutionEngine(alice, venue)
    sess = session_of(reg.market, ["KO"])
    eng.place(GROWTH, "KO", 1300.0, reference_price=close_at(reg.market, "KO"), id="wc")
    eng.start(sess)
    for tick in sess.ticks():
        eng.on_tick(tick)
    eng.recover()  # re-sends nothing the venue has
    parent = eng._load("wc")
    assert parent.filled == pytest.approx(1300.0)
    assert len(venue.orders) == INTERVALS
    vwap = sum(o.quantity * o.reference_price for o in venue.orders.values()) / 1300.0
    assert parent.average_price == pytest.approx(vwap)


# -- hostile inputs -------------------------------------------------------------------------------
hostile = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5),
                                                                         st.integers(), max_size=2))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["quantity", "reference_price", "algorithm", "params",
                              "limit_price", "end_of_day", "strategy", "asset"]),
       value=hostile)
def test_place_either_stores_a_valid_parent_or_names_the_field(reg, field, value):
    eng = engine_of(reg)
    kw = {"quantity": 10.0, "reference_price": 50.0, "algorithm": "twap", "params": None,
          "limit_price": None, "end_of_day": None, "strategy": None, "asset": "KO"}
    kw[field] = value
    dump = reg.store.dump()
    try:
        parent = eng.place(GROWTH, kw.pop("asset"), kw.pop("quantity"), **kw)
    except PmkitError as exc:
        assert reg.store.dump() == dump
        assert exc.field is not None
        return
    stored = Order.from_record(reg.view().record("order", parent.id).data)
    assert stored == parent and stored.broker == "algo"


# -- calibration on simulated fills with a known Y ----------------------------------------------
def test_calibration_recovers_the_paper_brokers_impact_coefficient(reg):
    """The paper broker charges Y = 0.7; fitting the realized fills recovers it."""
    from pmkit.execution.tca import calibration_error

    alice = reg.as_user("alice")
    truth = CostModel(impact_coefficient=0.7, default_adv=2e6)
    eng = ExecutionEngine(alice, PaperBroker(alice, cost_model=truth), max_participation=1.0)
    held = reg.store.positions(GROWTH).quantities
    sizes = [0.1, 0.2, 0.35, 0.5, 0.7, 0.9]
    for asset in ("MSFT", "AAPL", "UNH"):
        for j, share in enumerate(sizes):
            units = -math.floor(held[asset] * share / sum(sizes))
            eng.place(GROWTH, asset, units, reference_price=close_at(reg.market, asset),
                      algorithm=("twap", "vwap", "is")[j % 3], id=f"cal-{asset}-{j}")
    eng.run(session_of(reg.market, ["MSFT", "AAPL", "UNH"], adv=truth.adv,
                       default_adv=truth.default_adv))
    parents = eng.parents(with_fills=True)
    assert all(p.status == OrderStatus.FILLED for p in parents)
    result = calibration_error(parents, 0.5)
    assert result.fit.fills == 18
    # prices move between slices, so the metaorder's impact is the law only to first order
    assert result.fit.coefficient == pytest.approx(0.7, rel=0.02)
    assert result.z_score > 3  # the model's 0.5 is rejected


# -- monitoring --------------------------------------------------------------------------------
def test_progress_mid_session_matches_the_children_and_the_schedule(reg):
    from pmkit.execution.monitor import portfolio_progress, progress, schedule_frame

    eng = engine_of(reg)
    sess = session_of(reg.market, ["MSFT", "AAPL"])
    eng.place(GROWTH, "MSFT", -520.0, reference_price=close_at(reg.market, "MSFT"), id="m1")
    eng.place(GROWTH, "AAPL", -260.0, reference_price=close_at(reg.market, "AAPL"), id="m2",
              algorithm="vwap")
    eng.run(sess, until=10)
    parents = eng.parents(with_fills=True)
    table = progress(parents)
    for p in parents:
        row = table.loc[p.id]
        fills = fills_of(eng, p.id)
        assert row["filled"] == pytest.approx(sum(f["quantity"] for f in fills))
        assert row["target"] == pytest.approx(plan_of(p).schedule[9])
        assert row["deviation"] == pytest.approx(-(row["filled"] - row["target"]))
        assert row["filled_pct"] == pytest.approx(100 * row["filled"] / p.quantity)
        avg = sum(f["quantity"] * f["price"] for f in fills) / sum(f["quantity"] for f in fills)
        arrival = plan_of(p).arrival_price
        assert row["slippage_bps"] == pytest.approx(-(avg - arrival) / arrival * 1e4)
        i = sess.assets.index(p.asset)
        assert row["interval_vwap"] == pytest.approx(sess.vwap(p.asset, 1, 10))
        frame = schedule_frame(p)
        assert frame["filled"].iloc[9] == pytest.approx(row["filled"])
        assert frame["filled"].iloc[-1] == pytest.approx(row["filled"])  # nothing after 10
        assert np.isnan(frame["price"].iloc[12])
        assert frame["price"].iloc[0] == pytest.approx(sess.prices[i, 1], rel=1e-14)
    book = portfolio_progress(parents)
    notional = sum(abs(p.quantity) * plan_of(p).arrival_price for p in parents)
    assert book.loc[GROWTH, "notional"] == pytest.approx(notional)
    assert book.loc[GROWTH, "parents"] == 2
    # client_b's owner sees none of client_a's execution
    dave = reg.as_user("dave")
    assert ExecutionEngine(dave, PaperBroker(dave)).parents() == []


# -- the smart order router across venues ---------------------------------------------------------
def test_smart_orders_are_routed_and_split_across_venues_by_expected_cost(reg):
    from pmkit.execution.router import SmartRouter
    from pmkit.execution.venues import default_venues

    alice = reg.as_user("alice")
    venues = default_venues(alice)
    eng = ExecutionEngine(alice, venues, router=SmartRouter(), max_participation=0.35)
    sess = session_of(reg.market, ["MSFT", "UNH"])
    seen = []
    reg.bus.subscribe("execution.planned", seen.append, portfolio=GROWTH)
    eng.place(GROWTH, "MSFT", -1000.0, reference_price=close_at(reg.market, "MSFT"),
              algorithm="smart", id="sm1")
    eng.place(GROWTH, "UNH", -10.0, reference_price=close_at(reg.market, "UNH"),
              algorithm="smart", id="sm2")
    eng.run(sess)
    big, tiny = eng._load("sm1"), eng._load("sm2")
    # MSFT: 1,000 x ~250 = 0.5% of the 50m ADV -> the default rule (TWAP over the day);
    # UNH: 10 x ~540 = 0.01% of ADV -> "tiny": TWAP over the first tenth of the session
    assert plan_of(big).route["rule"] == "default" and plan_of(big).algorithm == "twap"
    assert plan_of(tiny).route["rule"] == "tiny"
    assert "participation" in plan_of(tiny).route["reasons"][0]
    assert next(e.payload["reasons"] for e in seen if e.payload["order"] == "sm1")
    assert tiny.filled == -10.0 and max(c.info["interval"] for c in eng.children("sm2")) <= 3
    assert big.filled == pytest.approx(-1000.0)
    kids = eng.children("sm1")
    assert {c.broker for c in kids} == {"lit", "dark"}  # both venues used
    i = sess.assets.index("MSFT")
    spec = {v.name: v.venue for v in venues}
    for c in kids:
        volume = sess.volumes[i, c.info["interval"] - 1]
        assert abs(c.filled) <= spec[c.broker].liquidity * volume + 1e-9
        for f in c.info.get("fills", []):
            notional = abs(f["quantity"]) * f["market_price"]
            assert f["fee"] == pytest.approx(notional * spec[c.broker].fee_bps / 1e4)
    # shares conserved across venues
    assert sum(c.filled for c in kids) == pytest.approx(big.filled)


# -- %pm tca ------------------------------------------------------------------------------
def test_pm_tca_reports_what_the_user_may_see(reg):
    pytest.importorskip("IPython")
    from IPython.core.error import UsageError

    from pmkit import magics
    from pmkit.execution import TCAReport, read_parents

    eng = engine_of(reg)
    eng.place(GROWTH, "MSFT", -300.0, reference_price=close_at(reg.market, "MSFT"), id="t1",
              strategy="rebalance")
    eng.run(session_of(reg.market, ["MSFT"]))
    magics.use(reg.as_user("alice"))
    report = magics.run("tca")
    assert isinstance(report, TCAReport)
    want = TCAReport(read_parents(reg.as_user("alice"), with_fills=True)).table()
    pd.testing.assert_frame_equal(report.table(), want)
    by_algo = magics.run("tca --by algorithm")
    assert by_algo.loc["twap", "total"] == pytest.approx(want.loc["t1", "total"])
    assert "t1" in report._repr_html_()
    magics.use(reg.as_user("dave"))  # another desk: nothing of client_a's
    assert magics.run("tca").startswith("no executed parent orders")
    with pytest.raises(UsageError):
        magics.run("tca --by nonsense")


# -- the wall clock (a real broker's shape), three venues, a rejected child ------------------------
def test_advance_on_the_wall_clock_acts_once_per_ended_interval(reg):
    from datetime import timedelta

    alice = reg.as_user("alice")
    venue = PushVenue()
    ExecutionService(alice, venue).attach()
    eng = ExecutionEngine(alice, venue)
    sess = session_of(reg.market, ["KO"])
    eng.place(GROWTH, "KO", 260.0, reference_price=close_at(reg.market, "KO"), id="wall")
    eng.start(sess)
    times = list(sess.times)
    price = {"KO": float(sess.prices[0, 0])}
    assert eng.advance(times, times[0] + timedelta(minutes=5), price) == []  # none ended yet
    sent = eng.advance(times, times[1] + timedelta(seconds=1), price)
    assert [c.info["interval"] for c in sent] == [1] and sent[0].quantity == 10.0
    assert eng.advance(times, times[1] + timedelta(seconds=30), price) == []  # acted on
    # the scheduler slept through intervals 2 to 4: one child catches up, no volume no cap
    sent = eng.advance(times, times[4] + timedelta(seconds=1), price)
    assert [c.info["interval"] for c in sent] == [4] and sent[0].quantity == 30.0
    for k in range(5, INTERVALS + 1):
        eng.advance(times, times[k], price)
    assert eng._load("wall").filled == pytest.approx(260.0)
    with pytest.raises(ValidationError) as e:
        eng.advance(times[::-1], times[3], price)
    assert e.value.field == "times"


def test_children_are_split_across_the_paper_broker_and_two_venues(reg):
    from pmkit.execution.engine import venue_spec
    from pmkit.execution.router import SmartRouter
    from pmkit.execution.venues import default_venues

    alice = reg.as_user("alice")
    paper = PaperBroker(alice, participation=0.05)
    venues = [paper, *default_venues(alice)]
    spec = venue_spec(paper)
    assert (spec.fee_bps, spec.liquidity) == (CostModel().commission_bps, 0.05)
    eng = ExecutionEngine(alice, venues, router=SmartRouter(), max_participation=0.4)
    sess = session_of(reg.market, ["MSFT"])
    eng.place(GROWTH, "MSFT", -1040.0, reference_price=close_at(reg.market, "MSFT"), id="v3",
              algorithm="twap")
    eng.run(sess)
    kids = eng.children("v3")
    assert {c.broker for c in kids} == {"paper", "lit", "dark"}
    assert sum(c.filled for c in kids) == pytest.approx(eng._load("v3").filled)
    assert eng._load("v3").filled == pytest.approx(-1040.0)
    # each interval's slice is split as the router splits it, venue by venue
    from pmkit.execution.router import split

    i = sess.assets.index("MSFT")
    plan = plan_of(eng._load("v3"))
    specs = [venue_spec(v) for v in venues]
    by_interval: dict[int, dict[str, float]] = {}
    for c in kids:
        by_interval.setdefault(c.info["interval"], {})[c.broker] = c.quantity
    for k, sent in by_interval.items():
        want = split(sum(sent.values()), specs, price=float(sess.prices[i, k]),
                     volatility=plan.params["volatility"],
                     interval_volume=float(sess.volumes[i, k - 1]),
                     interval_seconds=23_400.0 / INTERVALS, lot=1.0)
        assert {v: q for v, q in want.quantities.items() if q} == sent
    # each venue's fills are stamped its latency after the tick
    latency = {"paper": 0.0, "lit": 2.0, "dark": 40.0}
    for c in kids:
        for f in c.info.get("fills", []):
            late = pd.Timestamp(f["ts"]) - sess.times[c.info["interval"]]
            assert late == pd.Timedelta(milliseconds=latency[c.broker])


def test_a_refused_child_fill_raises_an_alert_and_the_parent_goes_on(reg):
    eng = engine_of(reg)
    sess = session_of(reg.market, ["MSFT"])
    seen = []
    reg.bus.subscribe("execution.alert", seen.append, portfolio=GROWTH)
    eng.place(GROWTH, "MSFT", -260.0, reference_price=close_at(reg.market, "MSFT"), id="rj")
    reg.set_config(GROWTH, {"price_band": 1e-9})  # every fill is outside the band
    result = eng.run(sess, until=3)
    assert [f.error for f in result.failures] == ["PriceBandError"] * 3
    rejected = [e.payload for e in seen if e.payload["kind"] == "child_rejected"]
    assert len(rejected) == 3 and rejected[0]["error"] == "PriceBandError"
    assert rejected[0]["field"] == result.failures[0].field
    assert eng._load("rj").filled == 0.0
    reg.set_config(GROWTH, {"price_band": None})
    eng.run(sess)
    assert eng._load("rj").filled == pytest.approx(-260.0)  # caught up after the refusals


def test_a_crash_between_storing_a_child_and_sending_it_sends_it_once_on_restart(reg):
    """The slice commits first; a process that dies before the venue hears of it loses nothing."""

    class Dying(PushVenue):
        def submit(self, orders, **_):
            raise SystemExit("the process died here")

    alice = reg.as_user("alice")
    sess = session_of(reg.market, ["KO"])
    first = ExecutionEngine(alice, Dying())
    first.place(GROWTH, "KO", 260.0, reference_price=close_at(reg.market, "KO"), id="cr")
    first.start(sess)
    with pytest.raises(SystemExit):
        first.on_tick(sess.tick(1))
    stored = first.children("cr")
    assert [c.id for c in stored] == ["cr.1"] and stored[0].is_open  # stored, never sent

    venue = PushVenue()  # the restarted process: a new engine, the same store
    ExecutionService(alice, venue).attach()
    again = ExecutionEngine(alice, venue)
    again.start(sess)  # recovers: hands the open child to the venue
    assert list(venue.orders) == ["cr.1"] and again._load("cr").filled == 10.0
    for tick in sess.ticks():  # replaying interval 1 sends nothing twice
        again.on_tick(tick)
    assert venue.submits == INTERVALS and len(venue.orders) == INTERVALS
    assert again._load("cr").filled == pytest.approx(260.0)


def test_vwap_follows_the_sessions_profile_which_the_user_may_replace(reg):
    """A flat profile makes VWAP the straight line; the default U shape does not."""
    eng = engine_of(reg)
    flat = session_of(reg.market, ["MSFT"], profile=np.ones(INTERVALS))
    eng.place(GROWTH, "MSFT", -260.0, reference_price=close_at(reg.market, "MSFT"), id="vf",
              algorithm="vwap")
    eng.start(flat)
    np.testing.assert_allclose(plan_of(eng._load("vf")).schedule,
                               -260.0 * np.arange(1, INTERVALS + 1) / INTERVALS, rtol=1e-12)
    from pmkit.execution import u_shape_profile

    reg2 = open_demo()
    eng2 = engine_of(reg2)
    eng2.place(GROWTH, "MSFT", -260.0, reference_price=close_at(reg.market, "MSFT"), id="vu",
               algorithm="vwap")
    eng2.start(session_of(reg2.market, ["MSFT"]))
    np.testing.assert_allclose(plan_of(eng2._load("vu")).schedule,
                               -260.0 * np.cumsum(u_shape_profile(INTERVALS)), rtol=1e-12)


def test_urgency_reaches_the_router_and_is_validated(reg):
    from pmkit.execution.router import SmartRouter

    eng = engine_of(reg, router=SmartRouter())
    eng.place(GROWTH, "MSFT", -300.0, reference_price=close_at(reg.market, "MSFT"),
              algorithm="smart", urgency="high", id="ur")
    eng.start(session_of(reg.market, ["MSFT"]))
    plan = plan_of(eng._load("ur"))
    assert plan.route["rule"] == "urgent" and plan.algorithm == "is"
    assert plan.params["risk_aversion"] == 1e-5
    dump = reg.store.dump()
    with pytest.raises(ValidationError) as e:
        eng.place(GROWTH, "MSFT", -1.0, reference_price=100.0, urgency="asap")
    assert e.value.field == "urgency" and reg.store.dump() == dump


def test_the_tca_report_states_the_models_calibration_error(reg):
    from pmkit.execution import TCAReport
    from pmkit.execution.tca import calibration_error

    eng = engine_of(reg)
    for j, units in enumerate((-100.0, -300.0, -500.0)):
        eng.place(GROWTH, "MSFT", units, reference_price=close_at(reg.market, "MSFT"),
                  id=f"cb{j}")
    eng.run(session_of(reg.market, ["MSFT"]))
    parents = eng.parents(with_fills=True)
    got = TCAReport(parents).calibration(CostModel().impact_coefficient)
    want = calibration_error(parents, 0.5)
    assert got.fit == want.fit and got.z_score == want.z_score
    assert got.fit.coefficient == pytest.approx(0.5, rel=0.02)  # the paper broker's own Y


def test_a_child_fill_without_the_parent_listener_books_nothing(reg, monkeypatch):
    """The fill, the ledger and the parent commit together or not at all."""
    from pmkit.errors import ConfigError
    from pmkit.execution import broker

    eng = engine_of(reg)
    sess = session_of(reg.market, ["MSFT"])
    eng.place(GROWTH, "MSFT", -260.0, reference_price=close_at(reg.market, "MSFT"), id="nl")
    eng.start(sess)
    eng.on_tick(sess.tick(1))
    monkeypatch.delitem(broker.FILL_LISTENERS, "parent")
    dump = reg.store.dump()
    t = sess.tick(1)
    result = eng.venues["paper"].step(sess.session, prices=t.prices, volumes=t.volumes,
                                      ts=t.ts.to_pydatetime())
    assert [f.error for f in result.failures] == ["ConfigError"]
    assert result.failures[0].field == "order.parent_id"
    after = reg.store.dump()
    # the refused fill is audited (order.fill_failed); the ledger and every record unchanged
    assert {k for k in after if after[k] != dump[k]} == {"audit"}
    new = after["audit"][len(dump["audit"]):]
    assert len(new) == 1 and "order.fill_failed" in new[0]
    with pytest.raises(ConfigError):  # asked directly, the recorder refuses it the same way
        eng.recorder.record(Fill("nl.1", -10.0, 250.0, 0.0, t.ts.to_pydatetime(), "x"))
    assert reg.store.dump() == after


def test_a_ticks_slices_are_one_transaction_and_a_refused_one_falls_back_alone(reg, monkeypatch):
    """One commit per tick (an audit record per slice and child); a refusal isolates itself."""
    eng = engine_of(reg)
    sess = session_of(reg.market, ["MSFT", "AAPL"])
    eng.place(GROWTH, "MSFT", -520.0, reference_price=close_at(reg.market, "MSFT"), id="big",
              algorithm="twap")
    eng.place(GROWTH, "AAPL", -52.0, reference_price=close_at(reg.market, "AAPL"), id="small",
              algorithm="twap")
    eng.start(sess)
    alerts = []
    reg.bus.subscribe("execution.alert", alerts.append, portfolio=GROWTH)
    opened = opened_transactions(reg.store, monkeypatch)
    ticks = list(sess.ticks())
    n = len(reg.store.audit())
    first = eng.on_tick(ticks[0])
    assert opened == [("execution.tick", "algo")]  # the paper venue adopts the stored children
    assert sorted(c.parent_id for c in first) == ["big", "small"]
    new = [(a.action, a.target) for a in reg.store.audit()[n:]]
    assert new[0] == ("execution.tick", "algo")
    assert sorted(new[1:]) == sorted([("order.submit", first[0].id), ("execution.slice", "big"),
                                      ("order.submit", first[1].id), ("execution.slice", "small")])
    # a hard cap between the two children's values: the big parent's next child breaches it
    value = {c.parent_id: abs(c.quantity) * c.reference_price for c in first}
    assert value["small"] < value["big"] / 2
    paper = eng.venues["paper"]
    booked = paper.step(sess.session, prices=ticks[0].prices, volumes=ticks[0].volumes,
                        ts=ticks[0].ts.to_pydatetime())
    assert sorted(f.order_id for f in booked) == sorted(c.id for c in first)
    reg.set_config(GROWTH, {"max_order_value": (value["small"] + value["big"]) / 2})
    opened.clear()
    second = eng.on_tick(ticks[1])
    assert opened == [("execution.tick", "algo"), ("execution.slice", "big"),
                      ("execution.alert", "big"), ("execution.slice", "small")]
    assert [c.parent_id for c in second] == ["small"]
    rejected = [a.payload for a in alerts if a.payload["kind"] == "child_rejected"]
    assert [(r["order"], r["error"], r["interval"]) for r in rejected] == [
        ("big", "LimitBreachError", 2)]
    # the refused slice wrote nothing: the big parent acts on interval 2 again next tick
    assert plan_of(eng._load("big")).next_interval == 2
    assert plan_of(eng._load("small")).next_interval == 3
    assert [c.id for c in eng.children("big")] == [first[0].id if first[0].parent_id == "big"
                                                  else first[1].id]


def test_a_pov_parent_whose_fills_are_refused_falls_behind_its_participation(reg):
    """POV's schedule is the rate times the volume seen: refused fills put it behind that."""
    sess = session_of(reg.market, ["MSFT"])
    i = sess.assets.index("MSFT")
    # a rate whose whole-session share is about half the parent: no cap ends it early
    rate = 0.5 * 500.0 / float(sess.volumes[i].sum())
    params = {"participation": rate}
    eng = engine_of(reg)
    seen = []
    reg.bus.subscribe("execution.alert", seen.append, portfolio=GROWTH)
    eng.place(GROWTH, "MSFT", -500.0, reference_price=close_at(reg.market, "MSFT"),
              id="pov-ok", algorithm="pov", params=params)
    eng.run(sess, until=10)
    assert eng._load("pov-ok").filled < 0
    assert not [e for e in seen if e.payload["kind"] == "behind"]  # on its participation
    reg.set_config(GROWTH, {"price_band": 1e-9})  # from now on every fill is refused
    eng.run(sess, until=22)
    behind = [e.payload for e in seen if e.payload["kind"] == "behind"]
    assert behind and behind[0]["order"] == "pov-ok"
    plan = plan_of(eng._load("pov-ok"))
    assert "behind" in plan.alerts
    due = rate * plan.market_volume
    assert behind[-1]["lag"] == pytest.approx(
        rate * float(sess.volumes[i, :behind[-1]["interval"]].sum())
        - abs(behind[-1]["filled"]))
    assert due - abs(eng._load("pov-ok").filled) > eng.behind * 500.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=50))
def test_a_plans_schedule_is_stored_packed_and_read_back_bit_for_bit(schedule):
    plan = ExecutionPlan("twap", "2021-01-05", len(schedule) or 1, tuple(schedule), 100.0)
    stored = plan.to_record()
    assert set(stored["schedule"]) == {"float64_le_base64"}
    back = ExecutionPlan.from_record(stored)
    assert np.array_equal(np.array(back.schedule, dtype=float), np.array(schedule, dtype=float),
                          equal_nan=True)
    assert back == plan or any(math.isnan(x) for x in schedule)
    # records written before the packing (a list of numbers) read the same
    legacy = {**stored, "schedule": [float(x) for x in schedule]}
    assert ExecutionPlan.from_record(legacy).schedule == tuple(float(x) for x in schedule)


@pytest.mark.parametrize("packed", ["not base64!", "AAAA", 12, None])
def test_a_tampered_packed_schedule_is_a_typed_error_naming_the_field(packed):
    stored = ExecutionPlan("twap", "2021-01-05", 1, (1.0,), 100.0).to_record()
    stored["schedule"] = {"float64_le_base64": packed}
    with pytest.raises(ValidationError) as err:
        ExecutionPlan.from_record(stored)
    assert err.value.field == "execution.schedule"


def _session_books(monkeypatch, *, one_by_one: bool):
    """The worked session's ledger, orders and audit trail, batched or one transaction each."""
    reg = open_demo()
    if one_by_one:  # every tick's slices and every step's fills take the fallback path
        monkeypatch.setattr(ExecutionEngine, "_check_children",
                            staticmethod(lambda m, slices: (_ for _ in ()).throw(
                                ValidationError("batch", None, "forced apart"))))
        monkeypatch.setattr(PaperBroker, "_step_in_one", lambda self, *a, **k: None)
    eng = engine_of(reg, participation=0.3)
    sess = session_of(reg.market, [a for _, a, _ in ORDERS])
    for alg, asset, q in ORDERS:
        eng.place(GROWTH, asset, q, reference_price=close_at(reg.market, asset), algorithm=alg,
                  id=f"p-{alg}")
    eng.run(sess)
    monkeypatch.undo()
    ledger = [(e.asset, e.quantity, e.price, e.fee, e.memo, e.ts)
              for e in reg.store.ledger(GROWTH)]
    orders = {r.id: (r.status, {k: v for k, v in r.data.items() if k != "created_at"})
              for r in reg.store.list("order")}
    records = reg.store.audit()
    audit = sorted((a.action, a.target) for a in records
                   if a.action not in ("execution.tick", "order.fill_batch"))
    grouped = sum(a.action in ("execution.tick", "order.fill_batch") for a in records)
    return ledger, orders, audit, reg.store.positions(GROWTH), grouped


def test_batching_a_ticks_writes_changes_nothing_but_how_they_commit(monkeypatch):
    """Same fills, ledger, orders and per-item audit records as one transaction per item."""
    batched = _session_books(monkeypatch, one_by_one=False)
    apart = _session_books(monkeypatch, one_by_one=True)
    assert batched[0] == apart[0] and len(batched[0]) > 4 * len(ORDERS)
    assert batched[1] == apart[1]
    # every slice, child, fill and ledger trade has its audit record either way; only the
    # grouping records differ (execution.tick / order.fill_batch vs one primary each)
    assert batched[2] == apart[2]
    assert batched[3] == apart[3]
    # and the batched run did group: a fill batch per tick at least, none when forced apart
    assert apart[4] == 0 and batched[4] > INTERVALS


def test_a_batched_tick_checks_overridden_parents_with_their_override_and_the_rest_without(
        reg, monkeypatch):
    """A manager's override covers its proposal's children in the tick's joint check only."""
    from pmkit.registry.controls import Override

    eng = engine_of(reg)
    # a parent of the desk's own, placed before the limit exists (it has no override)
    eng.place(GROWTH, "AAPL", -200.0, reference_price=close_at(reg.market, "AAPL"), id="own",
              algorithm="twap")
    # every order and child below is worth more than 1,000: a soft limit bob overrides
    reg.set_config(GROWTH, {"max_order_value": 1_000.0, "soft_limits": ["max_order_value"]})
    trades = [line(reg.market, GROWTH, "KO", 1500.0), line(reg.market, GROWTH, "MSFT", -300.0)]
    ProposalBook(reg.as_user("alice")).propose(hand_proposal(trades, "rb-o"))
    ProposalBook(reg.as_user("bob")).approve("rb-o", override=Override("block agreed"))
    ProposalBook(reg.as_user("alice")).submit("rb-o", eng)
    sess = session_of(reg.market, ["KO", "MSFT", "AAPL"])
    eng.start(sess)
    eng.pause("own")
    alerts = []
    reg.bus.subscribe("execution.alert", alerts.append, portfolio=GROWTH)
    opened = opened_transactions(reg.store, monkeypatch)
    first = eng.on_tick(sess.tick(1))
    # the paused parent sends nothing; the two overridden ones pass one joint check
    assert opened == [("execution.tick", "algo")]
    assert sorted(c.parent_id for c in first) == ["rb-o-1", "rb-o-2"]
    for child in first:
        granted = child.info["override"]
        assert (granted["reason"], granted["by"], granted["limits"], granted["stage"]) == (
            "block agreed", "bob", ["max_order_value"], "order")
    eng.venues["paper"].step(sess.session, prices=sess.tick(1).prices,
                             volumes=sess.tick(1).volumes, ts=sess.tick(1).ts.to_pydatetime())
    eng.resume("own")
    opened.clear()
    second = eng.on_tick(sess.tick(2))
    assert opened[0] == ("execution.tick", "algo")  # tried together, rolled back, then apart
    assert ("execution.alert", "own") in opened
    assert sorted(c.parent_id for c in second) == ["rb-o-1", "rb-o-2"]
    assert [(a.payload["order"], a.payload["kind"], a.payload["error"]) for a in alerts] == [
        ("own", "child_rejected", "LimitBreachError")]
    assert eng.children("own") == []



def test_another_desk_sees_nothing_of_a_batched_session():
    """Batch records name no order; each item's record is scoped by its portfolio."""
    reg = open_demo()
    eng = engine_of(reg, participation=0.3)
    sess = session_of(reg.market, [a for _, a, _ in ORDERS])
    for alg, asset, q in ORDERS:
        eng.place(GROWTH, asset, q, reference_price=close_at(reg.market, asset), algorithm=alg,
                  id=f"p-{alg}")
    before = {a.seq for a in reg.store.audit()}
    eng.run(sess, until=5)
    new = [a for a in reg.store.audit() if a.seq not in before]
    grouped = [a for a in new if a.action in ("execution.tick", "order.fill_batch")]
    assert grouped and all("p-" not in str(a.before) + str(a.after) for a in grouped)
    dave = reg.as_user("dave").view()  # client_b's owner
    assert not [a for a in dave.audit() if a.seq not in before]
    alice = reg.as_user("alice").view()
    seen = {a.seq for a in alice.audit()}
    assert {a.seq for a in new if a not in grouped} <= seen


def test_plan_of_decodes_a_stored_mapping_once_and_stays_bounded():
    from pmkit.execution import plan as plan_module

    stored = ExecutionPlan("twap", "2021-01-05", 2, (1.0, 2.0), 100.0).to_record()
    order = Order("o", GROWTH, "KO", 2.0, 100.0, "algo", info={"execution": stored})
    first = plan_of(order)
    assert plan_of(order) is first  # the same mapping: not decoded again
    twin = Order("o", GROWTH, "KO", 2.0, 100.0, "algo", info={"execution": dict(stored)})
    assert plan_of(twin) == first and plan_of(twin) is not first  # an equal copy: its own
    for i in range(plan_module._DECODED_SIZE + 10):
        plan_of(Order(f"o{i}", GROWTH, "KO", 2.0, 100.0, "algo",
                      info={"execution": dict(stored)}))
    assert len(plan_module._DECODED) <= plan_module._DECODED_SIZE
