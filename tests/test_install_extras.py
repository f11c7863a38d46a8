"""Every documented install works from the built wheel, not only `make run`'s ``[all]``.

The wheel is built once from a clean copy of the sources, and each documented extra set
(``pmkit``, ``pmkit[ui]``, ``pmkit[optimize]``, ``pmkit[stream]``; the README's "Install"
section) is installed into its own fresh virtual environment (no system or project site
packages), the four at once. Each environment then runs what its extra promises, as a user
would: the core computes on its data model and names the extra any missing piece needs;
``optimize`` solves, ``stream`` serves ``pmkit feed`` to a client, ``ui`` serves the app and
builds every tab. A dependency that only `make run`'s ``[all]`` brings in (xarray's ffill
needing bottleneck arrived through a ``bench`` peer) fails here.

Two fast tests need no build: every third-party package that pmkit or ``pmkit_widgets``
imports is declared in pyproject, by the core or by the extra of the part that imports it;
and without cvxpy or websockets the refusals name the extra while the core still optimizes.

Dependencies come from the package index once per session: ``pip wheel`` fills a wheelhouse
for the union of the extras, and each environment installs from it with ``--no-index``
(pip still resolves each set's own requirements, so a set gets only what it declares).
"""

from __future__ import annotations

import ast
import concurrent.futures
import contextlib
import http.cookiejar
import importlib.metadata
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Only the tests that build and install the wheel are slow: one build for all of them,
# 2.5 min with pip's cache warm, 4 min cold (most of it fetching the wheelhouse).
pytestmark = pytest.mark.timeout(1800)

ROOT = Path(__file__).resolve().parents[1]

#: The documented install sets (README "Install"): name -> pip requirement.
SETS = {
    "core": "pmkit",
    "ui": "pmkit[ui]",
    "optimize": "pmkit[optimize]",
    "stream": "pmkit[stream]",
}
#: What each set must not bring (another extra's packages), and what no fresh
#: environment may see (the test runner's own packages).
ABSENT = {
    "core": ["panel", "cvxpy", "websockets", "skfolio", "hvplot"],
    "optimize": ["panel", "websockets", "skfolio"],
    "stream": ["panel", "hvplot"],
    "ui": [],
}
RUNNER_ONLY = ["pytest", "hypothesis", "playwright"]
#: Nor may any set bring the peers of `make bench` or JupyterLab (the ``bench`` and
#: ``notebook`` extras): a dependency that arrives only through them is undeclared.
NOT_DECLARED = ["pypfopt", "riskfolio", "quantstats", "empyrical", "jupyterlab"]

#: Seconds allowed for one command in an environment (imports are slow on a busy machine).
RUN_TIMEOUT = 420


# -- what the sources import is what pyproject declares ---------------------------------------
#: Which extras may supply the imports of a part of the sources (the longest matching path
#: prefix wins; everything else is the core). The README's "Install" table, as paths.
EXTRA_OF = {
    "widgets/": ("ui",),
    "pmkit/magics.py": ("ui",),
    "pmkit/_hvplot.py": ("ui",),
    "pmkit/cli.py": ("stream",),  # `pmkit feed` checks for websockets before it starts
    "pmkit/datasets.py": ("data",),
    "pmkit/stream/": ("stream",),
    "pmkit/optimize/": ("optimize",),
    "pmkit/optimize/frontier.py": ("optimize", "ui"),  # tqdm, for progress=True only
    "pmkit/execution/engine.py": ("ui",),  # tqdm, for run(progress=True) only
}


