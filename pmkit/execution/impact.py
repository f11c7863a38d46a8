"""Market impact and liquidity: the square-root law, Almgren–Chriss, calibration, volume.

* `square_root_impact`: the price moves against a trade by ``Y`` daily
  volatilities times the square root of its participation (Almgren et al.
  2005; Tóth et al. 2011). `CostModel` prices impact with this function.
* `AlmgrenChriss`: the linear model of Almgren & Chriss (2000) — permanent
  ``gamma``, temporary ``eta``, fixed ``epsilon`` — with its optimal
  schedule, expected cost ``E`` and variance ``V`` for many orders at once
  (`pmkit.core.schedules`, one batched JAX call).
* `calibrate_square_root`: ``Y`` fitted from realized fills against the
  law's prediction, with its standard error.
* `liquidity`: ADV (value traded) and daily volatility per asset from a
  market's ``volume`` and ``close`` history. The bundled demo market has no
  volumes: there ADV is not estimated (`CostModel.default_adv` applies).
* `u_shape_profile`: the default intraday volume profile (a documented
  shape, not estimated from data; pass your own profile to replace it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from pmkit.errors import InsufficientDataError, ValidationError
from pmkit.validation import MAX_AMOUNT, MAX_PRICE, MAX_QUANTITY, check_number

__all__ = [
    "MAX_INTERVALS",
    "AlmgrenChriss",
    "ImpactFit",
    "calibrate_square_root",
    "check_intervals",
    "estimate_profile",
    "liquidity",
    "plot_frontier",
    "square_root_impact",
    "u_shape_profile",
]

#: Most intervals a schedule may have (a trading day in seconds is 23,400).
MAX_INTERVALS = 100_000


def check_intervals(intervals: Any) -> int:
    """``intervals`` as an int in [1, `MAX_INTERVALS`]; `ValidationError` naming it otherwise."""
    if isinstance(intervals, bool) or not isinstance(intervals, int | np.integer) or not (
            1 <= intervals <= MAX_INTERVALS):
        raise ValidationError("intervals", intervals, f"must be an integer in [1, {MAX_INTERVALS}]")
    return int(intervals)


def square_root_impact(notional: float, volatility: float, adv: float,
                       coefficient: float) -> float:
    """Price impact of a trade as a fraction of its price: ``Y sigma sqrt(notional / ADV)``.

    Parameters
    ----------
    notional : float
        Value traded, currency (>= 0; the side does not matter).
    volatility : float
        Daily volatility of the asset's simple returns (fraction).
    adv : float
        Average daily value traded, currency (> 0).
    coefficient : float
        ``Y`` (dimensionless; measured values are of order 1).

    Returns
    -------
    float
        Fraction of the price paid (0.001 = 10 bp); times ``notional`` it is
        the impact cost in currency.
    """
    return coefficient * volatility * math.sqrt(notional / adv)


@dataclass(frozen=True)
class AlmgrenChriss:
    """Linear market impact of Almgren & Chriss (2000), in price units.

    Trading at rate ``v`` units per time unit moves the price permanently by
    ``permanent * v`` per time unit and fills at ``fixed + temporary * v``
    worse than the current price.

    Parameters
    ----------
    permanent : float
        ``gamma``: currency per unit, per unit traded (>= 0).
    temporary : float
        ``eta``: currency per unit, per (unit per time unit) (> 0).
    fixed : float, default 0
        ``epsilon``: currency per unit traded (half the spread plus fees, >= 0).

    Examples
    --------
    Selling 1,000,000 shares of a $50 stock with 30 % annual volatility
    (0.95 $/share/day^0.5) over 5 days, in daily slices:

    >>> ac = AlmgrenChriss(permanent=2.5e-7, temporary=2.5e-6, fixed=0.0625)
    >>> plan = ac.schedule([1e6], volatility=0.95, horizon=5.0, intervals=5,
    ...                    risk_aversion=1e-6)
    >>> round(float(plan["trades"].sum()))
    1000000
    """

    permanent: float
    temporary: float
    fixed: float = 0.0

    def __post_init__(self) -> None:
        check_number(self.permanent, "permanent", limit=MAX_PRICE, minimum=0.0)
        check_number(self.temporary, "temporary", limit=MAX_PRICE, positive=True)
        check_number(self.fixed, "fixed", limit=MAX_PRICE, minimum=0.0)

    def schedule(self, quantity: Any, *, volatility: Any, horizon: float, intervals: int,
                 risk_aversion: Any = 0.0) -> xr.Dataset:
        """Optimal schedules of many parent orders, with their ``E`` and ``V``.

        Parameters
        ----------
        quantity : sequence of float, shape (order,)
            Units to trade per order (> 0; the side is the order's).
        volatility : float or sequence of float
            Price volatility, currency per unit per square root of the time
            unit of ``horizon`` (one value, or one per order).
        horizon : float
            Time to complete (> 0), e.g. days.
        intervals : int
            Equal intervals (1 to `MAX_INTERVALS`).
        risk_aversion : float or sequence of float, default 0
            ``lambda`` per currency (>= 0); 0 gives TWAP.

        Returns
        -------
        xarray.Dataset
            ``holdings(order, step)`` units left after each interval (step 0
            is the start), ``trades(order, interval)`` units per interval,
            ``expected_cost(order)`` (currency), ``variance(order)``
            (currency squared) and ``kappa(order)`` (per time unit).

        Raises
        ------
        ValidationError
            A value out of range (naming it), or ``temporary <= permanent *
            tau / 2`` (the model then rewards trading faster: no optimum).
        """
        from pmkit.core.schedules import almgren_chriss_plan, almgren_chriss_trades

        q = _positive_vector(quantity, "quantity", MAX_QUANTITY)
        vol = _broadcast(volatility, "volatility", q.size, minimum=0.0)
        lam = _broadcast(risk_aversion, "risk_aversion", q.size, minimum=0.0)
        horizon = check_number(horizon, "horizon", limit=MAX_AMOUNT, positive=True)
        intervals = check_intervals(intervals)
        tau = horizon / int(intervals)
        if not self.temporary > 0.5 * self.permanent * tau:
            raise ValidationError("temporary", self.temporary,
                                  f"must exceed permanent * tau / 2 = "
                                  f"{0.5 * self.permanent * tau:g} (tau = {tau:g})")
        holdings, expected, variance, kappa = almgren_chriss_plan(
            q, vol, self.temporary, self.permanent, self.fixed, lam, horizon,
            intervals=int(intervals))
        trades = almgren_chriss_trades(q, vol, self.temporary, self.permanent, lam, horizon,
                                       intervals=int(intervals))
        for name, value in (("expected_cost", expected), ("variance", variance)):
            if not np.isfinite(np.asarray(value)).all() or (np.abs(value) > MAX_AMOUNT**2).any():
                raise ValidationError(name, float(np.max(np.abs(value))),
                                      "is not finite or too large for these inputs")
        return xr.Dataset(
            {
                "holdings": (("order", "step"), np.asarray(holdings)),
                "trades": (("order", "interval"), np.asarray(trades)),
                "expected_cost": ("order", np.asarray(expected)),
                "variance": ("order", np.asarray(variance)),
                "kappa": ("order", np.asarray(kappa)),
                "risk_aversion": ("order", lam),
            },
            coords={"order": np.arange(q.size), "step": np.arange(int(intervals) + 1),
                    "interval": np.arange(1, int(intervals) + 1)},
            attrs={"horizon": horizon, "tau": tau, "permanent": self.permanent,
                   "temporary": self.temporary, "fixed": self.fixed},
        )


    def frontier(self, quantity: float, *, volatility: float, horizon: float, intervals: int,
                 risk_aversions: Any = None) -> xr.Dataset:
        """The efficient frontier of execution: ``E`` and ``V`` of the optimum over ``lambda``.

        Parameters
        ----------
        quantity : float
            Units of the one parent order (> 0).
        volatility, horizon, intervals
            As in `schedule`.
        risk_aversions : sequence of float, optional
            ``lambda`` values (>= 0); default 25 from 1e-9 to 1e-4, log-spaced.

        Returns
        -------
        xarray.Dataset
            Over ``risk_aversion``: ``expected_cost`` (currency), ``variance``
            (currency squared), ``std`` (currency) and ``kappa``. Plot it
            with `plot_frontier`.
        """
        if risk_aversions is None:
            lams = np.geomspace(1e-9, 1e-4, 25).tolist()
        else:
            try:
                lams = list(risk_aversions)
            except TypeError as exc:
                raise ValidationError("risk_aversions", risk_aversions,
                                      "must be a sequence of numbers") from exc
            if not 1 <= len(lams) <= 10_000:
                raise ValidationError("risk_aversions", len(lams), "must have 1 to 10,000 values")
        plan = self.schedule([quantity] * len(lams), volatility=volatility, horizon=horizon,
                             intervals=intervals, risk_aversion=list(lams))
        lam = plan["risk_aversion"].values
        return xr.Dataset(
            {"expected_cost": ("risk_aversion", plan["expected_cost"].values),
             "variance": ("risk_aversion", plan["variance"].values),
             "std": ("risk_aversion", np.sqrt(plan["variance"].values)),
             "kappa": ("risk_aversion", plan["kappa"].values)},
            coords={"risk_aversion": lam}, attrs=dict(plan.attrs, quantity=float(quantity)))


def plot_frontier(frontier: xr.Dataset, **kwargs: Any) -> Any:
    """Standard deviation against expected cost of `AlmgrenChriss.frontier` (hvplot).

    Needs ``pmkit[ui]``. The x axis is the shortfall's standard deviation
    and the y axis its expected value (both currency); hovering a point shows
    its ``lambda``.
    """
    from pmkit._hvplot import ensure_hvplot

    ensure_hvplot()
    frame = frontier[["expected_cost", "std"]].to_dataframe().reset_index()
    options = {"x": "std", "y": "expected_cost", "xlabel": "std of shortfall (currency)",
               "ylabel": "expected shortfall (currency)",
               "title": "Execution frontier (Almgren-Chriss)",
               "hover_cols": ["risk_aversion"]} | kwargs
    return frame.hvplot.line(**options) * frame.hvplot.scatter(**options)


def _positive_vector(values: Any, field: str, limit: float) -> np.ndarray:
    try:
        items = list(values)
    except TypeError as exc:
        raise ValidationError(field, values, "must be a sequence of numbers") from exc
    if not items:
        raise ValidationError(field, values, "must not be empty")
    if len(items) > 1_000_000:
        raise ValidationError(field, len(items), "at most 1,000,000 orders per call")
    return np.array([check_number(v, f"{field}[{i}]", limit=limit, positive=True)
                     for i, v in enumerate(items)])


def _broadcast(value: Any, field: str, size: int, *, minimum: float) -> np.ndarray:
    if np.ndim(value) == 0:
        return np.full(size, check_number(value, field, limit=MAX_PRICE, minimum=minimum))
    items = list(value)
    if len(items) != size:
        raise ValidationError(field, len(items), f"must have one value per order ({size})")
    return np.array([check_number(v, f"{field}[{i}]", limit=MAX_PRICE, minimum=minimum)
                     for i, v in enumerate(items)])


@dataclass(frozen=True, slots=True)
class ImpactFit:
    """``Y`` of the square-root law fitted from fills.

    Attributes
    ----------
    coefficient : float
        The fitted ``Y`` (dimensionless).
    standard_error : float
        Its standard error (same units).
    fills : int
        Fills used.
    """

    coefficient: float
    standard_error: float
    fills: int


def calibrate_square_root(realized: Any, volatility: Any, participation: Any) -> ImpactFit:
    """Fit ``Y`` from realized impact: least squares of ``realized = Y sigma sqrt(Q/V)``.

    Parameters
    ----------
    realized : sequence of float
        Realized impact per fill, as a fraction of the arrival price, signed
        so that a cost is positive (fill price against arrival, less the
        half-spread and fees).
    volatility : sequence of float
        Daily volatility at each fill (fraction).
    participation : sequence of float
        ``Q / V``: each fill's value over the asset's ADV (> 0).

    Returns
    -------
    ImpactFit
        ``Y`` through the origin, ``sum(x y) / sum(x^2)`` with ``x = sigma
        sqrt(Q/V)``, and its standard error ``sqrt(s^2 / sum(x^2))`` from the
        residual variance ``s^2`` (``n - 1`` degrees of freedom).

    Raises
    ------
    ValidationError
        Lengths differ, fewer than 2 fills, or a value out of range.
    """
    y = np.array([check_number(v, f"realized[{i}]", limit=1e3) for i, v in enumerate(realized)])
    vol = np.array([check_number(v, f"volatility[{i}]", limit=1e3, minimum=0.0)
                    for i, v in enumerate(volatility)])
    part = np.array([check_number(v, f"participation[{i}]", limit=1e6, positive=True)
                     for i, v in enumerate(participation)])
    if not (y.size == vol.size == part.size):
        raise ValidationError("realized", y.size,
                              f"must have as many values as volatility ({vol.size}) and "
                              f"participation ({part.size})")
    if y.size < 2:
        raise InsufficientDataError("realized", y.size, "needs at least 2 fills")
    x = vol * np.sqrt(part)
    sxx = float(x @ x)
    if sxx == 0.0:
        raise InsufficientDataError("volatility", 0.0, "every fill has zero predicted impact")
    coefficient = float(x @ y) / sxx
    residual = y - coefficient * x
    s2 = float(residual @ residual) / (y.size - 1)
    return ImpactFit(coefficient, math.sqrt(s2 / sxx), int(y.size))


def liquidity(market: xr.Dataset, window: int = 20) -> xr.Dataset:
    """ADV and daily volatility per asset from the last ``window`` days of ``market``.

    Parameters
    ----------
    market : xarray.Dataset
        With ``close(asset, time)`` and ``volume(asset, time)`` (units traded).
    window : int, default 20
        Trading days used (>= 2).

    Returns
    -------
    xarray.Dataset
        ``adv(asset)``: mean of ``volume * close`` over the window (currency;
        NaN where no volume is known); ``volatility(asset)``: sample standard
        deviation of daily simple returns over the window (fraction).

    Raises
    ------
    ValidationError
        The market has no ``volume`` (the bundled demo data has none), or a
        bad ``window``.
    InsufficientDataError
        Fewer than ``window + 1`` closes.
    """
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 2:
        raise ValidationError("window", window, "must be an integer >= 2")
    if "volume" not in market:
        raise ValidationError("volume", None,
                              "the market has no volumes: ADV cannot be estimated from it")
    close = market["close"].transpose("asset", "time").values
    volume = market["volume"].transpose("asset", "time").values
    if close.shape[1] < window + 1:
        raise InsufficientDataError("window", window,
                                    f"needs {window + 1} closes, the market has {close.shape[1]}")
    c = close[:, -(window + 1):]
    traded = (volume * close)[:, -window:]
    with np.errstate(invalid="ignore", divide="ignore"):
        returns = c[:, 1:] / c[:, :-1] - 1.0
        adv = np.nanmean(np.where(np.isfinite(traded), traded, np.nan), axis=1)
        vol = np.nanstd(returns, axis=1, ddof=1)
    return xr.Dataset({"adv": ("asset", adv), "volatility": ("asset", vol)},
                      coords={"asset": market["asset"].values},
                      attrs={"window": int(window)})


def u_shape_profile(intervals: int, ends: float = 3.0) -> np.ndarray:
    """The default intraday volume profile: a U shape, heavier at the open and close.

    ``w(t) = 1 + (ends - 1) (2 t - 1)^2`` at each interval's midpoint ``t``
    (fraction of the session), normalized to sum to 1: the first and last
    moments trade ``ends`` times the middle's rate. A documented default,
    not estimated from data: pass a profile estimated from your own
    intraday volumes wherever a profile is taken.

    Parameters
    ----------
    intervals : int
        Intervals of the session (>= 1).
    ends : float, default 3
        Rate at the open and close relative to midday (>= 1).

    Returns
    -------
    numpy.ndarray, shape (intervals,)
        Fractions of the day's volume per interval (sum 1).
    """
    intervals = check_intervals(intervals)
    ends = check_number(ends, "ends", limit=1e6, minimum=1.0)
    t = (np.arange(intervals) + 0.5) / intervals
    w = 1.0 + (ends - 1.0) * (2.0 * t - 1.0) ** 2
    return w / w.sum()


def estimate_profile(volumes: Any) -> np.ndarray:
    """An intraday volume profile estimated from past sessions' volumes.

    Each session's volumes are normalized to its total (so a busy day does
    not weigh more than a quiet one), and the shapes are averaged.

    Parameters
    ----------
    volumes : array-like, shape (session, interval)
        Units traded per interval, one row per past session (>= 0; a
        session with no volume at all is skipped).

    Returns
    -------
    numpy.ndarray, shape (interval,)
        Fractions of the day's volume per interval (sum 1): pass it as
        ``profile=`` to `pmkit.execution.simulate_session`, or to the VWAP
        schedule, in place of `u_shape_profile`.

    Raises
    ------
    ValidationError
        Not a 2-D array of finite volumes >= 0, or no session with volume.
    """
    try:
        v = np.asarray(volumes, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError("volumes", type(volumes).__name__,
                              "must be an array of numbers (session, interval)") from exc
    if v.ndim != 2 or v.shape[1] < 1 or v.shape[1] > MAX_INTERVALS:
        raise ValidationError("volumes", v.shape, "must be 2-D: (session, interval)")
    if not np.isfinite(v).all() or (v < 0).any():
        raise ValidationError("volumes", "non-finite or negative",
                              "must be finite volumes >= 0")
    totals = v.sum(axis=1)
    days = totals > 0
    if not days.any():
        raise ValidationError("volumes", 0.0, "no session has any volume")
    shape = (v[days] / totals[days, None]).mean(axis=0)
    return shape / shape.sum()
