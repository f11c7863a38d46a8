"""Write ``notebooks/00_tour.ipynb``: a tour of every front-end component, inline.

The notebook is generated (not edited by hand) so it can be rebuilt after the
views change. Run, then execute it in place::

    .venv/bin/python notebooks/build_00_tour.py --execute

(``--execute`` runs it and stores its outputs, except Panel's inline
JavaScript bundles, which every run loads again.)

It runs under nbval in ``make test``: a cell that displays a Panel component
starts with ``# NBVAL_IGNORE_OUTPUT`` (its output carries random model ids);
every other output must be the same on every run (no wall-clock values;
proposal ids are masked by ``notebooks/sanitize.cfg``).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
TARGET = HERE / "00_tour.ipynb"

IGNORE = "# NBVAL_IGNORE_OUTPUT\n"

CELLS: list[tuple[str, str]] = [
    ("md", """\
# A tour of the pmkit front end

pmkit's front end is a handful of [Panel](https://panel.holoviz.org) components in the
`pmkit_widgets` package. Each one is a **view over a service**: it reads what the service
returns and formats it, and each of its buttons calls the same service method you would call
in a notebook, as the same user, with the same permission checks. There is no business logic
in the UI — so a refused click is refused by the service, and shows the service's own typed
error.

The same components make up the operations app. Serve it on your machine with

```bash
make run                                  # pmkit serve on http://127.0.0.1:5006
pmkit serve --users users.json            # with logins (see the last section)
```

This runbook shows every component inline, on the in-memory demo registry (real S&P 500
closes; users **alice**, trader on `client_a`; **bob**, manager on the firm; **carol**, viewer
on the firm). Each view also has plain-Python accessors (`view.table`, `view.error`, …), used
below to check that what is shown is what the services say.

| Component | Service underneath |
|---|---|
| `RegistryView` | `Registry` lifecycle, `analytics.overview.portfolio_overview` |
| `GroupsView` | `Registry.group_tree`, `analytics.overview.group_overview` |
| `FrontierView` | `rebalance.frontier.portfolio_frontier`, `propose_frontier_point` |
| `ApprovalView` | `rebalance.ProposalBook` (approve / reject, maker-checker) |
| `CoordinatorView` | `coordinator.StrategyCoordinator` |
| `RiskView` | `analytics.overview.risk_overview` |
| `LiveView` | `stream.LiveStream` over a `FeedServer` |
"""),
    ("md", """\
The views need nothing from the internet: in a notebook, importing `pmkit_widgets` makes Panel
load BokehJS, Panel and Tabulator from the installed packages (inline) instead of public
CDNs, so everything below renders on a desk without internet access. Import it before
anything that loads Panel (here `hvplot.pandas`); `pn.extension("tabulator")` is then optional.
"""),
    ("code", IGNORE + """\
import pmkit_widgets  # noqa: F401  (first: Panel's JavaScript from the installed packages)
import hvplot.pandas  # noqa: F401  (the plotting extension: its output carries random ids)
import panel as pn

pn.extension("tabulator")"""),
    ("code", """\
import numpy as np
import pandas as pd

from pmkit.demo import open_demo
from pmkit.rebalance import ProposalBook
from pmkit_widgets import (
    ApprovalView,
    CoordinatorView,
    FrontierView,
    GroupsView,
    LiveView,
    RegistryView,
    RiskView,
)

pd.set_option("display.width", 120)
pd.set_option("display.max_columns", 12)

reg = open_demo()                    # in memory, acting as "system"
alice, bob, carol = (reg.as_user(u) for u in ("alice", "bob", "carol"))
PID = "client_a/growth"
[(p.id, str(p.status)) for p in reg.portfolios()]"""),
    ("md", """\
## 1. Portfolios: `RegistryView`

Every portfolio the user may view, with value, day P&L and risk at the last close, and the
lifecycle buttons (activate, deactivate, archive, restore, create). Here as **bob**:
"""),
    ("code", IGNORE + """\
