"""MLflow tracking: one parent run per sweep, one nested child run per trial.

Ray's MLflowLoggerCallback makes flat runs and logs Tune's bookkeeping keys; this driver-side
Tune callback uses MlflowClient directly so children carry `mlflow.parentRunId`, every knob
(searched and fixed) is a readable parameter, and metrics are logged with `step = epoch`.

Restore-safe: Tune re-creates callbacks from the experiment and fires `on_trial_start` again for
a re-run trial, so child runs are found by their `trial_id` tag before one is created.
"""
from __future__ import annotations

import math
import os
from typing import Optional

from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient
from ray import tune

from sweeps.keys import BASELINE_TAG, CONFIRM_OF, DIVERGED
from sweeps.mlflow_store import PARENT_TAG, flat_params, now_ms
from sweeps.report import trial_outcome
from sweeps.space import Space
from workloads.contract import EPOCH, SEED_KNOB

TRIAL_TAG = "trial_id"
STAGE_TAG = "stage"  # search | confirm
OUTCOME_TAG = "outcome"  # finished | pruned | diverged | error


class MlflowTrialTracker(tune.Callback):
    """Driver-side Tune callback: a nested MLflow run per trial."""

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, space: Space):
        self.uri = uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.space = space
        self.metric_names = set(space.get_workload().metrics) | {DIVERGED}
        self.child_runs: dict[str, str] = {}
        self.last_results: dict[str, dict] = {}
        self._client: Optional[MlflowClient] = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.uri)
        return self._client

    # Only plain state crosses a Tune experiment checkpoint; the client is rebuilt.
    def get_state(self) -> dict:
        return {"child_runs": dict(self.child_runs), "last_results": dict(self.last_results)}

    def set_state(self, state: dict) -> None:
        self.child_runs = dict(state.get("child_runs", {}))
        self.last_results = dict(state.get("last_results", {}))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_client"] = None
        return state

    def _find_child(self, trial_id: str) -> Optional[str]:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{self.parent_run_id}' "
                          f"and tags.{TRIAL_TAG} = '{trial_id}'", max_results=1)
        return runs[0].info.run_id if runs else None

    def child_run(self, trial) -> str:
        trial_id = trial.trial_id
        if trial_id in self.child_runs:
            return self.child_runs[trial_id]
        run_id = self._find_child(trial_id)
        if run_id is None:
            is_baseline = bool(trial.config.get(BASELINE_TAG))
            tags = {PARENT_TAG: self.parent_run_id, TRIAL_TAG: trial_id,
                    "baseline": str(is_baseline).lower(), "workload": self.space.workload,
                    STAGE_TAG: "search"}
            name = ("baseline-" if is_baseline else "trial-") + trial_id
            confirms = trial.config.get(CONFIRM_OF)
            if confirms is not None:  # a confirmation run: which trial, which seed
                seed = trial.config.get(SEED_KNOB)
                tags.update({STAGE_TAG: "confirm", CONFIRM_OF: str(confirms), "seed": str(seed)})
                name = f"confirm-{confirms}-seed{seed}"
            run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
            run_id = run.info.run_id
            self.client.log_batch(run_id, params=flat_params(self.space.trial_knobs(trial.config)))
        self.child_runs[trial_id] = run_id
        return run_id

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self.child_run(trial)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        run_id = self.child_run(trial)
        step = int(result.get(EPOCH, result.get("training_iteration", 0)))
        ts = now_ms()
        metrics = [Metric(k, float(v), ts, step) for k, v in result.items()
                   if k in self.metric_names and isinstance(v, (int, float))
                   and math.isfinite(float(v))]
        if metrics:
            self.client.log_batch(run_id, metrics=metrics)
        self.last_results[trial.trial_id] = {k: v for k, v in result.items() if k in
                                             self.metric_names | {EPOCH, "checkpoint_path"}}

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        run_id = self.child_run(trial)
        outcome = trial_outcome(self.last_results.get(trial.trial_id, {}), self.space.epochs())
        status = {"finished": "FINISHED", "pruned": "KILLED", "diverged": "FAILED"}[outcome]
        self.client.log_batch(run_id, tags=[RunTag(OUTCOME_TAG, outcome),
                                            RunTag("pruned", str(outcome == "pruned").lower())])
        checkpoint = self.last_results.get(trial.trial_id, {}).get("checkpoint_path")
        if checkpoint and os.path.isdir(checkpoint):
            self.client.log_artifacts(run_id, checkpoint, "checkpoint")
        elif checkpoint:  # remote storage (S3/GCS): point at it rather than copy it
            self.client.set_tag(run_id, "checkpoint_uri", checkpoint)
        self.client.set_terminated(run_id, status)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        run_id = self.child_run(trial)
        self.client.log_batch(run_id, tags=[RunTag(OUTCOME_TAG, "error"), RunTag("pruned", "false")])
        self.client.set_terminated(run_id, "FAILED")
