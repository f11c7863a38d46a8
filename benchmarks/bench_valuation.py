"""Group ``valuation``: batched revaluation in the JAX core against numpy.

``revaluation``
    `pmkit.core.valuation.revalue`: fixed holdings of ``P`` portfolios over
    ``A`` assets revalued on ``T`` price vectors in one jitted call (one
    matrix product), against numpy ``holdings @ prices.T``. Target: within 2x
    of numpy (ratio >= 0.5). Full size: 1,000 portfolios x 2,000 assets x
    1,000 price vectors. The JAX compile time of the first call is reported
    separately in the note (it is paid once per shape).
``revaluation with FX``
    The same with pivot-currency FX rates per asset and per portfolio and
    cash, against the same formula in numpy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from harness import Context, Row, benchmark_group, compared, fail, median_time

SEED = 20240603


@dataclass(frozen=True)
class Sizes:
    portfolios: int
    assets: int
    prices: int


FULL = Sizes(1_000, 2_000, 1_000)
QUICK = Sizes(100, 200, 100)


def _case(s: Sizes) -> str:
    return f"{s.portfolios:,} pf x {s.assets:,} assets x {s.prices:,} price vectors"


def revaluation(ctx: Context, s: Sizes) -> list[Row]:
    import jax

    from pmkit.core.valuation import revalue

    rng = np.random.default_rng(SEED)
    q = rng.integers(0, 1_000, (s.portfolios, s.assets)).astype(np.float64)
    prices = rng.uniform(1.0, 500.0, (s.prices, s.assets))
    n_ccy = 5
    ccy_of_asset = rng.integers(0, n_ccy, s.assets)
    ccy_of_port = rng.integers(0, n_ccy, s.portfolios)
    ccy_rate = rng.uniform(0.5, 2.0, (s.prices, n_ccy))  # pivot units per unit, per scenario
    asset_rate = ccy_rate[:, ccy_of_asset]  # (T, A)
    port_rate = ccy_rate[:, ccy_of_port]  # (T, P)
    cash = rng.uniform(0, 1e6, s.portfolios)

    def pm_plain() -> np.ndarray:
        return np.asarray(revalue(q, prices))

    def np_plain() -> np.ndarray:
        return q @ prices.T

    def pm_fx() -> np.ndarray:
        return np.asarray(revalue(q, prices, cash, asset_rate, port_rate))

    def np_fx() -> np.ndarray:
        return (q @ (prices * asset_rate).T) / port_rate.T + cash[:, None]

    rows = []
    for name, pm, ref in (("revaluation", pm_plain, np_plain),
                          ("revaluation with FX", pm_fx, np_fx)):
        jax.clear_caches()
        t0 = time.perf_counter()
        first = pm()  # compile + run
        first_call = time.perf_counter() - t0
        t0 = time.perf_counter()
        pm()
        run = time.perf_counter() - t0
        if not np.allclose(first, ref(), rtol=1e-10, atol=1e-6):
            fail(f"{name}: pmkit revalue and numpy disagree")
        fast = median_time(pm, ctx.repeats)
        slow = median_time(ref, ctx.repeats)
        ratio = slow / fast
        verdict = "meets" if ratio >= 0.5 else "MISSES"
        rows.append(
            compared(
                name,
                _case(s),
                fast,
                slow,
                f"baseline numpy {'q @ prices.T' if ref is np_plain else 'same formula'}; "
                f"target within 2x of numpy: {verdict}; first call {first_call:.2f} s "
                f"= compile ~{max(first_call - run, 0):.2f} s + run",
            )
        )
    return rows


@benchmark_group("valuation")
def valuation_group(ctx: Context) -> list[Row]:
    """Batched revaluation of many portfolios on many price vectors (JAX vs numpy)."""
    return revaluation(ctx, QUICK if ctx.quick else FULL)
