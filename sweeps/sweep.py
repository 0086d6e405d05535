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
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import pandas as pd

from sweeps.capacity import Demand
from sweeps.decision import SYMBOL, Verdict, ci_levels, format_knobs
from sweeps.decision import format_improvement as signed
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
    verdict: Optional[Verdict] = None  # the confirmation's decision (None without `confirm`)
    report_path: Optional[str] = None  # report.md in the run directory
    mlflow_waiting: int = 0  # MLflow writes still in the spool (server unreachable at the end)


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
    finalists: Optional[int] = None
    confirm_seeds: Optional[int] = None
    confirm_seed_offset: Optional[int] = None
    confirm_knobs_from: Optional[str] = None  # a run directory whose finalists to confirm

    def apply(self, space: Space, saved_finalists: Optional[list] = None) -> Space:
        """`space` with these overrides; `saved_finalists`: a resumed sweep's confirmation
        finalists (sweep.json), which --confirm-knobs-from then does not read again."""
        fixed = dict(space.get_workload().smoke) if self.smoke else None
        kw = dataclasses.asdict(self)
        kw.pop("smoke")
        kw.pop("confirm_knobs_from")
        if self.smoke:
            kw["trials"] = kw["trials"] or 2
            kw["max_concurrent"] = kw["max_concurrent"] or 1
        space = space.override(fixed=fixed, **kw)
        if self.smoke and not (self.finalists or self.confirm_seeds
                               or self.confirm_knobs_from is not None
                               or self.confirm_seed_offset is not None):
            # tiny and quick: no confirmation stage unless asked for (it has its own e2e test)
            space = dataclasses.replace(space, confirm=None, decision=None)
        if self.confirm_knobs_from is not None:
            space = _given_finalists(space, self.confirm_knobs_from, self.finalists,
                                     saved_finalists)
        return space


def _given_finalists(space: Space, run_dir: str, finalists: Optional[int],
                     saved: Optional[list] = None) -> Space:
    """`space` confirming the finalists another sweep (`run_dir`) selected for confirmation:
    the same knobs on this arm (a control arm), so sweeps/compare.py can pair them. BadInput if
    it cannot. A resumed sweep passes the finalists it saved (`saved`): the other sweep is not
    read again, so it may have moved or changed since."""
    flag = "--confirm-knobs-from"
    if space.confirm is None:
        raise SpaceError([f"{flag}: {os.path.basename(space.path)} has no `confirm:` stage"])
    if saved is None:
        given = _read_given(space, run_dir, flag)
        if finalists is not None:
            raise SpaceError([f"{flag}: the finalists are that sweep's; --finalists does not "
                              "apply"])
    else:
        given = saved
    confirm = dataclasses.replace(space.confirm, finalists=len(given), given=tuple(
        {"trial_id": f["trial_id"], "params": dict(f["params"])} for f in given),
        given_from=run_dir)
    return dataclasses.replace(space, confirm=confirm)


def _read_given(space: Space, run_dir: str, flag: str) -> list:
    """The finalists `run_dir`'s sweep selected for confirmation, checked against `space`."""
    from sweeps.confirm import confirm_seeds, given_problems
    where = f"{flag}: {clip(run_dir, 200)}"
    state_path = os.path.join(run_dir, STATE_FILE)
    if not run_dir or not os.path.isfile(state_path):
        raise BadInput(f"{where} holds no sweep ({STATE_FILE} missing)")
    saved = read_state(state_path, flag).get("confirm") or {}
    if not saved.get("finalists"):
        raise BadInput(f"{where}: that sweep has selected no finalists (no confirmation stage, "
                       "not reached yet, or none qualified)")
    other = load_space(os.path.join(run_dir, SPACE_COPY))
    if other.workload != space.workload:
        raise BadInput(f"{where}: a sweep of workload {other.workload}, not {space.workload}: "
                       "its knobs mean something else here")
    problems = given_problems(space, saved["finalists"], flag)
    seeds = confirm_seeds(space)
    if not set(saved["seeds"]) & set(seeds):
        problems.append(f"{flag}: that sweep confirmed on seeds {clip(saved['seeds'], 60)}, this "
                        f"one would use {clip(seeds, 60)}: no seed in common to "
                        "pair (set --confirm-seeds / --confirm-seed-offset)")
    if problems:
        raise SpaceError(problems)
    return saved["finalists"]


