"""Where a trial's time goes: the driver- and controller-side events for
benchmarks/sweep_overhead.py, written with `workloads.timeline.mark` (see there: the file, the
record, zero cost when SWEEPS_TIMELINE is unset). Unset, no callback is added either.

This module is imported by the Train controller, so it imports nothing heavy.
"""
from __future__ import annotations

import os
from typing import Any, Optional

from ray.train.v2._internal.execution.callback import (ControllerCallback, ReportCallback,
                                                       WorkerGroupCallback)

from sweeps.local_ray import proc_stat
from workloads.timeline import TIMELINE_ENV, enabled, mark  # noqa: F401 (the sweep's API)


def process_start_time(pid: int | str = "self") -> Optional[float]:
    """When this process was created (time.time() scale), from /proc; None if unavailable."""
    fields = proc_stat(pid)
    if fields is None:
        return None
    try:
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, StopIteration, IndexError):
        return None


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
