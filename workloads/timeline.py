"""Timestamps of where a run's time goes, for benchmarks/sweep_overhead.py (zero cost unset).

With SWEEPS_TIMELINE=<file> in the environment, `mark` appends one JSON line per event to that
file: {"pid", "rank", "phase", "t" (time.time()), ...}. The training loop (workloads/kit/loop.py)
and the sweep's driver and Train controller (sweeps/timeline.py) write through this one
function. One machine, one file: lines are short single appends, so processes do not interleave
within a line. Imports nothing heavy (the Train controller imports it).
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Optional

TIMELINE_ENV = "SWEEPS_TIMELINE"


def enabled() -> bool:
    return bool(os.environ.get(TIMELINE_ENV))


def mark(phase: str, rank: Optional[int] = None, t: Optional[float] = None, **fields: Any) -> None:
    path = os.environ.get(TIMELINE_ENV)
    if not path:
        return
    record = {"pid": os.getpid(), "rank": rank, "phase": phase,
              "t": time.time() if t is None else t, **fields}
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
