"""Numbers that are right: last available prices, stress coverage, the compile cache.

Each check is against a hand computation on a small market or against the
real shipped closes, never against the code's own output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from pmkit.analytics.valuation import last_prices
from pmkit.datasets import load_market
from pmkit.errors import AlignmentError
from pmkit.ledger import LedgerEntry
from pmkit.model import market_dataset
from pmkit.risk import historical_stress

DAYS = pd.bdate_range("2024-01-01", periods=8)


@pytest.fixture(scope="module")
def small():
    """A: real closes with one forward-filled day and a long gap; B: lists on day 5."""
    close = pd.DataFrame({
        "A": [10.0, 11.0, np.nan, 12.0, 12.5, 12.5, 12.5, 13.0],
        "B": [np.nan] * 5 + [20.0, 21.0, 22.0],
    }, index=DAYS)
    market = market_dataset(close, nan_policy="ffill", ffill_limit=1)  # fills A's day 2
    # a suspension longer than any fill limit, as a hand-assembled market may hold
    market["close"].loc[{"asset": "A", "time": DAYS[4:7]}] = np.nan
    return market


def test_last_prices_are_the_last_real_close_or_else_the_last_trade(small):
    assert bool(small["close_filled"].sel(asset="A", time=DAYS[2]))
    trade = LedgerEntry("p", "trade", datetime(2024, 1, 2, 15, 30), asset="B", quantity=5,
                        price=18.0)
    later = LedgerEntry("p", "trade", datetime(2024, 1, 4, 9, 0), asset="B", quantity=1,
                        price=19.0)
    cash = LedgerEntry("p", "cash", datetime(2024, 1, 1), amount=100.0)
    marks = last_prices(small, DAYS, [later, cash, trade])
    price = marks["price"].to_pandas().T
    when = marks["priced_at"].to_pandas().T
    # A: the filled day is priced at the day before it; the gap keeps the last real close
    assert price["A"].tolist() == [10.0, 11.0, 11.0, 12.0, 12.0, 12.0, 12.0, 13.0]
    assert when["A"].tolist() == [DAYS[0], DAYS[1], DAYS[1], DAYS[3], DAYS[3], DAYS[3],
                                  DAYS[3], DAYS[7]]
    # B before listing: nothing, then the trades' prices from their dates, then its closes
    assert np.isnan(price["B"].iloc[0]) and pd.isna(when["B"].iloc[0])
    assert price["B"].tolist()[1:] == [18.0, 18.0, 19.0, 19.0, 20.0, 21.0, 22.0]
    assert when["B"].tolist()[1:5] == [pd.Timestamp("2024-01-02")] * 2 + \
        [pd.Timestamp("2024-01-04")] * 2
    one = last_prices(small, [DAYS[4]], [trade])
    assert float(one["price"].sel(asset="B").item()) == 18.0
    with pytest.raises(AlignmentError, match="times"):
        last_prices(small, [pd.Timestamp("2024-01-06")])  # a Saturday


def test_stress_coverage_is_the_listed_share_of_gross_positions():
    market = load_market()
    # USMV lists in 2014: absent from Lehman, present in the Covid crash
    weights = pd.DataFrame({"AAPL": [0.5, 0.0, 0.0], "USMV": [-0.25, 0.6, 0.0],
                            "KO": [0.25, 0.0, 0.0]}, index=["mixed", "etf", "cash"])
    import xarray as xr

    w = xr.DataArray(weights.to_numpy(), dims=("portfolio", "asset"),
                     coords={"portfolio": weights.index, "asset": weights.columns})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = historical_stress(w, market)
    cov = out["coverage"].to_pandas()
    assert cov.loc["mixed", "Lehman"] == pytest.approx(0.75 / 1.0)
    assert cov.loc["mixed", "Covid crash"] == 1.0
    assert cov.loc["etf", "Lehman"] == 0.0 and cov.loc["etf", "Covid crash"] == 1.0
    assert cov.loc["cash"].isna().all()  # no position: nothing to cover
    # the uncovered part is held as cash: the return is that of the listed part alone
    r = out["asset_return"].sel(window="Lehman")
    assert float(out["return"].sel(portfolio="mixed", window="Lehman")) == pytest.approx(
        0.5 * float(r.sel(asset="AAPL")) + 0.25 * float(r.sel(asset="KO")), rel=1e-12)


_PROBE = """
import json, os, sys, warnings
import jax, jax.numpy as jnp
from pmkit.jit_cache import enable_compile_cache
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    got = enable_compile_cache(sys.argv[1])
if got is not None:
    jax.jit(lambda x: jnp.sin(x) * 2.0)(jnp.arange(7.0)).block_until_ready()
print(json.dumps({"dir": None if got is None else str(got),
                  "warnings": [str(w.message) for w in caught],
                  "configured": jax.config.jax_compilation_cache_dir}))
"""


def _probe(path, **env):
    # the cache is a process-wide JAX setting: try it in a process of its own
    run = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True,
                         text=True, env={**os.environ, **env}, timeout=300, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_compile_cache_is_private_and_stores_programs(tmp_path):
    target = tmp_path / "cache" / "jax"
    out = _probe(target)
    assert out["dir"] == str(target) and out["configured"] == str(target)
    assert oct(target.stat().st_mode & 0o777) == oct(0o700)
    assert any(target.iterdir())  # the compiled program was written

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # others may write: JAX would run what they put there
    out = _probe(shared)
    assert out["dir"] is None and out["configured"] is None
    assert any("other users may write" in w for w in out["warnings"])

    assert _probe(tmp_path / "off", PMKIT_JAX_CACHE="off")["dir"] is None
    assert not (tmp_path / "off").exists()
