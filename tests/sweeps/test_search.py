"""Space -> Optuna: conditional parameters, seeding, the baseline-first wrapper, ASHA settings."""
from __future__ import annotations

import optuna
import pytest

from sweeps.keys import BASELINE_TAG
from sweeps.search import BaselineFirst, DefineByRun, make_sampler, make_scheduler, make_searcher
from sweeps.space import load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def ask_many(space, n):
    study = optuna.create_study(sampler=make_sampler(space), direction="minimize")
    fn = DefineByRun(space)
    params = []
    for i in range(n):
        trial = study.ask()
        fn(trial)
        params.append(dict(trial.params))
        study.tell(trial, float(i % 3))
    return params


def test_conditional_parameter_only_when_its_condition_holds():
    space = load_space("ten_energy")
    params = ask_many(space, 12)
    assert any(p["use_hten"] for p in params) and any(not p["use_hten"] for p in params)
    for p in params:
        assert ("hten_scales" in p) == p["use_hten"], p
        if p["use_hten"]:
            assert p["hten_scales"] in ("1,2", "1,2,4", "1,2,4,8")
        assert 0.0001 <= p["energy_reg_weight"] <= 0.1


def test_same_seed_same_suggestions_other_seed_differs():
    space = load_space("joint")
    assert ask_many(space, 6) == ask_many(space, 6)
    other = space.override(seed=space.seed + 1)
    assert ask_many(other, 6) != ask_many(space, 6)


def test_baseline_first_then_optuna_and_baseline_kept_out_of_study():
    space = load_space("entropy_lambda")
    searcher = make_searcher(space)
    assert isinstance(searcher, BaselineFirst)
    first = searcher.suggest("t0")
    assert first == {"lambda": 0.0, BASELINE_TAG: True}
    second = searcher.suggest("t1")
    assert BASELINE_TAG not in second and 0.001 <= second["lambda"] <= 10
    searcher.on_trial_complete("t0", {"val_ig": 0.5, "training_iteration": 1})
    searcher.on_trial_complete("t1", {"val_ig": 0.1, "training_iteration": 1})
    study = searcher.searcher._ot_study
    assert [t.params["lambda"] for t in study.trials] == [second["lambda"]]
    # state survives a Tune experiment checkpoint
    restored = BaselineFirst(searcher.searcher, {})
    restored.set_state(searcher.get_state())
    assert restored.suggest("t2") != first


def test_optuna_steps_are_epochs_also_after_a_resume(recwarn):
    """A resumed trial has no Tune checkpoint, so Tune numbers its reports from 1 again;
    Optuna must still file each epoch's value under that epoch, once."""
    space = load_space("entropy_lambda")
    searcher = make_searcher(space)
    searcher.suggest("t0")  # the baseline
    searcher.suggest("t1")
    values = {1: 0.10, 2: 0.12, 3: 0.15, 4: 0.16, 5: 0.18}
    for epoch in (1, 2, 3):
        searcher.on_trial_result("t1", {"val_ig": values[epoch], "epoch": epoch,
                                        "training_iteration": epoch})
    resumed = BaselineFirst(searcher.searcher, {})  # the sweep is killed and resumed
    resumed.set_state(searcher.get_state())
    # Train resumes from the epoch-2 checkpoint: epoch 3 again, then 4 and 5, as iterations 1-3
    for iteration, epoch in enumerate((3, 4, 5), start=1):
        resumed.on_trial_result("t1", {"val_ig": values[epoch], "epoch": epoch,
                                       "training_iteration": iteration})
    (trial,) = searcher.searcher._ot_study.trials
    assert trial.intermediate_values == values
    assert not [w for w in recwarn if "already reported" in str(w.message)]


def test_multi_objective_searcher_and_asha_on_epoch():
    space = load_space("entropy_lambda")
    scheduler = make_scheduler(space)
    assert scheduler._time_attr == "epoch" and scheduler._max_t == space.epochs()
    import dataclasses
    from sweeps.space import Objective
    multi = dataclasses.replace(space, objectives=(Objective("val_ig", "maximize"),
                                                   Objective("ood_ig", "maximize")),
                                early_stop=None, baseline=None)
    searcher = make_searcher(multi)
    assert searcher.metric == ["val_ig", "ood_ig"] and searcher.mode == ["max", "max"]


