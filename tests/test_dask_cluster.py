"""The xarray layer scales out: the same risk report on a dask.distributed cluster and in memory."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

distributed = pytest.importorskip("distributed")

from pmkit.analytics import performance_table  # noqa: E402
from pmkit.datasets import load_market  # noqa: E402
from pmkit.model import simple_returns  # noqa: E402
from pmkit.risk import risk_report  # noqa: E402
from pmkit.risk.measures import CornishFisherDomainWarning  # noqa: E402

N_PORTFOLIOS = 24
CHUNK = 6


@pytest.fixture(scope="module")
def inputs():
    market = load_market(start="2015-01-01")
    returns = simple_returns(market).isel(time=slice(1, None))
    rng = np.random.default_rng(7)
    raw = rng.dirichlet(np.ones(market.sizes["asset"]), N_PORTFOLIOS)
    weights = xr.DataArray(raw, dims=("portfolio", "asset"),
                           coords={"portfolio": [f"p{i:02d}" for i in range(N_PORTFOLIOS)],
                                   "asset": market.indexes["asset"]})
    # each portfolio's daily return series, for the performance statistics
    port_returns = xr.dot(weights, returns.fillna(0.0), dim="asset")
    return weights, returns, port_returns


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                 dashboard_address=None) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def test_risk_report_on_a_local_cluster_equals_in_memory(inputs, client):
    weights, returns, _ = inputs
    # daily equity returns are too fat-tailed for Cornish–Fisher: said in memory; the lazy
    # path skips that check, which would compute everything at once
    with pytest.warns(CornishFisherDomainWarning):
        in_memory = risk_report(weights, returns, confidence=0.95)
    lazy = risk_report(weights.chunk({"portfolio": CHUNK}), returns, confidence=0.95)
    assert lazy["volatility"].chunks is not None  # really dask-backed, not computed eagerly
    on_cluster = lazy.compute()
    assert set(client.scheduler_info()["workers"])  # the cluster did the work
    xr.testing.assert_equal(on_cluster, in_memory)  # bit for bit
    assert list(on_cluster["portfolio"].values) == list(weights["portfolio"].values)


def test_performance_table_on_a_local_cluster_equals_in_memory(inputs, client):
    _, _, port_returns = inputs
    in_memory = performance_table(port_returns)
    on_cluster = performance_table(port_returns.chunk({"portfolio": CHUNK})).compute()
    xr.testing.assert_equal(on_cluster, in_memory)  # bit for bit
