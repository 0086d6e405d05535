"""Pieces the benchmark scripts share."""
from __future__ import annotations

import time
from typing import Any, Mapping


def train_once(workload: str, knobs: Mapping[str, Any]) -> tuple[list[dict], float]:
    """One training of a workload in this process, single-threaded (benchmarks run two of these
    at once, one per core): its per-epoch reports and its wall time in seconds."""
    import torch
    torch.set_num_threads(1)
    from workloads.contract import LocalSession
    from workloads.registry import get_workload
    session = LocalSession()
    t0 = time.perf_counter()
    get_workload(workload).train(dict(knobs), session)
    return session.history, time.perf_counter() - t0