registry_view = RegistryView(bob)
registry_view"""),
    ("md", """\
What the table shows (`view.table`) is `portfolio_overview`: values in the portfolio currency,
`day_return`, `volatility` (annualized) and `var` (1-day, 95 %) as fractions.
"""),
    ("code", """\
from pmkit.analytics.overview import portfolio_overview

shown = registry_view.table.set_index("id")
assert np.allclose(shown["value"], portfolio_overview(bob)["value"], rtol=1e-12)
assert np.isclose(shown.loc[PID, "value"], reg.value(PID), rtol=1e-12)
shown[["status", "value", "day_pnl", "day_return", "volatility", "var"]].round(4)"""),
    ("md", """\
A button is one service call. The methods behind the buttons (`view.deactivate()`,
`view.activate()`, …) act on the selected row, exactly as a click does. Bob (manager) may
deactivate a portfolio; the view follows the registry's event bus and shows the change at once:
"""),
    ("code", """\
registry_view.select("client_b/factors")
print("deactivated:", registry_view.deactivate(), "->",
      registry_view.table.set_index("id").loc["client_b/factors", "status"])
print("activated:  ", registry_view.activate(), "->",
      registry_view.table.set_index("id").loc["client_b/factors", "status"])
print(registry_view.message)"""),
    ("md", """\
**carol** is a viewer. Her view has the same buttons, and the service refuses her: the view shows
the typed error (`view.error`, the red alert in the view) and nothing in the store changes.
"""),
    ("code", """\
