"""Simulated venues: paper brokers with their own fees, latency and liquidity.

A `SimulatedVenue` is a `PaperBroker` whose commission is the venue's fee,
whose participation cap is the venue's share of each interval's volume
(its liquidity) and whose fills are stamped ``latency_ms`` after the tick.
Its `Venue` spec is what the `SmartRouter` splits child orders by.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pmkit.execution.costs import CostModel
from pmkit.execution.paper import PaperBroker, StepResult
from pmkit.execution.router import Venue

if TYPE_CHECKING:
    from collections.abc import Mapping

    import xarray as xr

    from pmkit.registry import Registry

__all__ = ["SimulatedVenue", "default_venues"]


class SimulatedVenue(PaperBroker):
    """A paper broker that behaves like one venue (see the module docstring).

    Parameters
    ----------
    registry : Registry
    venue : Venue
        Name, fee (bps), latency (ms) and liquidity (fraction of interval volume).
    market : xarray.Dataset, optional
    cost_model : CostModel, optional
        Spread and impact parameters; its commission is replaced by the venue's fee.
    """

    def __init__(self, registry: Registry, venue: Venue, market: xr.Dataset | None = None,
                 cost_model: CostModel | None = None, **kwargs: Any) -> None:
        model = replace(cost_model or CostModel(), commission_bps=venue.fee_bps,
                        impact_coefficient=venue.impact_coefficient)
        super().__init__(registry, market, model, participation=venue.liquidity or 1e-12,
                         name=venue.name, **kwargs)
        self.venue = venue

    def step(self, at: Any, *, prices: Mapping[str, float] | None = None,
             volumes: Mapping[str, float] | None = None, ts: datetime | None = None
             ) -> StepResult:
        """`PaperBroker.step`, fills stamped ``latency_ms`` after ``ts``."""
        if ts is not None:
            ts = ts + timedelta(milliseconds=self.venue.latency_ms)
        return super().step(at, prices=prices, volumes=volumes, ts=ts)


def default_venues(registry: Registry, market: xr.Dataset | None = None,
                   cost_model: CostModel | None = None) -> list[SimulatedVenue]:
    """Two simulated venues for demos and tests: a cheap slow dark pool and a fast exchange.

    * ``"lit"``: fee 1.0 bp, 2 ms, 30 % of each interval's volume;
    * ``"dark"``: fee 0.3 bp, 40 ms, 8 % of each interval's volume.
    """
    specs = [Venue("lit", fee_bps=1.0, latency_ms=2.0, liquidity=0.30),
             Venue("dark", fee_bps=0.3, latency_ms=40.0, liquidity=0.08)]
    return [SimulatedVenue(registry, v, market, cost_model) for v in specs]
