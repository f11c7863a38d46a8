"""Build notebooks/06_execution.ipynb (run: python notebooks/build_06_execution.py; then execute).

The runbook: a large rebalance executed with each algorithm on the simulated intraday feed,
the Almgren-Chriss frontier, the router's choices, monitoring mid-session, and TCA comparing
the algorithms on the same orders.
"""

from pathlib import Path

import nbformat as nbf

cells = [
    ("md", """# Execution: schedules, the engine, the router, monitoring and TCA

An approved rebalance does not have to go out as one order per asset at the close. This
runbook sends the **same large rebalance** through each execution algorithm on a simulated
intraday session, looks at the Almgren-Chriss efficient frontier, lets the smart order router
choose algorithms and split children across two venues, watches progress mid-session, and
compares the algorithms with transaction-cost analysis.

The session is simulated: prices are the live feed's Brownian bridge between two real closes
(a `pmkit feed` replay started the day before with the same seed sends the same prices), and
volumes are the ADV times the U-shaped intraday profile with noise. The bundled data has no
volumes, so the ADV is the cost model's default (50 million) for every asset."""),
    ("code", """# NBVAL_IGNORE_OUTPUT
import hvplot.pandas  # noqa: F401  (loads the plotting extension: its output carries random ids)"""),
    ("code", """import numpy as np
import pandas as pd

from pmkit.demo import open_demo
from pmkit.execution import (AlmgrenChriss, ExecutionEngine, PaperBroker, SmartRouter,
                             TCAReport, default_venues, plan_of, plot_frontier,
                             portfolio_progress, progress, read_parents, schedule_frame,
                             simulate_session)
from pmkit.execution.engine import ac_impact

pd.set_option("display.precision", 2)
PORTFOLIO = "client_a/growth"
market = open_demo().market
SESSION = market.indexes["time"][-2]
held = open_demo().store.positions(PORTFOLIO).quantities
# the rebalance: sell 60 % of every holding (a large order: sizes in units)
orders = {asset: -float(np.floor(0.6 * q)) for asset, q in held.items() if q > 0}
session = simulate_session(market, SESSION, assets=list(orders), intervals=390, seed=7)
pd.Series(orders, name="units")"""),
    ("md", """## The same rebalance, once per algorithm

Each algorithm works the rebalance on its own copy of the demo store, against the same
session: TWAP (even slices), VWAP (the volume profile), Implementation Shortfall (the
Almgren-Chriss trajectory for a risk aversion of 1e-5 per dollar: front-loaded) and POV (10 %
of each interval's realized volume). The engine shows a progress bar per session."""),
    ("code", """# NBVAL_IGNORE_OUTPUT
runs = {}
for algorithm, params in [("twap", {}), ("vwap", {}), ("is", {"risk_aversion": 1e-5}),
                          ("pov", {"participation": 0.1})]:
    reg = open_demo()
    trader = reg.as_user("alice")
    engine = ExecutionEngine(trader, PaperBroker(trader))
    for asset, units in orders.items():
        # decided on the previous close (the session's open)
        engine.place(PORTFOLIO, asset, units, algorithm=algorithm, params=params,
                     reference_price=float(session.prices[session.assets.index(asset), 0]),
                     id=f"{algorithm}-{asset}", strategy="rebalance")
    engine.run(session, progress=True)
    runs[algorithm] = (reg, engine)"""),
    ("code", """filled = pd.DataFrame({alg: {p.asset: p.filled for p in eng.parents()}
                       for alg, (reg, eng) in runs.items()})
# every algorithm sold the whole rebalance, and positions equal the ledger's replay
assert all(np.allclose(filled[alg], pd.Series(orders)[filled.index]) for alg in filled)
assert all(r.store.positions(PORTFOLIO) == r.store.replay(PORTFOLIO) for r, _ in runs.values())
filled"""),
    ("md", """The schedules differ in shape: Implementation Shortfall sells early to cut timing risk,
VWAP follows the U-shaped volume, POV follows realized volume."""),
    ("code", """# NBVAL_IGNORE_OUTPUT
asset = max(orders, key=lambda a: abs(orders[a]))
paths = pd.DataFrame({alg: schedule_frame(next(p for p in read_parents(reg, with_fills=True)
                                              if p.asset == asset))["filled"]
                      for alg, (reg, _) in runs.items()})
paths.hvplot.line(xlabel="interval (minutes)", ylabel=f"{asset} units sold (cumulative)",
                  title=f"Four schedules of the same {asset} order")"""),
    ("md", """## The Almgren-Chriss efficient frontier

For the largest order, expected shortfall E against its standard deviation over the risk
aversion λ: λ → 0 is TWAP (least expected cost, most risk)."""),
    ("code", """i = session.assets.index(asset)
price = float(session.prices[i, 0])
eta, gamma = ac_impact(price, float(session.adv[i]), runs["twap"][1].cost_model)
frontier = AlmgrenChriss(permanent=gamma, temporary=eta).frontier(
    abs(orders[asset]), volatility=float(session.volatility[i]) * price, horizon=1.0,
    intervals=390)
frontier[["expected_cost", "std"]].to_dataframe().iloc[::6]"""),
    ("code", """# NBVAL_IGNORE_OUTPUT
plot_frontier(frontier)"""),
    ("md", """## The smart order router and two venues

`algorithm="smart"` lets the router choose from its rule table; every decision stores its
reasons. With a lit venue (1 bp, 2 ms, 30 % of volume) and a dark one (0.3 bp, 40 ms, 8 %),
each child is split by expected cost."""),
    ("code", """SmartRouter().table()"""),
    ("code", """# NBVAL_IGNORE_OUTPUT
reg = open_demo()
trader = reg.as_user("alice")
smart = ExecutionEngine(trader, default_venues(trader), router=SmartRouter())
for asset_, units in orders.items():
    smart.place(PORTFOLIO, asset_, units, algorithm="smart", id=f"smart-{asset_}",
                reference_price=float(session.prices[session.assets.index(asset_), 0]))
_ = smart.run(session, until=120, progress=True)"""),
    ("code", """pd.DataFrame({p.asset: {"rule": plan_of(p).route["rule"],
                        "algorithm": plan_of(p).algorithm,
                        "why": plan_of(p).route["reasons"][0]} for p in smart.parents()}).T"""),
    ("code", """venues = pd.DataFrame([{"venue": c.broker, "filled": abs(c.filled)}
                       for p in smart.parents() for c in smart.children(p.id)])
venues.groupby("venue")["filled"].sum().rename("units filled by venue")"""),
    ("md", """## Monitoring mid-session

Two hours in (interval 120 of 390): filled against schedule, deviation (negative = behind),
slippage against the arrival price and the interval VWAP. The Execution alerts arrive as
`execution.alert` events."""),
    ("code", """progress(smart.parents())[["algorithm", "filled_pct", "schedule_pct", "deviation",
                           "slippage_bps", "vs_vwap_bps", "alerts"]]"""),
    ("code", """portfolio_progress(smart.parents())"""),
    ("code", """# NBVAL_IGNORE_OUTPUT
_ = smart.run(session, progress=True)  # the rest of the day
portfolio_progress(smart.parents())"""),
    ("md", """## Transaction-cost analysis: the algorithms on the same orders

Implementation shortfall against the decision price, split into delay, timing (the market
moving while the order works), impact (spread and impact paid), opportunity (what was not
done) and fees, in basis points of the arrival notional; `%pm tca --by algorithm` shows the
same table."""),
    ("code", """parents = [p for reg_, _ in runs.values() for p in read_parents(reg_, with_fills=True)]
report = TCAReport(parents)
report.table(by="algorithm")[["count", "notional", "delay", "timing", "impact", "opportunity",
                              "fees", "total", "total_bps", "vs_vwap_bps"]]"""),
    ("code", """# NBVAL_IGNORE_OUTPUT
report.plot(by="algorithm")"""),
    ("md", """Estimated against realized cost, per parent: the pre-trade estimate is the cost model's
at arrival; the realized is fees plus what was paid over the market price."""),
    ("code", """report.table()[["algorithm", "asset", "estimated_cost", "realized_cost",
                 "estimate_error"]].sort_values(["algorithm", "asset"])"""),
    ("md", """The model's calibration error: `Y` of the square-root law fitted per parent order (a
metaorder) from what the fills paid over the market, against the cost model's `Y`. The paper
broker charges the cost model's own impact, so the fit should find it, to within the price
moving between slices."""),
    ("code", """model_y = runs["twap"][1].cost_model.impact_coefficient
fit = report.calibration(model_y)
pd.Series({"model Y": f"{model_y:.5f}", "fitted Y": f"{fit.fit.coefficient:.5f}",
           "standard error": f"{fit.fit.standard_error:.5f}", "parents": f"{fit.fit.fills}",
           "error (fitted - model)": f"{fit.error:+.5f}"}, name="calibration")"""),
]

nb = nbf.v4.new_notebook()
nb.cells = [nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src)
            for kind, src in cells]
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
Path(__file__).with_name("06_execution.ipynb").write_text(nbf.writes(nb))