def declared_distributions() -> tuple[set[str], dict[str, set[str]]]:
    """The core's distributions and each extra's (``pmkit[...]`` inside an extra expanded)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]

    def names(requirements: list[str], seen: frozenset[str]) -> set[str]:
        out: set[str] = set()
        for text in requirements:
            req = Requirement(text)
            if canonicalize_name(req.name) != "pmkit":
                out.add(canonicalize_name(req.name))
                continue
            for extra in sorted(req.extras - seen):
                out |= names(extras[extra], seen | {extra})
        return out

    return names(project["dependencies"], frozenset()), {
        extra: names(reqs, frozenset({extra})) for extra, reqs in extras.items()
    }


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of the non-stdlib modules ``path`` imports (anywhere in it)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"pmkit", "pmkit_widgets", "__future__"}


def test_every_imported_package_is_declared_by_the_extra_that_needs_it() -> None:
    core, extras = declared_distributions()
    # Import name -> distribution, from this environment (make's ``[all]`` install).
    distributions = importlib.metadata.packages_distributions()
    undeclared, unknown = [], []
    for path in sorted([*(ROOT / "pmkit").rglob("*.py"), *(ROOT / "widgets").rglob("*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        prefix = max((p for p in EXTRA_OF if rel.startswith(p)), key=len, default=None)
        allowed = core.union(*(extras[e] for e in EXTRA_OF.get(prefix, ())))
        for module in sorted(third_party_imports(path)):
            dists = {canonicalize_name(d) for d in distributions.get(module, [])}
            if not dists:
                unknown.append(f"{rel}: {module}")
            elif not dists & allowed:
                undeclared.append(f"{rel}: {module} ({', '.join(sorted(dists))})")
    assert unknown == [], "imported, and installed by no distribution here"
    assert undeclared == [], "imported, and declared neither by the core nor by the extra"


def test_a_missing_extra_is_refused_by_name_and_the_core_still_optimizes(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The refusals of the core install, here without building it (the slow tests build it)."""
    import xarray as xr

    import pmkit.optimize as po
    from pmkit.cli import main
    from pmkit.errors import MissingDependencyError

    # ``None`` in sys.modules makes ``import cvxpy`` fail as if it were not installed.
    for name in ("cvxpy", "websockets"):
        monkeypatch.setitem(sys.modules, name, None)
    rng = np.random.default_rng(3)
    vols = np.array([0.01, 0.02, 0.015])
    r = rng.normal(0.0, vols, size=(500, 3)).T
    returns = xr.DataArray(r, dims=("asset", "time"), coords={
        "asset": ["A", "B", "C"], "time": pd.bdate_range("2021-01-04", periods=500)})
    for call in (lambda: po.Kelly().fit(returns),
                 lambda: po.efficient_frontier(returns, points=3),
                 lambda: po.MinimumVariance(po.Constraints(max_turnover=0.1, current_weights={
                     "A": 0.3, "B": 0.3, "C": 0.4})).fit(returns)):
        with pytest.raises(MissingDependencyError) as info:
            call()
        assert (info.value.package, info.value.extra) == ("cvxpy", "optimize")
        assert "pip install 'pmkit[optimize]'" in str(info.value)
    # Long-only minimum variance is the core's active-set solver: Σ⁻¹1 / 1'Σ⁻¹1 when interior.
    inv = np.linalg.solve(np.cov(r, ddof=1), np.ones(3))
    np.testing.assert_allclose(po.MinimumVariance().fit(returns).weights.values,
                               inv / inv.sum(), atol=1e-8)
    assert main(["feed", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'pmkit[stream]'" in err and "Traceback" not in err


# -- the environments -----------------------------------------------------------------------
@dataclass
class Install:
    """One fresh environment with one extra set installed from the wheel."""

    name: str
    spec: str
    prefix: Path
    returncode: int
    log: str
    seconds: float

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / "python"

    def bin(self, script: str) -> Path:
        return self.prefix / "bin" / script

    def require(self) -> Install:
        if self.returncode != 0:
            pytest.fail(f"pip install {self.spec!r} into a fresh venv failed "
                        f"(exit {self.returncode}):\n{self.log[-4000:]}")
        return self

    def run(self, args: Sequence[str | os.PathLike], *, cwd: Path, stdin: str | None = None,
            timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(a) for a in args], cwd=cwd, env=clean_env(), input=stdin,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def script(self, code: str, payload: object, *, cwd: Path) -> dict:
        """Run ``code`` with this environment's python, ``payload`` as JSON on stdin; the
        JSON object it prints last."""
        proc = self.run([self.python, "-c", textwrap.dedent(code)], cwd=cwd,
                        stdin=json.dumps(payload))
        assert proc.returncode == 0, f"[{self.name}] script failed:\n{proc.stderr[-6000:]}"
        return json.loads(proc.stdout.strip().splitlines()[-1])


def clean_env() -> dict[str, str]:
    """The environment minus what would let the test runner's packages leak in."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _copy_sources(dst: Path) -> None:
    """What the wheel is built from, without build/, egg-info or caches (a stale build/
    would put deleted modules into the wheel)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    dst.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dst / name)
    for package in ("pmkit", "widgets"):
        shutil.copytree(ROOT / package, dst / package, ignore=ignore)


def _install(name: str, spec: str, root: Path, wheels: Path) -> Install:
    prefix = root / f"venv-{name}"
    start = time.perf_counter()
    # The test's own interpreter, a fresh environment without pip: the runner's pip
    # installs into it (``--python``), so nothing of the runner's site is visible there.
    steps = [
        [sys.executable, "-m", "venv", "--without-pip", str(prefix)],
        [sys.executable, "-m", "pip", "--python", str(prefix / "bin" / "python"), "install",
         "--quiet", "--no-compile", "--no-index", "--find-links", str(wheels), spec],
    ]
    log, code = "", 0
    for cmd in steps:
        proc = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True,
                              timeout=1200, check=False)
        log += f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
        code = proc.returncode
        if code:
            break
    return Install(name, spec, prefix, code, log, time.perf_counter() - start)


