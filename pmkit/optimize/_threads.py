"""BLAS thread limit around the dense optimization kernels.

The kernels here (a 2,520 x 500 Gram product, Cholesky factorizations of at
most 500 x 500 blocks, triangular solves) are small enough that OpenBLAS's
second thread gains little on an idle machine (the covariance product: about
17 ms with 2 threads against 29 ms with 1 at N = 500), while its spinning
worker threads collapse under contention: measured here with other processes
busy, minimum variance at N = 500 took 0.7-1.3 s with 2 BLAS threads and 33 ms
with 1. pmkit therefore runs `Optimizer.fit` with one BLAS thread by default.
Set ``PMKIT_BLAS_THREADS`` to another number, or to ``auto`` to leave BLAS as
configured.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from functools import cache
from typing import Any

__all__ = ["blas_threads"]


@cache
def _controller() -> Any:
    import threadpoolctl

    return threadpoolctl.ThreadpoolController()


def blas_threads() -> AbstractContextManager[Any]:
    """Context limiting BLAS threads to ``PMKIT_BLAS_THREADS`` (default 1; ``auto``: no limit)."""
    setting = os.environ.get("PMKIT_BLAS_THREADS", "1").strip().lower()
    if setting in ("", "auto"):
        return nullcontext()
    try:
        n = int(setting)
    except ValueError:
        return nullcontext()
    if n < 1:
        return nullcontext()
    return _controller().limit(limits=n, user_api="blas")
