"""Batched mean-variance QP: thousands of portfolios in one jitted, vmapped solve.

Per portfolio ``p`` (every input may differ between portfolios)::

    minimize   (gamma/2) w' S w - mu' w + c' |w - w0|
    subject to sum(w) = 1,  l <= w <= u,
               L_s <= sum_{i in s} w_i <= U_s   (sectors: a partition of the assets),
               ||w - w0||_1 <= tau              (turnover; tau = inf: none)

``S`` is dense (shared ``(N, N)`` or per portfolio ``(P, N, N)``, `DenseSigma`) or
factor-structured ``B F B' + diag(d)`` (`FactorSigma`, ``d`` shared or per
portfolio), which makes every linear-algebra step ``O(N K)``.

Method
------
1. **ADMM** (the OSQP iteration of Stellato et al. 2020, with over-relaxation and
   per-portfolio adaptive step ``rho``) on the rows budget, sectors and assets.
   The asset rows carry the nonsmooth part: their proximal step is the exact
   minimiser of ``c|z - w0| + (rho/2)(z - v)^2`` on ``[l, u]`` (a soft threshold
   around ``w0``, then a clip), and with a turnover limit the multiplier
   ``nu`` of ``sum |z - w0| <= tau`` is found exactly as the root of a monotone
   piecewise-linear function (bracketed Newton/secant steps, exact once the
   bracket holds one linear piece; warm-started from the previous ``nu``).
   The linear system ``gamma S + a I + E W E'`` (``E``: sector indicators, the
   budget row is their sum) is solved with one shared eigendecomposition of a
   dense ``S`` (two matrix products plus an ``S x S`` Woodbury correction, for any
   ``rho``) or a rank ``K + n_sectors`` Woodbury identity for a factor ``S``; so
   ``rho`` adapts per portfolio without refactorizing. Warm start from ``w0``.
2. **Polish** (after OSQP): the active set is read off the ADMM iterate (assets at
   a bound, assets left at ``w0``, buys and sells; binding sector bounds and
   turnover), and the equality-constrained QP on it is solved to machine precision
   by projected preconditioned conjugate gradients (Gould, Hribar & Nocedal 2001;
   with a factor ``S`` and the specific variances as preconditioner it is exact in
   ``K + 1`` steps). The answer is then *verified* against every KKT condition:
   primal (all constraints) and dual (stationarity, signs of all multipliers). A
   failed check drives a few primal-dual active-set corrections (Hintermüller, Ito
   & Kunisch 2002; full steps first, then one change at a time, which does not
   cycle in practice); if none verifies, ADMM goes on and polishing is retried.
3. Portfolios are solved in blocks (`jax.lax.map` over blocks, `jax.vmap` within a
   block): a block's working set stays in cache and a block stops as soon as all
   its portfolios are verified.

Every portfolio reports its iterations, KKT residuals of the returned point and a
``converged`` flag; nothing here raises (see `pmkit.optimize.batch`).

The optimal objective is differentiable (`optimal_objective`, a `jax.custom_vjp`):
by the envelope theorem its gradient is the partial derivative of the Lagrangian
at the optimum (e.g. ``d/dmu = -w*``) — no unrolling of iterations.

Only jax and numpy are imported. All quantities are per period as given; weights
are fractions of the portfolio.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pmkit.core._precision import precise

__all__ = [
    "DenseSigma",
    "FactorSigma",
    "Problem",
    "Solution",
    "make_problem",
    "objective_value",
    "optimal_objective",
    "solve",
]

_ALPHA = 1.6  # over-relaxation (OSQP default)
_SIGMA = 1e-6  # proximal weight on w
_EQ = 1e3  # rho multiplier of equality rows (OSQP)
_RHO0 = 10.0  # in units where mean diag(hg S) = 1; large: the active set shows early
_RHO_MIN, _RHO_MAX = 1e-6, 1e6
_CHUNK = 50  # ADMM steps between rho updates and polish attempts
_ROUNDS = 10  # most active-set solves per polish attempt ...
_FULL_ROUNDS = 3  # ... of which full primal-dual steps; then one change per round
_NU_STEPS = 30  # most root-finding steps for the turnover multiplier


# -- inputs ---------------------------------------------------------------------------------
class DenseSigma(NamedTuple):
    """A dense covariance: ``matrix`` ``(N, N)`` shared or ``(P, N, N)`` per portfolio."""

    matrix: jax.Array


class FactorSigma(NamedTuple):
    """``S = B F B' + diag(d)``.

    Attributes
    ----------
    loadings : array, shape (N, K)
        ``B``, shared by all portfolios.
    factor_cov : array, shape (K, K)
        ``F``, symmetric positive semi-definite, shared.
    specific : array, shape (N,) or (P, N)
        ``d >= 0``, specific (idiosyncratic) variances, shared or per portfolio.
    """

    loadings: jax.Array
    factor_cov: jax.Array
    specific: jax.Array


Sigma = DenseSigma | FactorSigma


class Problem(NamedTuple):
    """Per-portfolio data, every field broadcast to its full batch shape (see `make_problem`).

    Attributes
    ----------
    mu : (P, N) expected returns per period.
    current : (P, N) current weights ``w0``.
    lower, upper : (P, N) weight bounds (``-inf``/``inf`` allowed).
    risk_aversion : (P,) ``gamma > 0``.
    costs : (P, N) linear trading costs ``c >= 0`` per unit of weight traded.
    max_turnover : (P,) ``tau``; ``inf`` for no turnover limit.
    sector_lower, sector_upper : (P, S) sector bounds (``-inf``/``inf`` allowed).
    sector_ids : (N,) int sector of each asset, in ``[0, S)``.
    """

    mu: jax.Array
    current: jax.Array
    lower: jax.Array
    upper: jax.Array
    risk_aversion: jax.Array
    costs: jax.Array
    max_turnover: jax.Array
    sector_lower: jax.Array
    sector_upper: jax.Array
    sector_ids: jax.Array


class Solution(NamedTuple):
    """What `solve` returns, per portfolio.

    Attributes
    ----------
    weights : (P, N) optimal weights.
    objective : (P,) ``(gamma/2) w'Sw - mu'w + c'|w - w0|`` at ``weights``.
    converged : (P,) bool: both KKT residuals within tolerance.
    polished : (P,) bool: the weights come from a verified active-set solve.
    iterations : (P,) int ADMM iterations run before the accepted point.
    primal_residual : (P,) largest constraint violation of ``weights`` (weight units).
    dual_residual : (P,) largest violation of stationarity or of a multiplier's sign
        (objective units).
    budget_multiplier : (P,) ``lambda`` of ``sum(w) = 1``.
    sector_multiplier : (P, S) signed: > 0 upper bound binding, < 0 lower.
    turnover_multiplier : (P,) ``nu >= 0``.
    bound_multiplier : (P, N) signed: > 0 upper bound binding, < 0 lower.
    trade_sign : (P, N) subgradient ``s`` of ``|w - w0|``, in ``[-1, 1]``.
    """

    weights: jax.Array
    objective: jax.Array
    converged: jax.Array
    polished: jax.Array
    iterations: jax.Array
    primal_residual: jax.Array
    dual_residual: jax.Array
    budget_multiplier: jax.Array
    sector_multiplier: jax.Array
    turnover_multiplier: jax.Array
    bound_multiplier: jax.Array
    trade_sign: jax.Array


@precise
def make_problem(
    mu: jax.Array,
    current: jax.Array,
    *,
    lower: jax.Array | float = 0.0,
    upper: jax.Array | float = 1.0,
    risk_aversion: jax.Array | float = 1.0,
    costs: jax.Array | float = 0.0,
    max_turnover: jax.Array | float = jnp.inf,
    sector_ids: jax.Array | None = None,
    sector_lower: jax.Array | float = -jnp.inf,
    sector_upper: jax.Array | float = jnp.inf,
) -> Problem:
    """Broadcast shared and per-portfolio inputs to a `Problem` (differentiably).

    ``current`` fixes ``(P, N)``; every other input may be a scalar, ``(N,)``
    (shared across portfolios) or ``(P, N)`` (sector bounds: ``(S,)`` or
    ``(P, S)``). Without ``sector_ids`` all assets form one unconstrained sector.
    """
    current = jnp.asarray(current)
    dtype = current.dtype if jnp.issubdtype(current.dtype, jnp.floating) else jnp.float64
    current = current.astype(dtype)
    n_p, n = current.shape

    def full(x: jax.Array | float, shape: tuple[int, ...]) -> jax.Array:
        return jnp.broadcast_to(jnp.asarray(x, dtype), shape)

    if sector_ids is None:
        ids = jnp.zeros(n, jnp.int32)
        n_s = 1
    else:
        ids = jnp.asarray(sector_ids, jnp.int32)
        widths = [np.shape(b)[-1] for b in (sector_lower, sector_upper) if np.ndim(b) >= 1]
        n_s = max(widths) if widths else int(np.max(np.asarray(sector_ids))) + 1
    return Problem(
        mu=full(mu, (n_p, n)),
        current=current,
        lower=full(lower, (n_p, n)),
        upper=full(upper, (n_p, n)),
        risk_aversion=full(risk_aversion, (n_p,)),
        costs=full(costs, (n_p, n)),
        max_turnover=full(max_turnover, (n_p,)),
        sector_lower=full(sector_lower, (n_p, n_s)),
        sector_upper=full(sector_upper, (n_p, n_s)),
        sector_ids=ids,
    )



# -- covariance operators (one portfolio; vmapped with shared parts broadcast) -------------
class _Cov(NamedTuple):
    """Prepared covariance; only vectors are per portfolio where possible.

    Dense: ``(S, lam, Q, G = Q'E, rows of G outer G or a placeholder)``, ``S = Q
    diag(lam) Q'``. Factor: ``(R = B F^1/2, rows of [R, E] outer [R, E], d, rows of R
    outer R, unused)``, ``S = R R' + diag(d)``. Row outer products turn the small
    Gram matrices ``X' diag(h) X`` into one plain matrix product ``h @ outer`` for the
    whole block (XLA on CPU is slow on many small per-portfolio matrix products).
    """

    a: jax.Array
    b: jax.Array
    c: jax.Array
    d: jax.Array
    e: jax.Array


def _outer_rows(x: jax.Array) -> jax.Array:
    """``(N, k) -> (N, k * k)``: row ``i`` is ``x_i x_i'`` flattened."""
    return (x[:, :, None] * x[:, None, :]).reshape(x.shape[0], -1)


