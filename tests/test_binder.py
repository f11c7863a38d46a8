"""Binder installs what every runbook imports.

`binder/postBuild` installs pmkit with some extras; each notebook's imports
must come from pmkit itself, the standard library, or a distribution that
those extras require (directly or transitively). Otherwise a notebook that
passes here would fail on Binder.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _binder_extras() -> list[str]:
    text = (ROOT / "binder" / "postBuild").read_text()
    found = re.search(r'-e "\.\[([a-z,]+)\]"', text)
    assert found, "binder/postBuild must pip install -e '.[extras]'"
    return found.group(1).split(",")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(root: str, extras: list[str]) -> set[str]:
    """Distributions ``root[extras]`` installs, by normalized name."""
    seen: set[str] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(root, tuple(extras))]
    while todo:
        name, wanted = todo.pop()
        key = (_norm(name), wanted)
        if key in {(s, ()) for s in seen} and not wanted:
            continue
        seen.add(_norm(name))
        try:
            reqs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for raw in reqs:
            req = Requirement(raw)
            envs = [{"extra": e} for e in (wanted or ("",))]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
                continue
            if _norm(req.name) == _norm(root):  # pmkit[stream,...] inside an extra
                todo.append((root, tuple(req.extras)))
            elif _norm(req.name) not in seen:
                todo.append((req.name, tuple(req.extras)))
    return seen


def _imports(notebook: Path) -> set[str]:
    from IPython.core.inputtransformer2 import TransformerManager

    to_python = TransformerManager().transform_cell  # magics become get_ipython() calls
    nb = json.loads(notebook.read_text())
    names: set[str] = set()
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        tree = compile(to_python("".join(cell["source"])), notebook.name, "exec",
                       flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_binder_extras_cover_the_notebook_imports(notebook):
    installed = _closure("pmkit", _binder_extras())
    owners = md.packages_distributions()
    missing = {}
    for module in _imports(notebook):
        if module in sys.stdlib_module_names or module in {"pmkit", "pmkit_widgets"}:
            continue
        dists = {_norm(d) for d in owners.get(module, [])}
        if not dists & installed:
            missing[module] = sorted(dists) or ["<not installed here>"]
    assert not missing, f"{notebook.name} imports what Binder does not install: {missing}"


def test_the_closure_follows_self_referencing_extras():
    # ui pulls pmkit[stream]: websockets must be in the closure of pmkit[ui] alone
    assert "websockets" in _closure("pmkit", ["ui"])
    assert "websockets" not in _closure("pmkit", ["data"])
