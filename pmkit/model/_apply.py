"""Run a JAX core function over labelled xarray data, in memory or on dask.

The labelled services (`pmkit.analytics`, `pmkit.risk`) validate and align
labels, then hand plain arrays to `pmkit.core` through `apply_core`. It lives
in `pmkit.model`, the layer both sit on, so neither imports the other for it. With
dask-backed inputs chunked over ``portfolio`` the core runs once per chunk
(``dask="parallelized"``), so the same call scales out to a
`dask.distributed` cluster unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from pmkit.core._precision import compute_context

__all__ = ["apply_core"]


def apply_core(
    fn: Callable[..., Any],
    *args: xr.DataArray,
    input_core_dims: Sequence[Sequence[str]],
    output_core_dims: Sequence[Sequence[str]] = ((),),
    output_sizes: Mapping[str, int] | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """Apply ``fn`` (arrays in, arrays out; batched over leading axes) to DataArrays.

    Parameters
    ----------
    fn : callable
        A `pmkit.core` function taking arrays whose trailing axes are the core
        dims, batched over the leading (``portfolio``) axis; returns one
        array or a tuple of arrays.
    *args : xarray.DataArray
        Inputs; non-core dims are broadcast and moved to the front.
    input_core_dims, output_core_dims : sequence of sequence of str
        As in `xarray.apply_ufunc`.
    output_sizes : mapping, optional
        Sizes of new output dims (needed with dask).
    kwargs : mapping, optional
        Static keyword arguments for ``fn``.

    Returns
    -------
    xarray.DataArray or tuple of xarray.DataArray
        Results in pmkit's precision (float64 unless `pmkit.core.set_precision`
        says otherwise), numpy- or dask-backed like the inputs.
    """
    n_out = len(output_core_dims)

    def call(*arrays: np.ndarray) -> Any:
        # In pmkit's precision: ``fn`` may be a local helper doing its own JAX arithmetic on
        # the core's results, which outside the context JAX would redo in float32.
        with compute_context():
            out = fn(*arrays, **(kwargs or {}))
            if n_out == 1:
                return np.asarray(out)
            return tuple(np.asarray(o) for o in out)

    return xr.apply_ufunc(
        call,
        *args,
        input_core_dims=[list(d) for d in input_core_dims],
        output_core_dims=[list(d) for d in output_core_dims],
        dask="parallelized",
        output_dtypes=[np.float64] * n_out,
        dask_gufunc_kwargs={"output_sizes": dict(output_sizes or {}), "allow_rechunk": True},
    )
