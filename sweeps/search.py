"""Space -> Ray Tune search algorithm (Optuna) and scheduler (ASHA)."""
from __future__ import annotations

import warnings
from typing import Any, Optional

import optuna
import optuna.distributions as od
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.result import TRAINING_ITERATION
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from sweeps.keys import BASELINE_TAG, EPOCH
from sweeps.space import Parameter, Space



def suggest(trial: optuna.Trial, p: Parameter) -> Any:
    d = p.distribution
    if isinstance(d, od.CategoricalDistribution):
        return trial.suggest_categorical(p.name, d.choices)
    if isinstance(d, od.IntDistribution):
        return trial.suggest_int(p.name, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_float(p.name, d.low, d.high, step=d.step, log=d.log)


class DefineByRun:
    """Optuna define-by-run: a conditional parameter is suggested only when its `when` holds,
    so TPE never learns from values that did not influence the trial.

    A class, not a closure: OptunaSearch pickles it with the study when Tune checkpoints.
    """

    def __init__(self, space: Space):
        self.params = space.parameters  # unconditional first (the parser orders them)

    def __call__(self, trial: optuna.Trial) -> None:
        chosen: dict[str, Any] = {}
        for p in self.params:
            if all(chosen.get(k) == v for k, v in p.when.items()):
                chosen[p.name] = suggest(trial, p)
        return None


def make_sampler(space: Space) -> optuna.samplers.BaseSampler:
    if space.method == "grid":
        grid = {p.name: list(p.distribution.choices) for p in space.parameters}
        return optuna.samplers.GridSampler(grid, seed=space.seed)
    if space.method == "random":
        return optuna.samplers.RandomSampler(seed=space.seed)
    # TPE's default of 10 random start-up trials would make a 6-trial laptop sweep pure random
    # search; a third of the budget (at least 2) keeps both phases.
    startup = min(10, max(2, space.budget.trials // 3))
    # multivariate + group model the parameters jointly and handle conditional ones properly;
    # Optuna still flags both as experimental, which is not news to the user of a sweep.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=space.seed, n_startup_trials=startup,
                                          multivariate=True,
                                          group=any(p.when for p in space.parameters))


class BaselineFirst(Searcher):
    """Wraps the Optuna searcher: suggests the space's baseline config first (if it has one),
    and tells the study which trials ASHA stopped early.

    The baseline (e.g. lambda = 0, outside a log-uniform range) is a reference point, not a
    sample: it is kept out of the Optuna study so TPE's model is not distorted by it.
    A trial stopped before its last epoch is told to Optuna as PRUNED (Ray's OptunaSearch does
    so when the result is None): otherwise its early-epoch value would enter TPE's model as if
    it were a final score, next to other trials' last-epoch values.
    """

    def __init__(self, searcher: Searcher, baseline: Optional[dict[str, Any]],
                 epochs: Optional[int] = None):
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher = searcher
        self.baseline = None if baseline is None else dict(baseline)
        self.baseline_trial_id: Optional[str] = None
        self.epochs = epochs
        self.reported_epoch: dict[str, int] = {}  # trial -> last epoch told to Optuna

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.searcher.set_max_concurrency(max_concurrent)

    def suggest(self, trial_id: str) -> Optional[dict]:
        if self.baseline is not None and self.baseline_trial_id is None:
            self.baseline_trial_id = trial_id
            return {**self.baseline, BASELINE_TAG: True}
        return self.searcher.suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id == self.baseline_trial_id:
            return
        if EPOCH in result:
            # Optuna's step is the epoch, not Tune's iteration: a trial resumed by `--resume`
            # has no Tune checkpoint (Train keeps its own), so Tune counts its reports from 1
            # again — Optuna then dropped them as "already reported" and filed later epochs'
            # values under earlier steps (TPE ranks a PRUNED trial by its last step).
            epoch = int(result[EPOCH])
            if epoch <= self.reported_epoch.get(trial_id, 0):
                return  # re-reported after a restore: the same epoch, already told
            self.reported_epoch[trial_id] = epoch
            result = {**result, TRAINING_ITERATION: epoch}
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None,
                          error: bool = False) -> None:
        if trial_id == self.baseline_trial_id:
            return
        if (result and not error and self.epochs is not None
                and int(result.get(EPOCH, self.epochs)) < self.epochs):
            result = None  # stopped early: PRUNED, not COMPLETE with an early-epoch value
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    # SearchGenerator saves wrappers through get_state/set_state and the inner searcher itself.
    def get_state(self) -> dict:
        return {"baseline": self.baseline, "baseline_trial_id": self.baseline_trial_id,
                "epochs": self.epochs, "reported_epoch": dict(self.reported_epoch)}

    def set_state(self, state: dict) -> None:
        self.baseline = state["baseline"]
        self.baseline_trial_id = state["baseline_trial_id"]
        self.epochs = state.get("epochs")
        self.reported_epoch = dict(state.get("reported_epoch", {}))

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)


def make_searcher(space: Space, storage: Optional[str] = None,
                  study_name: Optional[str] = None) -> Searcher:
    names = [o.name for o in space.objectives]
    modes = [o.mode for o in space.objectives]
    kwargs: dict[str, Any] = {}
    if storage:
        # An Optuna RDB storage lets optuna-dashboard read the study while it runs.
        kwargs["storage"] = optuna.storages.RDBStorage(storage)
        kwargs["study_name"] = study_name
    searcher: Searcher = OptunaSearch(
        space=DefineByRun(space),
        metric=names if space.multi_objective else names[0],
        mode=modes if space.multi_objective else modes[0],
        sampler=make_sampler(space), **kwargs)
    return BaselineFirst(searcher, space.baseline or None, epochs=space.epochs())


class BaselineExemptASHA(ASHAScheduler):
    """ASHA over the search trials only: the baseline always runs every epoch and its values
    never enter a rung.

    Why (benchmarks/rung_agreement.py, measured on the shipped entropy_lambda space): the
    unregularized baseline runs first and has the best val_ig at every epoch, so with it in the
    rungs ASHA's cutoff is the baseline's value and most regularized trials are cut at the
    first rung — in 8 % (min_iter 4) to 67 % (min_iter 1) of replayed 6-trial sweeps no search
    trial ran every epoch, i.e. the sweep had no answer; with the baseline kept out, none.
    The baseline is the reference of every Δ and of the confirmation, so it must finish anyway.
    """

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if trial.config.get(BASELINE_TAG):
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if trial.config.get(BASELINE_TAG):
            self._trial_info.pop(trial.trial_id, None)
            return
        super().on_trial_complete(tune_controller, trial, result)


def make_scheduler(space: Space) -> TrialScheduler:
    if space.early_stop is None or not space.early_stop.rungs(space.epochs()):
        # no rung before the last epoch (e.g. --smoke's 2 epochs): nothing to stop early
        return FIFOScheduler()
    # `epoch` (reported by every workload) rather than Tune's training_iteration: a trial that
    # resumes from a checkpoint restarts its iteration count but not its epoch.
    return BaselineExemptASHA(
        time_attr=EPOCH, metric=space.primary.name, mode=space.primary.mode,
        max_t=space.early_stop.max_t(space.epochs()),
        grace_period=space.early_stop.min_iter, reduction_factor=space.early_stop.eta)
