"""Name -> workload. Imported lazily so validating one space does not import every model.

Besides the built-in names, a dotted module path (`my_project.my_workload`) names a user's own
workload: any importable module that exposes `WORKLOAD` (see workloads/contract.py).
"""
from __future__ import annotations

import importlib

from workloads.contract import Workload

_MODULES = {
    "ten_lm": "workloads.ten_lm",
    "saliency": "workloads.saliency",
}


def workload_names() -> list[str]:
    return sorted(_MODULES)


def is_known(name: str) -> bool:
    if name in _MODULES:
        return True
    if "." not in name:
        return False
    try:
        return isinstance(getattr(importlib.import_module(name), "WORKLOAD", None), Workload)
    except ImportError:
        return False


def get_workload(name: str) -> Workload:
    if not is_known(name):
        raise KeyError(f"unknown workload {name!r}; allowed: {workload_names()} or a module "
                       f"path exposing WORKLOAD")
    return importlib.import_module(_MODULES.get(name, name)).WORKLOAD
