"""When to rebalance: the four triggers of the design note, as pure functions.

=============== ================================================ ==========================
trigger         fires when                                        parameters
=============== ================================================ ==========================
``scheduled``   ``now - last >= interval`` (or never rebalanced)  ``interval`` (timedelta)
``threshold``   ``max_i |current_i - target_i| > band``           ``band`` (fraction)
``performance`` a strategy's Sharpe over the last ``window``     ``window`` (days),
                days is below ``min_sharpe``, or its drawdown     ``min_sharpe`` (annualized),
                from its running peak exceeds ``max_drawdown``    ``max_drawdown`` (fraction)
``risk``        `pmkit.risk.check_limits` reports a breach        the portfolio's limits
=============== ================================================ ==========================

Each returns a `TriggerResult`: whether it fired, a one-line reason a
person can read in an approval queue, and the numbers behind it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from pmkit.errors import ValidationError
from pmkit.validation import check_number

__all__ = [
    "TRIGGERS",
    "TriggerResult",
    "drift_trigger",
    "drifted_weights",
    "performance_trigger",
    "risk_trigger",
    "scheduled_trigger",
]

#: Trigger names accepted by `StrategyManager.rebalance_portfolio`.
TRIGGERS = ("scheduled", "threshold", "performance", "risk")


@dataclass(frozen=True)
class TriggerResult:
    """Outcome of one trigger check.

    Attributes
    ----------
    trigger : str
        One of `TRIGGERS`.
    fired : bool
    reason : str
        Readable explanation (also when it did not fire).
    details : dict
        The measured values (JSON-ready).
    """

    trigger: str
    fired: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


def _fraction(name: str, value: Any, *, upper: float | None = None) -> float:
    return check_number(value, name, minimum=0.0, maximum=upper)


def scheduled_trigger(
    last: datetime | None, now: datetime, interval: timedelta = timedelta(hours=24)
) -> TriggerResult:
    """Fire when ``interval`` has passed since ``last`` (always when there was none)."""
    if not isinstance(interval, timedelta) or interval <= timedelta(0):
        raise ValidationError("interval", interval, "must be a positive timedelta")
    if last is None:
        return TriggerResult("scheduled", True, "never rebalanced", {"interval_s": _secs(interval)})
    elapsed = now - last
    fired = elapsed >= interval
    verb = "passed" if fired else "not yet passed"
    return TriggerResult(
        "scheduled",
        fired,
        f"{_human(elapsed)} since the last rebalance; interval {_human(interval)} {verb}",
        {"last": last.isoformat(), "elapsed_s": _secs(elapsed), "interval_s": _secs(interval)},
    )


def _secs(d: timedelta) -> float:
    return d.total_seconds()


def _human(d: timedelta) -> str:
    h = d.total_seconds() / 3600
    return f"{h / 24:.1f} d" if abs(h) >= 48 else f"{h:.1f} h"


def drifted_weights(targets: Mapping[str, float], growth: Mapping[str, float]) -> dict[str, float]:
    """Weights after each sleeve grew by ``growth`` (``1 + cumulative return``) since the decision.

    ``w_i = t_i g_i / (sum_j t_j g_j + (1 - sum_j t_j))``: the unallocated
    remainder is cash and does not grow. Sleeves missing from ``growth`` are
    taken as unchanged (``g = 1``).
    """
    grown = {k: float(t) * float(growth.get(k, 1.0)) for k, t in targets.items()}
    total = sum(grown.values()) + (1.0 - sum(float(t) for t in targets.values()))
    if total <= 0:
        raise ValidationError("growth", dict(growth), "the portfolio would be worth nothing")
    return {k: v / total for k, v in grown.items()}


def drift_trigger(
    current: Mapping[str, float], target: Mapping[str, float], band: float = 0.05
) -> TriggerResult:
    """Fire when some weight is more than ``band`` (absolute fraction) from its target."""
    band = _fraction("threshold", band, upper=1.0)
    keys = sorted(set(current) | set(target))
    drift = {k: float(current.get(k, 0.0)) - float(target.get(k, 0.0)) for k in keys}
    if not drift:
        return TriggerResult("threshold", False, "nothing allocated", {"band": band})
    worst = max(drift, key=lambda k: abs(drift[k]))
    fired = abs(drift[worst]) > band
    cmp = ">" if fired else "<="
    return TriggerResult(
        "threshold",
        fired,
        f"largest drift {worst}: {drift[worst]:+.4f} ({abs(drift[worst]):.4f} {cmp} band {band:g})",
        {"band": band, "drift": drift, "worst": worst},
    )


def performance_trigger(
    returns: pd.DataFrame,
    *,
    window: int = 63,
    min_sharpe: float | None = 0.0,
    max_drawdown: float | None = 0.2,
    periods_per_year: int = 252,
) -> TriggerResult:
    """Fire when a strategy degrades: low recent Sharpe or a deep drawdown.

    Parameters
    ----------
    returns : pandas.DataFrame
        Daily simple returns, one column per strategy (NaN: not trading).
    window : int, default 63
        Days of the rolling Sharpe (about a quarter).
    min_sharpe : float or None, default 0
        Annualized Sharpe (``mean / std * sqrt(periods_per_year)``) over the
        last ``window`` days below which a strategy is degraded.
    max_drawdown : float or None, default 0.2
        Current drawdown (``1 - wealth / running peak``, fraction) above which
        a strategy is degraded.
    """
    if not isinstance(window, int) or isinstance(window, bool) or window < 2:
        raise ValidationError("window", window, "must be an integer >= 2")
    if max_drawdown is not None:
        max_drawdown = _fraction("max_drawdown", max_drawdown, upper=1.0)
    if min_sharpe is not None:
        min_sharpe = check_number(min_sharpe, "min_sharpe")
    details: dict[str, Any] = {"window": window, "min_sharpe": min_sharpe,
                               "max_drawdown": max_drawdown, "strategies": {}}
    degraded: list[str] = []
    for name in returns.columns:
        r = returns[name].dropna().to_numpy(dtype=np.float64)
        if r.size < window:
            details["strategies"][name] = {"observations": int(r.size), "checked": False}
            continue
        recent = r[-window:]
        sd = recent.std(ddof=1)
        sharpe = float(recent.mean() / sd * math.sqrt(periods_per_year)) if sd > 0 else math.nan
        wealth = np.cumprod(1.0 + r)
        dd = float(1.0 - wealth[-1] / max(np.max(wealth), 1.0))
        why = []
        if min_sharpe is not None and math.isfinite(sharpe) and sharpe < min_sharpe:
            why.append(f"{window}-day Sharpe {sharpe:.2f} < {min_sharpe:g}")
        if max_drawdown is not None and dd > max_drawdown:
            why.append(f"drawdown {dd:.1%} > {max_drawdown:.1%}")
        details["strategies"][name] = {
            "rolling_sharpe": None if not math.isfinite(sharpe) else sharpe,
            "drawdown": dd,
            "degraded": bool(why),
            "checked": True,
        }
        if why:
            degraded.append(f"{name} ({'; '.join(why)})")
    fired = bool(degraded)
    reason = "degraded: " + ", ".join(degraded) if fired else "no strategy degraded"
    return TriggerResult("performance", fired, reason, details)


def risk_trigger(breaches: Sequence[Any]) -> TriggerResult:
    """Fire on any `pmkit.risk.LimitBreach`."""
    items = [
        {"limit": b.limit, "item": b.item, "value": b.value, "threshold": b.threshold}
        for b in breaches
    ]
    if not items:
        return TriggerResult("risk", False, "no limit breached", {"breaches": []})
    text = ", ".join(
        f"{b['limit']}{'[' + str(b['item']) + ']' if b['item'] else ''}"
        f" {b['value']:.4g} > {b['threshold']:.4g}"
        for b in items
    )
    return TriggerResult("risk", True, f"limits breached: {text}", {"breaches": items})
