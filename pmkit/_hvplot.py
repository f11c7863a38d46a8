"""hvplot's ``.hvplot`` accessors, registered once and lazily (hvplot is slow to import).

In a notebook hvplot arranges for ``import hvplot.pandas`` to run its set-up
again in every cell that imports it, which re-emits the plotting extension's
output; once the accessors exist there is nothing to import.
"""

from __future__ import annotations

__all__ = ["ensure_hvplot"]


def ensure_hvplot() -> None:
    """Make ``DataFrame.hvplot`` and ``DataArray.hvplot`` available (needs ``pmkit[ui]``)."""
    import pandas as pd
    import xarray as xr

    if not hasattr(pd.DataFrame, "hvplot"):
        import hvplot.pandas
    if not hasattr(xr.DataArray, "hvplot"):
        import hvplot.xarray  # noqa: F401