def test_the_baseline_neither_sets_nor_meets_ashas_cutoff():
    """A baseline better than every search trial at the rung (the unregularized model often
    is) used to become ASHA's cutoff and prune them all: the sweep then had no answer."""
    from ray.tune.schedulers import TrialScheduler

    space = load_space("entropy_lambda")  # rung at epoch 4, eta 3
    rung = space.early_stop.min_iter

    class T:  # what the scheduler reads of a Tune Trial
        def __init__(self, trial_id, baseline=False):
            self.trial_id, self.config = trial_id, ({"baseline": True} if baseline else {})

    def run(scheduler, trials, values):
        actions = []
        for trial, value in zip(trials, values):
            scheduler.on_trial_add(None, trial)
            actions.append(scheduler.on_trial_result(None, trial, {"epoch": rung, "val_ig": value}))
        return actions

    from ray.tune.schedulers import ASHAScheduler

    def plain():
        return ASHAScheduler(time_attr="epoch", metric="val_ig", mode="max",
                             max_t=space.epochs(), grace_period=rung,
                             reduction_factor=space.early_stop.eta)

    trials = [T("base", baseline=True), T("a"), T("b"), T("c")]
    values = [1.0, 0.5, 0.6, 0.55]  # the baseline is far ahead at the rung
    exempt = run(make_scheduler(space), trials, values)
    # the baseline continues, and the search trials fare as if it did not exist
    assert exempt[0] == TrialScheduler.CONTINUE
    assert exempt[1:] == run(plain(), trials[1:], values[1:])
    assert TrialScheduler.CONTINUE in exempt[1:]
    # with the baseline inside the rung, every search trial is cut
    assert run(plain(), trials, values)[1:] == [TrialScheduler.STOP] * 3


@pytest.mark.parametrize("method,sampler", [("random", optuna.samplers.RandomSampler),
                                            ("tpe", optuna.samplers.TPESampler)])
def test_method_picks_sampler(method, sampler):
    import dataclasses
    space = dataclasses.replace(load_space("ten_energy"), method=method)
    assert isinstance(make_sampler(space), sampler)


def test_optuna_rdb_storage_holds_the_study_for_optuna_dashboard(tmp_path):
    space = load_space("ten_energy")
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    searcher = make_searcher(space, storage=url, study_name="s1")
    searcher.set_search_properties(None, None, {})
    assert searcher.suggest("t0")[BASELINE_TAG]  # the baseline: kept out of the study
    suggested = searcher.suggest("t1")
    study = optuna.load_study(study_name="s1", storage=url)
    assert len(study.trials) == 1
    assert study.trials[0].params["energy_reg_weight"] == suggested["energy_reg_weight"]


def test_python_api_returns_a_configured_tuner(tmp_path):
    from ray import tune

    from sweeps.sweep import Sweep
    sweep = Sweep.from_yaml("ten_energy", trials=3, output=str(tmp_path), name="api")
    assert sweep.space.num_trials() == 3
    assert "trials: 3" in sweep.plan()
    assert isinstance(sweep.tuner(), tune.Tuner)


def test_trials_stopped_early_are_pruned_in_the_study_not_complete():
    space = load_space("entropy_lambda")  # 8 epochs
    searcher = make_searcher(space)
    searcher.suggest("base")
    for tid in ("full", "early"):
        searcher.suggest(tid)
    searcher.on_trial_complete("full", {"val_ig": 1.3, "epoch": 8})
    searcher.on_trial_complete("early", {"val_ig": 1.4, "epoch": 4})  # ASHA stopped it
    states = {t.params["lambda"]: t.state.name for t in searcher.searcher._ot_study.trials}
    assert sorted(states.values()) == ["COMPLETE", "PRUNED"]
    complete = [t for t in searcher.searcher._ot_study.trials if t.state.name == "COMPLETE"]
    assert [t.value for t in complete] == [1.3]  # the early 1.4 is not a final score
