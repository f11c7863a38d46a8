"""One reading of portfolio weights for every public risk function.

Weights come in three forms, all accepted wherever `pmkit.risk` takes
weights and all giving the same numbers:

- labelled: an `xarray.DataArray` with dims ``(portfolio, asset)`` or
  ``(asset,)`` (or a Dataset with a ``weight`` variable);
- unlabelled: a numpy array or plain sequence, 1-D ``(A,)`` or 2-D
  ``(P, A)``, in the asset order of the function's reference axis (the
  returns', market's, betas' or scenarios' ``asset`` labels);
- 1-D (either of the above without ``portfolio``): one unnamed portfolio,
  and the result has no ``portfolio`` dim.

Internally every function works on ``weight(portfolio, asset)`` with labels
on both dims (unnamed portfolios are numbered from 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import xarray as xr

from pmkit.errors import ValidationError

__all__ = ["as_weights", "squeeze"]

T = TypeVar("T", xr.DataArray, xr.Dataset)


def as_weights(
    weights: Any, assets: Sequence[Any] | np.ndarray | None = None, name: str = "weights"
) -> tuple[xr.DataArray, bool]:
    """``(weight(portfolio, asset), one)``: labelled weights and whether the input was 1-D.

    Parameters
    ----------
    weights : xarray.DataArray, xarray.Dataset, numpy.ndarray or sequence
        Fractions of portfolio value, in one of the forms of the module doc.
    assets : sequence, optional
        Asset labels given to unlabelled weights, in their order; without it
        unlabelled assets are numbered from 0.
    name : str, default "weights"
        Field named in errors.

    Returns
    -------
    (xarray.DataArray, bool)
        Float64 ``(portfolio, asset)`` weights with coordinates on both dims
        (numpy- or dask-backed as given), and True for 1-D input.

    Raises
    ------
    ValidationError
        Not array-like, not numeric, wrong number of dims, wrong dims, or an
        unlabelled asset axis whose length differs from ``assets``.
    """
    if isinstance(weights, xr.Dataset):
        if "weight" not in weights.data_vars:
            raise ValidationError(name, list(weights.data_vars), "dataset has no 'weight' variable")
        weights = weights["weight"]
    if not isinstance(weights, xr.DataArray):
        weights = _from_array(weights, name)
    if "asset" not in weights.dims or not set(weights.dims) <= {"portfolio", "asset"}:
        raise ValidationError(
            name,
            weights.dims,
            "must have dims ('portfolio', 'asset') or ('asset',); select one time",
        )
    one = "portfolio" not in weights.dims
    if one:
        weights = weights.expand_dims(portfolio=[0])
    elif "portfolio" not in weights.indexes:
        weights = weights.assign_coords(portfolio=np.arange(weights.sizes["portfolio"]))
    if "asset" not in weights.indexes:
        weights = weights.assign_coords(asset=_asset_labels(weights.sizes["asset"], assets, name))
    dtype = weights.dtype
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise ValidationError(name, str(weights.dtype), "must be real numbers")
    return weights.transpose("portfolio", "asset").astype(np.float64), one


def squeeze(out: T, one: bool) -> T:
    """Drop the ``portfolio`` dim added to 1-D weights by `as_weights`."""
    if one and "portfolio" in out.dims:
        return out.isel(portfolio=0, drop=True)
    return out


def _from_array(weights: Any, name: str) -> xr.DataArray:
    if isinstance(weights, str | bytes | dict) or not hasattr(weights, "__len__"):
        raise ValidationError(
            name, type(weights).__name__, "must be a DataArray, a numpy array or a sequence"
        )
    try:
        arr = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(name, type(weights).__name__, "must hold real numbers") from exc
    if arr.ndim == 1:
        return xr.DataArray(arr, dims=("asset",))
    if arr.ndim == 2:
        return xr.DataArray(arr, dims=("portfolio", "asset"))
    raise ValidationError(
        name, arr.shape, "unlabelled weights must be 1-D (asset,) or 2-D (portfolio, asset)"
    )


def _asset_labels(n: int, assets: Sequence[Any] | np.ndarray | None, name: str) -> np.ndarray:
    if assets is None:
        return np.arange(n)
    labels = np.asarray(assets)
    if len(labels) != n:
        raise ValidationError(
            name,
            n,
            f"unlabelled weights have {n} assets; they must give one weight per asset of "
            f"the reference axis, in its order ({len(labels)} assets)",
        )
    return labels
