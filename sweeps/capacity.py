"""What a sweep asks of a Ray cluster, against what the cluster has (or can ever have)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

from sweeps.errors import ClusterError
from sweeps.space import Space


@dataclass(frozen=True)
class Demand:
    workers_per_trial: int
    cpus_per_trial: float
    gpus_per_trial: float
    max_concurrent: int

    @classmethod
    def of(cls, space: Space) -> "Demand":
        r = space.resources
        return cls(r.workers_per_trial, r.workers_per_trial * r.cpus_per_worker,
                   r.workers_per_trial * r.gpus_per_worker, space.budget.max_concurrent)

    def fills(self, cluster: Mapping[str, float]) -> bool:
        """Do the trials allowed to train at once take all of the cluster's CPUs, or all of its
        GPUs when they use GPUs? Then a trial started beyond them cannot train until one ends;
        its driver and Train controller (0 CPU reserved) only come up ready."""
        n = self.max_concurrent
        return (n * self.cpus_per_trial >= cluster.get("CPU", 0.0) - 1e-9
                or (self.gpus_per_trial > 0 and n * self.gpus_per_trial >= cluster.get("GPU", 0.0) - 1e-9))

    def plan_lines(self) -> list[str]:
        return [f"per trial: {self.workers_per_trial} DDP worker(s) = {self.cpus_per_trial:g} CPU, "
                f"{self.gpus_per_trial:g} GPU",
                f"at most {self.max_concurrent} trial(s) at once = "
                f"{self.max_concurrent * self.workers_per_trial} worker(s), "
                f"{self.max_concurrent * self.cpus_per_trial:g} CPU, "
                f"{self.max_concurrent * self.gpus_per_trial:g} GPU"]


def check_capacity(demand: Demand, available: Mapping[str, float],
                   autoscaler_max: Optional[Mapping[str, float]] = None) -> list[str]:
    """Lines comparing demand and cluster; ClusterError if one trial can never be placed.

    `available` is the cluster's total resources now; `autoscaler_max` what an autoscaler can
    grow it to (None: no autoscaler). A trial's workers need not share a node, so totals are
    the right comparison; a per-node misfit still shows up as Ray's own pending message.
    """
    ceiling = dict(available)
    for key, value in (autoscaler_max or {}).items():
        ceiling[key] = max(ceiling.get(key, 0.0), value)
    lines = [f"cluster now: {available.get('CPU', 0):g} CPU, {available.get('GPU', 0):g} GPU"
             + ("" if autoscaler_max is None else
                f"; autoscaler max: {ceiling.get('CPU', 0):g} CPU, {ceiling.get('GPU', 0):g} GPU")]
    problems = []
    for key, need in (("CPU", demand.cpus_per_trial), ("GPU", demand.gpus_per_trial)):
        if need > ceiling.get(key, 0.0) + 1e-9:
            problems.append(f"one trial needs {need:g} {key} ({demand.workers_per_trial} workers) "
                            f"but the cluster can never have more than {ceiling.get(key, 0.0):g}")
    if problems:
        raise ClusterError("; ".join(problems) + ": lower --workers-per-trial / "
                           "--gpus-per-worker / resources.cpus_per_worker or add nodes")
    if demand.max_concurrent * demand.cpus_per_trial > ceiling.get("CPU", 0.0) + 1e-9:
        lines.append(f"note: {demand.max_concurrent} concurrent trials do not all fit; "
                     f"Tune runs as many as the cluster holds")
    return lines
