"""Space -> a configured `ray.tune.Tuner` (for the sweep service and for people who drive Tune)."""
from __future__ import annotations

import logging
import os
from typing import Optional, Sequence

import ray
from ray import tune
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from sweeps.capacity import Demand
from sweeps.driver import wrapped_driver
from sweeps.search import make_scheduler, make_searcher
from sweeps.space import Space
from sweeps.timeline import TIMELINE_ENV

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUNE_DIR_NAME = "tune"            # the search stage
CONFIRM_DIR_NAME = "tune_confirm"  # the confirmation stage


# Ray Train V2 settings every trial runs with, measured with benchmarks/sweep_overhead.py (README,
# "Sweep overhead"); a value already in the environment wins.
TRAIN_ENV_DEFAULTS = {
    # The controller polls its workers this often (Ray's default 2 s). A worker's report waits
    # for the poll that collects the previous one, and a finished run is noticed only at a
    # poll: at 2 s this cost ~3.6 s per 2-epoch smoke trial (report 1.7 s + teardown 5.0 s ->
    # 0.1 s + 1.2 s). The polls are cheap actor calls.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
}
LOCAL_TRAIN_ENV_DEFAULTS = {
    # A single local machine has no node to preempt; the watcher is one more Python process
    # per trial, importing Ray Train while the workers set up (measured: see the README).
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}


def train_env(address: Optional[str]) -> dict[str, str]:
    """TRAIN_ENV_DEFAULTS (+ LOCAL_TRAIN_ENV_DEFAULTS for a local Ray), environment first."""
    defaults = {**TRAIN_ENV_DEFAULTS, **({} if address else LOCAL_TRAIN_ENV_DEFAULTS)}
    return {k: os.environ.get(k, v) for k, v in defaults.items()}


def start_ray(address: Optional[str] = None, temp_dir: Optional[str] = None) -> bool:
    """Connect to `address` or start a local Ray; returns True if this call started Ray.

    A local Ray runs with its dashboard bound to 127.0.0.1: Train V2 needs the State API it
    serves to release a pruned trial's worker placement group (without it the placement group of
    an ASHA-stopped trial stays reserved and the next trial never starts on a small machine). Worker
    output stays in Ray's log files (log_to_driver=False); the terminal gets our progress lines.
    """
    if ray.is_initialized():
        return False
    common: dict = dict(log_to_driver=False, logging_level=logging.WARNING)
    env = train_env(address)
    if not address:  # a local Ray's processes inherit this environment
        for key, value in env.items():
            os.environ.setdefault(key, value)
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" not in os.environ:
        # Outside `ray job submit` (whose --working-dir already ships the code), workers import
        # the repo from where it lies: the same path on every node of a `ray up` cluster.
        pythonpath = os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
        common["runtime_env"] = {"env_vars": {"PYTHONPATH": pythonpath, **env}}
        if os.environ.get(TIMELINE_ENV):  # benchmarks/sweep_overhead.py
            common["runtime_env"]["env_vars"][TIMELINE_ENV] = os.environ[TIMELINE_ENV]
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(include_dashboard=True, dashboard_host="127.0.0.1", _temp_dir=temp_dir, **common)
    return True


def send_library_logs_to(log_file: str) -> None:
    """Ray/Tune/MLflow/Optuna chatter (and our own warnings, e.g. the MLflow spool's retries)
    goes to `log_file`; the terminal keeps our progress lines."""
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("ray", "mlflow", "optuna", "alembic", "sweeps"):
        logger = logging.getLogger(name)
        for h in list(logger.handlers):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                logger.removeHandler(h)
        if not any(isinstance(h, logging.FileHandler) and h.baseFilename == handler.baseFilename
                   for h in logger.handlers):
            logger.addHandler(handler)
        logger.propagate = False


def storage_paths(run_dir: str, storage: Optional[str]) -> tuple[str, str]:
    """(Tune storage, Train storage). Multi-node sweeps need shared storage (S3/GCS/NFS)."""
    root = storage.rstrip("/") + "/" + os.path.basename(run_dir) if storage else run_dir
    return root, root + "/train"


def build_tuner(space: Space, run_dir: str, *, callbacks: Sequence[tune.Callback] = (),
                storage: Optional[str] = None, optuna_storage: Optional[str] = None) -> tune.Tuner:
    """The Tuner for `space`: Optuna (seeded) + ASHA over per-trial TorchTrainer drivers."""
    tune_storage, train_storage = storage_paths(run_dir, storage)
    return tune.Tuner(
        wrapped_driver(space, train_storage),
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(space, optuna_storage, study_name=os.path.basename(run_dir)),
            scheduler=make_scheduler(space),
            num_samples=space.num_trials(),
            max_concurrent_trials=space.budget.max_concurrent,
            time_budget_s=space.budget.time_limit_s,
        ),
        run_config=tune.RunConfig(
            name=TUNE_DIR_NAME, storage_path=tune_storage, callbacks=list(callbacks), verbose=0),
    )


def build_confirm_tuner(space: Space, run_dir: str, configs: Sequence[dict], *,
                        callbacks: Sequence[tune.Callback] = (),
                        storage: Optional[str] = None) -> tune.Tuner:
    """The confirmation stage: exactly `configs` (sweeps/confirm.py), the same Train DDP driver,
    never pruned (FIFO) and not cut by the search's time limit."""
    tune_storage, train_storage = storage_paths(run_dir, storage)
    # One confirm run more than may train at once, when those already fill the cluster: its
    # driver and Train controller come up while the running one trains (Demand.fills). Only
    # here: confirm runs are fixed and never pruned, so start order changes no result; in the
    # search, TPE would suggest without the running trial's result.
    limit = space.budget.max_concurrent + int(Demand.of(space).fills(ray.cluster_resources()))
    return tune.Tuner(
        wrapped_driver(space, train_storage),
        # every key of the configs must be in the param space; the points fill in the values
        param_space={k: None for k in configs[0]},
        tune_config=tune.TuneConfig(
            # each point replaces one sample: num_samples = len(configs) runs exactly those
            # the driver takes ~0 CPU, so only the generator's own limit holds trials back
            search_alg=BasicVariantGenerator(points_to_evaluate=[dict(c) for c in configs],
                                             max_concurrent=limit),
            scheduler=FIFOScheduler(), num_samples=len(configs),
            max_concurrent_trials=limit),
        run_config=tune.RunConfig(name=CONFIRM_DIR_NAME, storage_path=tune_storage,
                                  callbacks=list(callbacks), verbose=0),
    )


def restore_tuner(space: Space, run_dir: str, *, storage: Optional[str] = None,
                  stage: str = TUNE_DIR_NAME) -> tune.Tuner:
    """Continue an interrupted stage: finished trials are kept, the running one re-runs (and
    resumes from its own last checkpoint), the searcher's state and our callbacks are restored."""
    tune_storage, train_storage = storage_paths(run_dir, storage)
    return tune.Tuner.restore(tune_storage + "/" + stage,
                              trainable=wrapped_driver(space, train_storage),
                              resume_unfinished=True, restart_errored=True)


def can_restore(run_dir: str, storage: Optional[str] = None, stage: str = TUNE_DIR_NAME) -> bool:
    tune_storage, _ = storage_paths(run_dir, storage)
    return tune.Tuner.can_restore(tune_storage + "/" + stage)
