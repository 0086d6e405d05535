"""The per-trial driver: a Tune function trainable that runs one TorchTrainer (DDP) fit.

Ray 2.60's TorchTrainer is Train V2, which Tune cannot schedule directly; the supported shape is
this ~0-CPU function trainable that builds the trainer, with TuneReportCallback forwarding the
workers' reports to Tune (Tune cannot schedule a Train V2 trainer directly: `TuneError:
Improper 'run'`).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import ray.train
from ray import tune
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from sweeps.ray_session import RaySession
from sweeps.space import Space
from workloads.registry import get_workload

# A crashed worker group is restarted from its last checkpoint this many times per trial.
MAX_WORKER_FAILURES = 1
CHECKPOINTS_KEPT = 2


def train_worker(loop_config: Mapping[str, Any]) -> None:
    """Runs on every Ray Train worker: the workload's own training entry."""
    workload = get_workload(loop_config["workload"])
    workload.train(loop_config["knobs"], RaySession(loop_config["objectives"]))


def scaling_config(space: Space) -> ray.train.ScalingConfig:
    r = space.resources
    per_worker = {"CPU": r.cpus_per_worker}
    if r.gpus_per_worker > 0:
        per_worker["GPU"] = r.gpus_per_worker
    # use_gpu makes Ray Train pick nccl and pin each worker to its GPU; gloo otherwise.
    return ray.train.ScalingConfig(num_workers=r.workers_per_trial,
                                   use_gpu=r.gpus_per_worker > 0,
                                   resources_per_worker=per_worker)


def make_driver(space: Space, train_storage: str) -> Callable[[dict], None]:
    def run_trial(config: dict) -> None:
        ctx = tune.get_context()
        trainer = TorchTrainer(
            train_worker,
            train_loop_config={
                "workload": space.workload,
                "knobs": space.trial_knobs(config),
                "objectives": [(o.name, o.goal) for o in space.objectives],
            },
            scaling_config=scaling_config(space),
            run_config=ray.train.RunConfig(
                # Named after the trial: a restarted trial (sweep resume, retried error) finds
                # its own checkpoints under this name and continues from the last one.
                name=f"{ctx.get_experiment_name()}-{ctx.get_trial_id()}",
                storage_path=train_storage,
                failure_config=ray.train.FailureConfig(max_failures=MAX_WORKER_FAILURES),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
                callbacks=[TuneReportCallback()],
            ),
        )
        trainer.fit()

    return run_trial


def wrapped_driver(space: Space, train_storage: str):
    """The driver with its resources: ~0 CPU (a 1-byte memory bundle, since Tune rejects an
    empty one), so the workers' own placement group gets every CPU it asks for."""
    return tune.with_resources(make_driver(space, train_storage), {"cpu": 0, "memory": 1})
