"""Where a trial's time goes: timestamps for benchmarks/sweep_overhead.py.

With SWEEPS_TIMELINE=<file> in the environment (start_ray passes it on to every Ray process),
the per-trial driver, the Train controller (through `TimelineCallback`) and the workers
(workloads/kit/loop.py) append one JSON line per event to that file: {"pid", "rank", "phase",
"t" (time.time()), ...}. Unset, nothing is recorded and no callback is added. One machine, one
file: lines are short single appends, so processes do not interleave within a line.

This module is imported by the Train controller, so it imports nothing heavy.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Optional

from ray.train.v2._internal.execution.callback import (ControllerCallback, ReportCallback,
                                                       WorkerGroupCallback)

TIMELINE_ENV = "SWEEPS_TIMELINE"


def enabled() -> bool:
    return bool(os.environ.get(TIMELINE_ENV))


def process_start_time(pid: int | str = "self") -> Optional[float]:
    """When this process was created (time.time() scale), from /proc; None if unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, StopIteration, IndexError):
        return None


def mark(phase: str, rank: Optional[int] = None, t: Optional[float] = None, **fields: Any) -> None:
    path = os.environ.get(TIMELINE_ENV)
    if not path:
        return
    record = {"pid": os.getpid(), "rank": rank, "phase": phase,
              "t": time.time() if t is None else t, **fields}
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


class TimelineCallback(ControllerCallback, WorkerGroupCallback, ReportCallback):
    """Controller-side events of one Train run (added by sweeps/driver.py only when enabled)."""

    def __init__(self, run: str):
        self.run = run

    def _mark(self, phase: str, **fields: Any) -> None:
        mark(phase, run=self.run, **fields)

    def after_controller_start(self, train_run_context) -> None:
        self._mark("controller_process", t=process_start_time())
        self._mark("controller_start")

    def before_worker_group_start(self, worker_group_context) -> None:
        self._mark("worker_group_start")

    def before_init_train_context(self, workers) -> dict:
        # placement group ready, worker actors created and answering
        self._mark("workers_created", pids=[w.metadata.pid for w in workers])
        return {}

    def after_worker_group_start(self, worker_group) -> None:
        # after Ray's own callbacks: accelerator + torch process group set up
        self._mark("worker_group_ready")

    def after_worker_group_training_start(self, worker_group) -> None:
        self._mark("train_fn_launched")

    def after_report(self, training_report, metrics) -> None:
        self._mark("controller_report")

    def before_worker_group_shutdown(self, worker_group) -> None:
        self._mark("worker_group_shutdown")

    def after_worker_group_shutdown(self, worker_group_context) -> None:
        self._mark("worker_group_down")

    def after_controller_finish(self, result) -> None:
        self._mark("controller_finish")
