"""Services and views use the registry's public kernel, never its private methods or store.

Parses every module outside ``pmkit/registry`` and ``pmkit/store`` and fails on an
attribute access ``<registry>._name`` or ``<registry>.store`` where ``<registry>`` is a
registry by name (``registry``, ``reg``, ``self.registry``, ``m.registry``, ...): reads go
through ``registry.view()`` (filtered by the user's roles), writes through
``registry.context(...)``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pmkit.errors import NotFoundError
from pmkit.registry import Registry
from pmkit.store import open_store

ROOT = Path(__file__).resolve().parents[1]
REGISTRY_NAMES = {"registry", "reg", "_registry"}


def _is_registry(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in REGISTRY_NAMES
    return isinstance(node, ast.Attribute) and node.attr in REGISTRY_NAMES


def _private_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and (node.attr == "store" or (node.attr.startswith("_") and not node.attr.startswith("__")))
        and _is_registry(node.value)
    ]


def _modules() -> list[Path]:
    files = [*(ROOT / "pmkit").rglob("*.py"), *(ROOT / "widgets").rglob("*.py")]
    inside = (ROOT / "pmkit" / "registry", ROOT / "pmkit" / "store")
    return [f for f in files if not any(f.is_relative_to(d) for d in inside)]


def test_no_module_outside_the_registry_calls_its_private_methods_or_store():
    assert len(_modules()) > 50  # the walk found the package
    offenders = [use for f in _modules() for use in _private_uses(f)]
    assert offenders == []


def test_the_checker_sees_the_patterns_it_forbids(tmp_path):
    probe = ROOT / "tests" / "_probe_private_registry.py"
    probe.write_text("def f(reg, self, m):\n    reg._pid(None)\n    self.registry._portfolio(1)\n"
                     "    m.registry._leaf_portfolios(2)\n    reg.portfolio('x')\n"
                     "    self.registry.store.get('order', 'o')\n    reg.view().records('order')\n")
    try:
        assert sorted(u.split(": ")[1] for u in _private_uses(probe)) == sorted([
            "._pid", "._portfolio", "._leaf_portfolios", ".store"])
    finally:
        probe.unlink()


def test_the_public_kernel_calls_that_replace_them(tmp_path):
    reg = Registry(open_store(tmp_path / "s.sqlite"))
    reg.create_portfolio("desk/a", 10.0)
    reg.create_portfolio("desk/b", 10.0)
    reg.create_group("inner", ["desk/b"])
    reg.create_group("desk", ["desk/a", "inner"])
    reg.set_default_portfolio("desk/a")
    assert reg.resolve_portfolio_id() == "desk/a"
    assert reg.resolve_portfolio_id("desk/b") == "desk/b"
    assert reg.check_portfolio_exists("desk/b") == "desk/b"
    with pytest.raises(NotFoundError):
        reg.check_portfolio_exists("desk/none")
    reg.delete("desk/b", hard=True)
    with pytest.raises(NotFoundError):
        reg.check_portfolio_exists("desk/b")
    with reg.mutation("probe", "desk") as m:
        assert m.portfolio("desk/a").currency == "USD"
        assert m.group_portfolios("desk") == ["desk/a"]
        with pytest.raises(NotFoundError):
            m.portfolio("desk/b")


def test_the_facade_stays_a_facade():
    """Issue 14's bar: registry.py keeps the public methods and delegates (< 600 lines)."""
    lines = (ROOT / "pmkit" / "registry" / "registry.py").read_text().count("\n")
    assert lines < 600


def test_a_kind_the_catalogue_does_not_know_cannot_be_read_through_a_view(tmp_path):
    from pmkit.errors import ValidationError
    from pmkit.registry.catalogue import KINDS, register_kind

    reg = Registry(open_store(tmp_path / "s.sqlite"))
    reg.create_portfolio("desk/a", 10.0)
    reg.add_user("eve")
    with reg.context("probe.write", "desk/a") as ctx:
        ctx.tx.put("probe_note", "n1", "active", {"portfolio": "desk/a", "text": "x"})
    with pytest.raises(ValidationError, match="probe_note"):
        reg.view().records("probe_note")
    try:
        register_kind("probe_note", lambda rec: rec.data["portfolio"])
        assert [r.id for r in reg.view().records("probe_note")] == ["n1"]
        assert reg.as_user("eve").view().records("probe_note") == []  # no role on desk/a
        assert reg.as_user("eve").view().record("probe_note", "n1") is None
        reg.grant("eve", "desk/a", "viewer")
        assert [r.id for r in reg.as_user("eve").view().records("probe_note")] == ["n1"]
        with pytest.raises(ValidationError):  # one kind, one scope rule
            register_kind("probe_note", lambda rec: None)
    finally:
        KINDS.pop("probe_note", None)


def test_fills_of_proposal_orders_need_the_rebalance_listener(tmp_path):
    """Execution does not import rebalance; without its listener a proposal's fill is refused."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import sys
        from datetime import datetime
        from pmkit.errors import ConfigError
        from pmkit.execution import Fill, FillRecorder, Order
        from pmkit.registry import Registry
        from pmkit.store import open_store
        reg = Registry(open_store({str(tmp_path / "s.sqlite")!r}))
        reg.create_portfolio("desk/a", 1000.0, at=datetime(2024, 1, 1))
        order = Order("o-1", "desk/a", "X", 1.0, 10.0, "paper", proposal_id="rb-1")
        with reg.context("order.submit", "o-1") as ctx:
            ctx.tx.put("order", "o-1", "open", order.to_record())
        before = reg.store.dump()
        try:
            FillRecorder(reg).record(Fill("o-1", 1.0, 10.0, 0.0, datetime(2024, 1, 2), "f-1"))
        except ConfigError as exc:
            assert "pmkit.rebalance" in str(exc), exc
            assert reg.store.dump() == before
            assert "pmkit.rebalance" not in sys.modules
            print("refused")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.stdout.strip() == "refused", out.stderr
