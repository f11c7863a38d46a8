"""hvplot's ``.hvplot`` accessors, registered once and lazily (hvplot is slow to import).

In a notebook hvplot arranges for ``import hvplot.pandas`` to run its set-up
again in every cell that imports it, which re-emits the plotting extension's
output; once the accessors exist there is nothing to import.
"""

from __future__ import annotations

__all__ = ["ensure_hvplot"]


def ensure_hvplot() -> None:
    """Make ``DataFrame.hvplot`` and ``DataArray.hvplot`` available (needs ``pmkit[ui]``).

    Raises
    ------
    MissingDependencyError
        hvplot is not installed (the ``ui`` extra).
    """
    import pandas as pd
    import xarray as xr

    from pmkit.errors import MissingDependencyError

    try:
        if not hasattr(pd.DataFrame, "hvplot"):
            import hvplot.pandas
        if not hasattr(xr.DataArray, "hvplot"):
            import hvplot.xarray  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "hvplot":
            raise
        raise MissingDependencyError("hvplot", "ui") from exc
