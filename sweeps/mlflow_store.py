"""The MLflow store of a sweep: where it is, whether it answers, and the sweep's parent run.

Ray-free, so `--dry-run` and input checks never import Ray. The parent run is created here
while the server answers (a sweep starts only then); every later write — the per-trial child
runs (`sweeps/tracking.py`, a Tune callback) and the parent's end — goes through the sweep's
spool (`sweeps/mlflow_spool.py`), so an outage cannot stop the sweep.
"""
from __future__ import annotations

import math
import os
import time
import urllib.error
import urllib.request
from typing import Any, Mapping, Optional, Sequence

from mlflow.entities import Param
from mlflow.tracking import MlflowClient

from sweeps.errors import TrackingError, clip
from sweeps.mlflow_spool import Spool
from sweeps.space import Space
from workloads.knobs import format_knob



def default_tracking_uri(run_dir: str) -> str:
    return "sqlite:///" + os.path.abspath(os.path.join(run_dir, "mlflow.db"))


def check_tracking_uri(uri: str) -> None:
    """Fail before any trial starts when the store cannot be reached (BadInput, exit 2)."""
    shown_uri = clip(uri, 200)  # error text never echoes unbounded input
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as r:
                if r.status != 200:
                    raise TrackingError(f"--mlflow-uri {shown_uri}: /health answered {r.status}")
        except (urllib.error.URLError, OSError, ValueError) as e:  # ValueError: a malformed URL
            raise TrackingError(f"--mlflow-uri {shown_uri}: MLflow server not reachable "
                                f"({clip(e, 200)}); start it (`mlflow server --host 127.0.0.1`) "
                                f"or omit the flag to use a sqlite file in the sweep "
                                f"directory") from None
    elif uri.startswith("sqlite:///"):
        folder = os.path.dirname(uri[len("sqlite:///"):]) or "."
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise TrackingError(f"--mlflow-uri {shown_uri}: folder {clip(folder, 200)} is "
                                f"missing or not writable")


def ui_hint(uri: str, experiment_id: str) -> str:
    page = f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs"
    if uri.startswith(("http://", "https://")):
        return f"MLflow: {uri.rstrip('/')}/#/experiments/{experiment_id}/runs"
    return (f"MLflow UI: mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000\n"
            f"           then open {page}")


def flat_params(knobs: Mapping[str, Any]) -> list[Param]:
    return [Param(k, format_knob(v)[:6000]) for k, v in sorted(knobs.items())]


def now_ms() -> int:
    return int(time.time() * 1000)


def start_parent_run(uri: str, experiment_name: str, artifact_root: Optional[str], space: Space,
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
    client.log_batch(run.info.run_id, params=flat_params(params))
    client.log_artifact(run.info.run_id, space.path, "space")
    return exp_id, run.info.run_id


def finish_parent_run(spool: Spool, experiment_id: str, parent_run_id: str,
                      best: Optional[Mapping[str, Any]], best_metrics: Mapping[str, float],
                      files: list[str], failed: bool, plots: Sequence[str] = (),
                      verdict: Any = None) -> None:
    """Spool the end of the sweep's parent run: best knobs and metrics, the result files and
    plots as artifacts, the verdict as tags (`verdict`, `verdict_trial`), any child left RUNNING
    marked KILLED, and the parent's final status."""
    run = {"run_id": parent_run_id}
    if verdict is not None:
        spool.append({"op": "tags", **run, "tags": {"verdict": verdict.verdict,
                                                    "verdict_trial": verdict.trial_id or ""}})
    for f in plots:
        spool.append({"op": "artifacts", **run, "path": f, "artifact_path": "plots"})
    if best:
        spool.append({"op": "params", **run, "params": {
            f"best.{k}": format_knob(v)[:6000] for k, v in sorted(best.items())}})
    metrics = {f"best_{k}": float(v) for k, v in best_metrics.items() if math.isfinite(float(v))}
    if metrics:
        spool.append({"op": "metrics", **run, "step": 0, "ts": now_ms(), "metrics": metrics})
    for f in files:
        spool.append({"op": "artifacts", **run, "path": f, "artifact_path": "results"})
    end_parent_run(spool, experiment_id, parent_run_id, "FAILED" if failed else "FINISHED")


def end_parent_run(spool: Spool, experiment_id: str, parent_run_id: str, status: str) -> None:
    """Spool the end of the sweep's runs: any child still RUNNING → KILLED, the parent → status
    (a resumed sweep reopens both)."""
    spool.append({"op": "end_children", "run_id": parent_run_id,
                  "experiment_id": experiment_id, "status": "KILLED"})
    spool.append({"op": "terminate", "run_id": parent_run_id, "status": status})
