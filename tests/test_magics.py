"""The IPython extension: %load_ext pmkit and the %pm magics return the API's own objects."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.testing.globalipapp import get_ipython

import pmkit.magics
from pmkit.demo import DEMO_CONFIG
from pmkit.registry import GroupInfo, GroupNode, PortfolioInfo


@pytest.fixture(scope="module")
def ip():
    shell = get_ipython()
    shell.run_line_magic("load_ext", "pmkit")
    shell.run_line_magic("pm", "demo")
    yield shell
    pmkit.magics.use(None)


def test_ls_is_the_registry_summary(ip):
    table = ip.run_line_magic("pm", "ls")
    reg = pmkit.magics.current()
    pd.testing.assert_frame_equal(table, reg.summary())
    assert list(table.index) == sorted(DEMO_CONFIG["portfolios"])


def test_ls_filters(ip):
    assert list(ip.run_line_magic("pm", "ls --tag core --tag etf").index) == ["client_b/factors"]
    assert list(ip.run_line_magic("pm", "ls --segment client=client_a").index) == [
        "client_a/growth",
        "client_a/income",
    ]


def test_use_sets_the_active_portfolio_for_calls_without_an_id(ip):
    info = ip.run_line_magic("pm", "use client_b/factors")
    reg = pmkit.magics.current()
    assert isinstance(info, PortfolioInfo) and info == reg.portfolio("client_b/factors")
    assert reg.get_active_portfolio().id == "client_b/factors"
    assert ip.run_line_magic("pm", "show") == info


def test_show_portfolio_and_group(ip):
    reg = pmkit.magics.current()
    p = ip.run_line_magic("pm", "show client_a/income")
    g = ip.run_line_magic("pm", "show client_a")
    assert p == reg.portfolio("client_a/income")
    assert isinstance(g, GroupInfo) and g.allocation == {
        "client_a/growth": 0.7,
        "client_a/income": 0.3,
    }
    assert "Income Strategy" in p._repr_html_()


def test_groups_is_the_group_tree(ip):
    tree = ip.run_line_magic("pm", "groups")
    assert isinstance(tree, GroupNode)
    (firm,) = tree.children  # every demo portfolio sits under the firm group
    assert firm.id == "firm" and [c.id for c in firm.children] == ["client_a", "client_b"]
    assert "Client B Portfolios" in tree._repr_html_()


def test_errors_are_clean_usage_errors(ip):
    with pytest.raises(UsageError, match="NotFoundError: portfolio 'nope' does not exist"):
        ip.run_line_magic("pm", "use nope")
    with pytest.raises(UsageError, match="invalid choice"):
        ip.run_line_magic("pm", "frobnicate")


def test_open_a_store_file(ip, tmp_path):
    url = f"sqlite:///{tmp_path}/m.sqlite"
    reg = ip.run_line_magic("pm", f"open {url}")
    assert pmkit.magics.current() is reg
    assert ip.run_line_magic("pm", "ls").empty
    assert ip.run_line_magic("pm", "whoami").startswith("system on sqlite:")
    ip.run_line_magic("pm", "demo")


def test_no_registry_is_a_usage_error():
    saved = pmkit.magics._state["registry"]
    pmkit.magics.use(None)
    try:
        with pytest.raises(UsageError, match="no registry"):
            pmkit.magics.run("ls")
    finally:
        pmkit.magics.use(saved)


def test_importing_pmkit_stays_light():
    code = (
        "import sys, pmkit, pmkit.registry, pmkit.store, pmkit.events, pmkit.magics;"
        "heavy = {'IPython', 'panel', 'cvxpy', 'hvplot', 'bokeh'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
