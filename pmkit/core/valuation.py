"""Portfolio valuation, daily P&L, group consolidation and average-cost P&L.

Pure JAX array functions. Each is written for one portfolio (or one asset)
and exposed batched over a leading ``portfolio`` axis with `jax.vmap`, jitted
at the boundary. Nothing here validates data or raises on it: NaN in, NaN out
(the labelled layer, `pmkit.analytics.valuation`, checks inputs first).

Shapes use ``P`` portfolios, ``A`` assets, ``T`` times, ``G`` groups and ``N``
trades. Prices are ``(T, A)``: one price vector per row.

FX conversion goes through a pivot currency (say USD). Rates are *units of
pivot per unit of a currency*: ``asset_rate[t, a]`` for the currency an asset
is priced in and ``portfolio_rate[t, p]`` (or ``[p, t]`` on the time path) for
a portfolio's reporting currency. An asset worth ``x`` in its own currency is
worth ``x * asset_rate / portfolio_rate`` in the portfolio currency. This
keeps the inputs at ``O(T (A + P))`` instead of a ``(T, P, A)`` cube of
pairwise rates, and turns revaluation into one matrix product.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pmkit.core._precision import precise

__all__ = [
    "average_cost",
    "average_cost_pnl",
    "daily_pnl",
    "group_values",
    "portfolio_value",
    "portfolio_values",
    "revalue",
    "value_path",
    "values_over_time",
]

Array = jax.Array


# ---------------------------------------------------------------- one time, many portfolios


@precise
def portfolio_value(
    quantity: Array, prices: Array, cash: Array, fx: Array | None = None
) -> Array:
    """Value of one portfolio at one time: ``sum(quantity * prices * fx) + cash``.

    Parameters
    ----------
    quantity : array, shape (A,)
        Units held per asset.
    prices : array, shape (A,)
        Price per unit, in each asset's currency.
    cash : array, shape ()
        Cash in the portfolio currency.
    fx : array, shape (A,), optional
        Rate asset currency -> portfolio currency (portfolio-currency units per
        unit of the asset currency). Default: all 1 (one currency).

    Returns
    -------
    array, shape ()
        Net asset value in the portfolio currency. An asset held at exactly
        zero units contributes exactly 0 even if its price is NaN (unlisted).
    """
    px = prices if fx is None else prices * fx
    held = jnp.where(quantity != 0, quantity * px, 0.0)
    return jnp.sum(held) + cash


@precise
@jax.jit
def portfolio_values(
    quantity: Array, prices: Array, cash: Array, fx: Array | None = None
) -> Array:
    """`portfolio_value` for many portfolios at one time.

    Parameters
    ----------
    quantity : array, shape (P, A)
        Units held.
    prices : array, shape (A,)
        Prices in asset currencies, shared by all portfolios.
    cash : array, shape (P,)
        Cash per portfolio, in its currency.
    fx : array, shape (P, A), optional
        Rates asset currency -> each portfolio's currency. Default: all 1.

    Returns
    -------
    array, shape (P,)
        Values in each portfolio's currency.
    """
    if fx is None:
        return jax.vmap(portfolio_value, in_axes=(0, None, 0))(quantity, prices, cash)
    return jax.vmap(portfolio_value, in_axes=(0, None, 0, 0))(quantity, prices, cash, fx)


# ---------------------------------------------------------------- many price vectors


def _revalue_one(quantity: Array, prices: Array) -> Array:
    # (T, A) @ (A,) -> (T,); vmapped over portfolios this is one (P, A) x (A, T) matmul.
    return prices @ quantity


@precise
@jax.jit
def revalue(
    quantity: Array,
    prices: Array,
    cash: Array | None = None,
    asset_rate: Array | None = None,
    portfolio_rate: Array | None = None,
) -> Array:
    """Revalue fixed holdings of many portfolios on many price vectors, in one call.

    ``values[p, t] = (sum_a quantity[p, a] * prices[t, a] * asset_rate[t, a])
    / portfolio_rate[t, p] + cash[p]``, computed as a single matrix product
    (scenario revaluation, stress tests, what-if prices).

    Parameters
    ----------
    quantity : array, shape (P, A)
        Units held.
    prices : array, shape (T, A)
        ``T`` price vectors in asset currencies. No NaN masking on this fast
        path: pass 0 (not NaN) for assets without a price.
    cash : array, shape (P,), optional
        Cash in portfolio currencies (default 0).
    asset_rate : array, shape (T, A), optional
        Pivot-currency units per unit of each asset's currency (default 1).
    portfolio_rate : array, shape (T, P), optional
        Pivot-currency units per unit of each portfolio's currency (default 1).

    Returns
    -------
    array, shape (P, T)
        Values in portfolio currencies.
    """
    px = prices if asset_rate is None else prices * asset_rate
    values = jax.vmap(_revalue_one, in_axes=(0, None))(quantity, px)  # (P, T)
    if portfolio_rate is not None:
        values = values / portfolio_rate.T
    if cash is not None:
        values = values + cash[:, None]
    return values


# ---------------------------------------------------------------- holdings over time


@precise
def value_path(
    quantity: Array,
    prices: Array,
    cash: Array,
    asset_rate: Array | None = None,
    portfolio_rate: Array | None = None,
) -> Array:
    """Value of one portfolio at each time from time-varying holdings.

    Parameters
    ----------
    quantity : array, shape (T, A)
        Units held at each time.
    prices : array, shape (T, A)
        Prices in asset currencies. NaN is allowed where the quantity is 0.
    cash : array, shape (T,)
        Cash in the portfolio currency.
    asset_rate : array, shape (T, A), optional
        Pivot units per unit of each asset's currency (default 1).
    portfolio_rate : array, shape (T,), optional
        Pivot units per unit of the portfolio currency (default 1).

    Returns
    -------
    array, shape (T,)
        ``sum_a q * p * asset_rate / portfolio_rate + cash``; zero units
        contribute exactly 0 whatever the price (or rate) is.
    """
    px = prices if asset_rate is None else prices * asset_rate
    held = jnp.where(quantity != 0, quantity * px, 0.0).sum(axis=-1)
    if portfolio_rate is not None:
        held = held / portfolio_rate
    return held + cash


@precise
@jax.jit
def values_over_time(
    quantity: Array,
    prices: Array,
    cash: Array,
    asset_rate: Array | None = None,
    portfolio_rate: Array | None = None,
) -> Array:
    """`value_path` for many portfolios.

    Parameters
    ----------
    quantity : array, shape (P, T, A)
        Units held.
    prices : array, shape (T, A)
        Prices in asset currencies, shared by all portfolios.
    cash : array, shape (P, T)
        Cash in portfolio currencies.
    asset_rate : array, shape (T, A), optional
        Pivot units per unit of each asset's currency (default 1).
    portfolio_rate : array, shape (P, T), optional
        Pivot units per unit of each portfolio's currency (default 1).

    Returns
    -------
    array, shape (P, T)
        Values in portfolio currencies.
    """
    if asset_rate is not None:
        prices = prices * asset_rate
    if portfolio_rate is None:
        return jax.vmap(value_path, in_axes=(0, None, 0))(quantity, prices, cash)
    return jax.vmap(value_path, in_axes=(0, None, 0, None, 0))(
        quantity, prices, cash, None, portfolio_rate
    )


# ---------------------------------------------------------------- P&L and groups


def _pnl_one(values: Array, flows: Array) -> Array:
    prev = jnp.concatenate([jnp.full((1,), jnp.nan, values.dtype), values[:-1]])
    return values - prev - flows


@precise
@jax.jit
def daily_pnl(values: Array, flows: Array) -> Array:
    """Daily profit and loss net of external flows.

    ``pnl[t] = values[t] - values[t-1] - flows[t]``; ``pnl[0]`` is NaN (no
    previous value).

    Parameters
    ----------
    values : array, shape (P, T)
        Portfolio values (currency units).
    flows : array, shape (P, T)
        External flows at each time (deposits > 0, withdrawals < 0), already
        inside ``values[t]``.

    Returns
    -------
    array, shape (P, T)
        P&L per period in the portfolio currency.
    """
    return jax.vmap(_pnl_one)(values, flows)


@precise
@jax.jit
def group_values(membership: Array, values: Array) -> Array:
    """Consolidated values of groups: ``values @ membership.T``.

    Parameters
    ----------
    membership : array, shape (G, P)
        1 where portfolio ``p`` belongs to group ``g`` (each portfolio once),
        else 0. Fractional weights also work (partial ownership).
    values : array, shape (..., P)
        Portfolio values, one currency; leading axes (e.g. time) are batched.

    Returns
    -------
    array, shape (..., G)
        Group values.
    """
    return values @ membership.T


# ---------------------------------------------------------------- average cost


def _average_cost_step(
    state: tuple[Array, Array, Array], trade: tuple[Array, Array, Array]
) -> tuple[tuple[Array, Array, Array], None]:
    q, basis, realized = state  # signed units, signed cost basis (= q * avg cost), realized P&L
    dq, price, fee = trade
    zero = jnp.zeros_like(q)
    avg = jnp.where(q != 0, basis / jnp.where(q != 0, q, 1.0), zero)
    same_way = (q == 0) | (jnp.sign(dq) == jnp.sign(q))
    # Units of this trade that close the existing position (signed like dq).
    closing = jnp.where(same_way, zero, jnp.sign(dq) * jnp.minimum(jnp.abs(dq), jnp.abs(q)))
    opening = dq - closing
    safe_dq = jnp.where(dq != 0, dq, 1.0)
    fee_close = jnp.where(dq != 0, fee * closing / safe_dq, fee)  # a 0-unit row: fee realized
    fee_open = fee - fee_close
    realized = realized - closing * (price - avg) - fee_close
    basis = basis + closing * avg + opening * price + fee_open
    q = q + dq
    basis = jnp.where(q == 0, zero, basis)
    return (q, basis, realized), None


@precise
def average_cost(
    quantity: Array, price: Array, fee: Array, mark: Array
) -> tuple[Array, Array, Array, Array]:
    """Average-cost P&L of one asset in one portfolio, by `jax.lax.scan` over its trades.

    The method (the "average cost" or weighted-average cost basis):

    - A trade that opens or adds to a position (same sign as the position, or
      from flat) adds ``units * price + fee`` to the signed cost basis; the
      average cost is ``basis / position``. For a short the basis is negative
      (proceeds) and the fee lowers the average entry price.
    - A trade that reduces a position realizes
      ``closed_units * (price - average_cost)`` (sign-aware, so a short
      covered below its entry price gains) minus the fee share of the closed
      units; the average cost of what remains is unchanged.
    - A trade beyond zero (a flip) first closes the whole position, then opens
      the rest at the trade price; its fee is split pro rata between the
      closed and the opened units.
    - A row of zero units is padding: no change, except that its fee (if any)
      is realized as a cost.

    Invariant: ``realized + unrealized == position * mark - sum(quantity * price)
    - sum(fee)``.

    Parameters
    ----------
    quantity : array, shape (N,)
        Signed units per trade (buy > 0, sell < 0), in time order.
    price : array, shape (N,)
        Trade price per unit (currency units).
    fee : array, shape (N,)
        Fees per trade (currency units, >= 0).
    mark : array, shape ()
        Price to mark the remaining position at. NaN is fine when the final
        position is 0 (unrealized is then 0).

    Returns
    -------
    position : array, shape ()
        Units held after the last trade.
    avg_cost : array, shape ()
        Average cost per unit of the position (0 when flat), fees included.
    realized : array, shape ()
        Realized P&L (currency units).
    unrealized : array, shape ()
        ``position * (mark - avg_cost)`` (0 when flat).
    """
    zero = jnp.zeros((), dtype=jnp.result_type(quantity, price, fee))
    (q, basis, realized), _ = jax.lax.scan(
        _average_cost_step, (zero, zero, zero), (quantity, price, fee)
    )
    flat = q == 0
    avg = jnp.where(flat, zero, basis / jnp.where(flat, 1.0, q))
    unrealized = jnp.where(flat, zero, q * mark - basis)
    return q, avg, realized, unrealized


@precise
@jax.jit
def average_cost_pnl(
    quantity: Array, price: Array, fee: Array, mark: Array
) -> tuple[Array, Array, Array, Array]:
    """`average_cost` for every portfolio and asset at once.

    Parameters
    ----------
    quantity, price, fee : array, shape (P, A, N)
        Each (portfolio, asset)'s trades in time order, zero-padded at the end
        to a common length ``N`` (padding rows: quantity 0, fee 0).
    mark : array, shape (P, A) or (A,)
        Mark prices (in the trades' currency).

    Returns
    -------
    position, avg_cost, realized, unrealized : array, shape (P, A)
        As `average_cost`.
    """
    mark = jnp.broadcast_to(mark, quantity.shape[:2])
    per_asset = jax.vmap(average_cost)
    return jax.vmap(per_asset)(quantity, price, fee, mark)
