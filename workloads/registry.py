"""Name -> workload. Imported lazily so validating one space does not import every model.

Besides the built-in names, a dotted module path (`my_project.my_workload`) names a user's own
workload: an importable module that exposes `WORKLOAD` (see workloads/contract.py).

Trust model: naming a module in a space file runs that module (that is how you bring your own
model), so a module is imported only if, *before* import, its source file has a top-level
`WORKLOAD = ...` assignment. Any other module (a standard-library one with import-time side
effects, a typo that happens to exist) is rejected without executing it. Locating the source
(`importlib.util.find_spec`) imports the module's parent packages, as Python's import would.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util

from workloads.contract import Workload

_MODULES = {
    "ten_lm": "workloads.ten_lm",
    "saliency": "workloads.saliency",
}


def workload_names() -> list[str]:
    return sorted(_MODULES)


def looks_like_workload_module(name: str) -> bool:
    """True if `name` is a Python source module with a top-level `WORKLOAD =` (not imported)."""
    if "." not in name or not all(part.isidentifier() for part in name.split(".")):
        return False
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    origin = getattr(spec, "origin", None) if spec is not None else None
    if not origin or not origin.endswith(".py"):
        return False
    try:
        with open(origin, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=origin)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return False
    for node in tree.body:
        targets = (node.targets if isinstance(node, ast.Assign) else
                   [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == "WORKLOAD" for t in targets):
            return True
    return False


def is_known(name: str) -> bool:
    if name in _MODULES:
        return True
    if not looks_like_workload_module(name):
        return False
    return isinstance(getattr(importlib.import_module(name), "WORKLOAD", None), Workload)


def get_workload(name: str) -> Workload:
    if not is_known(name):
        raise KeyError(f"unknown workload {name[:100]!r}; allowed: {workload_names()} or a "
                       f"module path whose source assigns WORKLOAD at top level")
    return importlib.import_module(_MODULES.get(name, name)).WORKLOAD
