"""pmkit: portfolio research and operations for many portfolios at once.

``import pmkit`` is light: it imports neither cvxpy, hvplot nor Panel.
Load the Jupyter extension with ``%load_ext pmkit`` (see `pmkit.magics`).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """Entry point of ``%load_ext pmkit``: registers the ``%pm`` magics."""
    from pmkit.magics import load_ipython_extension as load

    load(ipython)