carol_view = RegistryView(carol)
carol_view.select(PID)
before = reg.store.dump()
print("deactivated:", carol_view.deactivate())
print(carol_view.error)
assert reg.store.dump() == before
assert str(reg.portfolio(PID).status) == "active\""""),
    ("code", IGNORE + "carol_view"),
    ("md", """\
## 2. Groups: `GroupsView`

The group hierarchy (tree with target vs actual weights), an allocation chart, and each group's
consolidated value, day P&L and risk (the risk of the combined positions, not a sum of risks).
"""),
    ("code", IGNORE + """\
groups_view = GroupsView(bob)
groups_view"""),
    ("code", """\
groups = groups_view.table.set_index("id")
assert np.isclose(groups.loc["firm", "value"], reg.group_value("firm"), rtol=1e-12)
print(f"firm value {groups.loc['firm', 'value']:,.2f} = reg.group_value('firm')")
groups[["name", "members", "value", "day_return", "volatility", "var"]].round(4)"""),
    ("code", """\
groups_view.allocation.round(4)   # target vs actual weight of each member (fractions)"""),
    ("md", """\
## 3. Efficient frontier: `FrontierView`

**alice** (trader on `client_a`) opens the frontier of `client_a/growth`: long-only, on the same
returns window and universe the rebalance builder uses. The view computes it at once; a point is
picked by tapping the chart or in the select box, and *Propose rebalance* stores a proposal.
(The first solve of the process prints the LP solver's banner, so this cell's output is not
checked.)
"""),
    ("code", IGNORE + """\
frontier_view = FrontierView(alice, portfolio=PID, points=8)
frontier_view"""),
    ("code", """\
frontier_view.pick(5)   # what tapping point 5 does
print({k: round(v, 4) for k, v in frontier_view.stats.items()}, "(annualized fractions)")
frontier_view.weights.round(4).head(10)   # target vs current weight, by asset"""),
    ("code", """\
proposal = frontier_view.propose()   # the "Propose rebalance" button
print(frontier_view.message)
stored = ProposalBook(reg).get(proposal.id)
print("stored:", stored.id == proposal.id, "| state", stored.state, "| by", stored.created_by)"""),
    ("md", """\
## 4. Approval: `ApprovalView`

**bob** reviews the proposal: its trades, estimated costs and turnover, risk before and after,
history and audit trail. Approve and Reject call `ProposalBook.approve` / `.reject` as bob.
Maker-checker is the book's rule: alice, who proposed, could not approve it herself.
"""),
    ("code", IGNORE + """\
approval_view = ApprovalView(bob)
approval_view.select(proposal.id)
approval_view"""),
    ("md", """\
The view's accessors hold what it shows: the selected proposal's state, its trades (whole
lots, costs in USD) and its estimated cost and one-way turnover (fractions of NAV).
"""),
    ("code", """\
print("listed:", proposal.id in approval_view.proposal_ids, "| state:", approval_view.state)
print(f"{len(approval_view.trades)} trades; cost and turnover:")
approval_view.costs.round(4)"""),
    ("code", """\
trades = approval_view.trades
trades[["asset", "quantity", "price", "notional", "estimated_cost"]].round(2).head(6)"""),
    ("md", """\
Bob approves with a note (the *Approve* button). The state and the audit trail shown above
follow; the audit rows name who did what.
"""),
    ("code", """\
after = approval_view.approve(note="within risk budget")   # the Approve button
print("state:", approval_view.state, "| in the book:", ProposalBook(reg).get(proposal.id).state)
approval_view.audit[["actor", "action", "note"]]"""),
    ("md", """\
## 5. Signals: `CoordinatorView`

The strategy coordinator's live queue by priority, its conflicts and how they were resolved,
recently closed signals and processing statistics. As in notebook 03, bob registers three
strategies on `client_a/growth` and alice submits signals: a long, an opposing short (a
conflict), a duplicate and a short on a stock the portfolio holds.
"""),
    ("code", """\
from pmkit.coordinator import StrategyCoordinator
from pmkit.strategies import (
    CrossSectionalMomentum,
    LowVolatility,
    ShortTermReversal,
    StrategyManager,
)

market = reg.market
manager = StrategyManager(bob, PID)
for name, cls, allocation in [("momentum", CrossSectionalMomentum, 0.4),
                              ("reversal", ShortTermReversal, 0.3),
                              ("low_vol", LowVolatility, 0.3)]:
    manager.register_strategy(name, cls(market, end="2021-12-31"), allocation)

close = market["close"].sel(time="2022-06-30").to_series()


def signal(strategy, symbol, side, confidence, minute, risk=0.03, reward=2.0):
    entry = float(close[symbol])
    sign = 1 if side == "long" else -1
    return {"strategy": strategy, "symbol": symbol, "side": side, "portfolio": PID,
            "entry": entry, "stop": entry * (1 - sign * risk),
            "target": entry * (1 + sign * risk * reward), "confidence": confidence,
            "time": f"2022-06-30T15:{minute:02d}:00"}


coordinator = StrategyCoordinator(alice)
coordinator_view = CoordinatorView(coordinator)
for args in [("momentum", "XOM", "long", 0.90, 0), ("reversal", "XOM", "short", 0.55, 1),
             ("momentum", "XOM", "long", 0.90, 2), ("reversal", "MSFT", "short", 0.60, 3),
             ("low_vol", "PFE", "long", 0.70, 4)]:
    coordinator.process_signal(signal(*args))
coordinator_view.flush()   # refresh now (events refresh it on a timer thread)
coordinator_view.signals[["id", "symbol", "side", "strategy", "priority", "status",
                          "risk_reward", "size", "conflicts", "resolution"]].round(2)"""),
    ("code", """\
coordinator_view.closed[["id", "symbol", "side", "strategy", "status", "superseded_by",
                         "reason"]]"""),
    ("code", """\
stats = coordinator_view.stats
assert stats == coordinator.get_processing_stats()
{k: stats[k]
 for k in ["received", "accepted", "queued", "superseded", "rejected", "conflicts"]}"""),
    ("code", IGNORE + "coordinator_view"),
    ("md", """\
## 6. Risk: `RiskView`

`risk_overview` for every invested portfolio bob sees: 1-day VaR and expected shortfall at
95 % and annualized volatility (fractions), each asset's Euler contribution to ES, historical
stress scenarios and drawdowns. All from the last 756 daily returns, so its volatility differs
from `RegistryView`'s *Vol (ann.)*, which uses the last 252.
"""),
    ("code", IGNORE + """\
risk_view = RiskView(bob)
risk_view"""),
    ("code", """\
print("contributions of", risk_view.portfolio)
contributions = risk_view.contributions
es = risk_view.summary.loc[risk_view.portfolio, "es"]
assert np.isclose(contributions["contribution"].sum(), es, rtol=1e-9)   # Euler: they add to ES
print(f"sum of contributions {contributions['contribution'].sum():.6f} = ES {es:.6f}")
risk_view.summary.round(5)"""),
    ("code", """\
contributions.round(5).head(8)"""),
    ("code", """\
stress = risk_view.stress
stress[stress["portfolio"] == risk_view.portfolio].round(4)"""),
    ("md", """\
## 7. Live prices: `LiveView`

A `FeedServer` replays December 2022 from the bundled closes over a local WebSocket (port 0:
any free port; each day's intraday path is a seeded Brownian bridge ending at the real close).
A `LiveStream` revalues the active portfolios as ticks arrive, and `LiveView` shows the stream's
own numbers: values and P&L since the opening close, prices, connection status and metrics.
The live numbers change from run to run, so they are only shown in the view.
"""),
    ("code", """\
from pmkit.stream.live import LiveStream
from pmkit.stream.server import FeedServer
from pmkit.stream.valuation import LiveValuation

OPEN, END = "2022-11-30", market.indexes["time"][-1]
feed = FeedServer(market, port=0, start=OPEN, steps_per_day=20, rate=5_000.0, batch=20,
                  seed=42).start_in_thread()
valuation = LiveValuation(reg, at=OPEN)
stream = LiveStream(reg, url=feed.url, valuation=valuation)
stream.start_in_thread()
# the whole replay may arrive in one or two coalesced batches: wait for the first
stream.wait_for(lambda: stream.metrics()["batches"] >= 1, timeout=600)
live_view = LiveView(stream)   # refreshes itself on a timer (the stream's UI rate)
print("stream running:", stream.running)"""),
    ("code", IGNORE + "live_view"),
    ("md", """\
The replay ends on the last day of the data. Wait for every symbol's last real close, stop the
stream and the feed (the view never stops a stream it did not start), and check: the values
shown are the valuation's, and equal the registry's own valuation at that close.
"""),
    ("code", """\
last_close = {s: float(market["close"].sel(asset=s, time=END)) for s in stream.symbols}
stream.wait_for(lambda: stream.last_prices() == last_close, timeout=600)
stream.stop()
feed.stop_thread()
live_view.refresh()
live_view.close()   # stops the view's refresh timer
shown = live_view.values["value"]
assert np.allclose(shown, valuation.values()[shown.index], rtol=0, atol=0)
assert np.allclose(shown, reg.values(at=END).to_series()[shown.index], rtol=1e-12)
print("status:", live_view.status, "| portfolios:", len(shown))
print("values shown == live valuation == registry values at the last close")"""),
    ("md", """\
## 8. The `%pm` magics

The same services from the IPython prompt. `pmkit.magics.use` makes an existing registry (here
bob's session) the one `%pm` acts on. Commands that list things return a table that reads
well: money, percentages and dates formatted as on the app's screens, as HTML in a notebook and
as a short text at the prompt. The table's `.frame` holds the unformatted numbers, and the
service's own result stays at hand: `%pm risk` keeps `risk_overview`'s Dataset as `.dataset`,
and `%pm proposals` iterates over the `Proposal` objects it shows.
"""),
    ("code", """\
%load_ext pmkit
import pmkit.magics

pmkit.magics.use(bob)
%pm whoami"""),
    ("code", """\
risk = %pm risk
assert np.allclose(risk.dataset["es"].values, risk_view.summary["es"].values, rtol=1e-12)
assert np.allclose(risk.frame["es"].values, risk_view.summary["es"].values, rtol=1e-12)
risk   # = RiskView's numbers, formatted"""),
    ("code", """\
proposals = %pm proposals
pd.DataFrame([(p.id, str(p.state), p.scope, p.created_by, p.reason) for p in proposals],
             columns=["id", "state", "scope", "by", "reason"])"""),
    ("md", """\
## 9. Logins for the served app

`pmkit serve --users FILE` asks for a login and maps it to a pmkit user; everything the
session does is then done as that user. A users file holds only scrypt hashes, and is written
with mode 0600. `UsersFile` is the API behind `pmkit users add|remove|list|passwd`:
"""),
    ("code", """\
import shutil
import stat
import tempfile
from pathlib import Path

from pmkit.auth import UsersFile

tmp = Path(tempfile.mkdtemp())
users = UsersFile.load(tmp / "users.json", missing_ok=True)
users.add("alice", "correct horse battery", display_name="Alice (trader)")
users.add("bob", "tr0ub4dor&3-staple", display_name="Bob (manager)")
text = (tmp / "users.json").read_text()
print("logins:", users.logins())
print("a plain password in the file:", "correct horse battery" in text or "tr0ub4dor" in text)
print("file mode:", oct(stat.S_IMODE((tmp / "users.json").stat().st_mode)))
print("alice with her password ->", users.verify("alice", "correct horse battery"))
print("alice with a wrong one   ->", users.verify("alice", "wrong password"))
shutil.rmtree(tmp)"""),
    ("md", """\
From a shell, the same steps and the served app with logins:

```bash
pmkit users add users.json alice --display-name "Alice (trader)"   # prompts for the password
pmkit users add users.json bob --display-name "Bob (manager)"
pmkit users add users.json carol --display-name "Carol (viewer)"
pmkit serve --users users.json                                      # or: make run USERS=users.json
```

Each browser session then acts as its login's user: alice sees the frontier's *Propose* button
work, carol sees it refused — the same rules as above, because they are the services' rules.
"""),
]