def _is_dense(cov: Sigma) -> bool:
    return isinstance(cov, DenseSigma)


def _prepare_cov(cov: Sigma, onehot: jax.Array, n_p: int) -> tuple[_Cov, tuple[bool, ...]]:
    """Prepared covariance and which of its fields are per portfolio (leading axis P)."""
    if _is_dense(cov):
        sig = cov.matrix
        lam, q = jnp.linalg.eigh(sig)  # one decomposition serves every rho of every portfolio
        qe = jnp.swapaxes(q, -1, -2) @ onehot
        if sig.ndim == 3:
            return _Cov(sig, lam, q, qe, jnp.zeros(())), (True, True, True, True, False)
        return _Cov(sig, lam, q, qe, _outer_rows(qe)), (False,) * 5
    b, f, d = cov
    lam, v = jnp.linalg.eigh(f)
    br = b @ (v * jnp.sqrt(jnp.clip(lam, 0.0)))  # S = br br' + diag(d)
    d = jnp.broadcast_to(d, (n_p, b.shape[0]))  # one compiled variant for shared and per-pf d
    vv = _outer_rows(jnp.concatenate([br, onehot], axis=1))
    return _Cov(br, vv, d, _outer_rows(br), jnp.zeros(())), (False, False, True, False, False)


def _sig_mv(dense: bool, cov: _Cov, x: jax.Array) -> jax.Array:
    """``S @ x``."""
    if dense:
        return cov.a @ x
    return cov.a @ (cov.a.T @ x) + cov.c * x


def _sig_diag(dense: bool, cov: _Cov) -> jax.Array:
    if dense:
        return jnp.diagonal(cov.a)
    return (cov.a**2).sum(-1) + cov.c


