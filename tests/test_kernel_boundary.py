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
