"""The float64/float32 switch of the JAX core."""

from __future__ import annotations

import os
from typing import Literal

import jax
import jax.numpy as jnp

__all__ = ["float_dtype", "get_precision", "set_precision"]

Precision = Literal["float64", "float32"]


def set_precision(precision: Precision) -> None:
    """Compute in ``"float64"`` (default) or ``"float32"`` from now on.

    Arrays created before the switch keep their dtype; jitted functions
    recompile for the new dtype on their next call.
    """
    if precision not in ("float64", "float32"):
        from pmkit.errors import ValidationError

        raise ValidationError("precision", precision, "must be 'float64' or 'float32'")
    jax.config.update("jax_enable_x64", precision == "float64")


def get_precision() -> Precision:
    """The precision new arrays get: ``"float64"`` or ``"float32"``."""
    return "float64" if jax.config.jax_enable_x64 else "float32"


def float_dtype() -> jnp.dtype:
    """The float dtype of the current precision."""
    return jnp.dtype(get_precision())


set_precision(os.environ.get("PMKIT_PRECISION", "float64"))  # type: ignore[arg-type]
