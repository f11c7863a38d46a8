"""Package structure: re-exports never hide the submodules they come from."""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

PACKAGES = ["pmkit.analytics", "pmkit.risk", "pmkit.core", "pmkit.registry", "pmkit.store",
            "pmkit.model"]


@pytest.mark.parametrize("package", PACKAGES)
def test_package_attributes_named_like_submodules_are_those_submodules(package):
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        sub = importlib.import_module(f"{package}.{info.name}")
        attr = getattr(pkg, info.name)
        assert isinstance(attr, types.ModuleType) and attr is sub, f"{package}.{info.name}"
    for name in getattr(pkg, "__all__", []):
        assert hasattr(pkg, name), f"{package}.__all__ names missing {name}"
