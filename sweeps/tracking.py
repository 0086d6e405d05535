"""MLflow tracking: one parent run per sweep, one nested child run per trial.

Ray's MLflowLoggerCallback makes flat runs and logs Tune's bookkeeping keys; this driver-side
Tune callback gives children `mlflow.parentRunId`, every knob (searched and fixed) as a readable
parameter, and metrics with `step = epoch`.

It never talks to MLflow itself: each write is appended to the sweep's spool
(sweeps/mlflow_spool.py) and a background writer sends it on, so an MLflow outage cannot stall
or stop the Tune loop. Children are addressed by trial id; the writer finds or creates them.
Restore-safe: Tune fires `on_trial_start` again for a re-run trial; the writer reopens its run.
"""
from __future__ import annotations

import math
import os

from ray import tune

from sweeps.keys import BASELINE_TAG, CONFIRM_OF, DIVERGED
from sweeps.mlflow_spool import PARENT_TAG, TRIAL_TAG, Spool
from sweeps.mlflow_store import flat_params, now_ms
from sweeps.report import trial_outcome
from sweeps.space import Space
from workloads.contract import EPOCH, SEED_KNOB
# reported by a trial that had to skip corrupt checkpoints when it resumed
from workloads.kit.loop import CHECKPOINT_FALLBACKS, PROBE_STEPS

STAGE_TAG = "stage"  # search | confirm
OUTCOME_TAG = "outcome"  # finished | pruned | diverged | error


class MlflowTrialTracker(tune.Callback):
    """Driver-side Tune callback: a nested MLflow run per trial, written through the spool."""

    def __init__(self, run_dir: str, experiment_id: str, parent_run_id: str, space: Space):
        self.spool = Spool(run_dir)
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.space = space
        # PROBE_STEPS (workloads built with the kit): the epoch's regularized steps, so the
        # MLflow UI shows whether the regularizer fired, not only what the metrics did
        self.metric_names = set(space.get_workload().metrics) | {DIVERGED, PROBE_STEPS}
        self.last_results: dict[str, dict] = {}

    # Only plain state crosses a Tune experiment checkpoint.
    def get_state(self) -> dict:
        return {"last_results": dict(self.last_results)}

    def set_state(self, state: dict) -> None:
        self.last_results = dict(state.get("last_results", {}))

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        trial_id = trial.trial_id
        is_baseline = bool(trial.config.get(BASELINE_TAG))
        tags = {PARENT_TAG: self.parent_run_id, TRIAL_TAG: trial_id,
                "baseline": str(is_baseline).lower(), "workload": self.space.workload,
                STAGE_TAG: "search"}
        name = ("baseline-" if is_baseline else "trial-") + trial_id
        confirms = trial.config.get(CONFIRM_OF)
        if confirms is not None:  # a confirmation run: which trial, which seed (and data)
            seed = trial.config.get(SEED_KNOB)
            tags.update({STAGE_TAG: "confirm", CONFIRM_OF: str(confirms), "seed": str(seed)})
            data = self.space.get_workload().data_seed_knob
            if data in trial.config:
                tags[data] = str(trial.config[data])
            name = f"confirm-{confirms}-seed{seed}"
        params = {p.key: p.value for p in flat_params(self.space.trial_knobs(trial.config))}
        self.spool.append({"op": "child", "key": trial_id, "experiment_id": self.experiment_id,
                           "parent_run_id": self.parent_run_id, "run_name": name, "tags": tags,
                           "params": params})

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        trial_id = trial.trial_id
        step = int(result.get(EPOCH, result.get("training_iteration", 0)))
        metrics = {k: float(v) for k, v in result.items()
                   if k in self.metric_names and isinstance(v, (int, float))
                   and math.isfinite(float(v))}
        if metrics:
            self.spool.append({"op": "metrics", "key": trial_id, "step": step, "ts": now_ms(),
                               "metrics": metrics})
        fallbacks = result.get(CHECKPOINT_FALLBACKS)
        if fallbacks and not self.last_results.get(trial_id, {}).get(CHECKPOINT_FALLBACKS):
            self.spool.append({"op": "tags", "key": trial_id, "tags": {
                "checkpoint_fallback": f"resumed after skipping {int(fallbacks)} corrupt "
                                       f"checkpoint(s)"}})
        self.last_results[trial_id] = {k: v for k, v in result.items() if k in
                                       self.metric_names | {EPOCH, "checkpoint_path",
                                                              CHECKPOINT_FALLBACKS}}

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        trial_id = trial.trial_id
        outcome = trial_outcome(self.last_results.get(trial_id, {}), self.space.epochs())
        status = {"finished": "FINISHED", "pruned": "KILLED", "diverged": "FAILED"}[outcome]
        self.spool.append({"op": "tags", "key": trial_id, "tags": {
            OUTCOME_TAG: outcome, "pruned": str(outcome == "pruned").lower()}})
        checkpoint = self.last_results.get(trial_id, {}).get("checkpoint_path")
        if checkpoint and os.path.isdir(checkpoint):
            self.spool.append({"op": "artifacts", "key": trial_id, "path": checkpoint,
                               "artifact_path": "checkpoint"})
        elif checkpoint:  # remote storage (S3/GCS): point at it rather than copy it
            self.spool.append({"op": "tags", "key": trial_id,
                               "tags": {"checkpoint_uri": checkpoint}})
        self.spool.append({"op": "terminate", "key": trial_id, "status": status})

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        trial_id = trial.trial_id
        self.spool.append({"op": "tags", "key": trial_id,
                           "tags": {OUTCOME_TAG: "error", "pruned": "false"}})
        self.spool.append({"op": "terminate", "key": trial_id, "status": "FAILED"})
