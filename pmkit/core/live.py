"""Incremental revaluation of many portfolios when a few prices change.

A market-data flush moves ``K`` prices out of ``N`` (``K`` usually small).
Rather than recomputing ``values = holdings @ prices + cash`` for all ``N``
columns, `apply_price_changes` adds only the change the moved columns cause,

    dV[p] = sum_k holdings[p, idx[k]] * (new[k] - prices[idx[k]]),

for every portfolio in one vmapped, jitted call (``O(P K)`` instead of
``O(P N)``), and consolidates groups with the membership matrix.

Shapes and recompilation
------------------------
``idx`` has a variable length, and a jitted function compiles once per input
shape. Callers therefore pad ``idx`` and ``new`` with `pad_changes` to a
power-of-two bucket (at least `MIN_BUCKET`): a stream of flushes of any size
compiles at most ``log2(N)`` variants per ``(P, N, G)``. Padding entries use
the index ``N`` (one past the last column): the gathers read 0 there
(``mode="fill"``) and the price scatter drops it (``mode="drop"``), so a
padding entry changes nothing.

Indices must be unique within one call: with a repeated index, both entries
are measured against the same old price and the scatter keeps an arbitrary
one. Conflate first (the stream's buffer does: latest price per symbol wins).

Pure JAX and numpy, no state, no validation (NaN in, NaN out): the service
(`pmkit.stream.valuation.LiveValuation`) checks inputs before calling.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pmkit.core._precision import precise

__all__ = ["MIN_BUCKET", "apply_price_changes", "bucket_size", "pad_changes"]

Array = jax.Array

#: Smallest padded length of a change vector (tiny flushes share one compiled shape).
MIN_BUCKET = 8


@precise
def bucket_size(k: int) -> int:
    """Padded length for ``k`` changes: the next power of two, at least `MIN_BUCKET`."""
    return max(MIN_BUCKET, 1 << max(int(k) - 1, 0).bit_length())


@precise
def pad_changes(
    idx: np.ndarray, new_prices: np.ndarray, n_assets: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pad a change vector to its bucket with no-op entries.

    Parameters
    ----------
    idx : array of int, shape (K,)
        Unique column indices in ``[0, n_assets)``.
    new_prices : array, shape (K,)
        New price per unit of each column.
    n_assets : int
        Number of columns ``N``; padding entries get index ``N``.

    Returns
    -------
    idx, new_prices : arrays, shape (bucket_size(K),)
        Padded copies (padding prices are 0; they are never read).
    """
    k = len(idx)
    size = bucket_size(k)
    out_idx = np.full(size, n_assets, dtype=np.int32)
    out_idx[:k] = idx
    out_px = np.zeros(size, dtype=np.result_type(new_prices, np.float32))
    out_px[:k] = new_prices
    return out_idx, out_px


def _value_change(held: Array, dprice: Array) -> Array:
    # One portfolio: its units in the changed columns times the price moves.
    return held @ dprice


@precise
@jax.jit
def apply_price_changes(
    holdings: Array,
    values: Array,
    pnl: Array,
    prices: Array,
    membership: Array,
    idx: Array,
    new_prices: Array,
) -> tuple[Array, Array, Array, Array, Array, Array]:
    """Move some prices and update values, P&L and group values incrementally.

    Parameters
    ----------
    holdings : array, shape (P, N)
        Units held per portfolio and asset.
    values : array, shape (P,)
        Current values ``holdings @ prices + cash`` (currency units).
    pnl : array, shape (P,)
        Running P&L (currency units); moves by the same amount as ``values``.
    prices : array, shape (N,)
        Current price per unit of each asset.
    membership : array, shape (G, P)
        1 where portfolio ``p`` counts in group ``g`` (each once), else 0.
    idx : array of int, shape (K,)
        Unique changed columns, padded with ``N`` (see `pad_changes`).
    new_prices : array, shape (K,)
        New prices of those columns (padding entries are ignored).

    Returns
    -------
    values : array, shape (P,)
        ``values + delta``.
    pnl : array, shape (P,)
        ``pnl + delta``.
    prices : array, shape (N,)
        ``prices`` with the changed columns set to ``new_prices``.
    group_values : array, shape (G,)
        ``membership @ values`` (new values).
    delta : array, shape (P,)
        Change in value caused by this update (currency units).
    touched : array of bool, shape (P,)
        Portfolios holding a non-zero quantity of a column whose price moved.
    """
    n = prices.shape[0]
    valid = idx < n
    old = prices.at[idx].get(mode="fill", fill_value=0.0)
    dprice = jnp.where(valid, new_prices - old, 0.0)
    held = jnp.take(holdings, idx, axis=1, mode="fill", fill_value=0.0)  # (P, K)
    delta = jax.vmap(_value_change, in_axes=(0, None))(held, dprice)
    touched = jnp.any((held != 0) & (dprice != 0), axis=1)
    new_values = values + delta
    new_prices_all = prices.at[idx].set(new_prices, mode="drop")
    return (
        new_values,
        pnl + delta,
        new_prices_all,
        membership @ new_values,
        delta,
        touched,
    )