# -- scaled per-portfolio data ---------------------------------------------------------------
# ADMM rows, stacked in one vector of length 1 + S + N: [budget | sectors | assets].
def _split(r: jax.Array, n_s: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    return r[0], r[1:1 + n_s], r[1 + n_s:]


def _amul(onehot: jax.Array, w: jax.Array) -> jax.Array:
    """``A @ w`` for the rows [budget, sectors, assets]."""
    return jnp.concatenate([w.sum()[None], onehot.T @ w, w])


def _atmul(onehot: jax.Array, r: jax.Array) -> jax.Array:
    """``A' @ r``."""
    b, s, x = _split(r, onehot.shape[1])
    return b + onehot @ s + x


class _Data(NamedTuple):
    """One portfolio, objective scaled by ``kappa`` (mean diagonal of ``hg * S`` is 1)."""

    q: jax.Array  # -kappa * mu
    c: jax.Array  # kappa * costs
    hg: jax.Array  # kappa * gamma
    kappa: jax.Array
    w0: jax.Array
    low: jax.Array
    up: jax.Array
    sec_lo: jax.Array
    sec_hi: jax.Array
    tau: jax.Array
    rmult: jax.Array  # (1 + S,) rho multiplier of the budget and sector rows
    rfree: jax.Array  # (1 + S,) rows without bounds (they get rho_min)


def _data(pr: Problem, sdiag: jax.Array) -> _Data:
    """Per-portfolio (unbatched) scaled data; ``sdiag`` is diag(S) of this portfolio."""
    dt = pr.mu.dtype
    scale = pr.risk_aversion * jnp.mean(sdiag)
    kappa = 1.0 / jnp.where(scale > 0, scale, 1.0)
    eq = jnp.concatenate([jnp.ones(1, bool), pr.sector_lower == pr.sector_upper])
    free = jnp.concatenate([jnp.zeros(1, bool),
                            jnp.isinf(pr.sector_lower) & jnp.isinf(pr.sector_upper)])
    return _Data(-kappa * pr.mu, kappa * pr.costs, kappa * pr.risk_aversion, kappa,
                 pr.current, pr.lower, pr.upper, pr.sector_lower, pr.sector_upper,
                 pr.max_turnover, jnp.where(eq, _EQ, 1.0).astype(dt), free)


def _rho_vec(rho: jax.Array, d: _Data) -> jax.Array:
    head = jnp.where(d.rfree, _RHO_MIN, rho * d.rmult)
    return jnp.concatenate([head, jnp.full(d.w0.shape, rho)])


# -- ADMM -----------------------------------------------------------------------------------
class _Fact(NamedTuple):
    h: jax.Array  # dense: 1/(hg lam + a); factor: 1/(hg d + a)
    cinv: jax.Array  # (I + C Y)^-1 C, the small Woodbury core


def _spd_inv(m: jax.Array) -> jax.Array:
    """Inverse of a small symmetric matrix with eigenvalues >= 1 (``I + PSD``)."""
    chol = jnp.linalg.cholesky(m)
    return jax.scipy.linalg.cho_solve((chol, True), jnp.eye(m.shape[0], dtype=m.dtype))


def _factor(dense: bool, cov: _Cov, onehot: jax.Array, d: _Data, rv: jax.Array) -> _Fact:
    """Cache for solving ``(hg S + a I + E W E') x = r`` at the current ``rho``."""
    n_s = onehot.shape[1]
    rb, rs, rx = _split(rv, n_s)
    a = _SIGMA + rx[0]
    # W = diag(rs) + rb 11' = Lw'Lw, and (I + C Y)^-1 C = L'(I + L Y L')^-1 L for C = L'L.
    lw = jnp.concatenate([jnp.diag(jnp.sqrt(rs)), jnp.sqrt(rb) * jnp.ones((1, n_s), rv.dtype)])
    if dense:
        h = 1.0 / (d.hg * cov.b + a)
        # shared S: G' diag(h) G from the row outer products
        y = ((h @ cov.e).reshape(n_s, n_s) if cov.e.ndim == 2
             else cov.d.T @ (h[:, None] * cov.d))
        lmat = lw
    else:
        h = 1.0 / (d.hg * cov.c + a)
        k = cov.a.shape[1]
        y = (h @ cov.b).reshape(k + n_s, k + n_s)  # [R, E]' diag(h) [R, E]
        lmat = jnp.zeros((k + n_s + 1, k + n_s), h.dtype)
        lmat = lmat.at[:k, :k].set(jnp.sqrt(d.hg) * jnp.eye(k, dtype=h.dtype)).at[k:, k:].set(lw)
    inner = jnp.eye(lmat.shape[0], dtype=h.dtype) + lmat @ y @ lmat.T
    return _Fact(h, lmat.T @ _spd_inv(inner) @ lmat)


def _wsolve(dense: bool, cov: _Cov, onehot: jax.Array, fa: _Fact, r: jax.Array) -> jax.Array:
    """``(hg S + a I + E W E')^-1 r``: eigenbasis (dense) or Woodbury (factor)."""
    if dense:
        q, qe = cov.c, cov.d
        rh = q.T @ r
        v = fa.cinv @ (qe.T @ (fa.h * rh))
        return q @ (fa.h * (rh - qe @ v))
    br = cov.a
    u = fa.h * r
    v = fa.cinv @ jnp.concatenate([br.T @ u, onehot.T @ u])
    k = br.shape[1]
    return u - fa.h * (br @ v[:k] + onehot @ v[k:])


def _trade_prox(v: jax.Array, d: _Data, rho: jax.Array, nu: jax.Array) -> jax.Array:
    """``argmin (c + nu)|z - w0| + (rho/2)(z - v)^2`` on ``[l, u]``, per asset."""
    dv = v - d.w0
    mag = jnp.maximum(jnp.abs(dv) - (d.c + nu) / rho, 0.0)
    return jnp.clip(d.w0 + jnp.sign(dv) * mag, d.low, d.up)


def _asset_prox(v: jax.Array, d: _Data, rho: jax.Array, nu0: jax.Array,
                turnover: bool) -> tuple[jax.Array, jax.Array]:
    """Prox of the asset rows: costs and box, plus the turnover limit via its multiplier.

    ``T(nu) = sum |z(nu) - w0|`` is non-increasing and piecewise linear in ``nu``, and
    ``nu`` solves ``T(nu) = tau`` (or is 0 if ``T(0) <= tau``). Each step evaluates
    ``z``, ``T``, its slope and the next breakpoint in one pass, then takes a Newton
    step (exact within a linear piece), a secant step inside the bracket, or a jump
    to the next breakpoint. Warm start: the previous ``nu``, so a step or two usually
    suffice.
    """
    if not turnover:
        return _trade_prox(v, d, rho, 0.0), jnp.zeros_like(rho)
    dt = v.dtype
    dv = v - d.w0
    adv, sgn = jnp.abs(dv), jnp.sign(dv)
    cap = jnp.where(dv >= 0, d.up - d.w0, d.w0 - d.low)  # room on the trade's side
    tau = d.tau
    eps = 16 * v.shape[0] * jnp.finfo(dt).eps * (1.0 + tau)
    tiny = jnp.finfo(dt).tiny

    def evaluate(nu):
        raw = adv - (d.c + nu) / rho
        zc = d.w0 + sgn * jnp.maximum(raw, 0.0)
        z = jnp.clip(zc, d.low, d.up)
        moving = (raw > 0) & (zc > d.low) & (zc < d.up)
        # breakpoints in nu: where the trade hits its cap, and where it vanishes
        b1 = rho * (adv - cap) - d.c
        b2 = rho * adv - d.c
        nxt = jnp.min(jnp.where(b1 > nu, b1, jnp.where(b2 > nu, b2, jnp.inf)))
        return z, jnp.abs(z - d.w0).sum(), -moving.sum() / rho, nxt

    def finished(nu, t):
        return (jnp.abs(t - tau) <= eps) | ((nu <= 0) & (t <= tau))

    def cond(c):
        k, nu, _, t, _, _, _, _, _, _ = c
        return (k < _NU_STEPS) & ~finished(nu, t)

    def body(c):
        k, nu, _, t, slope, nxt, a, ta, b, tb = c
        over = t > tau
        a, ta = jnp.where(over & (nu >= a), nu, a), jnp.where(over & (nu >= a), t, ta)
        b, tb = jnp.where(~over & (nu <= b), nu, b), jnp.where(~over & (nu <= b), t, tb)
        newton = nu + (t - tau) / jnp.maximum(-slope, tiny)
        secant = a + (ta - tau) * (b - a) / jnp.maximum(ta - tb, tiny)
        inside = (newton > a) & (newton < b) & (slope < 0)
        bracketed = jnp.isfinite(b) & jnp.isfinite(ta)
        jump = jnp.minimum(nxt, b)  # infinite only if T cannot reach tau (infeasible)
        cand = jnp.where(inside, newton, jnp.where(
            bracketed, secant, jnp.where(over, jnp.where(jnp.isfinite(jump), jump, nu), 0.0)))
        z, t2, s2, n2 = evaluate(cand)
        return k + 1, cand, z, t2, s2, n2, a, ta, b, tb

    nu0 = jnp.maximum(nu0, 0.0)
    z, t, slope, nxt = evaluate(nu0)
    inf = jnp.asarray(jnp.inf, dt)
    # lower end 0 (T(0) not known yet unless nu0 = 0), upper end unknown
    init = (0, nu0, z, t, slope, nxt, jnp.zeros((), dt), inf, inf, -inf)
    _, nu, z, _, _, _, _, _, _, _ = jax.lax.while_loop(cond, body, init)
    return z, nu


class _State(NamedTuple):
    w: jax.Array
    z: jax.Array
    y: jax.Array
    rho: jax.Array
    nu: jax.Array  # turnover multiplier of the last prox (scaled units)


def _admm_step(dense, cov, onehot, d: _Data, fa: _Fact, rv: jax.Array, turnover: bool,
               st: _State) -> _State:
    wt = _wsolve(dense, cov, onehot, fa, _SIGMA * st.w - d.q + _atmul(onehot, rv * st.z - st.y))
    zr = _ALPHA * _amul(onehot, wt) + (1 - _ALPHA) * st.z
    w = _ALPHA * wt + (1 - _ALPHA) * st.w
    _vb, vs, vx = _split(zr + st.y / rv, onehot.shape[1])
    zx, nu = _asset_prox(vx, d, st.rho, st.nu, turnover)
    z = jnp.concatenate([jnp.ones(1, vx.dtype), jnp.clip(vs, d.sec_lo, d.sec_hi), zx])
    return _State(w, z, st.y + rv * (zr - z), st.rho, nu)


def _admm_residuals(dense, cov, onehot, d: _Data, st: _State) -> jax.Array:
    """OSQP residuals and the norms that normalise them (scaled units), stacked (4,)."""
    ax = _amul(onehot, st.w)
    px = d.hg * _sig_mv(dense, cov, st.w)
    aty = _atmul(onehot, st.y)
    mx = jnp.max
    return jnp.stack([
        mx(jnp.abs(ax - st.z)),
        mx(jnp.abs(px + d.q + aty)),
        jnp.maximum(mx(jnp.abs(ax)), mx(jnp.abs(st.z))),
        mx(jnp.abs(jnp.concatenate([px, aty, d.q]))),
    ])


def _new_rho(res: jax.Array, rho: jax.Array) -> jax.Array:
    """OSQP's rule: balance the relative primal and dual residuals (when off by 5x)."""
    prim, dual, prim_n, dual_n = res
    tiny = jnp.finfo(rho.dtype).tiny
    ratio = (prim / jnp.maximum(prim_n, tiny)) / jnp.maximum(dual / jnp.maximum(dual_n, tiny), tiny)
    cand = jnp.clip(rho * jnp.sqrt(ratio), _RHO_MIN, _RHO_MAX)
    change = (cand > 5 * rho) | (cand < rho / 5)
    return jnp.where(change & jnp.isfinite(cand), cand, rho)


# -- polish: verified active-set solves --------------------------------------------------------
class _Point(NamedTuple):
    """A candidate answer with multipliers (scaled units) and its KKT residuals."""

    w: jax.Array
    eta_b: jax.Array
    eta_s: jax.Array
    nu: jax.Array
    ybox: jax.Array
    sign: jax.Array
    primal: jax.Array  # weight units
    dual: jax.Array  # scaled objective units


class _ASet(NamedTuple):
    """A guess of the active set of one portfolio."""

    at_l: jax.Array  # (N,) bool: at the lower bound
    at_u: jax.Array  # (N,) bool: at the upper bound
    kink: jax.Array  # (N,) bool: left untraded at w0
    s: jax.Array  # (N,) trade sign of the other (free) assets: +1 buy, -1 sell
    s_lo: jax.Array  # (S,) bool: sector minimum binding
    s_hi: jax.Array  # (S,) bool: sector maximum binding
    t_act: jax.Array  # () bool: turnover limit binding


def _aset_from_admm(onehot: jax.Array, d: _Data, st: _State) -> _ASet:
    """Where the prox put the ADMM iterate: on a bound, on ``w0``, or between."""
    _, zs, zx = _split(st.z, onehot.shape[1])
    at_l = zx <= d.low
    at_u = (zx >= d.up) & ~at_l
    kink = (zx == d.w0) & ~at_l & ~at_u
    s = jnp.where(zx >= d.w0, 1.0, -1.0).astype(zx.dtype)
    s_lo = zs <= d.sec_lo
    return _ASet(at_l, at_u, kink, s, s_lo, (zs >= d.sec_hi) & ~s_lo,
                 (st.nu > 0) & jnp.isfinite(d.tau))


def _pinv_small(g: jax.Array) -> jax.Array:
    """Pseudo-inverse of a small symmetric PSD matrix (redundant or empty rows allowed)."""
    lam, v = jnp.linalg.eigh(g)
    cut = jnp.max(jnp.abs(lam)) * g.shape[0] * 1e3 * jnp.finfo(g.dtype).eps
    inv = jnp.where(lam > cut, 1.0 / jnp.where(lam > cut, lam, 1.0), 0.0)
    return (v * inv) @ v.T


def _zrange(d: _Data, v: jax.Array, cn: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Interval of ``zt`` a fixed asset at ``v`` balances: N_box(v) + cn * d|v - w0|."""
    zlo = jnp.where(v <= d.low, -jnp.inf, 0.0) + cn * jnp.where(v > d.w0, 1.0, -1.0)
    zhi = jnp.where(v >= d.up, jnp.inf, 0.0) + cn * jnp.where(v < d.w0, -1.0, 1.0)
    return zlo, zhi


def _violation(d: _Data, onehot: jax.Array, w: jax.Array) -> jax.Array:
    """Largest violation of budget, bounds, sector bounds and turnover (weight units)."""
    sec = onehot.T @ w
    gap = jnp.maximum(jnp.concatenate([d.sec_lo - sec, d.low - w]),
                      jnp.concatenate([sec - d.sec_hi, w - d.up]))
    return jnp.maximum(jnp.maximum(jnp.abs(w.sum() - 1.0), jnp.abs(w - d.w0).sum() - d.tau),
                       jnp.maximum(jnp.max(gap), 0.0))


def _reduced_cg(d: _Data, free, e, bvec, lin, hmv, sdiag, xwarm, cg_iter: int, cg_tol: float):
    """Equality-constrained QP on the free assets by projected preconditioned CG (dense S).

    Preconditioner diag(S) (Jacobi). Returns the free part of the solution and the
    projection data ``(D^-1, (E D^-1 E')^+)``.
    """
    dinv = jnp.where(free > 0, 1.0 / jnp.maximum(d.hg * sdiag, jnp.finfo(lin.dtype).tiny), 0.0)
    gram = _pinv_small((e * dinv) @ e.T)

    def strip(r):  # r minus its least-squares part in range(E')
        return r - e.T @ (gram @ (e @ (dinv * r)))

    def gmax(g_):
        return jnp.max(jnp.abs(g_))

    x = free * xwarm
    x = x - dinv * (e.T @ (gram @ (e @ x - bvec)))
    # The gradient carries a large component E'eta (the multipliers); left in r it would
    # swamp the CG inner products with projection round-off, so r is kept stripped of it
    # (Gould, Hribar & Nocedal's residual update) and g = P D^-1 r.
    r = strip(hmv(x) + lin)
    g = dinv * r
    scale = jnp.maximum(gmax(lin), gmax(hmv(x)))

    # Past convergence CG iterates on rounding noise, so the best iterate is kept.
    def cg_cond(c):
        k, _, _, g_, _, _, _, _ = c
        return (k < cg_iter) & (gmax(g_) > cg_tol * jnp.maximum(scale, 1e-300))

    def cg_body(c):
        k, x_, r_, _, p_, rg_, xb, gb = c
        hp = hmv(p_)
        php = p_ @ hp
        alpha = jnp.where(php > 0, rg_ / jnp.where(php > 0, php, 1.0), 0.0)
        x_ = x_ + alpha * p_
        r_ = strip(r_ + alpha * hp)
        g2 = dinv * r_
        g2 = g2 - dinv * (e.T @ (gram @ (e @ g2)))
        rg2 = r_ @ g2
        beta = jnp.where(rg_ > 0, rg2 / jnp.where(rg_ > 0, rg_, 1.0), 0.0)
        better = gmax(g2) < gb
        return (k + 1, x_, r_, g2, -g2 + beta * p_, rg2, jnp.where(better, x_, xb),
                jnp.where(better, gmax(g2), gb))

    x = jax.lax.while_loop(cg_cond, cg_body, (0, x, r, g, -g, r @ g, x, gmax(g)))[6]
    return x, dinv, gram


def _reduced_factor(d: _Data, cov: _Cov, free, e, bvec, lin, hmv):
    """Equality-constrained QP on the free assets, directly (factor S).

    The masked Hessian is ``diag(hg d) + hg R_f R_f'`` (``R_f``: rows of free assets):
    a Woodbury solve for ``[lin, E']`` and an ``m x m`` Schur complement for the
    multipliers, then one step of iterative refinement against the exact Hessian
    (the diagonal is floored at 1e-12 of the mean variance, for ``d = 0``).
    """
    br, spec = cov.a, cov.c
    k = br.shape[1]
    floor = 1e-12 * jnp.mean((br**2).sum(-1) + spec)
    dinv = jnp.where(free > 0, 1.0 / (d.hg * jnp.maximum(spec, floor)), 0.0)
    core = _spd_inv(jnp.eye(k, dtype=br.dtype) + d.hg * (dinv @ cov.d).reshape(k, k))

    def hinv(xm):  # inverse of the masked Hessian on the free assets, columns of xm
        dx = dinv[:, None] * xm
        return dx - d.hg * dinv[:, None] * (br @ (core @ (br.T @ dx)))

    he = hinv(e.T)
    schur = _pinv_small((e[:, :, None] * he[None, :, :]).sum(1))

    def kkt(g_, b_):  # min x'Hx/2 + g'x  s.t.  E x = b
        hg_ = hinv(g_[:, None])[:, 0]
        eta = schur @ (-b_ - e @ hg_)
        return -hg_ - he @ eta, eta

    x, eta = kkt(lin, bvec)
    dx, _ = kkt(hmv(x) + lin + e.T @ eta, bvec - e @ x)
    return x + dx, dinv, _pinv_small((e * dinv) @ e.T)


def _solve_aset(dense, cov, onehot, d: _Data, a: _ASet, xwarm: jax.Array, eta0: jax.Array,
                cg_iter: int, cg_tol: float) -> tuple[_Point, jax.Array]:
    """Solve the equality-constrained QP of an active set and check its KKT conditions.

    ``eta0`` (budget, sectors, turnover) is a prior for the multipliers: they are its
    least-squares correction to stationarity of the free assets, so directions the
    free assets do not determine (fewer free assets than binding rows, as at a
    vertex) keep the prior. Returns the point and ``zt``, minus the gradient of the
    Lagrangian without the asset's own bound and trade terms (what a fixed asset's
    multipliers must balance), and the residual of the binding rows (nonzero when
    they are inconsistent on the free assets).
    """
    w0, s = d.w0, a.s
    fixed = a.at_l | a.at_u | a.kink
    free = (~fixed).astype(w0.dtype)
    fx = 1.0 - free
    v = jnp.where(a.at_l, d.low, jnp.where(a.at_u, d.up, w0))
    s_act = a.s_lo | a.s_hi
    t_act = a.t_act

    # Equality rows on the free assets: budget, binding sectors, binding turnover.
    e = jnp.concatenate([free[None, :], (onehot * free[:, None]).T * s_act[:, None],
                         (free * s * t_act)[None, :]])
    vx = fx * v
    bvec = jnp.concatenate([
        (1.0 - vx.sum())[None],
        jnp.where(s_act, jnp.where(a.s_hi, d.sec_hi, d.sec_lo) - onehot.T @ vx, 0.0),
        jnp.where(t_act, d.tau - (fx * jnp.abs(v - w0)).sum() + (free * s * w0).sum(),
                  0.0)[None],
    ])
    lin = free * (d.q + d.c * s + d.hg * _sig_mv(dense, cov, vx))

    def hmv(x):
        return free * (d.hg * _sig_mv(dense, cov, free * x))

    if dense:
        x, dinv, gram = _reduced_cg(d, free, e, bvec, lin, hmv, _sig_diag(dense, cov),
                                    xwarm, cg_iter, cg_tol)
    else:
        x, dinv, gram = _reduced_factor(d, cov, free, e, bvec, lin, hmv)
    x = x - dinv * (e.T @ (gram @ (e @ x - bvec)))  # equalities exact again
    gap = bvec - e @ x  # nonzero only if the rows are inconsistent on the free assets
    w = free * x + fx * v
    grad = d.hg * _sig_mv(dense, cov, w) + d.q  # gradient of the smooth part
    eta0 = eta0 * jnp.concatenate([jnp.ones(1, bool), s_act, t_act[None]])
    eta = eta0 - gram @ (e @ (dinv * (free * (grad + d.c * s) + e.T @ eta0)))
    eta_b = eta[0]
    eta_s = jnp.where(s_act, eta[1:-1], 0.0)
    nu = jnp.where(t_act, eta[-1], 0.0)
    cn = d.c + nu
    zt = -(grad + eta_b + onehot @ eta_s)  # stationarity: -zt + ybox + (c + nu) s = 0
    zlo, zhi = _zrange(d, v, cn)
    fixed_viol = jnp.maximum(jnp.maximum(zlo - zt, zt - zhi), 0.0)
    sign_viol = jnp.maximum(jnp.where(a.s_hi, -eta_s, 0.0), jnp.where(a.s_lo, eta_s, 0.0))
    stat = jnp.abs(-zt + cn * s)
    # Free assets must keep the trade direction their cost was linearised with.
    dirn = jnp.where((cn > 0) | t_act, jnp.maximum(-s * (w - w0), 0.0), 0.0)
    dual = jnp.maximum(jnp.max(jnp.where(free > 0, stat, fixed_viol)),
                       jnp.maximum(jnp.max(sign_viol, initial=0.0), -nu))
    primal = jnp.maximum(_violation(d, onehot, w), jnp.max(free * dirn))
    # Split the fixed assets' multipliers into a bound part and a trade-sign part.
    kink_s = jnp.clip(zt / jnp.where(cn > 0, cn, 1.0), -1.0, 1.0)
    s_fix = jnp.where(v > w0, 1.0, jnp.where(v < w0, -1.0, jnp.where(cn > 0, kink_s, 0.0)))
    sign = jnp.where(free > 0, s, s_fix)
    return _Point(w, eta_b, eta_s, nu, fx * (zt - cn * s_fix), sign, primal, dual), (zt, gap)


def _update_aset(onehot, d: _Data, a: _ASet, pt: _Point, extra: tuple, tol: float,
                 single: jax.Array) -> _ASet:
    """One primal-dual active-set step: fix what the solve violated, release what pulls away.

    With ``single`` only the largest violation is corrected (full steps can cycle
    near degenerate optima; one change at a time practically does not). If the
    binding rows were inconsistent on the free assets (a degenerate vertex), only
    one fixed asset is released: among those whose move reduces the residual, the
    one with the least dual slack (a dual simplex ratio test).
    """
    zt, gap = extra
    w, w0 = pt.w, d.w0
    fixed = a.at_l | a.at_u | a.kink
    v = jnp.where(a.at_l, d.low, jnp.where(a.at_u, d.up, w0))
    cn = d.c + pt.nu
    zlo, zhi = _zrange(d, v, cn)
    sec = onehot.T @ w
    s_act = a.s_lo | a.s_hi
    zero = jnp.zeros_like(w)
    # Violation scores (> tol: violated). Free assets: below/above a bound, or across w0
    # against their cost's sign; fixed assets: multiplier pulling up (zt > zhi) or down.
    scores = [
        jnp.where(~fixed, d.low - w, zero),
        jnp.where(~fixed, w - d.up, zero),
        jnp.where(~fixed & ((cn > 0) | a.t_act), -a.s * (w - w0), zero),
        jnp.where(fixed, zt - zhi, zero),
        jnp.where(fixed, zlo - zt, zero),
        jnp.where(a.s_lo, pt.eta_s, 0.0),
        jnp.where(a.s_hi, -pt.eta_s, 0.0),
        jnp.where(~s_act, d.sec_lo - sec, 0.0),
        jnp.where(~s_act, sec - d.sec_hi, 0.0),
        jnp.where(a.t_act, -pt.nu, 0.0)[None],
        jnp.where(~a.t_act, jnp.abs(w - w0).sum() - d.tau, 0.0)[None],
    ]
    flat = jnp.nan_to_num(jnp.concatenate(scores), nan=0.0, neginf=0.0, posinf=0.0)
    # Inconsistent rows: the column a released asset adds, dotted with the residual.
    stuck = jnp.max(jnp.abs(gap)) > tol
    s_act_f = s_act.astype(w.dtype)
    base = gap[0] + onehot @ (gap[1:-1] * s_act_f)
    t_g = gap[-1] * a.t_act
    up_dot = base + jnp.where(v >= w0, 1.0, -1.0) * t_g
    dn_dot = base + jnp.where(v <= w0, -1.0, 1.0) * t_g
    slack_up = jnp.where(fixed & (up_dot > tol), zhi - zt, jnp.inf)
    slack_dn = jnp.where(fixed & (dn_dot < -tol), zt - zlo, jnp.inf)
    pick_up = jnp.min(slack_up) <= jnp.min(slack_dn)
    rel_up = pick_up & (jnp.arange(w.shape[0]) == jnp.argmin(slack_up)) & jnp.isfinite(slack_up)
    rel_dn = (~pick_up & (jnp.arange(w.shape[0]) == jnp.argmin(slack_dn))
              & jnp.isfinite(slack_dn))
    keep = jnp.where(single, jnp.arange(flat.shape[0]) == jnp.argmax(flat), True)
    cuts = np.cumsum([x.shape[0] for x in scores])[:-1]
    below, above, cross, go_up, go_dn, slo_off, shi_off, slo_on, shi_on, t_off, t_on = (
        jnp.split((flat > tol) & keep & ~stuck, cuts))
    go_up = go_up | (stuck & rel_up)
    go_dn = go_dn | (stuck & rel_dn)
    above = above & ~below
    cross = cross & ~below & ~above
    go_dn = go_dn & ~go_up
    release = go_up | go_dn
    s = jnp.where(go_up, jnp.where(v >= w0, 1.0, -1.0), a.s)
    s = jnp.where(go_dn, jnp.where(v <= w0, -1.0, 1.0), s)
    at_l = (a.at_l & ~release) | below | (cross & (w0 < d.low))
    at_u = ((a.at_u & ~release) | above | (cross & (w0 > d.up))) & ~at_l
    kink = ((a.kink & ~release) | (cross & (w0 >= d.low) & (w0 <= d.up))) & ~at_l & ~at_u
    s_lo = (a.s_lo & ~slo_off) | slo_on
    s_hi = ((a.s_hi & ~shi_off) | shi_on) & ~s_lo
    t_act = (a.t_act & ~t_off[0]) | t_on[0]
    # A newly binding turnover limit linearises |w - w0| with the current trade signs.
    s = jnp.where(t_on[0] & ~fixed, jnp.where(w >= w0, 1.0, -1.0), s)
    return _ASet(at_l, at_u, kink, s.astype(w0.dtype), s_lo, s_hi, t_act)


def _polish(dense, cov, onehot, d: _Data, st: _State, active: jax.Array, cg_iter: int,
            cg_tol: float, tol: float) -> _Point:
    """Active set from ADMM, then up to ``_ROUNDS`` verified active-set solves.

    Nothing is solved unless ``active`` (a vmapped block skips finished portfolios).
    Full primal-dual steps are taken for ``_FULL_ROUNDS`` rounds and while they
    reduce the KKT violation; then one change per round.
    """
    dt = st.w.dtype
    inf = jnp.asarray(jnp.inf, dt)
    yb, ys, _ = _split(st.y, onehot.shape[1])
    pt0 = _Point(st.w, yb, ys, st.nu, jnp.zeros_like(st.w), jnp.zeros_like(st.w), inf, inf)

    def cond(c):
        k, _, pt, _, changed, _ = c
        return active & (k < _ROUNDS) & ~((pt.primal <= tol) & (pt.dual <= tol)) & changed

    def body(c):
        k, a, pt, zt, _, single = c
        new = _update_aset(onehot, d, a, pt, zt, tol, single)
        a2 = jax.tree_util.tree_map(lambda u, v: jnp.where(k == 0, u, v), a, new)
        diff = [jnp.any(u != v) for u, v in zip(jax.tree_util.tree_leaves(a),
                                                jax.tree_util.tree_leaves(a2), strict=True)]
        eta0 = jnp.concatenate([pt.eta_b[None], pt.eta_s, pt.nu[None]])
        pt2, zt2 = _solve_aset(dense, cov, onehot, d, a2, pt.w, eta0, cg_iter, cg_tol)
        worse = (k > 0) & (pt2.primal + pt2.dual > pt.primal + pt.dual)
        single = single | worse | (k + 1 >= _FULL_ROUNDS)
        return k + 1, a2, pt2, zt2, (k == 0) | jnp.any(jnp.stack(diff)), single

    extra0 = (jnp.zeros_like(st.w), jnp.zeros(onehot.shape[1] + 2, dt))
    init = (0, _aset_from_admm(onehot, d, st), pt0, extra0, jnp.asarray(True), jnp.asarray(False))
    return jax.lax.while_loop(cond, body, init)[2]


def _admm_point(onehot, d: _Data, st: _State, res: jax.Array) -> _Point:
    """The ADMM iterate itself, its duals mapped to the polish layout."""
    yb, ys, yx = _split(st.y, onehot.shape[1])
    zx = _split(st.z, onehot.shape[1])[2]
    cn = d.c + st.nu
    sign = jnp.where(zx > d.w0, 1.0, jnp.where(
        zx < d.w0, -1.0, jnp.clip(yx / jnp.where(cn > 0, cn, 1.0), -1.0, 1.0)))
    return _Point(st.w, yb, ys, st.nu, yx - cn * sign, sign, _violation(d, onehot, st.w),
                  res[1])


# -- driver ---------------------------------------------------------------------------------------
def _objective(dense: bool, cov: _Cov, pr1: Problem, w: jax.Array) -> jax.Array:
    """Unscaled objective of one portfolio."""
    quad = w @ _sig_mv(dense, cov, w)
    return 0.5 * pr1.risk_aversion * quad - pr1.mu @ w + pr1.costs @ jnp.abs(w - pr1.current)


def _solve_block(dense, onehot, shared: _Cov, per: tuple[bool, ...], data: _Data,
                 cov_pp: tuple, tol: float, max_iter: int, cg_iter: int, cg_tol: float,
                 turnover: bool):
    """ADMM + polish for one block of portfolios (leading axis), until all verify."""
    n_b = data.w0.shape[0]
    dtype = data.w0.dtype
    it = iter(cov_pp)
    cov = _Cov(*[next(it) if p else f for f, p in zip(shared, per, strict=True)])
    ax = _Cov(*[0 if p else None for p in per])

    def vm(fn, *extra):
        return jax.vmap(fn, in_axes=(ax, *extra))

    fact_v = vm(lambda c, dd, rho: _factor(dense, c, onehot, dd, _rho_vec(rho, dd)), 0, 0)
    step_v = vm(lambda c, dd, fa, rv, s_: _admm_step(dense, c, onehot, dd, fa, rv, turnover,
                                                     s_), 0, 0, 0, 0)
    resid_v = vm(lambda c, dd, s_: _admm_residuals(dense, c, onehot, dd, s_), 0, 0)
    polish_v = vm(lambda c, dd, s_, a_: _polish(dense, c, onehot, dd, s_, a_, cg_iter, cg_tol,
                                                tol), 0, 0, 0)
    point_v = jax.vmap(lambda dd, s_, r_: _admm_point(onehot, dd, s_, r_))

    def init_one(dd):
        z = _amul(onehot, dd.w0)
        z = jnp.concatenate([jnp.ones(1, dtype), jnp.clip(_split(z, onehot.shape[1])[1],
                                                          dd.sec_lo, dd.sec_hi),
                             jnp.clip(dd.w0, dd.low, dd.up)])
        return _State(dd.w0, z, jnp.zeros_like(z), jnp.asarray(_RHO0, dtype),
                      jnp.zeros((), dtype))

    st = jax.vmap(init_one)(data)
    inf = jnp.full(n_b, jnp.inf, dtype)
    zn = jnp.zeros_like(data.w0)
    best = _Point(data.w0, inf * 0, jnp.zeros(data.sec_lo.shape, dtype), inf * 0, zn, zn,
                  inf, inf)

    def ok(pt):
        return (pt.primal <= tol) & (pt.dual <= tol)

    def accept(old, new, take):
        return jax.tree_util.tree_map(
            lambda o, n: jnp.where(take.reshape(take.shape + (1,) * (o.ndim - 1)), n, o),
            old, new)

    def cond(c):
        k, _, _, done, _, _ = c
        return (k < max_iter) & ~jnp.all(done)

    def body(c):
        k, st_, best_, done, iters, pol = c
        fa = fact_v(cov, data, st_.rho)
        rv = jax.vmap(_rho_vec)(st_.rho, data)
        st_ = jax.lax.fori_loop(0, _CHUNK, lambda _, s_: step_v(cov, data, fa, rv, s_), st_)
        k = k + _CHUNK
        iters = jnp.where(done, iters, k)
        res = resid_v(cov, data, st_)
        st_ = st_._replace(rho=jax.vmap(_new_rho)(res, st_.rho))
        cand = polish_v(cov, data, st_, ~done)
        good = ok(cand) & ~done
        best_ = accept(best_, cand, good)
        raw = point_v(data, st_, res)
        better = ~done & ~good & (raw.primal + raw.dual <= best_.primal + best_.dual)
        best_ = accept(best_, raw, better)
        return k, st_, best_, done | good | (better & ok(raw)), iters, pol | good

    zb = jnp.zeros(n_b, bool)
    init = (0, st, best, zb, jnp.zeros(n_b, jnp.int32), zb)
    _, _, best, _, iters, polished = jax.lax.while_loop(cond, body, init)
    return best, iters, polished


@precise
@partial(jax.jit, static_argnames=("tol", "max_iter", "cg_iter", "block", "turnover"))
def solve(problem: Problem, cov: Sigma, *, tol: float | None = None, max_iter: int = 4000,
          cg_iter: int | None = None, block: int = 32, turnover: bool = True) -> Solution:
    """Solve every portfolio's QP (see the module docstring).

    Parameters
    ----------
    problem : Problem
        From `make_problem` (all fields broadcast to their batch shapes).
    cov : DenseSigma or FactorSigma
        Covariance of asset returns per period (same units as ``mu``).
    tol : float, optional
        Acceptance threshold of the KKT residuals: constraint violation in weight
        units; stationarity and multiplier signs in units of the portfolio's
        objective scaled so that ``gamma * mean(diag S)`` is 1. Default 1e-9
        (float64), 1e-4 (float32).
    max_iter : int, default 4000
        Most ADMM iterations per portfolio (in steps of 25).
    cg_iter : int, optional
        Most conjugate-gradient steps per active-set solve (default ``N + 10``
        dense, ``2 K + 10`` factor).
    block : int, default 32
        Portfolios solved together (vmapped); blocks run one after another and each
        stops when all its portfolios are verified.
    turnover : bool, default True
        Whether any portfolio has a finite ``max_turnover``; False skips the
        turnover root-finding (and ignores ``max_turnover``).

    Returns
    -------
    Solution
        Weights, objective, status and multipliers for every portfolio. Nothing is
        raised: an unconverged portfolio has ``converged == False`` and its best
        ADMM iterate.
    """
    dtype = problem.mu.dtype
    if tol is None:
        tol = 1e-9 if dtype == jnp.float64 else 1e-4
    n_p, n = problem.mu.shape
    n_s = problem.sector_lower.shape[1]
    dense = _is_dense(cov)
    if cg_iter is None:
        cg_iter = n + 10 if dense else 2 * cov.loadings.shape[1] + 10
    cg_tol = 1e-12 if dtype == jnp.float64 else 1e-5
    if not turnover:
        problem = problem._replace(max_turnover=jnp.full_like(problem.max_turnover, jnp.inf))
    onehot = jax.nn.one_hot(problem.sector_ids, n_s, dtype=dtype)
    pcov, per = _prepare_cov(cov, onehot, n_p)
    pr_axes = Problem(*([0] * 9), None)
    cov_axes = _Cov(*[0 if p else None for p in per])
    if any(per):
        sdiag = jax.vmap(lambda c: _sig_diag(dense, c), in_axes=(cov_axes,))(pcov)
    else:
        sdiag = jnp.broadcast_to(_sig_diag(dense, pcov), (n_p, n))
    data = jax.vmap(_data, in_axes=(pr_axes, 0))(problem, sdiag)

    block = max(1, min(block, n_p))
    n_blk = -(-n_p // block)
    pad = n_blk * block - n_p

    def blocks(x):  # (P, ...) -> (n_blk, block, ...), padding with the last portfolio
        x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]) if pad else x
        return x.reshape((n_blk, block, *x.shape[1:]))

    cov_pp = tuple(f for f, p in zip(pcov, per, strict=True) if p)
    shared = _Cov(*[None if p else f for f, p in zip(pcov, per, strict=True)])
    xs = jax.tree_util.tree_map(blocks, (data, cov_pp))
    out = jax.lax.map(lambda a: _solve_block(dense, onehot, shared, per, a[0], a[1], tol,
                                             max_iter, cg_iter, cg_tol, turnover), xs)
    best, iters, polished = jax.tree_util.tree_map(
        lambda x: x.reshape((n_blk * block, *x.shape[2:]))[:n_p], out)
    obj = jax.vmap(lambda c, p1, w: _objective(dense, c, p1, w),
                   in_axes=(cov_axes, pr_axes, 0))(pcov, problem, best.w)
    kappa = data.kappa
    return Solution(
        weights=best.w,
        objective=obj,
        converged=(best.primal <= tol) & (best.dual <= tol),
        polished=polished,
        iterations=iters,
        primal_residual=best.primal,
        dual_residual=best.dual / kappa,
        budget_multiplier=best.eta_b / kappa,
        sector_multiplier=best.eta_s / kappa[:, None],
        turnover_multiplier=best.nu / kappa,
        bound_multiplier=best.ybox / kappa[:, None],
        trade_sign=best.sign,
    )


@precise
def objective_value(problem: Problem, cov: Sigma, weights: jax.Array) -> jax.Array:
    """``(gamma/2) w'Sw - mu'w + c'|w - w0|`` of given weights ``(P, N)`` -> ``(P,)``."""
    if _is_dense(cov):
        quad = jnp.einsum("pi,...ij,pj->p", weights, cov.matrix, weights)
    else:
        b, f, d = cov
        v = weights @ b
        quad = jnp.einsum("pk,kl,pl->p", v, f, v) + (d * weights**2).sum(-1)
    return (0.5 * problem.risk_aversion * quad - (problem.mu * weights).sum(-1)
            + (problem.costs * jnp.abs(weights - problem.current)).sum(-1))


# -- differentiable optimal value ----------------------------------------------------------------
@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def optimal_objective(problem: Problem, cov: Sigma, tol: float | None = None,
                      max_iter: int = 4000) -> jax.Array:
    """Optimal objective per portfolio ``(P,)``, differentiable in every float input.

    Gradients (`jax.grad`, `jax.vjp`) follow from the envelope theorem at the
    solution instead of unrolling the solver:

    - ``mu``: ``-w*``; ``risk_aversion``: ``w*'Sw*/2``; ``costs``: ``|w* - w0|``;
    - dense ``S``: ``(gamma/2) w* w*'``; factor: ``B``: ``gamma w* (F B'w*)'``,
      ``F``: ``(gamma/2) (B'w*)(B'w*)'``, ``d``: ``(gamma/2) w*^2``;
    - ``lower``/``upper``: ``max(-y, 0)`` / ``-max(y, 0)`` with ``y`` the signed
      bound multiplier (same for sector bounds); ``max_turnover``: ``-nu``;
      ``current``: ``-(c + nu) s`` with ``s`` the trade-sign subgradient.

    Shared inputs (broadcast by `make_problem`) receive the sum over
    portfolios. At a degenerate optimum (e.g. an asset exactly at a bound with
    zero multiplier) the value function is not differentiable; one valid
    one-sided gradient is returned. Unconverged portfolios give NaN.
    """
    return _guarded(solve(problem, cov, tol=tol, max_iter=max_iter))


def _guarded(sol: Solution) -> jax.Array:
    return jnp.where(sol.converged, sol.objective, jnp.nan)


def _oo_fwd(problem, cov, tol, max_iter):
    sol = solve(problem, cov, tol=tol, max_iter=max_iter)
    return _guarded(sol), (problem, cov, sol)


def _oo_bwd(tol, max_iter, res, g):
    problem, cov, sol = res
    g = jnp.where(sol.converged, g, jnp.nan)
    w = sol.weights
    gam = problem.risk_aversion
    trade = w - problem.current
    if isinstance(cov, DenseSigma):
        sw = jnp.einsum("...ij,pj->pi", cov.matrix, w)
        spec = "p,pi,pj->pij" if cov.matrix.ndim == 3 else "p,pi,pj->ij"
        d_cov = DenseSigma(jnp.einsum(spec, 0.5 * g * gam, w, w))
    else:
        b, f, d = cov
        v = w @ b
        fv = v @ f.T
        sw = fv @ b.T + d * w
        gg = g * gam
        d_b = jnp.einsum("p,pi,pk->ik", gg, w, v @ f)
        d_f = 0.5 * jnp.einsum("p,pk,pl->kl", gg, v, v)
        d_d = 0.5 * gg[:, None] * w**2
        d_cov = FactorSigma(d_b, d_f, d_d if d.ndim == 2 else d_d.sum(0))
    quad = (w * sw).sum(-1)
    y = sol.bound_multiplier
    ys = sol.sector_multiplier
    nu = sol.turnover_multiplier
    gcol = g[:, None]
    d_problem = Problem(
        mu=-gcol * w,
        current=-gcol * (problem.costs + nu[:, None]) * sol.trade_sign,
        lower=gcol * jnp.maximum(-y, 0.0),
        upper=-gcol * jnp.maximum(y, 0.0),
        risk_aversion=0.5 * g * quad,
        costs=gcol * jnp.abs(trade),
        max_turnover=jnp.where(jnp.isfinite(problem.max_turnover), -g * nu, 0.0),
        sector_lower=gcol * jnp.maximum(-ys, 0.0),
        sector_upper=-gcol * jnp.maximum(ys, 0.0),
        sector_ids=None,
    )
    return d_problem, d_cov


optimal_objective.defvjp(_oo_fwd, _oo_bwd)
# Wrapped after defvjp (the custom_vjp object carries it), like every public function here.
optimal_objective = precise(optimal_objective)
