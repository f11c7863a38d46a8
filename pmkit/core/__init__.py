"""The JAX compute core: pure, jitted, vmapped array functions.

Everything here imports only jax and numpy, takes and returns arrays (no
xarray, no I/O, no state), is batched over a leading ``portfolio`` axis with
`jax.vmap`, and compiles once per shape. The same code runs on a GPU when JAX
sees one.

Precision: pmkit computes in float64 by default, and importing pmkit leaves
JAX's process-wide ``jax_enable_x64`` flag as it was: each public function
here runs inside ``jax.enable_x64`` for its own call only (see `precise`).
``set_precision("float32")`` (or ``PMKIT_PRECISION=float32`` before import)
switches pmkit's computations to float32 — faster on GPUs, half the memory,
about 7 significant digits instead of 16 — and ``with precision("float32"):``
does so for one block, in one thread.
"""

from pmkit.core._precision import (
    PRECISIONS,
    compute_context,
    float_dtype,
    get_precision,
    precise,
    precision,
    set_precision,
)

__all__ = [
    "PRECISIONS",
    "compute_context",
    "float_dtype",
    "get_precision",
    "precise",
    "precision",
    "set_precision",
]