def build() -> nbformat.NotebookNode:
    """The tour notebook, unexecuted."""
    cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src)
             for kind, src in CELLS]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python",
                                 "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


#: Output types carrying Panel's inline JavaScript (megabytes): executed again on every run,
#: so not worth storing in the repository.
RESOURCE_OUTPUTS = ("application/javascript", "application/vnd.holoviews_load.v0+json")


#: A rendered Panel component: its HTML (with inlined stylesheets) shows nothing without the
#: JavaScript above, so only its text form is stored.
PANEL_OUTPUT = "application/vnd.holoviews_exec.v0+json"


def strip_resources(nb: nbformat.NotebookNode, limit: int = 100_000) -> int:
    """Drop Panel's inline JavaScript bundles and rendered components' HTML; returns how many."""
    dropped = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if any(len(str(data.get(kind, ""))) > limit for kind in RESOURCE_OUTPUTS):
                dropped += 1
                continue
            if PANEL_OUTPUT in data:
                dropped += 1
                if "text/plain" not in data:
                    continue
                out.data = {"text/plain": data["text/plain"]}
            kept.append(out)
        cell.outputs = kept
    return dropped


def main() -> None:
    """Write the notebook next to this script (``--execute``: run it and store its outputs)."""
    import sys

    nb = build()
    nbformat.validate(nb)
    if "--execute" in sys.argv:
        from nbclient import NotebookClient

        NotebookClient(nb, kernel_name="python3", timeout=600,
                       resources={"metadata": {"path": str(HERE)}}).execute()
        print(f"dropped {strip_resources(nb)} inline resource outputs")
    nbformat.write(nb, TARGET)
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