def _scratch_root() -> Path:
    """A temporary directory, in memory when there is room.

    The environments hold ~100,000 files (~4 GB): deleting them takes minutes on a disk
    mounted with ``discard`` (as on this project's machines), seconds on /dev/shm.
    """
    shm = Path("/dev/shm")
    need = 8 * 2**30
    with contextlib.suppress(OSError, ValueError):
        meminfo = Path("/proc/meminfo").read_text().split()
        available = int(meminfo[meminfo.index("MemAvailable:") + 1]) * 1024
        if (available > need and os.access(shm, os.W_OK)
                and shutil.disk_usage(shm).free > need):
            return Path(tempfile.mkdtemp(prefix="pmkit-install-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="pmkit-install-"))


@dataclass
class Built:
    root: Path
    wheel: Path
    installs: dict[str, Install]


@pytest.fixture(scope="module")
def built() -> Iterator[Built]:
    """The wheel, a wheelhouse of every dependency, and the four environments (in parallel)."""
    root = _scratch_root()
    try:
        src, wheels = root / "src", root / "wheels"
        _copy_sources(src)
        extras = sorted({s[s.index("[") + 1:-1] for s in SETS.values() if "[" in s})
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels),
             f"{src}[{','.join(extras)}]"],
            env=clean_env(), capture_output=True, text=True, timeout=1200, check=False,
        )
        assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}"
        [wheel] = wheels.glob("pmkit-*.whl")
        with concurrent.futures.ThreadPoolExecutor(len(SETS)) as pool:
            futures = {n: pool.submit(_install, n, s, root, wheels) for n, s in SETS.items()}
            installs = {n: f.result() for n, f in futures.items()}
        yield Built(root, wheel, installs)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def work(built: Built, request: pytest.FixtureRequest) -> Path:
    """A scratch directory for one test (removed with the environments)."""
    path = built.root / "work" / request.node.name.replace("[", "-").replace("]", "")
    path.mkdir(parents=True)
    return path


