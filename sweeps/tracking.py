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
import time
import urllib.error
import urllib.request
from typing import Any, Mapping, Optional

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from ray import tune

from sweeps.errors import TrackingError
from sweeps.ray_session import DIVERGED
from sweeps.report import trial_outcome
from sweeps.search import BASELINE_TAG
from sweeps.space import Space
from workloads.contract import format_knob

PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "trial_id"
OUTCOME_TAG = "outcome"  # finished | pruned | diverged | error


def default_tracking_uri(run_dir: str) -> str:
    return "sqlite:///" + os.path.abspath(os.path.join(run_dir, "mlflow.db"))


def check_tracking_uri(uri: str) -> None:
    """Fail before any trial starts when the store cannot be reached (BadInput, exit 2)."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as r:
                if r.status != 200:
                    raise TrackingError(f"--mlflow-uri {uri}: /health answered {r.status}")
        except (urllib.error.URLError, OSError) as e:
            raise TrackingError(f"--mlflow-uri {uri}: MLflow server not reachable ({e}); start "
                                f"it (`mlflow server --host 127.0.0.1`) or omit the flag to use "
                                f"a sqlite file in the sweep directory") from None
    elif uri.startswith("sqlite:///"):
        folder = os.path.dirname(uri[len("sqlite:///"):]) or "."
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise TrackingError(f"--mlflow-uri {uri}: folder {folder} is missing or not writable")


def ui_hint(uri: str, experiment_id: str) -> str:
    page = f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs"
    if uri.startswith(("http://", "https://")):
        return f"MLflow: {uri.rstrip('/')}/#/experiments/{experiment_id}/runs"
    return (f"MLflow UI: mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000\n"
            f"           then open {page}")


def _flat_params(knobs: Mapping[str, Any]) -> list[Param]:
    return [Param(k, format_knob(v)[:6000]) for k, v in sorted(knobs.items())]


def _now_ms() -> int:
    return int(time.time() * 1000)


def start_parent_run(uri: str, experiment_name: str, artifact_root: str, space: Space,
                     run_name: str, extra_params: Mapping[str, Any]) -> tuple[str, str]:
    """Create (or reuse) the sweep's experiment and its parent run; returns (exp id, run id)."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        exp_id = client.create_experiment(experiment_name, artifact_location=artifact_root)
    else:
        exp_id = exp.experiment_id
    run = client.create_run(exp_id, run_name=run_name, tags={"sweep": run_name,
                                                             "workload": space.workload})
    params = {"workload": space.workload, "method": space.method, "seed": space.seed,
              "metric": ",".join(f"{o.name}:{o.goal}" for o in space.objectives),
              "trials": space.num_trials(), "max_concurrent": space.budget.max_concurrent,
              "workers_per_trial": space.resources.workers_per_trial,
              "cpus_per_worker": space.resources.cpus_per_worker,
              "gpus_per_worker": space.resources.gpus_per_worker,
              "searched": ",".join(p.name for p in space.parameters), **extra_params}
    client.log_batch(run.info.run_id, params=_flat_params(params))
    client.log_artifact(run.info.run_id, space.path, "space")
    return exp_id, run.info.run_id


def finish_parent_run(uri: str, parent_run_id: str, best: Optional[Mapping[str, Any]],
                      best_metrics: Mapping[str, float], files: list[str], failed: bool) -> None:
    client = MlflowClient(uri)
    if best:
        client.log_batch(parent_run_id, params=[Param(f"best.{k}", format_knob(v)[:6000])
                                                for k, v in sorted(best.items())])
    metrics = [Metric(f"best_{k}", float(v), _now_ms(), 0)
               for k, v in best_metrics.items() if math.isfinite(float(v))]
    if metrics:
        client.log_batch(parent_run_id, metrics=metrics)
    for f in files:
        client.log_artifact(parent_run_id, f, "results")
    client.set_terminated(parent_run_id, "FAILED" if failed else "FINISHED")


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
            from sweeps.driver import trial_knobs  # the driver's own decoding of Tune's config
            is_baseline = bool(trial.config.get(BASELINE_TAG))
            run = self.client.create_run(
                self.experiment_id, run_name=("baseline-" if is_baseline else "trial-") + trial_id,
                tags={PARENT_TAG: self.parent_run_id, TRIAL_TAG: trial_id,
                      "baseline": str(is_baseline).lower(), "workload": self.space.workload})
            run_id = run.info.run_id
            self.client.log_batch(run_id, params=_flat_params(trial_knobs(self.space, trial.config)))
        self.child_runs[trial_id] = run_id
        return run_id

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self.child_run(trial)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        run_id = self.child_run(trial)
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        ts = _now_ms()
        metrics = [Metric(k, float(v), ts, step) for k, v in result.items()
                   if k in self.metric_names and isinstance(v, (int, float))
                   and math.isfinite(float(v))]
        if metrics:
            self.client.log_batch(run_id, metrics=metrics)
        self.last_results[trial.trial_id] = {k: v for k, v in result.items() if k in
                                             self.metric_names | {"epoch", "checkpoint_path"}}

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
