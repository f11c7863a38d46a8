"""Position-sizing kernels: fixed-fractional, volatility target, Kelly, lots, caps, heat.

Pure JAX array functions (no xarray, no I/O, no state). The sizing rules are
elementwise and broadcast over any shape (one candidate trade per element);
`portfolio_heat` is batched over a leading portfolio axis with `jax.vmap`.
Everything is jit-compiled. Core never raises on data; the labelled layer
(`pmkit.risk.sizing`) validates inputs and raises.

Sizes are numbers of units (shares), non-negative: the rules size a position,
the caller chooses its side (for fixed-fractional, long when ``stop < entry``,
short when ``stop > entry``). Money is in one currency throughout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pmkit.core._precision import precise

__all__ = [
    "cap_and_round",
    "fixed_fractional",
    "fixed_fractional_lots",
    "kelly_fraction",
    "max_units",
    "portfolio_heat",
    "vol_target",
]

#: Relative slack when flooring to lots, so 499.99999999997 units (float
#: rounding of an exact 500) round to 500, not 499.
LOT_EPS = 1e-9


@precise
@jax.jit
def fixed_fractional(
    equity: jax.Array, risk_fraction: jax.Array, entry: jax.Array, stop: jax.Array
) -> jax.Array:
    """Units whose loss at the stop is ``risk_fraction`` of equity.

    ``units = risk_fraction * equity / |entry - stop|``.

    Parameters
    ----------
    equity : array
        Account equity (currency).
    risk_fraction : array
        Fraction of equity risked (0.01 = 1 %).
    entry, stop : array
        Entry and stop price (currency per unit), ``entry != stop``.

    Returns
    -------
    array
        Unrounded units (broadcast shape of the inputs).
    """
    return risk_fraction * equity / jnp.abs(entry - stop)


@precise
@jax.jit
def vol_target(
    equity: jax.Array, target_volatility: jax.Array, price: jax.Array, asset_volatility: jax.Array
) -> jax.Array:
    """Units whose volatility in currency is ``target_volatility * equity``.

    A position of ``q`` units has currency volatility ``q * price * asset_volatility``,
    so ``q = target_volatility * equity / (price * asset_volatility)``.

    Parameters
    ----------
    equity : array
        Account equity (currency).
    target_volatility : array
        Target position volatility as a fraction of equity (same horizon as
        ``asset_volatility``, e.g. both annualised).
    price : array
        Price per unit (currency).
    asset_volatility : array
        Volatility of the asset's simple returns (fraction, > 0).

    Returns
    -------
    array
        Unrounded units.
    """
    return target_volatility * equity / (price * asset_volatility)


@precise
@jax.jit
def kelly_fraction(win_rate: jax.Array, payoff: jax.Array, cap: jax.Array) -> jax.Array:
    """Kelly fraction of equity for a bet won with probability p paying b:1.

    ``f* = p - (1 - p) / b``, floored at 0 (a bet with negative edge is not
    taken) and capped at ``cap`` (e.g. 0.25 for a quarter of equity).

    Parameters
    ----------
    win_rate : array
        Probability ``p`` of a win, in ``[0, 1]``.
    payoff : array
        Win/loss ratio ``b`` (average win over average loss), > 0.
    cap : array
        Largest fraction allowed, >= 0.

    Returns
    -------
    array
        Fraction of equity to commit, in ``[0, cap]``.
    """
    f = win_rate - (1.0 - win_rate) / payoff
    return jnp.clip(f, 0.0, cap)


@precise
@jax.jit
def max_units(equity: jax.Array, price: jax.Array, max_weight: jax.Array) -> jax.Array:
    """Largest units whose value stays within ``max_weight`` of equity.

    Parameters
    ----------
    equity : array
        Account equity (currency).
    price : array
        Price per unit (currency), > 0.
    max_weight : array
        Largest position weight (fraction of equity); ``inf`` for no cap.

    Returns
    -------
    array
        ``max_weight * equity / price`` (unrounded; ``inf`` without a cap).
    """
    return max_weight * equity / price


@precise
@jax.jit
def cap_and_round(units: jax.Array, cap: jax.Array, lot_size: jax.Array) -> jax.Array:
    """Cap units and round down to whole lots.

    ``floor(min(units, cap) / lot * (1 + LOT_EPS)) * lot``: never above the
    cap (beyond float rounding of an exact multiple) and never negative.

    Parameters
    ----------
    units : array
        Unrounded non-negative units.
    cap : array
        Largest units allowed (``inf`` for none).
    lot_size : array
        Units per lot, >= 1.

    Returns
    -------
    array
        Whole-lot units (float).
    """
    q = jnp.minimum(units, cap)
    lots = jnp.floor(q / lot_size * (1.0 + LOT_EPS))
    return jnp.maximum(lots, 0.0) * lot_size


@precise
@jax.jit
def fixed_fractional_lots(
    equity: jax.Array,
    risk_fraction: jax.Array,
    entry: jax.Array,
    stop: jax.Array,
    max_weight: jax.Array,
    lot_size: jax.Array,
) -> jax.Array:
    """`fixed_fractional` units, capped at ``max_weight`` of equity and rounded down to lots.

    One compiled call for the whole rule: a signal sized one at a time pays
    one dispatch instead of three.

    Parameters
    ----------
    equity, risk_fraction, entry, stop : array
        As `fixed_fractional`.
    max_weight : array
        Largest position weight (fraction of equity, valued at ``entry``); ``inf``
        for no cap.
    lot_size : array
        Units per lot, >= 1.

    Returns
    -------
    array
        Whole-lot units (float, >= 0).
    """
    units = fixed_fractional(equity, risk_fraction, entry, stop)
    # no cap means no cap even at zero equity (inf * 0 would be NaN)
    cap = jnp.where(jnp.isinf(max_weight), jnp.inf, max_units(equity, entry, max_weight))
    return cap_and_round(units, cap, lot_size)


@precise
@jax.jit
def portfolio_heat(
    quantity: jax.Array, price: jax.Array, stop: jax.Array, equity: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Open risk to stops, per position and as a fraction of equity.

    Open risk of a position is ``|price - stop| * |quantity|``; heat is the
    sum over positions divided by equity.

    Parameters
    ----------
    quantity : array, shape (P, N)
        Units held (signed); 0 where nothing is held.
    price : array, shape (P, N)
        Current price per unit (currency); ignored where ``quantity == 0``.
    stop : array, shape (P, N)
        Stop price per unit (currency); ignored where ``quantity == 0``.
    equity : array, shape (P,)
        Equity per portfolio (currency).

    Returns
    -------
    open_risk : array, shape (P, N)
        Currency at risk per position.
    heat : array, shape (P,)
        ``sum(open_risk) / equity`` (fraction).
    """

    def one(q: jax.Array, p: jax.Array, s: jax.Array, e: jax.Array) -> tuple[jax.Array, jax.Array]:
        risk = jnp.where(q != 0, jnp.abs(p - s) * jnp.abs(q), 0.0)
        return risk, jnp.sum(risk) / e

    return jax.vmap(one)(
        jnp.asarray(quantity), jnp.asarray(price), jnp.asarray(stop), jnp.asarray(equity)
    )