class Sweep:
    def __init__(self, space: Space, *, name: Optional[str] = None,
                 output: str = DEFAULT_OUTPUT, mlflow_uri: Optional[str] = None,
                 address: Optional[str] = None, storage: Optional[str] = None,
                 optuna_storage: Optional[str] = None, ray_temp_dir: Optional[str] = None,
                 overrides: Overrides = Overrides(), quiet: bool = False,
                 saved_finalists: Optional[list] = None):
        self.base_space = space
        self.overrides = overrides
        self.space = overrides.apply(space, saved_finalists)
        self.name = name or f"{space.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.run_dir = os.path.abspath(os.path.join(output, self.name))
        self.mlflow_uri = mlflow_uri
        self.address = address
        self.storage = storage
        self.optuna_storage = optuna_storage
        self.ray_temp_dir = ray_temp_dir
        self.quiet = quiet
        self._started = time.time()  # one clock for the progress lines of both stages

    @classmethod
    def from_yaml(cls, space_file: str, *, trials: Optional[int] = None,
                  max_concurrent: Optional[int] = None, workers_per_trial: Optional[int] = None,
                  gpus_per_worker: Optional[float] = None, cpus_per_worker: Optional[float] = None,
                  seed: Optional[int] = None, smoke: bool = False,
                  finalists: Optional[int] = None, confirm_seeds: Optional[int] = None,
                  confirm_seed_offset: Optional[int] = None,
                  confirm_knobs_from: Optional[str] = None, **kwargs: Any) -> "Sweep":
        overrides = Overrides(trials, max_concurrent, workers_per_trial, gpus_per_worker,
                              cpus_per_worker, seed, smoke, finalists, confirm_seeds,
                              confirm_seed_offset,
                              confirm_knobs_from and os.path.abspath(confirm_knobs_from))
        return cls(load_space(space_file), overrides=overrides, **kwargs)

    @classmethod
    def resume_from(cls, run_dir: str, flag: str = "--resume", **kwargs: Any) -> "Sweep":
        """The sweep stored in `run_dir`, with the space and overrides it was started with
        (`flag`: the option named in errors)."""
        state_path = os.path.join(run_dir, STATE_FILE)
        if not os.path.isfile(state_path):
            raise BadInput(f"{flag}: {clip(run_dir, 200)} holds no sweep ({STATE_FILE} missing)")
        state = read_state(state_path, flag)
        space = load_space(os.path.join(run_dir, SPACE_COPY))
        space = dataclasses.replace(space, path=state["space_path"])
        # The sweep keeps the tracking store it started with unless the caller names another
        # (the CLI passes mlflow_uri only when --mlflow-uri is given; None means "not given").
        if kwargs.get("mlflow_uri") is None:
            kwargs["mlflow_uri"] = state.get("tracking_uri")
        sweep = cls(space, name=os.path.basename(os.path.abspath(run_dir)),
                    output=os.path.dirname(os.path.abspath(run_dir)),
                    overrides=Overrides(**state["overrides"]),
                    saved_finalists=(state.get("confirm") or {}).get("finalists"), **kwargs)
        sweep._state = state
        return sweep

    # ----------------------------------------------------------------------------------------
    @property
    def saved_state(self) -> Optional[dict]:
        """The sweep.json `resume_from` read (checked); None for a sweep not started yet."""
        return getattr(self, "_state", None)

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
        if s.confirm is not None:
            from sweeps.confirm import confirm_seeds
            runs = (s.confirm.finalists + 1) * s.confirm.seeds
            seeds = confirm_seeds(s)
            picked = (f"best {s.confirm.finalists} finished trial(s)" if s.confirm.select_by is None
                      else f"{s.confirm.finalists} finished trial(s) within the non-inferiority "
                           f"margins, best {s.confirm.select_by} first,")
            if s.confirm.given:
                picked = (f"the {len(s.confirm.given)} finalist(s) "
                          f"{clip(os.path.basename(s.confirm.given_from), 60)} selected ("
                          + clip("; ".join(f"{f['trial_id']}: " + format_knobs(f["params"], ", ")
                                           for f in s.confirm.given), 300) + ")")
            lines.append(f"confirm: {picked} + baseline x "
                         f"{s.confirm.seeds} fresh seeds ({seeds[0]}..{seeds[-1]})"
                         f"{' and data draws' if s.get_workload().data_seed_knob else ''} = up to "
                         f"{runs} runs, never pruned")
            lines.append(f"decision at {s.decision.confidence:.0%}: " + "; ".join(
                f"{c.metric} {'better by >' if c.kind == 'superiority' else 'worse by <'} "
                f"{c.margin:g}{' (relative)' if c.relative else ''}" for c in s.decision.criteria))
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
        # A new sweep needs the server to create its parent run. A resumed one has it already
        # and spools its writes until the server answers (sweeps/mlflow_spool.py).
        if self.mlflow_uri and self.saved_state is None:
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

        from sweeps import local_ray
        from sweeps.capacity import check_capacity
        from sweeps.mlflow_spool import Spool
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
        output = os.path.dirname(self.run_dir)
        if self.address is None:  # what a killed sweep's local Ray left behind in this folder
            local_ray.stop_orphans(output)
        started = start_ray(self.address, self.ray_temp_dir)
        writer = None
        try:
            # Fail fast, before anything is written, if one trial can never be placed.
            lines = check_capacity(Demand.of(self.space), ray.cluster_resources(),
                                   _autoscaler_max())
            if not resume:
                self._prepare_new()
            if started and self.address is None:
                local_ray.record_session(output)
            send_library_logs_to(os.path.join(self.run_dir, "sweep.log"))
            local_ray.route_raylet_messages(self._say)
            self._say("\n".join(lines))
            tuner, exp_id, parent_id = self._open_tuner(state)
            writer = self._start_writer(parent_id, reopen=resume)
            self._say(ui_hint(self.tracking_uri, exp_id))
            # once the confirmation has started, the search is over: read its results only
            in_confirm = bool(state and state.get("confirm"))
            search = collect_trials(tuner.get_results() if in_confirm else tuner.fit(),
                                    self.space, Spool(self.run_dir).reported_metrics())
            confirm_runs, finalists, seeds = self._confirm(search, state, exp_id, parent_id)
            result = self._finish(search, confirm_runs, finalists, seeds, exp_id, parent_id)
        except BaseException as e:
            if writer is not None:  # record how it ended; --resume reopens the runs
                from sweeps.mlflow_store import end_parent_run
                end_parent_run(writer.spool, exp_id, parent_id,
                               "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
                self._close_writer(writer, patience_s=15)
            raise
        finally:
            if started:
                ray.shutdown()
                local_ray.forget_session(output)
        result.mlflow_waiting = self._close_writer(writer)
        self._say(ui_hint(self.tracking_uri, exp_id))
        return result

    def _start_writer(self, parent_id: str, reopen: bool):
        """The background MLflow writer of this sweep (sweeps/mlflow_spool.py)."""
        from sweeps.mlflow_spool import Spool, SpoolWriter, quick_failing_requests
        quick_failing_requests()
        spool = Spool(self.run_dir)
        if reopen:  # a resumed sweep is running again (its end set KILLED/FAILED)
            spool.append({"op": "status", "run_id": parent_id, "status": "RUNNING"})
        return SpoolWriter(spool, self.tracking_uri, on_event=self._say).start()

    def _close_writer(self, writer, patience_s: float = 120.0) -> int:
        """Send what the spool still holds; say in one line what could not be sent."""
        if writer is None:
            return 0
        left = writer.close(patience_s)
        if left:
            self._say(f"MLflow: {left} write(s) wait in {writer.spool.path} "
                      f"({writer.last_error or 'not sent yet'}); send them when the server "
                      f"answers: python sweeps/run.py --sync-mlflow --name {self.name} "
                      f"--output {os.path.dirname(self.run_dir)}")
        return left

    def _resume_state(self) -> dict:
        state = self.saved_state
        if state is None:
            raise BadInput("resume: use Sweep.resume_from(run_dir)")
        return state

    def _open_tuner(self, state: Optional[dict]):
        """(tuner, experiment id, parent run id): restored if Tune saved the experiment, else new.

        A sweep killed before Tune's first save has a parent run but no Tune state: it starts
        Tune afresh under the same parent run.
        """
        from sweeps.mlflow_store import start_parent_run
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
        tuner = build_tuner(self.space, self.run_dir, callbacks=self._callbacks(exp_id, parent_id),
                            storage=self.storage, optuna_storage=self.optuna_storage)
        return tuner, exp_id, parent_id

    def _confirm(self, search: list[dict], state: Optional[dict], exp_id: str,
                 parent_id: str) -> tuple[list[dict], list[dict], list[int]]:
        """The confirmation stage (when the space has `confirm`): finalists and fresh seeds are
        chosen once and saved in sweep.json, so --resume continues the same runs."""
        if self.space.confirm is None:
            return [], [], []
        from sweeps import confirm
        from sweeps.report import results_table
        from sweeps.mlflow_spool import Spool
        from sweeps.tuner import CONFIRM_DIR_NAME, build_confirm_tuner, can_restore, restore_tuner

        saved = (state or {}).get("confirm") or getattr(self, "_confirm_state", None)
        if saved:
            finalists, seeds = saved["finalists"], saved["seeds"]
        else:
            configs = {t["trial_id"]: t["config"] for t in search}
            finalists = confirm.select_finalists(self.space, results_table(self.space, search),
                                                 configs)
            seeds = confirm.confirm_seeds(self.space)
            self._confirm_state = {"finalists": finalists, "seeds": seeds}
            self._save_state({**self._read_own_state(), "confirm": self._confirm_state})
        if not finalists:
            self._say("confirm: " + _no_finalists_reason(self.space, search)
                      + ", nothing to confirm")
            return [], [], seeds
        runs = len(finalists) + 1
        self._say(f"confirm: {len(finalists)} finalist(s) "
                  f"{', '.join(f['trial_id'] for f in finalists)} and the baseline, "
                  f"seeds {', '.join(map(str, seeds))}: {runs * len(seeds)} runs, never pruned")
        if can_restore(self.run_dir, self.storage, stage=CONFIRM_DIR_NAME):
            tuner = restore_tuner(self.space, self.run_dir, storage=self.storage,
                                  stage=CONFIRM_DIR_NAME)
        else:
            tuner = build_confirm_tuner(
                self.space, self.run_dir, confirm.confirm_configs(self.space, finalists, seeds),
                callbacks=self._callbacks(exp_id, parent_id), storage=self.storage)
        grid = tuner.fit()
        return (collect_trials(grid, self.space, Spool(self.run_dir).reported_metrics()),
                finalists, seeds)

    def _read_own_state(self) -> dict:
        return read_state(os.path.join(self.run_dir, STATE_FILE))

    def _callbacks(self, exp_id: str, parent_id: str) -> list:
        from sweeps.progress import ProgressPrinter
        from sweeps.tracking import MlflowTrialTracker
        callbacks = [MlflowTrialTracker(self.run_dir, exp_id, parent_id, self.space)]
        if not self.quiet:
            callbacks.append(ProgressPrinter(self.space, started=self._started))
        return callbacks

    def _finish(self, search: list[dict], confirm_runs: list[dict], finalists: list[dict],
                seeds: list[int], exp_id: str, parent_id: str) -> SweepResult:
        from sweeps import confirm
        from sweeps.mlflow_spool import Spool
        from sweeps.mlflow_store import finish_parent_run
        from sweeps.plots import write_plots
        from sweeps.report import (best_trial, format_table, results_table, rung_agreement,
                                   rung_warning, write_outputs, write_report)

        verdict = confirm.verdict(self.space, finalists, seeds, confirm_runs)
        df = results_table(self.space, search, confirm_runs=confirm_runs)
        best = best_trial(df, self.space)
        best_knobs = None
        if best is not None:
            config = next(t["config"] for t in search if t["trial_id"] == best["trial_id"])
            best_knobs = self.space.trial_knobs(config)
        files = write_outputs(self.run_dir, self.space, df, best_knobs, verdict,
                              best_is_baseline=best is not None and bool(best["baseline"]))
        plots = write_plots(self.space, search, confirm_runs, self.run_dir, verdict)
        second = confirm.second_test_note(self.base_space, self.space) if verdict else None
        report = write_report(self.run_dir, self.name, self.space, df, verdict, plots,
                              confirm_runs, search, second_test=second)
        for warning in rung_warning(rung_agreement(self.space, search)):
            self._say("warning: " + warning)
        best_metrics = {o.name: best[o.name] for o in self.space.objectives} if best is not None else {}
        finish_parent_run(Spool(self.run_dir), exp_id, parent_id, best_knobs, best_metrics,
                          files + [report], failed=best is None, plots=plots, verdict=verdict)
        self._say(format_table(df))
        if verdict is not None:
            self._say(verdict_block(verdict, confirm.follow_up(self.space, verdict), second))
        self._say("wrote " + ", ".join([*files, report, *plots]))
        return SweepResult(best_knobs, df, parent_id, exp_id, self.tracking_uri, self.run_dir,
                           verdict, report)

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)


