"""The per-trial driver: a Tune function trainable that runs one TorchTrainer (DDP) fit.

Ray 2.60's TorchTrainer is Train V2, which Tune cannot schedule directly; the supported shape is
this ~0-CPU function trainable that builds the trainer, with TuneReportCallback forwarding the
workers' reports to Tune (Tune cannot schedule a Train V2 trainer directly: `TuneError:
Improper 'run'`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

import ray.train
from ray import tune
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from sweeps import timeline
from sweeps.keys import trial_knobs
from sweeps.ray_session import RaySession
from workloads.registry import get_workload

if TYPE_CHECKING:  # Ray pickles train_worker by reference: every Train worker imports this
    # module, and sweeps.space (optuna, scipy via sweeps.decision, yaml) costs ~1 s of CPU each
    from sweeps.space import Space

# A crashed worker group is restarted from its last checkpoint this many times per trial.
MAX_WORKER_FAILURES = 1
CHECKPOINTS_KEPT = 2


def train_worker(loop_config: Mapping[str, Any]) -> None:
    """Runs on every Ray Train worker: the workload's own training entry."""
    if timeline.enabled():
        timeline.mark("worker_process", t=timeline.process_start_time())
        timeline.mark("worker_enter", run=ray.train.get_context().get_experiment_name())
    workload = get_workload(loop_config["workload"])
    timeline.mark("worker_imported")
    session = RaySession(loop_config["objectives"])
    timeline.mark("worker_session", rank=session.rank)
    workload.train(trial_knobs(workload, loop_config["fixed"], loop_config["config"]), session)
    timeline.mark("worker_exit", rank=session.rank)


def scaling_config(space: Space) -> ray.train.ScalingConfig:
    r = space.resources
    per_worker = {"CPU": r.cpus_per_worker}
    if r.gpus_per_worker > 0:
        per_worker["GPU"] = r.gpus_per_worker
    # use_gpu makes Ray Train pick nccl and pin each worker to its GPU; gloo otherwise.
    return ray.train.ScalingConfig(num_workers=r.workers_per_trial,
                                   use_gpu=r.gpus_per_worker > 0,
                                   resources_per_worker=per_worker)


class SweepTorchTrainer(TorchTrainer):
    """A TorchTrainer that does not start Ray Train's DatasetManager actor when the trainer is
    given no Ray Dataset (ours never is: workloads load their own data). Ray 2.60 starts one per
    worker group regardless — one more Python process per trial importing Ray Data, measured at
    1.8 s of CPU and ~1 s of trial wall time on 2 cores (benchmarks/sweep_overhead.py). There is
    no setting for it; this filters Ray's default callbacks through their private factory, and
    if a Ray release renames that, this is a plain TorchTrainer again."""

    def _create_default_callbacks(self):
        callbacks = super()._create_default_callbacks()
        if self.datasets:
            return callbacks
        try:
            from ray.train.v2._internal.callbacks import DatasetsCallback
        except ImportError:
            return callbacks
        return [c for c in callbacks if not isinstance(c, DatasetsCallback)]


def make_driver(space: Space, train_storage: str) -> Callable[[dict], None]:
    # The closure holds plain values, not the Space: Tune unpickles it in every trial's driver
    # process, and a Space would import the space parser there (optuna, yaml, scipy: 0.8 s of
    # CPU per trial, measured) only to read four fields.
    workload_name, fixed = space.workload, dict(space.fixed)
    objectives = [(o.name, o.goal) for o in space.objectives]
    scaling = scaling_config(space)

    def run_trial(config: dict) -> None:
        ctx = tune.get_context()
        name = f"{ctx.get_experiment_name()}-{ctx.get_trial_id()}"
        timeline.mark("trial_start", run=name)
        if timeline.enabled():
            timeline.mark("driver_process", run=name, t=timeline.process_start_time())
        callbacks = [TuneReportCallback()]
        if timeline.enabled():
            callbacks.append(timeline.TimelineCallback(name))
        trainer = SweepTorchTrainer(
            train_worker,
            train_loop_config={
                # knobs are resolved on the workers, which import the workload anyway; the
                # trial's driver then never does (saliency: 0.3 s of CPU per trial)
                "workload": workload_name,
                "fixed": fixed,
                "config": config,
                "objectives": objectives,
            },
            scaling_config=scaling,
            run_config=ray.train.RunConfig(
                # Named after the trial: a restarted trial (sweep resume, retried error) finds
                # its own checkpoints under this name and continues from the last one.
                name=name,
                storage_path=train_storage,
                failure_config=ray.train.FailureConfig(max_failures=MAX_WORKER_FAILURES),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
                callbacks=callbacks,
            ),
        )
        try:
            trainer.fit()
        finally:
            timeline.mark("trial_end", run=name)

    return run_trial


def wrapped_driver(space: Space, train_storage: str):
    """The driver with its resources: ~0 CPU (a 1-byte memory bundle, since Tune rejects an
    empty one), so the workers' own placement group gets every CPU it asks for."""
    return tune.with_resources(make_driver(space, train_storage), {"cpu": 0, "memory": 1})
