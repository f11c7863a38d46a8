"""Covariance estimators (pmkit.core.covariance, pmkit.risk.covariance).

References: numpy.cov, pandas DataFrame.cov (pairwise), sklearn.covariance.ledoit_wolf and
hand-written EWMA loops.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from sklearn.covariance import ledoit_wolf as sk_ledoit_wolf

from pmkit.core import covariance as core
from pmkit.errors import InsufficientDataError, ValidationError
from pmkit.risk.covariance import CovarianceRepairWarning, covariance_matrix


@pytest.fixture(scope="module")
def panel() -> np.ndarray:
    """Factor-model returns (T=300, A=12): a structured covariance, LW shrinkage in (0, 1)."""
    rng = np.random.default_rng(21)
    f = rng.normal(0, 0.01, (300, 2))
    loadings = rng.uniform(0.2, 1.5, (2, 12))
    return 0.0003 + f @ loadings + rng.normal(0, 0.006, (300, 12)) * rng.uniform(0.5, 2, 12)


@pytest.fixture(scope="module")
def ragged(panel) -> np.ndarray:
    out = panel.copy()
    out[:120, 3] = np.nan  # listed late
    out[:200, 7] = np.nan
    out[50:60, 5] = np.nan  # a gap
    return out


def labelled(values: np.ndarray) -> xr.DataArray:
    assets = [f"A{i:02d}" for i in range(values.shape[1])]
    times = pd.date_range("2020-01-01", periods=values.shape[0], freq="B")
    return xr.DataArray(values.T, dims=("asset", "time"), coords={"asset": assets, "time": times})


@pytest.mark.parametrize("ddof", [0, 1])
def test_sample_matches_numpy_cov(panel, ddof):
    np.testing.assert_allclose(
        core.sample_covariance(panel, ddof=ddof), np.cov(panel.T, ddof=ddof), rtol=1e-12
    )


def test_pairwise_matches_pandas(ragged):
    ref = pd.DataFrame(ragged).cov().to_numpy()  # pandas: pairwise-complete observations
    np.testing.assert_allclose(core.sample_covariance(ragged), ref, rtol=1e-11)
    counts = np.asarray(core.common_counts(ragged))
    assert counts[3, 7] == 100 and counts[3, 5] == 180
    assert counts[5, 5] == 290 and counts[0, 0] == 300
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # this one is PSD: no repair warning
        da = covariance_matrix(labelled(ragged))
    assert da.dims == ("asset", "asset_j")
    assert list(da["asset_j"].values) == list(da["asset"].values)
    np.testing.assert_allclose(da.values, ref, rtol=1e-11)
    assert da.attrs["n_observations"] == 100 and da.attrs["repaired"] == 0
    assert float(da.sel(asset="A03", asset_j="A07")) == pytest.approx(ref[3, 7], rel=1e-11)


def test_ledoit_wolf_matches_sklearn(panel):
    ref, shrink = sk_ledoit_wolf(panel)
    assert 0 < shrink < 1
    got, s = core.ledoit_wolf(panel)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert float(s) == pytest.approx(shrink, rel=1e-12)
    da = covariance_matrix(labelled(panel), "ledoit_wolf")
    np.testing.assert_allclose(da.values, ref, rtol=1e-12)
    assert da.attrs["shrinkage"] == pytest.approx(shrink, rel=1e-12)


def test_ledoit_wolf_is_listwise_on_ragged_data(ragged):
    complete = ragged[~np.isnan(ragged).any(axis=1)]
    ref, _ = sk_ledoit_wolf(complete)
    np.testing.assert_allclose(core.ledoit_wolf(ragged)[0], ref, rtol=1e-12)
    lw = covariance_matrix(labelled(ragged), "ledoit_wolf")
    assert lw.attrs["n_observations"] == len(complete)


def ewma_loop(x: np.ndarray, lam: float) -> np.ndarray:
    """The RiskMetrics recursion, pair by pair, skipping times a pair is not observed."""
    a = x.shape[1]
    out = np.empty((a, a))
    for i in range(a):
        for j in range(a):
            s = norm = 0.0
            for t in range(x.shape[0]):
                s *= lam
                norm *= lam
                if not (np.isnan(x[t, i]) or np.isnan(x[t, j])):
                    s += x[t, i] * x[t, j]
                    norm += 1.0
            out[i, j] = s / norm
    return out


def test_ewma_matches_hand_loop(panel, ragged):
    x = panel[:, :5]
    np.testing.assert_allclose(core.ewma_covariance(x, 0.94), ewma_loop(x, 0.94), rtol=1e-12)
    y = ragged[:, 2:8]
    np.testing.assert_allclose(core.ewma_covariance(y, 0.97), ewma_loop(y, 0.97), rtol=1e-12)
    demeaned = x - x.mean(axis=0)
    np.testing.assert_allclose(
        core.ewma_covariance(x, 0.9, demean=True), ewma_loop(demeaned, 0.9), rtol=1e-12
    )
    # lambda = 1: the ddof=0 covariance of demeaned data
    np.testing.assert_allclose(
        core.ewma_covariance(x, 1.0, demean=True), np.cov(x.T, ddof=0), rtol=1e-12
    )
    da = covariance_matrix(labelled(x), "ewma")
    np.testing.assert_allclose(da.values, ewma_loop(x, 0.94), rtol=1e-12)
    assert da.attrs["decay"] == 0.94


def contradictory() -> np.ndarray:
    """Three assets seen in pairs only: +1, +1 and -1 correlated pairs -> indefinite."""
    rng = np.random.default_rng(4)
    z = rng.normal(0, 0.01, (3, 40))
    x = np.full((120, 3), np.nan)
    x[:40, 0], x[:40, 1] = z[0], z[0]  # A ~ B
    x[40:80, 1], x[40:80, 2] = z[1], z[1]  # B ~ C
    x[80:, 0], x[80:, 2] = z[2], -z[2]  # A ~ -C
    return x


def test_psd_repair_warns_with_min_eigenvalue():
    x = contradictory()
    raw = np.asarray(core.sample_covariance(x))
    lo = np.linalg.eigvalsh(raw)[0]
    assert lo < 0
    with pytest.warns(CovarianceRepairWarning) as rec:
        da = covariance_matrix(labelled(x))
    message = str(rec[0].message)
    assert f"min eigenvalue {lo:.6g}" in message and "repaired" in message
    shown = float(re.search(r"min eigenvalue (\S+) ", message).group(1))
    assert shown == pytest.approx(lo, rel=1e-5)
    assert np.linalg.eigvalsh(da.values)[0] >= 0
    np.testing.assert_allclose(np.diag(da.values), np.diag(raw), rtol=1e-12)  # variances kept
    np.testing.assert_allclose(da.values, da.values.T)
    assert da.attrs["repaired"] == 1 and da.attrs["min_eigenvalue"] == pytest.approx(lo)
    with pytest.warns(CovarianceRepairWarning, match="not repaired"):
        kept = covariance_matrix(labelled(x), repair=False)
    np.testing.assert_allclose(kept.values, raw)


def test_nearest_psd_leaves_psd_matrices_alone(panel):
    cov = np.cov(panel.T)
    np.testing.assert_allclose(core.nearest_psd(cov), cov, rtol=1e-9)
    assert float(core.min_eigenvalue(cov)) == pytest.approx(np.linalg.eigvalsh(cov)[0])


def test_covariance_bad_input(ragged):
    da = labelled(ragged)
    with pytest.raises(ValidationError, match="method"):
        covariance_matrix(da, "shrunk")
    with pytest.raises(ValidationError, match="decay"):
        covariance_matrix(da, "ewma", decay=1.5)
    hole = da.copy()
    hole.loc[{"asset": "A04"}] = np.nan
    with pytest.raises(InsufficientDataError) as err:
        covariance_matrix(hole)
    assert err.value.value == "A04"
    with pytest.raises(InsufficientDataError) as err:
        covariance_matrix(da, min_observations=150)
    assert err.value.field == "returns[A00, A07]" and err.value.value == 100
    with pytest.raises(InsufficientDataError):
        covariance_matrix(da, "ledoit_wolf", min_observations=150)
    with pytest.raises(ValidationError, match="dims"):
        covariance_matrix(da.rename(time="date"))
