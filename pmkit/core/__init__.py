"""The JAX compute core: pure, jitted, vmapped array functions.

Everything here imports only jax and numpy, takes and returns arrays (no
xarray, no I/O, no state), is batched over a leading ``portfolio`` axis with
`jax.vmap`, and compiles once per shape. The same code runs on a GPU when JAX
sees one.

Precision: float64 by default (``jax_enable_x64`` is switched on when this
package is imported). For float32 — faster on GPUs, half the memory — set the
environment variable ``PMKIT_PRECISION=float32`` before importing pmkit, or
call ``set_precision("float32")`` before computing. Results then carry about 7
significant digits instead of 16.
"""

from pmkit.core._precision import float_dtype, get_precision, set_precision

__all__ = ["float_dtype", "get_precision", "set_precision"]
