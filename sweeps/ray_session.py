"""The workload Session inside a Ray Train worker (see workloads/contract.py)."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import ray.train
import ray.train.torch

from sweeps.keys import DIVERGED



def sanitize_metrics(metrics: Mapping[str, float],
                     objectives: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Floats only; `diverged` always present; a non-finite objective becomes its worst value."""
    clean = {k: float(v) for k, v in metrics.items()}
    clean.setdefault(DIVERGED, 0.0)
    for name, goal in objectives:
        value = clean.get(name, math.nan)
        if not math.isfinite(value):
            clean[name] = math.inf if goal == "minimize" else -math.inf
            clean[DIVERGED] = 1.0
    return clean


class RaySession:
    """world/rank/device from Ray Train; reports go to Ray Train (and on to Tune).

    A diverged trial reports NaN/inf metrics; the objectives are replaced by their worst value
    (inf when minimizing, -inf when maximizing) so ASHA and Optuna rank it last instead of
    failing on NaN, and `diverged` = 1 tells the tracker why.
    """

    def __init__(self, objectives: Sequence[tuple[str, str]]):
        ctx = ray.train.get_context()
        self.world_size = ctx.get_world_size()
        self.rank = ctx.get_world_rank()
        self.device = ray.train.torch.get_device()
        self.objectives = list(objectives)
        checkpoint = ray.train.get_checkpoint()
        # to_directory() copies a (possibly remote) checkpoint to local disk.
        self.restored_checkpoint_dir = checkpoint.to_directory() if checkpoint else None

    def report(self, metrics: Mapping[str, float], checkpoint_dir: str | None = None) -> None:
        clean = sanitize_metrics(metrics, self.objectives)
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(clean, checkpoint=checkpoint)
