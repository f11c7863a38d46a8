"""Labelled returns: external flows, time-weighted (Modified Dietz) and money-weighted (IRR).

The xarray layer over `pmkit.core.returns`. Values are ``nav(portfolio,
time)`` at each close (e.g. from `pmkit.analytics.valuation.portfolio_values`)
and flows are external cash flows ``(portfolio, time)`` (deposits > 0,
withdrawals < 0) that are already inside the value of their time, e.g. from
`external_flows`. Returns are simple returns as fractions; numpy- or
dask-backed inputs (chunked over ``portfolio``) run through
`pmkit.model._apply.apply_core`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from pmkit.analytics.valuation import _PT, _aligned_flows, _values
from pmkit.core import returns as core
from pmkit.errors import (
    CurrencyMismatchError,
    InsufficientDataError,
    NoSolutionError,
    ValidationError,
)
from pmkit.ledger import LedgerEntry
from pmkit.model._apply import apply_core
from pmkit.model.market import _check_time, _check_unique, _string_labels, _time_index

__all__ = ["external_flows", "money_weighted_return", "time_weighted_returns"]


def external_flows(
    entries: Iterable[LedgerEntry],
    portfolios: Sequence[str],
    times: Any,
    currency: Mapping[str, str] | str | None = None,
) -> xr.DataArray:
    """External cash flows per portfolio and time from ledger ``cash`` entries.

    Each cash entry's ``amount`` (deposit > 0, withdrawal < 0) is added at the
    first time at or after its ``ts``, as `pmkit.model.holdings_from_ledger`
    buckets entries: with daily (all midnight) times an entry belongs to the
    time of its calendar date (or the next time). Entries after the last time
    are left out; entries before the first time land on the first time, which
    the return functions treat as inside the starting value. Trades are
    internal and ignored.

    Parameters
    ----------
    entries : iterable of LedgerEntry
        Ledger rows, any portfolios and order.
    portfolios : sequence of str
        Portfolio labels of the result (others' entries are ignored).
    times : array-like of datetime
        Strictly increasing times (the values' time axis).
    currency : str or Mapping[str, str], optional
        Each portfolio's currency; when given, a cash entry in another
        currency raises. Default: no check.

    Returns
    -------
    xarray.DataArray
        ``flow(portfolio, time)`` in currency units, float64.

    Raises
    ------
    CurrencyMismatchError
        An entry's currency differs from its portfolio's.
    ValidationError
        Malformed entries or labels.
    """
    ports = _string_labels(portfolios, "portfolio")
    _check_unique(ports, "portfolio")
    stamps = _time_index(times)
    _check_time(stamps)
    pos = {p: i for i, p in enumerate(ports.tolist())}
    cur: dict[str, str] | None = None
    if isinstance(currency, str):
        cur = dict.fromkeys(pos, currency)
    elif currency is not None:
        cur = {p: currency[p] for p in pos if p in currency}
    rows, keys, amounts = [], [], []
    for e in entries:
        i = pos.get(e.portfolio)
        if i is None or e.kind != "cash":
            continue
        e.validated()
        if cur is not None and e.portfolio in cur and e.currency != cur[e.portfolio]:
            raise CurrencyMismatchError(
                "currency", e.currency,
                f"cash entry seq={e.seq} of {e.portfolio!r} is in {e.currency}, the portfolio "
                f"in {cur[e.portfolio]}",
            )
        rows.append(i)
        keys.append(e.ts)
        amounts.append(e.amount)
    flows = np.zeros((len(ports), len(stamps)))
    if rows and len(stamps):
        k = np.array(keys, dtype="datetime64[ns]")
        if (stamps == stamps.normalize()).all():
            k = k.astype("datetime64[D]").astype("datetime64[ns]")
        bucket = np.searchsorted(stamps.to_numpy(), k, side="left")
        ok = bucket < len(stamps)
        np.add.at(flows, (np.array(rows)[ok], bucket[ok]), np.array(amounts)[ok])
    return xr.DataArray(
        flows, dims=_PT, coords={"portfolio": ports, "time": stamps.to_numpy()}, name="flow"
    )


def _two_times(v: xr.DataArray) -> None:
    if v.sizes["time"] < 2:
        raise InsufficientDataError("time", v.sizes["time"], "need at least 2 times for a return")


def time_weighted_returns(
    values: xr.DataArray, flows: xr.DataArray | None = None, flow_weight: float = 1.0
) -> xr.Dataset:
    """Daily Modified Dietz returns chain-linked to a cumulative time-weighted return.

    ``r[t] = (V[t] - V[t-1] - F[t]) / (V[t-1] + w F[t])`` with flow weight
    ``w`` (default 1: flows at the start of the day, GIPS-style; 0: at the
    end), see `pmkit.core.returns.modified_dietz`.

    Parameters
    ----------
    values : xarray.DataArray
        ``nav(portfolio, time)`` (currency units).
    flows : xarray.DataArray, optional
        External flows ``(portfolio, time)`` with the same labels. Default none.
    flow_weight : float, default 1.0
        Flow weight ``w`` in [0, 1].

    Returns
    -------
    xarray.Dataset
        ``daily_return(portfolio, time)``: period returns, NaN at the first
        time (and where undefined: nothing invested but a gain);
        ``twr(portfolio, time)``: cumulative time-weighted return since the
        first time (0 there).

    Raises
    ------
    AlignmentError
        Portfolio or time labels of values and flows differ (names them).
    InsufficientDataError
        Fewer than 2 times.
    ValidationError
        Non-finite inputs, or ``flow_weight`` outside [0, 1].
    """
    if not (0.0 <= flow_weight <= 1.0):
        raise ValidationError("flow_weight", flow_weight, "must be in [0, 1]")
    v = _values(values)
    _two_times(v)
    f = _aligned_flows(v, flows)
    daily, cumulative = apply_core(
        core.time_weighted,
        v.reset_coords(drop=True), f,
        input_core_dims=[["time"], ["time"]],
        output_core_dims=[["time"], ["time"]],
        kwargs={"flow_weight": float(flow_weight)},
    )
    extra = {c: v.coords[c] for c in v.coords if c not in v.dims}
    return xr.Dataset(
        {"daily_return": daily.transpose(*_PT), "twr": cumulative.transpose(*_PT)},
        coords=extra,
        attrs={"method": "Modified Dietz, chain-linked", "flow_weight": float(flow_weight)},
    )


def money_weighted_return(
    values: xr.DataArray,
    flows: xr.DataArray | None = None,
    periods_per_year: float = 252,
) -> xr.DataArray:
    """Money-weighted return (IRR) of each portfolio, annualized.

    The investor's stream is ``-values`` at the first time, ``-flows`` at
    each later time and ``+values`` at the last time (flows at the first time
    are inside the starting value); time is counted in periods (rows of
    ``time``), the IRR per period is annualized as
    ``(1 + r) ** periods_per_year - 1``.

    Parameters
    ----------
    values : xarray.DataArray
        ``nav(portfolio, time)``.
    flows : xarray.DataArray, optional
        External flows ``(portfolio, time)`` with the same labels. Default none.
    periods_per_year : float, default 252
        Trading days per year for daily data; 0 gives the per-period rate.

    Returns
    -------
    xarray.DataArray
        ``mwr(portfolio)``, fractions per year. Computed (not lazy) even for
        dask inputs, because a missing IRR must raise.

    Raises
    ------
    NoSolutionError
        No IRR exists for some portfolio (names them), e.g. every investor
        flow has the same sign, or the rate is beyond ±e^40 growth over the
        record.
    AlignmentError, InsufficientDataError, ValidationError
        As `time_weighted_returns`.
    """
    if not (periods_per_year >= 0 and np.isfinite(periods_per_year)):
        raise ValidationError("periods_per_year", periods_per_year, "must be >= 0")
    v = _values(values)
    _two_times(v)
    f = _aligned_flows(v, flows)
    out = apply_core(
        core.money_weighted,
        v.reset_coords(drop=True), f,
        input_core_dims=[["time"], ["time"]],
        kwargs={"periods_per_year": float(periods_per_year)},
    )
    out = out.compute()
    bad = np.isnan(np.asarray(out.values))
    if bad.any():
        names = [str(p) for p in pd.Index(v.indexes["portfolio"])[bad]]
        raise NoSolutionError(
            f"no money-weighted return (IRR) for portfolio(s) {names[:5]}"
            f"{' ...' if len(names) > 5 else ''}: the investor's cash flows (-start value, "
            "-deposits, +withdrawals, +end value) never change sign in NPV over the searched "
            "range, e.g. all flows have the same sign"
        )
    extra = {c: v.coords[c] for c in v.coords if c not in v.dims and v[c].dims == ("portfolio",)}
    return out.assign_coords(extra).rename("mwr")