# -- processes and ports --------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def running(args: Sequence[str | os.PathLike], cwd: Path) -> Iterator[subprocess.Popen]:
    """A server process whose output goes to ``cwd/server.log``; interrupted (then killed)
    on the way out, whatever happened."""
    log = (cwd / "server.log").open("w")
    proc = subprocess.Popen([str(a) for a in args], cwd=cwd, env=clean_env(), stdout=log,
                            stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()


def server_log(cwd: Path) -> str:
    return (cwd / "server.log").read_text()[-6000:]


def wait_until(ready, proc: subprocess.Popen, cwd: Path, what: str, timeout: float = 300):
    """Poll ``ready()`` until it returns something truthy; fail if the server exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what}: the server exited with {proc.returncode}:\n{server_log(cwd)}")
        out = ready()
        if out:
            return out
        time.sleep(0.5)
    pytest.fail(f"{what}: not ready after {timeout} s:\n{server_log(cwd)}")


def interrupt(proc: subprocess.Popen, cwd: Path, what: str) -> None:
    """Ctrl-C, as a user stops it: the process must end by itself, with status 0."""
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} did not stop within 60 s of SIGINT:\n{server_log(cwd)}")
    assert code == 0, f"{what} exited with {code} on SIGINT:\n{server_log(cwd)}"


def absent_modules(install: Install, names: Sequence[str], cwd: Path) -> list[str]:
    """Which of ``names`` the environment can import (should be none)."""
    return install.script(
        """
        import importlib.util, json, sys
        names = json.load(sys.stdin)
        print(json.dumps({"found": [n for n in names if importlib.util.find_spec(n)]}))
        """,
        list(names),
        cwd=cwd,
    )["found"]


# -- the wheel -------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_wheel_ships_both_packages_and_the_command(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as whl:
        names = whl.namelist()
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = whl.read(entry_points).decode()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"pmkit", "pmkit_widgets"}
    assert "pmkit = pmkit.cli:main" in scripts
    # Every file of the source trees is in the wheel: a new subpackage missing from
    # pyproject's packages, or data (the sign-in pages' templates, py.typed) missing from
    # its package-data, would be missing from every install.
    src = built.root / "src"  # the copy the wheel was built from
    for package, folder in (("pmkit", src / "pmkit"), ("pmkit_widgets", src / "widgets")):
        sources = {f"{package}/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts}
        assert sources <= set(names), sorted(sources - set(names))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SETS))
def test_each_environment_is_fresh_and_holds_only_its_extra(built: Built, work: Path,
                                                            name: str) -> None:
    install = built.installs[name].require()
    assert absent_modules(install, ABSENT[name] + NOT_DECLARED + RUNNER_ONLY, work) == []
    help_ = install.run([install.bin("pmkit"), "--help"], cwd=work)
    assert help_.returncode == 0, help_.stderr
    assert all(cmd in help_.stdout for cmd in ("serve", "feed", "users"))


# -- pmkit (core) ----------------------------------------------------------------------------
def _synthetic_market(days: int = 80) -> pd.DataFrame:
    rng = np.random.default_rng(15)
    times = pd.bdate_range("2024-01-02", periods=days)
    steps = rng.normal(0.0, [0.01, 0.02], size=(days, 2))
    return pd.DataFrame(100.0 * np.exp(np.cumsum(steps, axis=0)), index=times,
                        columns=["AAA", "BBB"]).round(4)


CORE_SCRIPT = """
import json, sys
import numpy as np, pandas as pd
from pmkit.errors import MissingDependencyError
from pmkit.execution import CostModel, Order, PaperBroker, new_order_id
from pmkit.model.market import market_dataset, simple_returns
from pmkit.registry import Registry

inp = json.load(sys.stdin)
close = pd.DataFrame(inp["close"], index=pd.DatetimeIndex(inp["times"]), columns=["AAA", "BBB"])
t = close.index
reg = Registry.open(":memory:", market=market_dataset(close))
pid = reg.create_portfolio("desk/core", inp["capital"], at=t[0].to_pydatetime())
reg.record_trade("AAA", inp["buy"], float(close["AAA"].iloc[1]), portfolio=pid,
                 fee=inp["fee"], ts=t[1].to_pydatetime())
out = {"value_after_trade": reg.value(pid)}
# The paper broker values holdings at their last known close (xarray's ffill).
free = CostModel(commission_bps=0.0, half_spread_bps=0.0, impact_coefficient=0.0)
broker = PaperBroker(reg, cost_model=free)
broker.submit([Order(new_order_id(), pid, "BBB", inp["order"], float(close["BBB"].iloc[70]),
                     "paper")])
fills = broker.step(t[inp["fill_at"]])
out["failures"] = [repr(f) for f in fills.failures]
out["fill_prices"] = [f.price for f in fills]
pos = reg.positions(pid)
out["quantities"], out["cash"] = pos.quantities, pos.cash
out["value_last"] = reg.value(pid)
out["returns"] = simple_returns(reg.market).transpose("time", "asset").values.tolist()

refusals = {}
def refused(key, call):
    try:
        call()
    except MissingDependencyError as exc:
        refusals[key] = [exc.package, exc.extra]
    else:
        refusals[key] = None

# Every module imports on the core alone: the extras are imported where they are used.
import importlib, pkgutil
import pmkit
broken = {}
for info in pkgutil.walk_packages(pmkit.__path__, "pmkit."):
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        broken[info.name] = repr(exc)
out["modules"], out["broken"] = sorted(sys.modules), broken

import pmkit.demo, pmkit.optimize as po
refused("demo", pmkit.demo.open_demo)
returns = simple_returns(reg.market).isel(time=slice(1, None))
refused("kelly", lambda: po.Kelly().fit(returns))
refused("frontier", lambda: po.efficient_frontier(returns, points=3))
out["refusals"] = refusals
# Long-only minimum variance needs no cvxpy: the active-set solver of the core answers it.
res = po.MinimumVariance().fit(returns)
out["min_var"] = res.weights.sel(asset=["AAA", "BBB"]).values.tolist()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_core_computes_on_its_data_model_and_names_the_extras_it_lacks(built: Built,
                                                                       work: Path) -> None:
    core = built.installs["core"].require()
    close = _synthetic_market()
    capital, buy, fee, order, fill_at = 100_000.0, 100.0, 1.5, 40.0, 70
    out = core.script(CORE_SCRIPT, {
        "times": [t.isoformat() for t in close.index], "close": close.values.tolist(),
        "capital": capital, "buy": buy, "fee": fee, "order": order, "fill_at": fill_at,
    }, cwd=work)
    a, b = close["AAA"].to_numpy(), close["BBB"].to_numpy()
    cash = capital - buy * a[1] - fee
    assert out["value_after_trade"] == pytest.approx(cash + buy * a[-1], rel=1e-12)
    # A cost-free fill is at the session's close, paid from cash.
    assert out["failures"] == []
    assert out["fill_prices"] == [pytest.approx(b[fill_at], rel=1e-12)]
    assert out["quantities"] == {"AAA": buy, "BBB": order}
    assert out["cash"] == pytest.approx(cash - order * b[fill_at], rel=1e-12)
    assert out["value_last"] == pytest.approx(
        cash - order * b[fill_at] + buy * a[-1] + order * b[-1], rel=1e-12)
    expected = close.to_numpy()[1:] / close.to_numpy()[:-1] - 1.0
    got = np.array(out["returns"], dtype=float)
    assert np.isnan(got[0]).all()
    np.testing.assert_allclose(got[1:], expected, rtol=1e-12)
    assert out["broken"] == {}
    assert {"pmkit.magics", "pmkit.stream.server", "pmkit.optimize.kelly"} <= set(out["modules"])
    # The demo's real prices, cvxpy's problems: a typed refusal naming the extra.
    assert out["refusals"] == {"demo": ["skfolio", "data"], "kelly": ["cvxpy", "optimize"],
                               "frontier": ["cvxpy", "optimize"]}
    # Two assets, no bound binding: w_AAA = (var_B - cov) / (var_A + var_B - 2 cov).
    (var_a, cov_ab), (_, var_b) = np.cov(expected.T, ddof=1)
    w_a = (var_b - cov_ab) / (var_a + var_b - 2 * cov_ab)
    assert 0 < w_a < 1
    np.testing.assert_allclose(out["min_var"], [w_a, 1 - w_a], atol=1e-8)
    serve = core.run([core.bin("pmkit"), "serve", "--no-feed", "--port", str(free_port()),
                      "--store", f"sqlite:///{work / 'x.sqlite'}", "--create"], cwd=work)
    assert serve.returncode == 2 and "pip install 'pmkit[ui]'" in serve.stderr, serve.stderr
    feed = core.run([core.bin("pmkit"), "feed", "--port", str(free_port())], cwd=work)
    assert feed.returncode == 2 and "pip install 'pmkit[stream]'" in feed.stderr, feed.stderr
    assert "Traceback" not in serve.stderr + feed.stderr
    # `pmkit users` is core: the app's logins are managed where the app is not installed.
    users = work / "users.json"
    add = core.run([core.bin("pmkit"), "users", "add", users, "alice", "--password-stdin"],
                   cwd=work, stdin="correct horse battery\n")
    assert add.returncode == 0, add.stderr
    listed = core.run([core.bin("pmkit"), "users", "list", users], cwd=work)
    assert listed.returncode == 0, listed.stderr
    assert ["alice", "alice", "active"] in [line.split() for line in listed.stdout.splitlines()]
    assert "correct horse" not in users.read_text() and users.stat().st_mode & 0o077 == 0


# -- pmkit[optimize] -------------------------------------------------------------------------
OPTIMIZE_SCRIPT = """
import json, sys
import numpy as np, pandas as pd, xarray as xr
import pmkit.optimize as po
from pmkit.errors import MissingDependencyError

inp = json.load(sys.stdin)
r = np.array(inp["returns"])
assets = inp["assets"]
returns = xr.DataArray(r, dims=("asset", "time"), coords={
    "asset": assets, "time": pd.bdate_range("2020-01-02", periods=r.shape[1])})
out = {}
res = po.MinimumVariance().fit(returns)
out["min_var"] = res.weights.sel(asset=assets).values.tolist()
start = dict(zip(assets, inp["start"]))
cons = po.Constraints(current_weights=start, max_turnover=inp["max_turnover"])
res = po.MinimumVariance(cons).fit(returns)
out["turnover"] = {"weights": res.weights.sel(asset=assets).values.tolist(),
                   "solver": res.solver}
res = po.Kelly().fit(returns)
out["kelly"] = {"sum": float(res.weights.sum()), "solver": res.solver}
frontier = po.efficient_frontier(returns, points=4)
out["frontier"] = {"return": frontier.dataset["expected_return"].values.tolist(),
                   "volatility": frontier.dataset["volatility"].values.tolist()}
try:
    frontier.plot()
    out["plot"] = None
except MissingDependencyError as exc:
    out["plot"] = [exc.package, exc.extra]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_optimize_solves_minimum_variance_and_cvxpy_problems(built: Built, work: Path) -> None:
    opt = built.installs["optimize"].require()
    rng = np.random.default_rng(7)
    vols = np.array([0.008, 0.011, 0.014, 0.02])
    corr = np.full((4, 4), 0.2) + 0.8 * np.eye(4)
    cov = corr * np.outer(vols, vols)
    returns = rng.multivariate_normal(np.full(4, 4e-4), cov, size=750).T
    assets = ["A", "B", "C", "D"]
    start, max_turnover = [0.25, 0.25, 0.25, 0.25], 0.1
    out = opt.script(OPTIMIZE_SCRIPT, {"returns": returns.tolist(), "assets": assets,
                                       "start": start, "max_turnover": max_turnover},
                     cwd=work)
    # Long-only minimum variance where no bound binds: Σ⁻¹1 / 1'Σ⁻¹1 of the sample covariance
    # (annualizing scales Σ and leaves the weights alone).
    inv = np.linalg.solve(np.cov(returns, ddof=1), np.ones(4))
    closed = inv / inv.sum()
    assert (closed > 0).all()
    w = np.array(out["min_var"])
    assert w.sum() == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(w, closed, atol=1e-6)
    # With a turnover budget the unconstrained answer is out of reach: cvxpy spends it all.
    t = out["turnover"]
    assert t["solver"] in ("CLARABEL", "OSQP", "SCS")
    wt = np.array(t["weights"])
    assert wt.sum() == pytest.approx(1.0, abs=1e-6)
    assert np.abs(closed - start).sum() > max_turnover
    assert np.abs(wt - start).sum() == pytest.approx(max_turnover, abs=1e-6)
    assert wt @ np.cov(returns) @ wt >= closed @ np.cov(returns) @ closed
    assert out["kelly"]["solver"] in ("CLARABEL", "SCS") and out["kelly"]["sum"] <= 1 + 1e-6
    f = out["frontier"]
    assert np.all(np.diff(f["return"]) > 0) and np.all(np.diff(f["volatility"]) > 0)
    assert f["volatility"][0] == pytest.approx(
        math.sqrt(252 * closed @ np.cov(returns, ddof=1) @ closed), rel=1e-5)
    assert out["plot"] == ["hvplot", "ui"]


# -- pmkit[stream] ---------------------------------------------------------------------------
STREAM_CLIENT = """
import asyncio, json, sys
from pmkit.datasets import load_market
from pmkit.stream.client import StreamClient
from pmkit.stream.protocol import pmkit_adapter
from pmkit.stream.settings import StreamSettings

inp = json.load(sys.stdin)
symbols, n = inp["symbols"], inp["ticks"]
ticks, snapshots = [], []

def on_block(block):
    for i, (s, p) in enumerate(zip(block.symbols, block.prices)):
        ticks.append([block.seq + i, s, float(p)])
    if len(ticks) >= n:
        stop.set()

def on_snapshot(block):
    snapshots.append(dict(zip(block.symbols, map(float, block.prices))))

async def main():
    global stop
    stop = asyncio.Event()
    client = StreamClient(pmkit_adapter(inp["url"]), symbols, StreamSettings(max_reconnects=5),
                          on_block, on_snapshot=on_snapshot, seed=0)
    await asyncio.wait_for(client.run(stop), 120)

asyncio.run(main())
close = load_market()["close"].sel(asset=symbols)
first = close.sel(time=slice("2022-01-03", None)).isel(time=0)
print(json.dumps({"ticks": ticks, "snapshots": snapshots,
                  "start_close": dict(zip(symbols, map(float, first.values)))}))
"""


@pytest.mark.slow
def test_stream_feed_serves_real_prices_to_a_client(built: Built, work: Path) -> None:
    stream = built.installs["stream"].require()
    port = free_port()
    symbols, n = ["AAPL", "MSFT", "KO"], 30
    with running([stream.bin("pmkit"), "feed", "--port", str(port), "--rate", "300"],
                 work) as feed:
        wait_until(lambda: listening(port), feed, work, "pmkit feed")
        out = stream.script(STREAM_CLIENT, {"url": f"ws://127.0.0.1:{port}", "symbols": symbols,
                                            "ticks": n}, cwd=work)
        interrupt(feed, work, "pmkit feed")
    assert not listening(port)
    ticks = out["ticks"]
    assert len(ticks) >= n
    assert [seq for seq, _, _ in ticks] == list(range(1, len(ticks) + 1))  # none lost
    assert {s for _, s, _ in ticks} == set(symbols)  # round robin over the subscription
    # The replay starts at the real close of its first day (the data extra's prices), and
    # a tick is one minute of a Brownian bridge away from it.
    start = out["start_close"]
    assert out["snapshots"] and out["snapshots"][0] == pytest.approx(start, rel=1e-12)
    for _, s, p in ticks[: len(symbols)]:
        assert math.isfinite(p) and abs(p / start[s] - 1) < 0.02


# -- pmkit[ui] -------------------------------------------------------------------------------
LOGIN, PASSWORD = "alice", "alice-trades-2026"  # alice: a trader of the demo


@pytest.mark.slow
def test_ui_serves_the_app_behind_its_login_with_its_feed(built: Built, work: Path) -> None:
    ui = built.installs["ui"].require()
    users = work / "users.json"
    add = ui.run([ui.bin("pmkit"), "users", "add", users, LOGIN, "--password-stdin"], cwd=work,
                 stdin=f"{PASSWORD}\n")
    assert add.returncode == 0, add.stderr
    port, feed_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    args = [ui.bin("pmkit"), "serve", "--port", str(port), "--feed-port", str(feed_port),
            "--store", f"sqlite:///{work / 'ops.sqlite'}", "--create", "--users", users,
            "--cookie-secret", "install-test-" + "s" * 32]
    browser = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def fetch(url: str, form: dict[str, str] | None = None) -> tuple[str, str]:
        """``(final url, html)`` after redirects; fails on an HTTP error."""
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with browser.open(url, data=data, timeout=60) as resp:
                return resp.url, resp.read().decode()
        except urllib.error.HTTPError as exc:
            pytest.fail(f"{url} answered {exc.code}:\n{server_log(work)}")

    def login_page() -> tuple[str, str] | None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except OSError:  # not listening yet
            return None
        return fetch(f"{base}/")

    with running(args, work) as app:
        # Signed out, the app sends a browser to pmkit's sign-in page (rendered from the
        # templates shipped in the wheel, with jinja2).
        url, html = wait_until(login_page, app, work, "pmkit serve")
        assert urllib.parse.urlsplit(url).path == "/login", url
        assert 'type="password"' in html
        [csrf] = re.findall(r'name="csrf_token" value="([A-Za-z0-9_-]+)"', html)
        url, html = fetch(f"{base}/login", {"username": LOGIN, "password": PASSWORD,
                                            "csrf_token": csrf})
        assert urllib.parse.urlsplit(url).path == "/", url
        assert "<title>pmkit operations</title>" in html  # the app (its models follow by websocket)
        log = server_log(work)
        assert f"pmkit feed at ws://127.0.0.1:{feed_port}; live stream of " in log, log
        assert listening(feed_port)
        url, html = fetch(f"{base}/logout")
        assert urllib.parse.urlsplit(fetch(f"{base}/")[0]).path == "/login"
        interrupt(app, work, "pmkit serve")
    assert not listening(port) and not listening(feed_port)
    assert "Traceback" not in server_log(work)


UI_SCRIPT = """
import json, sys
import panel as pn
from bokeh.models import Plot
from IPython.core.interactiveshell import InteractiveShell
from panel.models.tabulator import DataTabulator
from pmkit.coordinator import StrategyCoordinator
from pmkit.demo import DEMO_CONFIG, open_demo
from pmkit.stream.local import start_local_stream
from pmkit_widgets.app import TABS, build_app

reg = open_demo(":memory:")
feed, stream = start_local_stream(reg, port=0)
out = {"tabs": {}}
try:
    app = build_app(reg, coordinator=StrategyCoordinator(reg), stream=stream)
    [tabs] = [o for o in app.main if isinstance(o, pn.Tabs)]
    for i, title in enumerate(TABS):
        tabs.active = i  # built when first shown, as in the browser
        holder = tabs[i]
        root = holder.get_root()  # render to Bokeh models, as for a browser
        out["tabs"][title] = {
            # until built, a tab holds only a spinner
            "built": not isinstance(holder.objects[0], pn.indicators.LoadingSpinner),
            "errors": [a.object for a in holder.select(pn.pane.Alert)
                       if "pmkit-error" in a.css_classes and a.visible],
            "tables": len(list(root.select({"type": DataTabulator}))),
            "charts": len(list(root.select({"type": Plot}))),
        }
finally:
    stream.stop()
    feed.stop_thread()
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "pmkit")
shell.run_line_magic("pm", "demo")
table = shell.run_line_magic("pm", "ls")
html = table._repr_html_() if hasattr(table, "_repr_html_") else str(table)
out["ls_missing"] = [pid for pid in DEMO_CONFIG["portfolios"] if pid not in html]
out["demo_portfolios"] = len(DEMO_CONFIG["portfolios"])
print(json.dumps(out))
"""


@pytest.mark.slow
def test_ui_builds_every_tab_and_the_magics_work(built: Built, work: Path) -> None:
    ui = built.installs["ui"].require()
    out = ui.script(UI_SCRIPT, None, cwd=work)
    tabs = out["tabs"]
    assert {"Portfolios", "Groups", "Live", "Risk", "Optimize", "Approvals",
            "Signals"} <= set(tabs)
    assert [title for title, tab in tabs.items() if not tab["built"]] == []
    assert {title: tab["errors"] for title, tab in tabs.items() if tab["errors"]} == {}
    # Each tab shows its data as a table; risk and the frontier are charts too.
    assert [title for title, tab in tabs.items() if tab["tables"] == 0] == []
    assert tabs["Risk"]["charts"] > 0 and tabs["Optimize"]["charts"] > 0
    assert out["demo_portfolios"] > 0 and out["ls_missing"] == []
