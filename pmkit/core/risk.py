r"""Value at Risk, Expected Shortfall, volatility and their Euler contributions, in JAX.

Shapes and units
----------------
- ``weights``: ``(P, A)``, one row per portfolio (fractions of value; any
  real numbers: long/short, not necessarily summing to 1).
- ``returns``: ``(T, A)``, asset simple returns per period as fractions, NaN
  where an asset has no observation (e.g. before listing).
- Portfolio returns are ``r = R @ w`` (per period, weights held constant).
- Results are per portfolio, shape ``(P,)``; contributions ``(P, A)``.
  **Losses are positive numbers**: a VaR of 0.03 is a 3 % loss over the
  horizon; a negative VaR means even the tail quantile is a gain.

Which observations
------------------
For each portfolio only the times where *every asset with a nonzero weight*
has data are used (assets it does not hold may be NaN). Never zero-filled.
`n_observations` gives that count; with none, results are NaN (the core never
raises; `pmkit.risk.measures` checks a minimum and raises).

Methods (confidence ``c`` in (0, 1), horizon ``h`` periods)
-----------------------------------------------------------
``"historical"``
    Empirical distribution of the portfolio's ``h``-period returns, built as
    *overlapping* ``h``-period sums of the per-period simple returns (for each
    asset, ``sum_{s=t}^{t+h-1} R[s]``, NaN if any term is NaN; ``n - h + 1``
    scenarios). Summing simple returns is the first-order (non-compounded)
    approximation of the ``h``-period return; it keeps the loss linear in the
    weights, so Euler contributions stay exact. ``h = 1`` uses the data as is.

    With ``n`` scenarios and ``k = (1 - c) n``, losses sorted from the worst:
    VaR is the ``(floor(k) + 1)``-th worst loss — the lower ``c``-quantile of
    the loss distribution, ``numpy.quantile(losses, c, method="inverted_cdf")``
    and ``skfolio.measures.value_at_risk`` (same ``4 eps n`` tolerance for an
    integer ``k`` spoiled by rounding). ES is the mean of the worst ``k``
    losses, the boundary scenario counted with the fraction ``k - floor(k)``
    (Rockafellar–Uryasev CVaR, ``skfolio.measures.cvar``; exactly the mean of
    the ``k`` worst losses when ``k`` is an integer).
``"gaussian"``
    ``mu``, ``sigma`` = mean and sample standard deviation (``ddof=1``) of
    the portfolio's per-period returns; sqrt-of-time: ``mu_h = h mu``,
    ``sigma_h = sqrt(h) sigma``. ``z = Phi^-1(c)``:
    ``VaR = -mu_h + z sigma_h``, ``ES = -mu_h + sigma_h phi(z) / (1 - c)``.
``"cornish_fisher"``
    As Gaussian with the standard normal quantile ``a = Phi^-1(1 - c)``
    replaced by the Cornish–Fisher quantile
    ``q(a) = a + (a^2-1) S/6 + (a^3-3a) K/24 - (2a^3-5a) S^2/36``, with ``S``
    and ``K`` the sample skewness and excess kurtosis of the portfolio's
    per-period returns (moment estimators, ``scipy.stats.skew`` and
    ``scipy.stats.kurtosis`` with ``bias=True``), scaled to the horizon as
    cumulants of an iid sum: ``S_h = S / sqrt(h)``, ``K_h = K / h``.
    ``VaR = -(mu_h + sigma_h q(a))``. ES is the *exact* tail average of that
    quantile function, ``ES = -(1/(1-c)) int_0^{1-c} (mu_h + sigma_h q(Phi^-1(u))) du``,
    which integrates in closed form to
    ``-mu_h + sigma_h phi(a)/(1-c) [1 + S a/6 + K (a^2-1)/24 - S^2 (2a^2-1)/36]``.
    (With ``S = K = 0`` both reduce to the Gaussian formulas. For large
    ``|S|``, ``K`` the CF quantile is not monotone; no correction is made.)
Monte Carlo
    `monte_carlo_scenarios` draws ``(N, A)`` joint scenarios (multivariate
    normal or Student-t, seeded, shared across portfolios); the historical
    estimators on those scenarios (with ``horizon=1``, the scenarios being
    ``h``-period already) give MC VaR/ES and exact Euler contributions.

Euler contributions
-------------------
All measures are positively homogeneous of degree 1 in ``w``, so
``rho(w) = sum_i w_i d rho / d w_i``. `risk_contributions` returns
``marginal = d rho / d w`` (by `jax.grad`) and ``component = w * marginal``.
For volatility, Gaussian and Cornish–Fisher the components sum to the total
up to rounding. For historical (and MC) VaR/ES the measure is a fixed linear
combination of order statistics of ``-R w`` (one scenario for VaR; the tail
scenarios with weights ``1/k`` and the fractional boundary weight for ES);
its gradient at fixed scenario ranking is the same combination of the
scenarios' *asset* returns, so ``sum_i w_i marginal_i`` reproduces the measure
exactly (to rounding) — the VaR marginal is minus the asset returns of the
scenario at the quantile, the ES marginal minus the tail-weighted average of
asset returns over the tail scenarios. (At ties the ranking picks one
scenario: a valid subgradient, and the sum is still exact.)

A marginal is NaN for an asset that is unobserved at some of the times the
portfolio uses (possible only when it has zero weight: its derivative is not
defined by the data); its component is 0.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri
from jax.scipy.stats import norm

from pmkit.core._precision import precise

__all__ = [
    "MEASURES",
    "METHODS",
    "cornish_fisher_quantile",
    "cornish_fisher_tail_mean",
    "expected_shortfall",
    "monte_carlo_scenarios",
    "n_observations",
    "portfolio_moments",
    "risk_contributions",
    "tail_risk",
    "value_at_risk",
    "volatility",
]

Method = Literal["historical", "gaussian", "cornish_fisher"]
Measure = Literal["volatility", "var", "es"]
METHODS: tuple[str, ...] = ("historical", "gaussian", "cornish_fisher")
MEASURES: tuple[str, ...] = ("volatility", "var", "es")

_Single = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


# ------------------------------------------------------------------ data preparation
def _aggregate(returns: jax.Array, horizon: int) -> jax.Array:
    """Overlapping ``horizon``-period sums along time (NaN if any term is NaN)."""
    if horizon == 1:
        return returns
    return jax.lax.reduce_window(
        returns, jnp.array(0.0, returns.dtype), jax.lax.add, (horizon, 1), (1, 1), "VALID"
    )


def _prepare(returns: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(R with NaN -> 0, missing mask as float)``; the zeros are never used as data."""
    missing = jnp.isnan(returns)
    return jnp.where(missing, 0.0, returns), missing.astype(returns.dtype)