def collect_trials(grid, space: Space,
                   reported: Optional[Mapping[str, Mapping[int, Mapping[str, float]]]] = None
                   ) -> list[dict]:
    """Tune's ResultGrid → [{trial_id, config, metrics (last report), error, history}], the
    history holding every epoch's report of the workload's metrics, one per epoch in order.

    Tune starts a restored trial's result.json afresh, so after --resume its dataframe lacks
    the epochs reported before: `reported` ({trial_id: {epoch: metrics}}, the sweep's MLflow
    spool) fills them in; where both have an epoch, Tune's (the latest report) wins."""
    keep = ["epoch", *space.get_workload().metrics]
    trials = []
    for r in grid:
        trial_id = r.metrics.get("trial_id", os.path.basename(r.path or ""))
        frame = r.metrics_dataframe
        rows = ([] if frame is None or frame.empty else
                frame[[c for c in keep if c in frame.columns]].to_dict("records"))
        trials.append({"trial_id": trial_id, "config": r.config or {}, "metrics": r.metrics or {},
                       "error": r.error is not None,
                       "history": merged_history((reported or {}).get(trial_id, {}), rows,
                                                 keep)})
    return trials


def merged_history(earlier: Mapping[int, Mapping[str, float]], rows: list[dict],
                   keep: list[str]) -> list[dict]:
    """One dict per epoch, in epoch order: `earlier`'s values, updated by those of `rows`.
    Epochs of `earlier` past the last one in `rows` are left out: the trial went back to an
    older checkpoint and stopped (pruned, diverged) before reaching them again."""
    last = max((int(r["epoch"]) for r in rows if isinstance(r.get("epoch"), (int, float))
                and math.isfinite(r["epoch"])), default=None)
    by_epoch: dict[int, dict] = {}
    for epoch, metrics in earlier.items():
        if last is not None and int(epoch) > last:
            continue
        by_epoch[int(epoch)] = {"epoch": float(epoch),
                                **{k: v for k, v in metrics.items() if k in keep}}
    for row in rows:
        epoch = row.get("epoch")
        if isinstance(epoch, (int, float)) and math.isfinite(epoch):
            by_epoch.setdefault(int(epoch), {}).update(row)
    return [by_epoch[e] for e in sorted(by_epoch)]


