"""Per-portfolio risk limits: check measured metrics against thresholds and publish breaches.

Limits and where their thresholds come from
-------------------------------------------
Each limit reads one key of the portfolio's inherited configuration
(`Registry.resolve_config`: registry defaults, then groups, then the
portfolio's own overrides), unless given explicitly to `check_limits`:

============== ====================== =========================================
limit          config key             metric compared (``metrics`` variable)
============== ====================== =========================================
position       ``max_position_weight`` ``|weight(portfolio, asset)|``, one check per asset
sector         ``max_sector_weight``   ``|sector_weight(portfolio, sector)|``, per sector
var            ``max_var``             ``var(portfolio)``: VaR as a positive loss fraction
drawdown       ``max_drawdown``        ``drawdown(portfolio)``: current drawdown from peak
leverage       ``max_leverage``        ``leverage(portfolio)``: gross exposure, ``sum |w|``
net_leverage   ``max_net_leverage``    ``net_leverage(portfolio)``: ``|sum w|``
heat           ``max_heat``            ``heat(portfolio)``: open risk to stops / equity
============== ====================== =========================================

A breach is a value strictly above its threshold. Thresholds are fractions
(0.25 = 25 % of NAV; leverage 1.5 = 150 % gross). A configured limit whose
metric is absent from ``metrics`` cannot be checked: a `UserWarning` says so.
`limit_metrics` measures VaR and heat itself for the portfolios that
configure ``max_var`` or ``max_heat`` (historical VaR of the current
weights; heat from the stops of the portfolio's signals, as the pre-trade
controls of `pmkit.risk.controls` measure them), so the risk trigger fires
on them too.

Every breach is returned as a `LimitBreach` and published on
``registry.bus`` as ``Event("risk.limit_breach", portfolio=pid, payload=...)``,
so only that portfolio's subscribers (and its groups', and global ones)
receive it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from pmkit.core import stress as core_stress
from pmkit.errors import ConfigError, ValidationError
from pmkit.events import Event

__all__ = [
    "LIMIT_KEYS",
    "LIMIT_TOPIC",
    "LimitBreach",
    "breaches_frame",
    "check_limits",
    "limit_metrics",
]

#: Topic of the event published for each breach.
LIMIT_TOPIC = "risk.limit_breach"

#: limit name -> (config key, metrics variable, per-item dim or None).
LIMIT_KEYS: dict[str, tuple[str, str, str | None]] = {
    "position": ("max_position_weight", "weight", "asset"),
    "sector": ("max_sector_weight", "sector_weight", "sector"),
    "var": ("max_var", "var", None),
    "drawdown": ("max_drawdown", "drawdown", None),
    "leverage": ("max_leverage", "leverage", None),
    "net_leverage": ("max_net_leverage", "net_leverage", None),
    "heat": ("max_heat", "heat", None),
}


@dataclass(frozen=True, slots=True)
class LimitBreach:
    """One metric above its limit.

    Attributes
    ----------
    portfolio : str
        Portfolio id.
    limit : str
        Limit name (a key of `LIMIT_KEYS`, e.g. ``"position"``).
    value : float
        Measured value (fraction; for position and sector limits ``|weight|``).
    threshold : float
        The limit it exceeds (fraction).
    item : str or None
        Asset (position limit) or sector (sector limit); None otherwise.
    key : str
        Config key of the threshold, e.g. ``"max_position_weight"``.
    source : str
        Where the threshold came from: ``"explicit"``, ``"defaults"``,
        ``"group:<id>"`` or ``"portfolio"``.
    """

    portfolio: str
    limit: str
    value: float
    threshold: float
    item: str | None = None
    key: str = ""
    source: str = ""


def breaches_frame(breaches: Sequence[LimitBreach]) -> pd.DataFrame:
    """Breaches as a DataFrame, one row each (columns are the `LimitBreach` fields)."""
    cols = list(LimitBreach.__dataclass_fields__)
    return pd.DataFrame([asdict(b) for b in breaches], columns=cols)


def _threshold(key: str, value: Any, pid: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config.{key}", value, f"portfolio {pid!r}: must be a number") from exc
    if not np.isfinite(x) or x < 0:
        raise ConfigError(f"config.{key}", value, f"portfolio {pid!r}: must be finite and >= 0")
    return x


def _thresholds(
    registry: Any, pid: str, limits: Mapping[str, Any] | None
) -> dict[str, tuple[float, str]]:
    """Thresholds of one portfolio: limit name -> (threshold, source)."""
    out: dict[str, tuple[float, str]] = {}
    cfg = registry.resolve_config(pid) if registry is not None else {}
    sources = getattr(cfg, "sources", {})
    for name, (key, _, _) in LIMIT_KEYS.items():
        if key in cfg and cfg[key] is not None:
            out[name] = (_threshold(key, cfg[key], pid), sources.get(key, "config"))
    given = dict(limits or {})
    overrides = {k: v for k, v in given.items() if not isinstance(v, Mapping)}
    if isinstance(given.get(pid), Mapping):
        overrides.update(given[pid])  # this portfolio's own explicit limits win
    for k, v in overrides.items():
        name = next((n for n, (key, _, _) in LIMIT_KEYS.items() if k in (n, key)), None)
        if name is None:
            raise ValidationError("limits", k, f"unknown limit; use one of {sorted(LIMIT_KEYS)}")
        if v is None:
            out.pop(name, None)
        else:
            out[name] = (_threshold(LIMIT_KEYS[name][0], v, pid), "explicit")
    return out


def check_limits(
    registry: Any,
    metrics: xr.Dataset,
    *,
    limits: Mapping[str, Any] | None = None,
    publish: bool = True,
) -> list[LimitBreach]:
    """Compare each portfolio's metrics with its limits; publish one event per breach.

    Parameters
    ----------
    registry : pmkit.registry.Registry
        Thresholds come from ``registry.resolve_config(pid)``; events go to
        ``registry.bus`` (actor: the registry's user).
    metrics : xarray.Dataset
        Indexed by ``portfolio``, with any of ``weight(portfolio, asset)``,
        ``sector_weight(portfolio, sector)``, ``var(portfolio)``,
        ``drawdown(portfolio)``, ``leverage(portfolio)``, ``heat(portfolio)``
        (see `limit_metrics`). NaN values are not checked.
    limits : Mapping, optional
        Explicit thresholds overriding the configuration, by limit name or
        config key (``{"var": 0.02}`` or ``{"max_var": 0.02}``), for every
        portfolio, or per portfolio (``{"client_a/growth": {"var": 0.02}}``).
        None removes a configured limit.
    publish : bool, default True
        Publish a ``"risk.limit_breach"`` event per breach.

    Returns
    -------
    list of LimitBreach
        In portfolio order, then limit order of `LIMIT_KEYS`, then item order.

    Raises
    ------
    ValidationError
        ``metrics`` has no ``portfolio`` dim or an unknown limit is named.
    ConfigError
        A configured threshold is not a non-negative number.
    """
    if not isinstance(metrics, xr.Dataset) or "portfolio" not in metrics.dims:
        raise ValidationError(
            "metrics", type(metrics).__name__, "must be a Dataset over 'portfolio'"
        )
    breaches: list[LimitBreach] = []
    for pid in metrics.portfolio.values.tolist():
        found = _thresholds(registry, pid, limits)
        for name in (n for n in LIMIT_KEYS if n in found):
            threshold, source = found[name]
            key, var, dim = LIMIT_KEYS[name]
            if var not in metrics.data_vars:
                warnings.warn(
                    f"portfolio {pid!r}: limit {key}={threshold:g} is set but metrics has no "
                    f"{var!r}; it was not checked",
                    UserWarning,
                    stacklevel=2,
                )
                continue
            da = metrics[var].sel(portfolio=pid)
            if dim is None:
                vals, items = np.atleast_1d(float(da)), [None]
            else:
                vals, items = np.abs(np.asarray(da.values, float)), da[dim].values.tolist()
            for v, item in zip(vals, items, strict=True):
                if np.isfinite(v) and v > threshold:
                    breaches.append(LimitBreach(pid, name, float(v), threshold, item, key, source))
    if publish and registry is not None:
        for b in breaches:
            registry.bus.publish(
                Event(
                    LIMIT_TOPIC,
                    portfolio=b.portfolio,
                    payload={
                        "limit": b.limit,
                        "key": b.key,
                        "value": b.value,
                        "threshold": b.threshold,
                        "item": b.item,
                        "source": b.source,
                    },
                    actor=getattr(registry, "user", "system"),
                )
            )
    return breaches


def _per_portfolio(name: str, x: Any, pids: list[str]) -> xr.DataArray:
    if isinstance(x, Mapping):
        x = xr.DataArray(
            [float(x[p]) if p in x else np.nan for p in pids],
            dims="portfolio",
            coords={"portfolio": pids},
        )
    if not isinstance(x, xr.DataArray) or x.dims != ("portfolio",):
        got = x.dims if isinstance(x, xr.DataArray) else type(x).__name__
        raise ValidationError(name, got, "must be a Mapping or a DataArray over (portfolio,)")
    return x.reindex(portfolio=pids).astype(np.float64).reset_coords(drop=True)


def limit_metrics(
    registry: Any,
    portfolios: Sequence[str] | None = None,
    *,
    at: Any = None,
    var: Mapping[str, float] | xr.DataArray | None = None,
    heat: Mapping[str, float] | xr.DataArray | None = None,
    stops: Mapping[str, Mapping[str, float]] | xr.DataArray | None = None,
    drawdown: bool = True,
) -> xr.Dataset:
    """Measure what `check_limits` compares, from a registry's holdings and market.

    Parameters
    ----------
    registry : pmkit.registry.Registry
        With market data.
    portfolios : sequence of str, optional
        Default: every portfolio the user may view.
    at : datetime-like, optional
        Market time; default the last.
    var : Mapping or xarray.DataArray, optional
        VaR per portfolio as a positive loss fraction of NAV. Default: for
        the portfolios whose configuration sets ``max_var``, the one-day
        historical VaR of their weights at ``at``
        (`pmkit.risk.controls.historical_var` at the configured
        ``var_confidence``, default 0.95, over ``var_lookback``, default 252,
        daily returns ending at ``at``); NaN when it cannot be measured.
    heat : Mapping or xarray.DataArray, optional
        Heat per portfolio; or give ``stops`` to compute it. Default: for
        the portfolios whose configuration sets ``max_heat``, the open risk
        to the stops of their signals (`pmkit.risk.controls.signal_stops`)
        over NAV; positions without a known stop add nothing (a
        `UserWarning` names them).
    stops : Mapping or xarray.DataArray, optional
        Stop prices per (portfolio, asset), for
        `pmkit.risk.sizing.heat_from_registry`.
    drawdown : bool, default True
        Compute the current drawdown ``1 - V_at / max V`` from the daily
        NAV history up to ``at`` (from each portfolio's first positive value).

    Returns
    -------
    xarray.Dataset
        ``weight(portfolio, asset)``, ``sector_weight(portfolio, sector)``,
        ``leverage(portfolio)`` (gross), ``net_leverage(portfolio)``,
        ``nav(portfolio)``, and when available ``drawdown``, ``var`` and
        ``heat`` (portfolio).
    """
    from pmkit.model import portfolio_values
    from pmkit.risk.exposures import current_weights, leverage, sector_exposure

    market = registry.market
    cw = current_weights(registry, portfolios, at)
    pids = cw.portfolio.values.tolist()
    w = cw["weight"]
    lev = leverage(w)
    out = xr.Dataset(
        {
            "weight": w.reset_coords(drop=True),
            "sector_weight": sector_exposure(w, market),
            "leverage": lev["gross"],
            "net_leverage": abs(lev["net"]),
            "nav": cw["nav"].reset_coords(drop=True),
        }
    )
    if drawdown:
        t = market.indexes["time"][-1] if at is None else pd.Timestamp(at)
        times = market.indexes["time"][market.indexes["time"] <= t]
        h = registry.holdings(pids, times=times)
        nav = portfolio_values(h, market.sel(time=times)).transpose("portfolio", "time")
        dd = np.asarray(core_stress.drawdown(nav.values))[:, -1]
        out["drawdown"] = ("portfolio", dd)
    configs = {p: registry.resolve_config(p) for p in pids}
    if var is None and any(configs[p].get("max_var") is not None for p in pids):
        var = _configured_var(registry, cw, configs, at)
    if var is not None:
        out["var"] = _per_portfolio("var", var, pids)
    if heat is None and stops is not None:
        from pmkit.risk.sizing import heat_from_registry

        heat = heat_from_registry(registry, stops, pids, at)["heat"]
    if heat is None and any(configs[p].get("max_heat") is not None for p in pids):
        heat = _configured_heat(registry, cw, configs)
    if heat is not None:
        out["heat"] = _per_portfolio("heat", heat, pids)
    return out


def _configured_var(
    registry: Any, cw: xr.Dataset, configs: Mapping[str, Mapping[str, Any]], at: Any
) -> dict[str, float]:
    """Historical VaR of the current weights of the portfolios that set ``max_var``."""
    from pmkit.registry import controls

    when = None if at is None else pd.Timestamp(at).to_pydatetime()
    out: dict[str, float] = {}
    for pid, cfg in configs.items():
        if cfg.get("max_var") is None:
            continue
        lim = controls.parse_limits(cfg, pid)
        row = cw["weight"].sel(portfolio=pid)
        w = {str(a): float(x) for a, x in row.to_series().items() if x != 0 and np.isfinite(x)}
        returns = controls.market_returns(registry.market, w, at=when, lookback=lim.var_lookback)
        out[pid], why = controls.historical_var(w, returns, lim.var_confidence)
        if why:
            warnings.warn(f"portfolio {pid!r}: VaR not measured: {why}", UserWarning, stacklevel=3)
    return out


def _configured_heat(
    registry: Any, cw: xr.Dataset, configs: Mapping[str, Mapping[str, Any]]
) -> dict[str, float]:
    """Open risk to the signals' stops over NAV, for the portfolios that set ``max_heat``."""
    from pmkit.registry import controls

    records = registry.view().records("signal", ["queued", "dispatched", "executed"])
    prices = cw["price"].to_series()
    out: dict[str, float] = {}
    for pid, cfg in configs.items():
        if cfg.get("max_heat") is None:
            continue
        q = cw["quantity"].sel(portfolio=pid).to_series()
        held = {str(a): float(x) for a, x in q.items() if x != 0}
        marks = {a: float(prices[a]) for a in held}
        nav = float(cw["nav"].sel(portfolio=pid))
        stops = controls.signal_stops(records, pid)
        out[pid], unstopped = controls.heat_from_stops(held, marks, stops, nav)
        if unstopped:
            warnings.warn(
                f"portfolio {pid!r}: heat counts no open risk for {sorted(unstopped)}:"
                " no signal of theirs gives a stop",
                UserWarning,
                stacklevel=3,
            )
    return out