def _portfolio(
    w: jax.Array, r0: jax.Array, missing: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Portfolio returns ``(T,)``, the usable-time mask ``(T,)`` and its count."""
    held = (w != 0).astype(r0.dtype)
    valid = jax.lax.cond(  # skip the mask product on complete data
        missing.any(),
        lambda: (missing @ held) == 0,
        lambda: jnp.ones(r0.shape[0], dtype=bool),
    )
    r = r0 @ w
    return r, valid, valid.sum().astype(r0.dtype)


# ------------------------------------------------------------------ single-portfolio measures
# Each returns ``(values, valid)``: ``values`` = [VaR, ES] (or [volatility]) of one portfolio,
# ``valid`` its usable-time mask. VaR and ES share one sort / one set of moments.
_SIGN_FLIP = 0x7FFFFFFFFFFFFFFF


def _sorted_values(x: jax.Array) -> jax.Array:
    """``jnp.sort(x)`` (no gradient), through order-preserving integer keys.

    Sorting the IEEE bit patterns as integers (negative floats with all but
    the sign bit flipped) orders finite floats and +-inf exactly like the
    floats, and XLA sorts integers several times faster than floats on CPU.
    """
    x = jax.lax.stop_gradient(x)
    if x.dtype == jnp.float64:
        itype, flip = jnp.int64, _SIGN_FLIP
    else:
        itype, flip = jnp.int32, 0x7FFFFFFF
    bits = jax.lax.bitcast_convert_type(x, itype)
    keys = jnp.where(bits < 0, bits ^ jnp.asarray(flip, itype), bits)
    keys = jnp.sort(keys)
    bits = jnp.where(keys < 0, keys ^ jnp.asarray(flip, itype), keys)
    return jax.lax.bitcast_convert_type(bits, x.dtype)


def _pick(x: jax.Array, value: jax.Array) -> jax.Array:
    """``x[t]`` for the first ``t`` with ``x[t] == value``, differentiable in ``x``."""
    return x[jnp.argmax(x == value)]


def _historical(horizon: int) -> _Single:
    del horizon  # the data are aggregated to the horizon beforehand

    def f(w: jax.Array, r0: jax.Array, missing: jax.Array, c: jax.Array):
        r, valid, n = _portfolio(w, r0, missing)
        x = jnp.where(valid, r, jnp.inf)  # unusable times sort last
        ordered = _sorted_values(x)  # worst first
        k = (1.0 - c) * n
        eps = jnp.finfo(r.dtype).eps
        i_var = jnp.minimum(n - 1.0, jnp.floor(k + 4.0 * eps * n)).astype(jnp.int32)
        i_es = jnp.maximum(0.0, jnp.ceil(k) - 1.0).astype(jnp.int32)
        # VaR: minus the scenario at the quantile (its gradient: that scenario's asset returns)
        var = -_pick(x, ordered[i_var])
        # ES: scenarios strictly below the boundary value, each with weight 1/k, and the
        # rest of the tail mass k - (their count) on the boundary scenario (ties included)
        bound = ordered[i_es]
        below = x < bound
        mass = k - below.sum()
        es = -(jnp.where(below, x, 0.0).sum() + mass * _pick(x, bound)) / k
        return jnp.stack([var, es]), valid

    return f


def _moments(
    w: jax.Array, r0: jax.Array, missing: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """Mean, sample std (ddof=1), skewness, excess kurtosis (biased), valid mask."""
    r, valid, n = _portfolio(w, r0, missing)
    mu = jnp.where(valid, r, 0.0).sum() / n
    d = jnp.where(valid, r - mu, 0.0)
    m2 = (d * d).sum() / n
    pos = m2 > 0
    m2s = jnp.where(pos, m2, 1.0)  # double-where: finite gradients at sigma = 0
    sigma = jnp.where(pos, jnp.sqrt(m2s * n / (n - 1.0)), 0.0)
    skew = jnp.where(pos, (d**3).sum() / n / m2s**1.5, 0.0)
    kurt = jnp.where(pos, (d**4).sum() / n / m2s**2 - 3.0, 0.0)
    return mu, sigma, skew, kurt, valid


def _volatility(horizon: int) -> _Single:
    def f(w, r0, missing, c):
        _, sigma, _, _, valid = _moments(w, r0, missing)
        return jnp.sqrt(float(horizon)) * sigma[None], valid

    return f


def _gaussian(horizon: int) -> _Single:
    def f(w, r0, missing, c):
        mu, sigma, _, _, valid = _moments(w, r0, missing)
        z = ndtri(c)
        tails = jnp.stack([z, norm.pdf(z) / (1.0 - c)])
        return -horizon * mu + jnp.sqrt(float(horizon)) * sigma * tails, valid

    return f


@precise
def cornish_fisher_quantile(a: jax.Array, skew: jax.Array, kurt: jax.Array) -> jax.Array:
    """Cornish–Fisher standardised quantile at the standard normal quantile ``a``."""
    return (
        a
        + (a**2 - 1.0) * skew / 6.0
        + (a**3 - 3.0 * a) * kurt / 24.0
        - (2.0 * a**3 - 5.0 * a) * skew**2 / 36.0
    )


@precise
def cornish_fisher_tail_mean(a: jax.Array, skew: jax.Array, kurt: jax.Array) -> jax.Array:
    """``int_{-inf}^a q_CF(x) phi(x) dx`` in closed form (negative in the left tail)."""
    poly = 1.0 + skew * a / 6.0 + kurt * (a**2 - 1.0) / 24.0 - skew**2 * (2.0 * a**2 - 1.0) / 36.0
    return -norm.pdf(a) * poly


def _cornish_fisher(horizon: int) -> _Single:
    def f(w, r0, missing, c):
        mu, sigma, skew, kurt, valid = _moments(w, r0, missing)
        h = float(horizon)
        skew, kurt = skew / jnp.sqrt(h), kurt / h
        a = ndtri(1.0 - c)
        q = jnp.stack(
            [
                cornish_fisher_quantile(a, skew, kurt),
                cornish_fisher_tail_mean(a, skew, kurt) / (1.0 - c),
            ]
        )
        return -(h * mu + jnp.sqrt(h) * sigma * q), valid

    return f


_BUILDERS: dict[str, Callable[[int], _Single]] = {
    "historical": _historical,
    "gaussian": _gaussian,
    "cornish_fisher": _cornish_fisher,
    "volatility": _volatility,
}


def _run(
    weights: jax.Array,
    returns: jax.Array,
    confidence: jax.Array,
    kind: str,
    horizon: int,
    contributions: bool,
) -> tuple[jax.Array, ...]:
    """Values ``(P, K)`` and, with ``contributions``, marginals ``(P, K, A)`` and the NaN flag."""
    # Static arguments, so programming errors: name the argument order, since a method passed
    # where the horizon goes would otherwise surface as a reduce_window error.
    order = "(arguments: weights, returns, confidence, horizon, method)"
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon must be a positive int, got {horizon!r} {order}")
    if kind not in _BUILDERS:
        raise ValueError(f"unknown method {kind!r} {order}")
    f = _BUILDERS[kind](horizon)
    agg = horizon if kind == "historical" else 1
    r0, missing = _prepare(_aggregate(returns, agg))
    c = jnp.asarray(confidence, dtype=r0.dtype)
    if not contributions:
        values, _ = jax.vmap(f, in_axes=(0, None, None, None))(weights, r0, missing, c)
        return (values,)

    def with_aux(w: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        values, valid = f(w, r0, missing, c)
        return values, (values, valid)

    def one(w: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        jac, (values, valid) = jax.jacrev(with_aux, has_aux=True)(w)  # jac: (K, A)
        return values, jac, valid

    values, jac, valid = jax.vmap(one)(weights)
    undefined = jax.lax.cond(
        missing.any(),
        lambda: (valid.astype(r0.dtype) @ missing) > 0,
        lambda: jnp.zeros(weights.shape, dtype=bool),
    )  # (P, A)
    return values, jac, undefined


@precise
@partial(jax.jit, static_argnames=("method", "horizon", "contributions"))
def tail_risk(
    weights: jax.Array,
    returns: jax.Array,
    confidence: float | jax.Array = 0.95,
    horizon: int = 1,
    method: Method = "historical",
    *,
    contributions: bool = False,
) -> dict[str, jax.Array]:
    """VaR and ES of every portfolio, optionally with their Euler contributions, in one call.

    One compiled program per (method, horizon, contributions, shapes): VaR and
    ES share the sort (historical) or the moments (parametric).

    Parameters
    ----------
    weights : array, shape (P, A)
    returns : array, shape (T, A)
        Asset simple returns per period (fractions), NaN where unobserved.
    confidence : float
        ``c`` in (0, 1), e.g. 0.95 (traced: no recompilation per value).
    horizon : int, default 1
        Periods; overlapping sums (historical) or sqrt-of-time (parametric).
    method : {"historical", "gaussian", "cornish_fisher"}
        See the module docstring for the exact definitions.
    contributions : bool, default False
        Also return marginals and components.

    Returns
    -------
    dict of str to array
        ``var``, ``es``: shape (P,), loss fractions over the horizon (NaN for
        a portfolio without usable data). With ``contributions``:
        ``var_marginal``, ``es_marginal`` (P, A) = ``d measure / d w`` (NaN
        for an unheld asset unobserved at times the portfolio uses) and
        ``var_component``, ``es_component`` (P, A) = ``w * marginal`` (0
        where the marginal is NaN), summing to ``var`` / ``es``.
    """
    out = _run(weights, returns, confidence, method, horizon, contributions)
    result = {"var": out[0][:, 0], "es": out[0][:, 1]}
    if contributions:
        _, jac, undefined = out
        for k, name in enumerate(("var", "es")):
            grad = jac[:, k, :]
            result[f"{name}_marginal"] = jnp.where(undefined, jnp.nan, grad)
            result[f"{name}_component"] = weights * grad
    return result


@precise
def value_at_risk(
    weights: jax.Array,
    returns: jax.Array,
    confidence: float | jax.Array = 0.95,
    horizon: int = 1,
    method: Method = "historical",
) -> jax.Array:
    """Value at Risk of every portfolio (positive = loss), shape ``(P,)``.

    Parameters
    ----------
    weights : array, shape (P, A)
    returns : array, shape (T, A)
        Asset simple returns per period (fractions), NaN where unobserved.
    confidence : float
        ``c`` in (0, 1).
    horizon : int, default 1
    method : {"historical", "gaussian", "cornish_fisher"}

    Returns
    -------
    array, shape (P,)
        Loss fraction over the horizon (the ``var`` of `tail_risk`).
    """
    return tail_risk(weights, returns, confidence, horizon, method)["var"]


@precise
def expected_shortfall(
    weights: jax.Array,
    returns: jax.Array,
    confidence: float | jax.Array = 0.95,
    horizon: int = 1,
    method: Method = "historical",
) -> jax.Array:
    """Expected Shortfall (CVaR) of every portfolio (positive = loss), shape ``(P,)``.

    Parameters are those of `value_at_risk`; this is the ``es`` of `tail_risk`.
    """
    return tail_risk(weights, returns, confidence, horizon, method)["es"]


@partial(jax.jit, static_argnames=("horizon", "contributions"))
def _volatility_batched(
    weights: jax.Array, returns: jax.Array, horizon: int, contributions: bool
) -> tuple[jax.Array, ...]:
    out = _run(weights, returns, 0.5, "volatility", horizon, contributions)
    if not contributions:
        return (out[0][:, 0],)
    values, jac, undefined = out
    grad = jac[:, 0, :]
    return values[:, 0], jnp.where(undefined, jnp.nan, grad), weights * grad


@precise
def volatility(weights: jax.Array, returns: jax.Array, horizon: int = 1) -> jax.Array:
    """Sample standard deviation (``ddof=1``) of portfolio returns times ``sqrt(horizon)``.

    Parameters
    ----------
    weights : array, shape (P, A)
    returns : array, shape (T, A)
    horizon : int, default 1

    Returns
    -------
    array, shape (P,)
        Return fraction per ``horizon`` periods.
    """
    return _volatility_batched(weights, returns, horizon, False)[0]


@precise
def risk_contributions(
    weights: jax.Array,
    returns: jax.Array,
    confidence: float | jax.Array = 0.95,
    horizon: int = 1,
    method: Method = "historical",
    *,
    measure: Measure = "volatility",
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Total, marginal and component (Euler) contributions of one risk measure.

    The arguments come in the order of `value_at_risk`; ``measure`` is
    keyword-only. The components sum to the measure itself (a volatility,
    VaR or ES), not to 1 and not to the variance.

    Parameters
    ----------
    weights : array, shape (P, A)
    returns : array, shape (T, A)
    confidence : float
        Ignored for ``measure="volatility"``.
    horizon : int, default 1
    method : {"historical", "gaussian", "cornish_fisher"}
        Ignored for volatility.
    measure : {"volatility", "var", "es"}, default "volatility"

    Returns
    -------
    total : array, shape (P,)
        The measure, as `value_at_risk` / `expected_shortfall` / `volatility`.
    marginal : array, shape (P, A)
        ``d total / d w`` (loss per unit of weight), by `jax.grad`; NaN for an
        unheld asset unobserved at times the portfolio uses.
    component : array, shape (P, A)
        ``w * marginal`` (0 where the marginal is NaN); sums to ``total``.
    """
    if measure == "volatility":
        total, marginal, component = _volatility_batched(weights, returns, horizon, True)
        return total, marginal, component
    if measure not in ("var", "es"):
        raise ValueError(f"unknown measure {measure!r}")
    out = tail_risk(weights, returns, confidence, horizon, method, contributions=True)
    return out[measure], out[f"{measure}_marginal"], out[f"{measure}_component"]


@precise
@partial(jax.jit, static_argnames=("horizon",))
def n_observations(weights: jax.Array, returns: jax.Array, horizon: int = 1) -> jax.Array:
    """Usable times per portfolio (all held assets observed), shape ``(P,)`` int.

    With ``horizon > 1``, the number of complete overlapping ``horizon``-period
    windows (what historical measures use).
    """
    missing = jnp.isnan(_aggregate(returns, horizon)).astype(returns.dtype)
    held = (weights != 0).astype(returns.dtype)
    return ((held @ missing.T) == 0).sum(axis=1)


@precise
@jax.jit
def portfolio_moments(weights: jax.Array, returns: jax.Array) -> dict[str, jax.Array]:
    """Per-portfolio ``mean``, ``std`` (ddof=1), ``skew``, ``kurtosis`` (excess, biased).

    Parameters
    ----------
    weights : array, shape (P, A)
    returns : array, shape (T, A)

    Returns
    -------
    dict of str to array, shape (P,)
        Per-period return fractions (mean, std) and unitless skew/kurtosis,
        over each portfolio's usable times.
    """
    r0, missing = _prepare(returns)
    mu, sigma, skew, kurt, _ = jax.vmap(_moments, in_axes=(0, None, None))(weights, r0, missing)
    return {"mean": mu, "std": sigma, "skew": skew, "kurtosis": kurt}


@precise
@partial(jax.jit, static_argnames=("n_scenarios", "distribution"))
def monte_carlo_scenarios(
    mean: jax.Array,
    cov: jax.Array,
    seed: int | jax.Array = 0,
    n_scenarios: int = 10_000,
    distribution: Literal["normal", "t"] = "normal",
    dof: float | jax.Array = 5.0,
    horizon: int | jax.Array = 1,
) -> jax.Array:
    """Seeded joint ``horizon``-period return scenarios, shape ``(n_scenarios, A)``.

    ``X = h mean + sqrt(h) L Z`` with ``L L^T = cov`` (symmetric square root by
    eigendecomposition, negative eigenvalues clipped to 0, so singular
    covariances work) and ``Z`` standard normal (``"normal"``), or for ``"t"``
    ``Z = sqrt((dof-2)/dof) N / sqrt(G/dof)`` with ``G ~ chi^2(dof)``: a
    multivariate Student-t whose covariance is ``cov`` (needs ``dof > 2``).
    Time scaling is sqrt-of-time on the dispersion (exact for the normal; for
    the t an approximation — a sum of t's is not t). Keys come from
    ``jax.random.PRNGKey(seed)``: same seed, same scenarios.

    Parameters
    ----------
    mean : array, shape (A,)
        Per-period mean returns.
    cov : array, shape (A, A)
        Per-period covariance.
    seed : int
    n_scenarios : int
    distribution : {"normal", "t"}
    dof : float
        Degrees of freedom of the t (> 2).
    horizon : int
        Periods.

    Returns
    -------
    array, shape (n_scenarios, A)
        Scenario asset returns (fractions) over the horizon.
    """
    dtype = cov.dtype
    k_normal, k_chi = jax.random.split(jax.random.PRNGKey(seed))
    lam, vec = jnp.linalg.eigh(0.5 * (cov + cov.T))
    root = vec * jnp.sqrt(jnp.maximum(lam, 0.0))
    z = jax.random.normal(k_normal, (n_scenarios, cov.shape[0]), dtype=dtype) @ root.T
    if distribution == "t":
        nu = jnp.asarray(dof, dtype=dtype)
        g = jax.random.chisquare(k_chi, nu, (n_scenarios,), dtype=dtype) / nu
        z = z * jnp.sqrt((nu - 2.0) / nu) / jnp.sqrt(g)[:, None]
    h = jnp.asarray(horizon, dtype=dtype)
    return h * mean + jnp.sqrt(h) * z