def _no_finalists_reason(space: Space, search: list[dict]) -> str:
    from sweeps.report import finished_baseline
    if space.confirm.select_by is not None and not finished_baseline(search, space):
        return "the baseline trial did not finish, so no trial is known to be within the margins"
    if space.confirm.select_by is not None:
        return "no finished search trial is within the decision's non-inferiority margins"
    return "no search trial finished"


def verdict_block(verdict: Verdict, follow_up: Optional[str] = None,
                  second_test: Optional[str] = None) -> str:
    """The few lines the CLI prints at the end: the verdict and, per finalist, why."""
    lines = [f"VERDICT: {verdict.verdict}" + (f" (trial {verdict.trial_id})"
                                               if verdict.trial_id else "") + f" — {verdict.method}"]
    for f in verdict.finalists:
        parts = [f"{r.metric} {signed(r.mean, r.relative)} [{signed(r.ci_low, r.relative)}, "
                 f"{signed(r.ci_high, r.relative)}] {SYMBOL[r.status]}"
                 for r in f.criteria]
        knobs = format_knobs(f.knobs, " ")
        more = f" ({f.seeds_note})" if f.verdict == "INCONCLUSIVE" else ""
        lines.append(f"  {f.trial_id} ({knobs}): {f.verdict}{more} — " + "; ".join(parts))
    lines.append(f"  [lo, hi]: paired-t interval of the mean improvement at its test's Holm level "
                 f"({ci_levels(verdict)}); details in report.md")
    if second_test:
        lines.append(f"  {second_test}")
    if follow_up:
        lines.append(f"  {follow_up}")
    return "\n".join(lines)


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


