"""What an autoscaling cluster can grow to, read from the launcher's config on the head node.

`ray up` copies the cluster config to `~/ray_bootstrap_config.yaml` on the head; a sweep
submitted there (`ray job submit`) reads it to tell "pending until a node starts" from "can
never start". Elsewhere (a laptop, a fixed on-prem cluster) there is no autoscaler: None.
"""
from __future__ import annotations

import os
from typing import Optional

import yaml

BOOTSTRAP_CONFIG = os.path.expanduser("~/ray_bootstrap_config.yaml")


def autoscaler_max_resources(path: str = BOOTSTRAP_CONFIG) -> Optional[dict[str, float]]:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        config = yaml.safe_load(f) or {}
    types = config.get("available_node_types") or {}
    head = config.get("head_node_type")
    total: dict[str, float] = {}
    budget = config.get("max_workers")
    for name, spec in types.items():
        count = 1 if name == head else int(spec.get("max_workers", 0))
        if name != head and budget is not None:
            count = min(count, int(budget))
        for key, value in (spec.get("resources") or {}).items():
            total[key] = total.get(key, 0.0) + float(value) * count
    return total
