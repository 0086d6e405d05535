"""The Python API: `Sweep.from_yaml("entropy_lambda.yaml", trials=8).run()`.

A sweep lives in one run directory:

    <output>/<name>/
        space.yaml  sweep.json     the space as run, and the overrides + MLflow ids (for --resume)
        mlflow.db  mlartifacts/    default MLflow store (unless --mlflow-uri)
        tune/  train/              Ray Tune experiment and the trials' Train runs + checkpoints
        results.csv  best_config.yaml
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import pandas as pd

from sweeps.capacity import Demand
from sweeps.errors import BadInput, SpaceError, clip
from sweeps.space import Space, load_space
from workloads.knobs import shown

STATE_FILE = "sweep.json"
SPACE_COPY = "space.yaml"
DEFAULT_OUTPUT = "sweep_runs"
MAX_STATE_BYTES = 1 << 20  # sweep.json is a few hundred bytes


@dataclass
class SweepResult:
    best_config: Optional[dict]  # every knob of the best trial (None if no trial finished)
    table: pd.DataFrame  # one row per trial, best first
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    run_dir: str


@dataclass(frozen=True)
class Overrides:
    """Command-line / API overrides of the space file, saved so --resume applies them again."""
    trials: Optional[int] = None
    max_concurrent: Optional[int] = None
    workers_per_trial: Optional[int] = None
    gpus_per_worker: Optional[float] = None
    cpus_per_worker: Optional[float] = None
    seed: Optional[int] = None
    smoke: bool = False

    def apply(self, space: Space) -> Space:
        fixed = dict(space.get_workload().smoke) if self.smoke else None
        kw = dataclasses.asdict(self)
        kw.pop("smoke")
        if self.smoke:
            kw["trials"] = kw["trials"] or 2
            kw["max_concurrent"] = kw["max_concurrent"] or 1
        return space.override(fixed=fixed, **kw)


class Sweep:
    def __init__(self, space: Space, *, name: Optional[str] = None,
                 output: str = DEFAULT_OUTPUT, mlflow_uri: Optional[str] = None,
                 address: Optional[str] = None, storage: Optional[str] = None,
                 optuna_storage: Optional[str] = None, ray_temp_dir: Optional[str] = None,
                 overrides: Overrides = Overrides(), quiet: bool = False):
        self.base_space = space
        self.overrides = overrides
        self.space = overrides.apply(space)
        self.name = name or f"{space.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.run_dir = os.path.abspath(os.path.join(output, self.name))
        self.mlflow_uri = mlflow_uri
        self.address = address
        self.storage = storage
        self.optuna_storage = optuna_storage
        self.ray_temp_dir = ray_temp_dir
        self.quiet = quiet

    @classmethod
    def from_yaml(cls, space_file: str, *, trials: Optional[int] = None,
                  max_concurrent: Optional[int] = None, workers_per_trial: Optional[int] = None,
                  gpus_per_worker: Optional[float] = None, cpus_per_worker: Optional[float] = None,
                  seed: Optional[int] = None, smoke: bool = False, **kwargs: Any) -> "Sweep":
        overrides = Overrides(trials, max_concurrent, workers_per_trial, gpus_per_worker,
                              cpus_per_worker, seed, smoke)
        return cls(load_space(space_file), overrides=overrides, **kwargs)

    @classmethod
    def resume_from(cls, run_dir: str, **kwargs: Any) -> "Sweep":
        """The sweep stored in `run_dir`, with the space and overrides it was started with."""
        state_path = os.path.join(run_dir, STATE_FILE)
        if not os.path.isfile(state_path):
            raise BadInput(f"--resume: {clip(run_dir, 200)} holds no sweep ({STATE_FILE} missing)")
        state = read_state(state_path)
        space = load_space(os.path.join(run_dir, SPACE_COPY))
        space = dataclasses.replace(space, path=state["space_path"])
        # The sweep keeps the tracking store it started with unless the caller names another
        # (the CLI passes mlflow_uri only when --mlflow-uri is given; None means "not given").
        if kwargs.get("mlflow_uri") is None:
            kwargs["mlflow_uri"] = state.get("tracking_uri")
        sweep = cls(space, name=os.path.basename(os.path.abspath(run_dir)),
                    output=os.path.dirname(os.path.abspath(run_dir)),
                    overrides=Overrides(**state["overrides"]), **kwargs)
        sweep._state = state
        return sweep

    # ----------------------------------------------------------------------------------------
    @property
    def tracking_uri(self) -> str:
        from sweeps.mlflow_store import default_tracking_uri
        return self.mlflow_uri or default_tracking_uri(self.run_dir)

    def plan(self) -> str:
        s = self.space
        lines = [f"sweep {self.name}: workload {s.workload}, method {s.method} (seed {s.seed}), "
                 + ", ".join(f"{o.goal} {o.name}" for o in s.objectives),
                 f"trials: {s.num_trials()}" + (" (first: baseline "
                                                + ", ".join(f"{k}={v}" for k, v in s.baseline.items())
                                                + ")" if s.baseline else ""),
                 "searched: " + ", ".join(_describe(p) for p in s.parameters),
                 "fixed: " + ", ".join(f"{k}={v}" for k, v in sorted(s.fixed.items())),
                 "early stop: " + ("none" if s.early_stop is None else
                                   s.early_stop.describe(s.epochs())),
                 "time limit: " + (f"{s.budget.time_limit_s:g} s" if s.budget.time_limit_s else "none")]
        lines += Demand.of(s).plan_lines()
        lines.append(f"output: {self.run_dir}")
        lines.append(f"MLflow: {self.tracking_uri}")
        return "\n".join(lines)

    def _refuse_existing(self) -> None:
        if os.path.exists(os.path.join(self.run_dir, STATE_FILE)):
            raise BadInput(f"{self.run_dir} already holds a sweep; pass --resume to continue it "
                           f"or --name to start another")

    def _prepare_new(self) -> None:
        self._refuse_existing()
        os.makedirs(self.run_dir, exist_ok=True)
        shutil.copyfile(self.base_space.path, os.path.join(self.run_dir, SPACE_COPY))

    def _save_state(self, state: Mapping[str, Any]) -> None:
        tmp = os.path.join(self.run_dir, STATE_FILE + ".tmp")
        with open(tmp, "w") as f:
            json.dump(state, f, indent=2)
        os.replace(tmp, os.path.join(self.run_dir, STATE_FILE))

    def check_inputs(self, *, write_probe: bool = True) -> None:
        """Everything checkable without Ray (BadInput if not): the run directory can be created
        and written, and the tracking store is reachable.

        With write_probe (a real run) the run directory's missing folders and a temporary file
        in it are created and removed again, so the check leaves nothing behind either way;
        without it (--dry-run writes nothing) the nearest existing folder is judged by its type
        and permissions only.
        """
        from sweeps.mlflow_store import check_tracking_uri
        self._check_output(write_probe)
        if self.mlflow_uri:
            check_tracking_uri(self.mlflow_uri)

    def _check_output(self, write_probe: bool) -> None:
        target = self.run_dir
        where = f"output directory {clip(target, 200)}"
        missing = []  # folders to create, deepest first
        path = target
        try:
            while not os.path.isdir(path):
                if os.path.lexists(path):
                    raise BadInput(f"{where}: {clip(path, 200)} exists and is not a directory; "
                                   f"choose another --output or --name")
                missing.append(path)
                parent = os.path.dirname(path)
                if parent == path:
                    break
                path = parent
            if not write_probe:
                if not os.access(path, os.W_OK | os.X_OK):
                    raise BadInput(f"{where}: folder {clip(path, 200)} is not writable; choose "
                                   f"another --output")
                return
        except ValueError as e:  # e.g. an embedded NUL byte
            raise BadInput(f"{where}: not a usable path ({clip(e, 100)})") from None
        created = []
        try:
            for folder in reversed(missing):
                try:
                    os.mkdir(folder)
                except FileExistsError:
                    continue
                created.append(folder)
            fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=target)
            os.close(fd)
            os.unlink(probe)
        except (OSError, ValueError) as e:
            reason = getattr(e, "strerror", None) or e
            raise BadInput(f"{where}: cannot be created or written ({clip(reason, 100)}); "
                           f"choose another --output") from None
        finally:
            for folder in reversed(created):
                try:
                    os.rmdir(folder)
                except OSError:
                    pass

    def tuner(self, callbacks: tuple = ()):
        """A configured `ray.tune.Tuner` for this space (no MLflow, no run directory state):
        for people who drive Ray Tune themselves."""
        from sweeps.tuner import build_tuner
        os.makedirs(self.run_dir, exist_ok=True)
        return build_tuner(self.space, self.run_dir, callbacks=callbacks, storage=self.storage,
                           optuna_storage=self.optuna_storage)

    def run(self, resume: bool = False) -> SweepResult:
        """Run (or with resume=True, continue) the sweep; blocks until every trial ended."""
        import ray

        from sweeps.capacity import check_capacity
        from sweeps.mlflow_store import ui_hint
        from sweeps.tuner import send_library_logs_to, start_ray

        self.check_inputs()
        state = self._resume_state() if resume else None
        if not resume:
            self._refuse_existing()
        # Tune's own console output (a config box, result tables) would bury our progress lines.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        # Tune saves its experiment state at most this often (default "auto": tens of seconds).
        # A sweep killed right after a trial finished would re-run that trial on --resume; our
        # trials are long and the state small, so save within a second.
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
        started = start_ray(self.address, self.ray_temp_dir)
        try:
            # Fail fast, before anything is written, if one trial can never be placed.
            lines = check_capacity(Demand.of(self.space), ray.cluster_resources(),
                                   _autoscaler_max())
            if not resume:
                self._prepare_new()
            send_library_logs_to(os.path.join(self.run_dir, "sweep.log"))
            self._say("\n".join(lines))
            tuner, exp_id, parent_id = self._open_tuner(state)
            self._say(ui_hint(self.tracking_uri, exp_id))
            result = self._finish(tuner.fit(), exp_id, parent_id)
        finally:
            if started:
                ray.shutdown()
        self._say(ui_hint(self.tracking_uri, exp_id))
        return result

    def _resume_state(self) -> dict:
        state = getattr(self, "_state", None)
        if state is None:
            raise BadInput("resume: use Sweep.resume_from(run_dir)")
        return state

    def _open_tuner(self, state: Optional[dict]):
        """(tuner, experiment id, parent run id): restored if Tune saved the experiment, else new.

        A sweep killed before Tune's first save has a parent run but no Tune state: it starts
        Tune afresh under the same parent run.
        """
        from sweeps.mlflow_store import start_parent_run
        from sweeps.progress import ProgressPrinter
        from sweeps.tracking import MlflowTrialTracker
        from sweeps.tuner import build_tuner, can_restore, restore_tuner

        if state is not None and can_restore(self.run_dir, self.storage):
            self._say(f"resuming {self.run_dir}")
            return (restore_tuner(self.space, self.run_dir, storage=self.storage),
                    state["experiment_id"], state["parent_run_id"])
        if state is None:
            # A local store keeps artifacts beside it; a server manages its own.
            artifacts = (None if self.tracking_uri.startswith(("http://", "https://"))
                         else os.path.join(self.run_dir, "mlartifacts"))
            exp_id, parent_id = start_parent_run(self.tracking_uri, self.name, artifacts,
                                                 self.space, self.name, {"output": self.run_dir})
            self._save_state({"space_path": self.base_space.path,
                              "tracking_uri": self.tracking_uri, "experiment_id": exp_id,
                              "parent_run_id": parent_id,
                              "overrides": dataclasses.asdict(self.overrides)})
        else:
            exp_id, parent_id = state["experiment_id"], state["parent_run_id"]
        callbacks = [MlflowTrialTracker(self.tracking_uri, exp_id, parent_id, self.space)]
        if not self.quiet:
            callbacks.append(ProgressPrinter(self.space))
        tuner = build_tuner(self.space, self.run_dir, callbacks=callbacks, storage=self.storage,
                            optuna_storage=self.optuna_storage)
        return tuner, exp_id, parent_id

    def _finish(self, grid, exp_id: str, parent_id: str) -> SweepResult:
        from sweeps.report import best_trial, format_table, results_table, write_outputs
        from sweeps.mlflow_store import finish_parent_run

        trials = [{"trial_id": r.metrics.get("trial_id", os.path.basename(r.path or "")),
                   "config": r.config or {}, "metrics": r.metrics or {},
                   "error": r.error is not None} for r in grid]
        df = results_table(self.space, trials)
        best = best_trial(df, self.space)
        best_knobs = None
        if best is not None:
            config = next(t["config"] for t in trials if t["trial_id"] == best["trial_id"])
            best_knobs = self.space.trial_knobs(config)
        files = write_outputs(self.run_dir, self.space, df, best_knobs)
        best_metrics = {o.name: best[o.name] for o in self.space.objectives} if best is not None else {}
        finish_parent_run(self.tracking_uri, parent_id, best_knobs, best_metrics, files,
                          failed=best is None)
        self._say(format_table(df))
        self._say("wrote " + ", ".join(files))
        return SweepResult(best_knobs, df, parent_id, exp_id, self.tracking_uri, self.run_dir)

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)


def _describe(p) -> str:
    d = p.distribution
    if hasattr(d, "choices"):
        text = f"{p.name} in {list(d.choices)}"
    else:
        text = f"{p.name} in [{d.low:g}, {d.high:g}]{' log' if d.log else ''}"
    if p.when:
        text += " when " + ", ".join(f"{k}={v}" for k, v in p.when.items())
    return text


def _autoscaler_max() -> Optional[dict]:
    """Resources an autoscaler can add, or None on a fixed cluster (sweeps/cluster_info.py)."""
    from sweeps.cluster_info import autoscaler_max_resources
    return autoscaler_max_resources()


def latest_run_dir(output: str, stem: str) -> Optional[str]:
    """The most recent run directory of a space (for `--resume` without `--name`)."""
    if not os.path.isdir(output):
        return None
    try:
        names = os.listdir(output)
    except OSError as e:
        raise BadInput(f"--resume: cannot list {clip(output, 200)} ({e.strerror})") from None
    candidates = sorted(d for d in names
                        if d.startswith(stem) and os.path.isfile(os.path.join(output, d, STATE_FILE)))
    return os.path.join(output, candidates[-1]) if candidates else None


_OVERRIDE_TYPES = {"trials": int, "max_concurrent": int, "workers_per_trial": int,
                   "gpus_per_worker": float, "cpus_per_worker": float, "seed": int, "smoke": bool}


def read_state(path: str) -> dict:
    """A run directory's sweep.json, checked; BadInput (one line) if unreadable or corrupt."""
    where = f"--resume: {clip(path, 200)}"
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_STATE_BYTES + 1)
    except OSError as e:
        raise BadInput(f"{where}: cannot read ({e.strerror})") from None
    state = None
    if len(data) > MAX_STATE_BYTES:
        problem = f"over {MAX_STATE_BYTES} bytes"
    else:
        try:
            state = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, [[[[…
            problem = f"not JSON: {clip(e, 100)}"
        else:
            problem = _state_problem(state)
    if problem:
        raise BadInput(f"{where}: corrupt ({problem}); the sweep writes this file itself: "
                       f"restore it, or start a new sweep under another --name")
    return state


def _state_problem(state: Any) -> Optional[str]:
    if not isinstance(state, dict):
        return f"not a JSON object (got {shown(state)})"
    for key in ("space_path", "experiment_id", "parent_run_id"):
        if not isinstance(state.get(key), str):
            return f"{key}: must be a string (got {shown(state.get(key))})"
    if not isinstance(state.get("tracking_uri"), (str, type(None))):
        return f"tracking_uri: must be a string (got {shown(state.get('tracking_uri'))})"
    overrides = state.get("overrides")
    if not isinstance(overrides, dict):
        return f"overrides: must be an object (got {shown(overrides)})"
    for key, value in overrides.items():
        kind = _OVERRIDE_TYPES.get(key)
        if kind is None:
            return f"overrides: unknown key {shown(key)}"
        ok = (isinstance(value, bool) if kind is bool else
              value is None or (isinstance(value, (int, float) if kind is float else int)
                                and not isinstance(value, bool)))
        if not ok:
            return f"overrides.{key}: must be {kind.__name__} (got {shown(value)})"
    return None


__all__ = ["Sweep", "SweepResult", "Overrides", "SpaceError", "latest_run_dir"]