# From the Overrides fields themselves (annotations are strings here: `Optional[float]`), so a
# new override cannot be forgotten by the sweep.json check.
_OVERRIDE_TYPES = {f.name: bool if f.type == "bool" else float if "float" in f.type
                   else str if "str" in f.type else int for f in dataclasses.fields(Overrides)}


def read_state(path: str, flag: str = "--resume") -> dict:
    """A run directory's sweep.json, checked; BadInput (one line, naming `flag`) if unreadable
    or corrupt."""
    where = f"{flag}: {clip(path, 200)}"
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
    confirm = state.get("confirm")
    if confirm is not None:  # finalists and seeds of a started confirmation stage
        if not (isinstance(confirm, dict) and isinstance(confirm.get("seeds"), list)
                and all(isinstance(s, int) for s in confirm["seeds"])
                and isinstance(confirm.get("finalists"), list)
                and all(isinstance(f, dict) and isinstance(f.get("trial_id"), str)
                        and isinstance(f.get("params"), dict) for f in confirm["finalists"])):
            return f"confirm: must hold finalists [{{trial_id, params}}] and seeds [int] " \
                   f"(got {shown(confirm)})"
    overrides = state.get("overrides")
    if not isinstance(overrides, dict):
        return f"overrides: must be an object (got {shown(overrides)})"
    for key, value in overrides.items():
        kind = _OVERRIDE_TYPES.get(key)
        if kind is None:
            return f"overrides: unknown key {shown(key)}"
        ok = (isinstance(value, bool) if kind is bool else
              value is None or isinstance(value, str) if kind is str else
              value is None or (isinstance(value, (int, float) if kind is float else int)
                                and not isinstance(value, bool)))
        if not ok:
            return f"overrides.{key}: must be {kind.__name__} (got {shown(value)})"
    return None


__all__ = ["Sweep", "SweepResult", "Overrides", "SpaceError", "latest_run_dir"]
