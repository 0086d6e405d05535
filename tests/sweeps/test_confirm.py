"""The confirmation stage without Ray: space keys, finalists, fresh seeds, the configs Tune
runs, failed seeds, the report and its plots."""
from __future__ import annotations

import math
import statistics
import os

import pytest

from sweeps import confirm, run
from sweeps.keys import BASELINE_TAG, CONFIRM_OF
from sweeps.plots import write_plots
from sweeps.report import results_table, write_report
from sweeps.space import parse_space
from workloads.registry import get_workload

BASE = {"workload": "saliency", "metric": {"name": "val_ig", "goal": "maximize"},
        "parameters": {"lambda": {"distribution": "log_uniform_values", "min": 0.01, "max": 3}},
        "baseline": {"lambda": 0.0}, "fixed": {"epochs": 3},
        "confirm": {"finalists": 2, "seeds": 3},
        "decision": {"confidence": 0.9, "criteria": [
            {"metric": "ood_ig", "better_by": 0.0},
            {"metric": "val_ig", "not_worse_than": 0.02, "relative": True}]}}


def space(**changes):
    doc = {**BASE, **changes}
    return parse_space({k: v for k, v in doc.items() if v is not None}, path="c.yaml")


@pytest.mark.parametrize("changes, line", [
    (dict(confirm={"finalists": 0, "seeds": 3}), "c.yaml: confirm.finalists: must be an integer in [1, 20] (got 0)"),
    (dict(confirm={"finalists": 1, "seeds": 1}), "c.yaml: confirm.seeds: must be an integer in [2, 100] (got 1)"),
    (dict(confirm={"finalists": 1, "seeds": 3, "runs": 2}),
     "c.yaml: confirm.runs: unknown key (allowed: finalists, seeds, seed_offset, select_by)"),
    (dict(confirm={"finalists": 1, "seeds": 3, "select_by": "oodig"}),
     "c.yaml: confirm.select_by: not a metric the workload reports (got 'oodig'; allowed: "),
    (dict(confirm={"finalists": 1, "seeds": 3, "seed_offset": -3}),
     "c.yaml: confirm.seed_offset: must be an integer in [0, 1000000] (got -3)"),
    (dict(baseline=None), "c.yaml: confirm: needs a `baseline`: finalists are confirmed against it"),
    (dict(confirm=None), "c.yaml: decision: needs `confirm: {finalists: k, seeds: n}`"),
    (dict(decision={"confidence": 1.0}), "c.yaml: decision.confidence: must be a number in (0.5, 1)"),
    (dict(decision={"criteria": [{"metric": "oodig", "better_by": 0}]}),
     "c.yaml: decision.criteria[0].metric: not a metric the workload reports (got 'oodig'"),
    (dict(decision={"criteria": [{"metric": "ood_ig"}]}),
     "c.yaml: decision.criteria[0]: give exactly one of better_by (superiority) or not_worse_than"),
    (dict(decision={"criteria": [{"metric": "ood_ig", "better_by": -1}]}),
     "c.yaml: decision.criteria[0].better_by: must be a number >= 0 (got -1)"),
    (dict(decision={"criteria": [{"metric": "ood_ig", "better_by": 0, "relative": "yes"}]}),
     "c.yaml: decision.criteria[0].relative: must be true or false"),
    (dict(decision={"criteria": []}), "c.yaml: decision.criteria: must be a non-empty list"),
    (dict(parameters={"seed": {"values": [1, 2]}}),
     "c.yaml: parameters.seed: cannot be searched with `confirm`"),
    (dict(baseline={"lambda": 0.0, "data_seed": 3}),
     "c.yaml: baseline.data_seed: cannot be set with `confirm`"),
    (dict(baseline={"lambda": 0.0, "seed": 3}), "c.yaml: baseline.seed: cannot be set with `confirm`"),
    (dict(parameters={"data_seed": {"values": [1, 2]}}),
     "c.yaml: parameters.data_seed: cannot be searched with `confirm`: the confirmation runs "
     "set the data_seed"),
])
def test_each_confirm_rule_gives_its_line(changes, line):
    with pytest.raises(run.SpaceError) as e:
        space(**changes)
    assert any(p.startswith(line) for p in e.value.problems), e.value.problems


def test_parsed_decision_and_default_criterion():
    s = space()
    assert s.confirm.finalists == 2 and s.confirm.seeds == 3 and s.decision.confidence == 0.9
    (sup, ni) = s.decision.criteria
    assert (sup.kind, sup.metric, sup.margin, sup.goal) == ("superiority", "ood_ig", 0.0, "maximize")
    assert (ni.kind, ni.relative, ni.threshold()) == ("non_inferiority", True, -0.02)
    default = space(decision=None)  # without criteria: the objective, strictly better
    assert [(c.metric, c.kind, c.margin) for c in default.decision.criteria] == [
        ("val_ig", "superiority", 0.0)]


def trial(tid, lam, val, ood, epochs=3, error=False, baseline=False):
    cfg = {BASELINE_TAG: True, "lambda": 0.0} if baseline else {"lambda": lam}
    return {"trial_id": tid, "config": cfg, "error": error,
            "metrics": {"val_ig": val, "ood_ig": ood, "epoch": epochs, "diverged": 0.0},
            "history": [{"epoch": e, "val_ig": val * e / epochs, "ood_ig": ood * e / epochs}
                        for e in range(1, epochs + 1)]}


def test_finalists_fresh_seeds_and_configs():
    s = space()
    search = [trial("b", 0, 1.0, 0.5, baseline=True), trial("p", 0.5, 1.5, 0.5, epochs=1),
              trial("x", 0.3, 1.2, 0.7), trial("y", 0.1, 1.1, 0.6), trial("z", 0.05, 1.05, 0.55)]
    table = results_table(s, search)
    fin = confirm.select_finalists(s, table, {t["trial_id"]: t["config"] for t in search})
    assert [f["trial_id"] for f in fin] == ["x", "y"]  # pruned p and the baseline are skipped
    seeds = confirm.confirm_seeds(s)
    assert seeds == [1, 2, 3]  # the search ran seed 0
    configs = confirm.confirm_configs(s, fin, seeds)
    assert len(configs) == 9 and configs[0] == {"lambda": 0.0, BASELINE_TAG: True, "seed": 1,
                                                "data_seed": 1, CONFIRM_OF: "baseline"}
    # seed by seed: a stage cut short still has whole pairs
    assert [(c[CONFIRM_OF], c["seed"]) for c in configs[:4]] == [
        ("baseline", 1), ("x", 1), ("y", 1), ("baseline", 2)]
    assert {(c[CONFIRM_OF], c["seed"], c["data_seed"]) for c in configs} == {
        (of, sd, sd) for of in ("baseline", "x", "y") for sd in seeds}
    # every knob of a confirm run: the finalist's values with the fresh seed and data
    knobs = s.trial_knobs(configs[1])
    assert knobs["lambda"] == 0.3 and knobs["seed"] == 1 and CONFIRM_OF not in knobs
    assert knobs["data_seed"] == 1  # the search's data (0) is not what confirms a finalist


def test_select_by_picks_within_the_non_inferiority_margins_by_its_metric():
    search = [trial("b", 0, 1.0, 0.5, baseline=True),
              trial("z", 0.01, 1.0, 0.55),   # the objective's best: the least regularized
              trial("x", 0.1, 0.99, 0.7),    # val_ig -1 %: within the 2 % margin
              trial("y", 1.0, 0.97, 0.9),    # val_ig -3 %: outside, however good its ood_ig
              trial("p", 0.3, 1.2, 0.95, epochs=1)]  # pruned: never a finalist
    configs = {t["trial_id"]: t["config"] for t in search}
    by_objective = confirm.select_finalists(space(), results_table(space(), search), configs)
    assert [f["trial_id"] for f in by_objective] == ["z", "x"]
    s = space(confirm={"finalists": 2, "seeds": 3, "select_by": "ood_ig"})
    picked = confirm.select_finalists(s, results_table(s, search), configs)
    assert [f["trial_id"] for f in picked] == ["x", "z"]
    # without a finished baseline trial nothing is known to be within the margins
    alone = confirm.select_finalists(s, results_table(s, search[1:]), configs)
    assert alone == []
    from sweeps.sweep import _no_finalists_reason
    assert "baseline trial did not finish" in _no_finalists_reason(s, search[1:])
    # a trial without a value of the select_by metric is not ranked as if it had one
    nan = search + [trial("n", 0.05, 1.0, math.nan)]
    picked = confirm.select_finalists(s, results_table(s, nan), {**configs, "n": {}})
    assert [f["trial_id"] for f in picked] == ["x", "z"]


def test_fresh_data_follows_the_search_data_seed_and_a_workload_without_one_gets_none():
    s = space(fixed={"epochs": 3, "data_seed": 10, "seed": 5})
    fin = [{"trial_id": "x", "params": {"lambda": 0.3}}]
    seeds = confirm.confirm_seeds(s)
    assert seeds == [6, 7, 8]
    configs = confirm.confirm_configs(s, fin, seeds)
    assert [(c["seed"], c["data_seed"]) for c in configs] == [
        (6, 11), (6, 11), (7, 12), (7, 12), (8, 13), (8, 13)]
    ten = parse_space({"workload": "ten_lm", "metric": {"name": "val_bpb", "goal": "minimize"},
                       "parameters": {"energy_reg_weight": {"values": [0.001, 0.01]}},
                       "baseline": {"energy_reg_weight": 0.0}, "fixed": {"epochs": 2},
                       "confirm": {"finalists": 1, "seeds": 2}}, path="t.yaml")
    assert get_workload("ten_lm").data_seed_knob is None  # its validation split is fixed
    configs = confirm.confirm_configs(ten, fin[:0], confirm.confirm_seeds(ten))
    assert [sorted(c) for c in configs] == [sorted(["energy_reg_weight", BASELINE_TAG, "seed",
                                                    CONFIRM_OF])] * 2


def test_a_follow_up_confirmation_skips_the_seeds_and_data_already_used():
    first = space(fixed={"epochs": 3, "data_seed": 10, "seed": 5})
    used = confirm.confirm_seeds(first)
    assert used == [6, 7, 8]
    # in the space file or from the command line (saved with the sweep, so --resume keeps it)
    for follow in (space(fixed={"epochs": 3, "data_seed": 10, "seed": 5},
                         confirm={"finalists": 2, "seeds": 4, "seed_offset": 3}),
                   first.override(confirm_seeds=4, confirm_seed_offset=len(used))):
        seeds = confirm.confirm_seeds(follow)
        assert seeds == [9, 10, 11, 12] and not set(seeds) & set(used)
        configs = confirm.confirm_configs(follow, [{"trial_id": "x", "params": {"lambda": 0.3}}],
                                          seeds)
        assert {c["data_seed"] for c in configs} == {14, 15, 16, 17}  # fresh draws too
    assert first.override(confirm_seeds=4).confirm.seed_offset == 0
    with pytest.raises(run.SpaceError, match="--confirm-seed-offset: must be an integer"):
        first.override(confirm_seed_offset=-1)
    with pytest.raises(run.SpaceError, match="the space has no `confirm:` stage"):
        space(confirm=None, decision=None).override(confirm_seed_offset=3)


def test_an_inconclusive_verdict_points_to_a_confirmation_on_unused_seeds():
    from sweeps.decision import Criterion, decide
    from sweeps.sweep import verdict_block
    noisy = [0.5, 0.55, 0.47]  # a gain of +0.02 ± 0.04 on 3 seeds: unsettled
    v = decide(finalists={"x": {"ood_ig": noisy}}, baseline={"ood_ig": [0.5, 0.5, 0.46]},
               knobs={"x": {"lambda": 0.3}},
               criteria=[Criterion("ood_ig", "superiority", 0.0, False, "maximize")],
               confidence=0.95, objective="ood_ig", objective_goal="maximize")
    (f,) = v.finalists
    assert v.verdict == "INCONCLUSIVE" and f.seeds_needed and f.seeds_needed > 3
    s = space(confirm={"finalists": 1, "seeds": 3, "seed_offset": 2})
    advice = confirm.follow_up(s, v)
    assert f"--confirm-seeds {f.seeds_needed} (pooled" in advice
    assert "--confirm-seed-offset 5 too" in advice and "second test" in advice
    block = verdict_block(v, advice)
    assert advice in block and "even odds of GO" in block
    assert "Holm level (95.0%)" in block  # one test: its interval is the plain 95 % one
    settled = decide(finalists={"x": {"ood_ig": [0.6, 0.61, 0.59]}},
                     baseline={"ood_ig": [0.5, 0.5, 0.5]}, knobs={},
                     criteria=[Criterion("ood_ig", "superiority", 0.0, False, "maximize")],
                     confidence=0.95, objective="ood_ig", objective_goal="maximize")
    assert settled.verdict == "GO" and confirm.follow_up(s, settled) is None
    # an INCONCLUSIVE finalist without a seed count still says why, on the terminal too
    unstable = decide(finalists={"x": {"ood_ig": [0.6, -math.inf, 0.62]}},
                      baseline={"ood_ig": [0.5, 0.5, 0.5]}, knobs={},
                      criteria=[Criterion("ood_ig", "superiority", 0.0, False, "maximize")],
                      confidence=0.95, objective="ood_ig", objective_goal="maximize")
    (f,) = unstable.finalists
    assert f.verdict == "INCONCLUSIVE" and f.seeds_needed is None
    assert "fix stability first" in verdict_block(unstable)


def test_a_failed_confirm_run_is_a_failed_seed_not_a_crash():
    s = space(confirm={"finalists": 1, "seeds": 3})
    fin = [{"trial_id": "x", "params": {"lambda": 0.3}}]
    seeds = confirm.confirm_seeds(s)
    runs = []
    for c in confirm.confirm_configs(s, fin, seeds):
        better = c[CONFIRM_OF] == "x"
        t = trial("c", 0, 1.0, 0.8 if better else 0.5)
        t["config"] = c
        runs.append(t)
    run = {(r["config"][CONFIRM_OF], r["config"]["seed"]): r for r in runs}
    run["x", 2]["metrics"]["diverged"] = 1.0   # x, seed 2 diverged
    run["x", 3]["error"] = True                # x, seed 3 crashed
    values = confirm.per_seed_metrics(s, runs, seeds, ["ood_ig"])
    assert values["baseline"]["ood_ig"] == [0.5] * 3
    # diverged: a failed seed (-inf); crashed: no comparison (NaN, dropped)
    assert values["x"]["ood_ig"][:2] == [0.8, -math.inf] and math.isnan(values["x"]["ood_ig"][2])
    v = confirm.verdict(s, fin, seeds, runs)
    assert v.verdict != "GO" and v.finalists[0].criteria[0].n_failed_seeds == 1
    # verdict.json keeps each seed's paired difference: failed -inf (None in JSON), dropped NaN
    d = v.finalists[0].criteria[0].diffs
    assert d[0] == pytest.approx(0.3) and d[1] == -math.inf and math.isnan(d[2])
    assert v.to_dict()["finalists"][0]["criteria"][0]["diffs"][1:] == ["failed", "missing"]


def test_the_verdict_picture_draws_failed_seeds_and_zero_spread(tmp_path):
    from sweeps.plots import verdict_plot
    s = space(confirm={"finalists": 2, "seeds": 3})
    fin = [{"trial_id": "x", "params": {"lambda": 0.3}}, {"trial_id": "y", "params": {"lambda": 0.1}}]
    seeds = confirm.confirm_seeds(s)
    runs = []
    for c in confirm.confirm_configs(s, fin, seeds):
        t = trial("c", 0, {"x": 1.0, "y": 1.0 + c["seed"] / 100}.get(c[CONFIRM_OF], 1.0),
                  0.5 + (c[CONFIRM_OF] == "y") * 0.25)  # y: ood exactly +0.25 on every seed
        t["config"] = c
        t["metrics"]["diverged"] = float(c[CONFIRM_OF] == "x" and c["seed"] == 2)
        runs.append(t)
    v = confirm.verdict(s, fin, seeds, runs)
    assert v.finalists[0].criteria[0].n_failed_seeds == 1
    assert v.finalists[1].criteria[0].sd == 0.0
    path = verdict_plot(s, v, runs, str(tmp_path))
    assert os.path.getsize(path) > 10_000
    from sweeps.plots import verdict_figure
    fig, _ = verdict_figure(s, v, runs)
    ood, val = fig.axes[:2]
    texts = [t.get_text() for t in ood.texts]
    assert "diverged on 1/3 seeds" in texts and texts.count("?") == 2
    assert "the same on every seed: no spread, no interval" in texts
    dots = [c.get_offsets() for c in ood.collections if len(c.get_offsets()) and
            c.get_sizes()[0] == 14]
    assert sorted(len(o) for o in dots) == [2, 3]  # x: 2 seeds with a value, y: 3
    bars = [ln.get_xdata()[0] for ln in val.lines if ln.get_linestyle() == "--"]
    assert bars == [pytest.approx(-2.0)]  # val_ig: worse by < 2 %, in % of the baseline
    assert [t.get_text().split(":")[0] for t in ood.get_yticklabels()] == ["y", "x"]
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_report_and_plots_from_a_finished_sweep(tmp_path):
    s = space(confirm={"finalists": 1, "seeds": 2})
    search = [trial("b", 0, 1.0, 0.5, baseline=True), trial("x", 0.3, 1.2, 0.7),
              trial("y", 0.1, 1.001, 0.501)]
    fin = [{"trial_id": "x", "params": {"lambda": 0.3}}]
    runs = []
    # paired differences val 0.02, 0.04 and ood 0.2, 0.3 (sd 0.014 and 0.071), the yardstick
    # for y's single-seed Δ of 0.001
    values = {("baseline", 1): (1.0, 0.5), ("baseline", 2): (1.01, 0.6),
              ("x", 1): (1.02, 0.7), ("x", 2): (1.05, 0.9)}
    for i, c in enumerate(confirm.confirm_configs(s, fin, confirm.confirm_seeds(s))):
        t = trial(f"c{i}", 0, *values[(c[CONFIRM_OF], c["seed"])])
        t["config"] = c
        runs.append(t)
    v = confirm.verdict(s, fin, confirm.confirm_seeds(s), runs)
    df = results_table(s, search, confirm_runs=runs)
    assert list(df["trial_id"]) == ["x", "y", "b"]
    assert df.set_index("trial_id").loc["x", "Δ ood_ig"] == pytest.approx(0.2)
    assert df.set_index("trial_id").loc["y", "within_noise"] == "val_ig,ood_ig"
    plots = write_plots(s, search, runs, str(tmp_path))
    names = {os.path.basename(p) for p in plots}
    assert {"dose_response_lambda.png", "tradeoff.png", "learning_curves.png",
            "optimization_history.png"} <= names
    assert "verdict.png" not in names  # only when given the verdict
    assert "param_importances.png" not in names  # 2 finished search trials: fANOVA on noise
    plots = write_plots(s, search, runs, str(tmp_path), v)
    assert "verdict.png" in {os.path.basename(p) for p in plots}
    assert all(os.path.getsize(p) > 10_000 for p in plots)
    report = open(write_report(str(tmp_path), "demo", s, df, v, plots, runs)).read()
    assert f"**Verdict: {v.verdict}" in report and "| x |" in report
    verdict_part, rest = report.split("## Metrics")
    assert "![verdict.png](verdict.png)" in verdict_part and "verdict.png" not in rest
    assert "Finalists: the 1 best finished search trials by val_ig" in verdict_part
    assert "What 2 seeds can settle: with 2 tests" in verdict_part
    assert "![tradeoff.png](tradeoff.png)" in report and "within_noise" in report
    # every metric the tables show is defined, with its unit, from the workload's metric_docs
    glossary = report.split("## Metrics")[1].split("## ")[0]
    assert "- `val_ig` [bits/fixation]: information gain" in glossary
    assert "- `ood_ig` [bits/fixation]" in glossary and "train_nll" not in glossary


def test_a_verdict_on_seeds_the_command_line_changed_says_it_may_be_a_second_test():
    from sweeps.sweep import Overrides, verdict_block
    s = space()
    assert confirm.second_test_note(s, Overrides().apply(s)) is None
    assert confirm.second_test_note(s, Overrides(finalists=1).apply(s)) is None
    pooled = confirm.second_test_note(s, Overrides(confirm_seeds=12).apply(s))
    assert pooled.startswith("Confirmation seeds 1–12 (the space file's: 1–3): the space file's "
                             "seeds again, pooled with 9 more")
    fresh = confirm.second_test_note(s, Overrides(confirm_seed_offset=3).apply(s))
    assert fresh.startswith("Confirmation seeds 4–6 (the space file's: 1–3): a replication")
    partly = confirm.second_test_note(s, Overrides(confirm_seed_offset=1).apply(s))
    assert "seeds 2–4" in partly and "share 2 seeds, so this is neither" in partly
    fewer = confirm.second_test_note(s, Overrides(confirm_seeds=2).apply(s))
    assert "share 2 seeds" in fewer
    assert all("second test" in n for n in (pooled, fresh, partly, fewer))
    v = confirm.verdict(s, [{"trial_id": "x", "params": {"lambda": 0.3}}], [1, 2, 3], [])
    assert pooled in verdict_block(v, None, pooled)


def test_what_a_design_can_settle_matches_the_readme():
    from sweeps.report import resolution
    v = confirm.verdict(space(), [{"trial_id": "x", "params": {"lambda": 0.3}},
                                  {"trial_id": "y", "params": {"lambda": 0.1}}], [1, 2, 3], [])
    # 2 finalists x (the shipped space has 3 criteria; this one 2) = 4 tests, 3 seeds
    from scipy import stats
    q = stats.t.ppf(1 - 0.1 / (2 * 4), 2)  # confidence 0.9 in this space
    assert f"at least {q / math.sqrt(3):.1f} sd" in resolution(v)
    assert f"down to {stats.t.ppf(1 - 0.1 / 2, 2) / math.sqrt(3):.1f} sd" in resolution(v)
    from sweeps.space import load_space
    shipped = load_space("entropy_lambda.yaml")
    v = confirm.verdict(shipped, [{"trial_id": "x", "params": {"lambda": 0.3}},
                                  {"trial_id": "y", "params": {"lambda": 0.1}}], [1, 2, 3], [])
    # README: 6.3 sd for the first, 5.7 for the next
    assert "with 6 tests" in resolution(v) and "at least 6.3 sd" in resolution(v)


@pytest.mark.parametrize("k, settled", [(6.2, False), (6.35, True)])
def test_the_stated_resolution_is_where_decide_starts_settling(k, settled):
    """2 finalists x 3 criteria, 3 seeds: one criterion's improvements have mean k sd (sd 1),
    every other one is a coin flip; decide() settles it only from the 6.3 sd resolution()
    states."""
    from sweeps.decision import Criterion, decide
    crits = [Criterion(m, "superiority", 0.0, False, "maximize") for m in ("a", "b", "c")]
    flat = [1.0, 0.0, 2.0]  # mean 1 sd: nowhere near
    clear = [k - 1.0, k, k + 1.0]
    fins = {"x": {"a": clear, "b": flat, "c": flat}, "y": {"a": flat, "b": flat, "c": flat}}
    v = decide(finalists=fins, baseline={m: [0.0] * 3 for m in "abc"}, knobs={},
               criteria=crits, confidence=0.95, objective="a", objective_goal="maximize")
    assert (v.finalists[0].criteria[0].status == "met") == settled
    from sweeps.report import resolution
    assert "at least 6.3 sd" in resolution(v)


def test_optuna_plots_leave_out_pruned_trials():
    from sweeps.plots import rebuilt_study
    s = space(early_terminate={"type": "asha", "min_iter": 1, "eta": 3})
    search = [trial("b", 0, 1.0, 0.5, baseline=True), trial("x", 0.3, 1.2, 0.7),
              trial("p", 2.0, 0.4, 0.9, epochs=1)]
    study = rebuilt_study(s, search)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED"]
    assert study.trials[1].value is None  # its epoch-1 value is not drawn as a final one


def test_metric_docs_name_only_reported_metrics_and_label_axes():
    from workloads.contract import Workload
    w = get_workload("saliency")
    assert w.metric_label("val_ig") == "val_ig [bits/fixation]"
    assert w.metric_label("val_auc") == "val_auc"  # no unit: the bare name
    with pytest.raises(TypeError, match="metric_docs names metrics it does not report"):
        Workload(name="w", knobs=w.knobs, metrics={"a": "maximize"}, train=w.train,
                 metric_docs={"b": ("bits", "?")})


def test_finished_trials_rank_before_pruned_ones_and_best_is_finished():
    """A pruned trial's value is from an earlier epoch (a model may score higher mid-training):
    it never outranks a trial that ran every epoch, and is never the best config."""
    s = space()
    search = [trial("b", 0, 1.0, 0.5, baseline=True), trial("p", 0.5, 1.9, 0.5, epochs=1),
              trial("x", 0.3, 1.2, 0.7)]
    from sweeps.report import best_trial
    table = results_table(s, search)
    assert list(table["trial_id"]) == ["x", "b", "p"]
    assert best_trial(table, s)["trial_id"] == "x"
    only_pruned = results_table(s, [trial("p", 0.5, 1.9, 0.5, epochs=1)])
    assert best_trial(only_pruned, s) is None


def test_no_rung_before_the_last_epoch_means_no_early_stopping():
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from sweeps.search import make_scheduler
    s = space(early_terminate={"type": "asha", "min_iter": 2}, fixed={"epochs": 6})
    assert isinstance(make_scheduler(s), ASHAScheduler)
    smoke = space(early_terminate={"type": "asha", "min_iter": 6}, fixed={"epochs": 2})
    assert isinstance(make_scheduler(smoke), FIFOScheduler)
    assert smoke.early_stop.describe(2).startswith("none")


def test_numeric_choices_get_a_dose_response_plot(tmp_path):
    s = space(parameters={"lambda": {"values": [0.01, 0.1, 1.0]},
                          "probes": {"values": ["uniform", "neutral"]}})
    search = [trial("b", 0, 1.0, 0.5, baseline=True), trial("x", 0.1, 1.2, 0.7)]
    names = {os.path.basename(p) for p in write_plots(s, search, [], str(tmp_path))}
    assert "dose_response_lambda.png" in names and "dose_response_probes.png" not in names


def test_kendall_tau_of_each_rung_against_the_final_ranking():
    """A synthetic rung history: the epoch-1 ranking is the reverse of the final one (τ = -1,
    flagged); the epoch-3 ranking agrees (τ = 1)."""
    from sweeps.report import rung_agreement, rung_warning
    s = space(early_terminate={"type": "asha", "min_iter": 1, "eta": 3}, fixed={"epochs": 9})
    trials = []
    for i, final in enumerate([1.0, 1.1, 1.2, 1.3]):
        hist = [{"epoch": e, "val_ig": (2.0 - final) if e == 1 else final * e / 9}
                for e in range(1, 10)]
        trials.append({"trial_id": f"t{i}", "config": {"lambda": 0.1 * (i + 1)}, "error": False,
                       "metrics": {"val_ig": final, "epoch": 9}, "history": hist})
    trials.append({"trial_id": "pruned", "config": {"lambda": 2.0}, "error": False,
                   "metrics": {"val_ig": 0.1, "epoch": 1}, "history": [{"epoch": 1, "val_ig": 0.1}]})
    agreement = rung_agreement(s, trials)
    assert [(a["rung"], a["n"]) for a in agreement] == [(1, 4), (3, 4)]
    assert agreement[0]["tau"] == pytest.approx(-1.0) and agreement[1]["tau"] == pytest.approx(1.0)
    # τ cannot see the pruned trial; where it stood at its rung is reported (0.1: last of 5)
    assert agreement[0]["pruned"] == [{"trial_id": "pruned", "rank": 5, "of": 5}]
    assert agreement[1]["pruned"] == []
    # one that passed rung 1 (best there) and was stopped at rung 3 is listed at rung 3 only
    late = {"trial_id": "late", "config": {"lambda": 1.0}, "error": False,
            "metrics": {"val_ig": 0.2, "epoch": 3},
            "history": [{"epoch": 1, "val_ig": 5.0}, {"epoch": 2, "val_ig": 1.0},
                        {"epoch": 3, "val_ig": 0.2}]}
    agreement = rung_agreement(s, trials + [late])
    assert [p["trial_id"] for p in agreement[0]["pruned"]] == ["pruned"]
    assert agreement[1]["pruned"] == [{"trial_id": "late", "rank": 5, "of": 5}]
    # a minimized objective ranks the lowest first
    low = space(metric={"name": "train_nll", "goal": "minimize"},
                early_terminate={"type": "asha", "min_iter": 1, "eta": 3}, fixed={"epochs": 9})
    flipped = [{**t, "metrics": {**t["metrics"], "train_nll": t["metrics"]["val_ig"]},
                "history": [{**h, "train_nll": h["val_ig"]} for h in t["history"]]} for t in trials]
    assert rung_agreement(low, flipped)[0]["pruned"] == [{"trial_id": "pruned", "rank": 1, "of": 5}]
    (warning,) = rung_warning(agreement)
    assert "epoch-1 ranking disagreed" in warning and "τ = -1.00" in warning
    assert rung_agreement(space(), trials) == []  # no early stopping, nothing to check


def test_smoke_skips_the_confirmation_unless_asked():
    from sweeps.sweep import Overrides
    s = space()
    assert Overrides(smoke=True).apply(s).confirm is None
    kept = Overrides(smoke=True, confirm_seeds=2).apply(s)
    assert kept.confirm.seeds == 2 and kept.confirm.finalists == 2
    assert Overrides(finalists=1).apply(s).confirm.finalists == 1


@pytest.mark.parametrize("resources, max_concurrent, cluster, extra", [
    # the shipped laptop case: one 2-worker trial fills 2 CPUs -> one more may wait ready
    ({"workers_per_trial": 2, "cpus_per_worker": 1}, 1, {"CPU": 2.0}, 1),
    # CPUs left over: an extra trial would train alongside, beyond the user's limit -> none
    ({"workers_per_trial": 2, "cpus_per_worker": 1}, 1, {"CPU": 8.0}, 0),
    ({"workers_per_trial": 2, "cpus_per_worker": 1}, 4, {"CPU": 8.0}, 1),
    # GPUs are what is full
    ({"workers_per_trial": 1, "cpus_per_worker": 1, "gpus_per_worker": 1}, 2,
     {"CPU": 16.0, "GPU": 2.0}, 1),
    ({"workers_per_trial": 1, "cpus_per_worker": 1, "gpus_per_worker": 1}, 1,
     {"CPU": 16.0, "GPU": 2.0}, 0),
])
def test_a_confirmation_trial_starts_ahead_only_when_the_running_ones_fill_the_cluster(
        resources, max_concurrent, cluster, extra):
    from sweeps.capacity import Demand
    s = space(resources=resources, budget={"trials": 6, "max_concurrent": max_concurrent})
    assert int(Demand.of(s).fills(cluster)) == extra


def test_plot_colors_follow_the_group_not_its_position():
    from sweeps.plots import BASE_COLOR, FINALIST_COLORS, _group_colors
    # the baseline is gray wherever it comes, and a lone trial without a baseline is not
    assert _group_colors(["t1", "baseline", "t2"]) == {"t1": FINALIST_COLORS[0],
                                                      "baseline": BASE_COLOR,
                                                      "t2": FINALIST_COLORS[1]}
    assert _group_colors(["t1"])["t1"] != BASE_COLOR
    # more finalists than colors: every group still gets one (none dropped from a plot)
    many = _group_colors([f"t{i}" for i in range(len(FINALIST_COLORS) + 2)])
    assert len(many) == len(FINALIST_COLORS) + 2 and BASE_COLOR not in many.values()


def test_seed_spread_and_plot_groups_use_only_the_runs_the_verdict_compares():
    from sweeps.plots import _confirm_groups
    from sweeps.report import seed_spread
    s = space()  # 3 epochs

    def run(of, seed, ood, epochs=3, diverged=0.0):
        return {"config": {CONFIRM_OF: of, "seed": seed}, "error": False,
                "metrics": {"ood_ig": ood, "epoch": epochs, "diverged": diverged}}
    runs = [run("baseline", 1, 0.50), run("x", 1, 0.52), run("baseline", 2, 0.50),
            run("x", 2, 0.54), run("baseline", 3, 0.50),
            run("x", 3, 0.90, epochs=1)]  # cut short by the time limit: epoch 1's value
    assert seed_spread(runs, ["ood_ig"], s.epochs())["ood_ig"] == pytest.approx(
        statistics.stdev([0.02, 0.04]))
    groups = _confirm_groups(runs + [run("x", 4, 0.1, diverged=1.0)], s)
    assert sorted(r["config"]["seed"] for r in groups["x"]) == [1, 2]


def test_a_pruned_trial_is_compared_with_the_baseline_at_its_own_last_epoch():
    search = [trial("b", 0, 1.2, 0.6, baseline=True),   # val_ig 0.4 / 0.8 / 1.2 by epoch
              trial("p", 0.3, 0.5, 0.5, epochs=1), trial("x", 0.1, 1.1, 0.7),
              trial("e", 0.2, 0.5, 0.5, epochs=2, error=True)]  # crashed after epoch 2
    df = results_table(space(), search).set_index("trial_id")
    assert df.loc["p", "Δ val_ig"] == pytest.approx(0.5 - 0.4)  # not 0.5 - 1.2 (epoch 3)
    assert df.loc["e", "Δ val_ig"] == pytest.approx(0.5 - 0.8)
    assert df.loc["x", "Δ val_ig"] == pytest.approx(1.1 - 1.2)


def test_best_config_says_when_the_best_is_the_baseline(tmp_path):
    from sweeps.report import write_outputs
    s = space()
    search = [trial("b", 0, 1.2, 0.6, baseline=True), trial("x", 0.1, 1.1, 0.7)]
    df = results_table(s, search)
    write_outputs(str(tmp_path), s, df, {"lambda": 0.0}, best_is_baseline=True)
    assert "it is the BASELINE" in (tmp_path / "best_config.yaml").read_text()
    write_outputs(str(tmp_path), s, df, {"lambda": 0.1})
    assert "BASELINE" not in (tmp_path / "best_config.yaml").read_text()


def _sweep_with_finalists(root, finalists, name="treated", space_doc=None, seeds=(1, 2, 3)):
    """A run directory holding only what --confirm-knobs-from reads: sweep.json, space.yaml."""
    import json
    import yaml
    run_dir = os.path.join(root, name)
    os.makedirs(run_dir)
    state = {"space_path": "x.yaml", "tracking_uri": None, "experiment_id": "1",
             "parent_run_id": "p", "overrides": {},
             "confirm": {"finalists": finalists, "seeds": list(seeds)}}
    with open(os.path.join(run_dir, "sweep.json"), "w") as f:
        json.dump(state, f)
    with open(os.path.join(run_dir, "space.yaml"), "w") as f:
        if isinstance(space_doc, str):  # a shipped space file's name
            f.write(open(os.path.join(os.path.dirname(run.__file__), "..", "search_spaces",
                                      space_doc)).read())
        else:
            yaml.safe_dump(space_doc or BASE, f)
    return run_dir


def test_a_control_arm_confirms_the_knobs_another_sweep_confirmed(tmp_path):
    """--confirm-knobs-from: the other sweep's finalists (by knobs) are confirmed whatever this
    search ranks best, on this arm's seeds; the plan and report say where they came from."""
    from sweeps.report import finalists_rule
    from sweeps.sweep import Overrides, _state_problem
    given = [{"trial_id": "t1", "params": {"lambda": 0.112}},
             {"trial_id": "t2", "params": {"lambda": 0.018}}]
    treated = _sweep_with_finalists(tmp_path, given)
    s = Overrides(confirm_knobs_from=treated).apply(space())
    assert s.confirm.finalists == 2 and s.confirm.given_from == treated
    search = [trial("b", 0, 1.0, 0.5, baseline=True), trial("x", 0.3, 1.2, 0.7),
              trial("y", 0.1, 1.1, 0.6)]
    fin = confirm.select_finalists(s, results_table(s, search),
                                   {t["trial_id"]: t["config"] for t in search})
    assert fin == given  # not x and y, the search's best
    configs = confirm.confirm_configs(s, fin, confirm.confirm_seeds(s))
    assert {(c[CONFIRM_OF], c["lambda"]) for c in configs} == {
        ("baseline", 0.0), ("t1", 0.112), ("t2", 0.018)}
    assert "the 2 that treated selected for its confirmation" in finalists_rule(s, 2)
    state = {"space_path": "c.yaml", "experiment_id": "1", "parent_run_id": "p",
             "tracking_uri": None, "overrides": {"confirm_knobs_from": treated}}
    assert _state_problem(state) is None
    assert "must be str" in _state_problem({**state, "overrides": {"confirm_knobs_from": 3}})
    # smoke keeps a confirmation that was asked for this way
    assert Overrides(smoke=True, confirm_knobs_from=treated).apply(space()).confirm.given


def test_confirm_knobs_from_a_relative_path_and_resume_without_reading_it_again(
        tmp_path, monkeypatch):
    import json
    import shutil
    import yaml
    from sweeps.sweep import Sweep
    given = [{"trial_id": "t1", "params": {"lambda": 0.112}}]
    _sweep_with_finalists(tmp_path, given)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(BASE))
    monkeypatch.chdir(tmp_path)
    sweep = Sweep.from_yaml("c.yaml", confirm_knobs_from="treated", output="out", name="ctl")
    assert sweep.overrides.confirm_knobs_from == str(tmp_path / "treated")  # absolute
    assert "the 1 finalist(s) treated selected (t1: lambda=0.112)" in sweep.plan()
    # what a started sweep saves; then the other sweep is gone: resume keeps its own copy
    os.makedirs("out/ctl")
    shutil.copyfile("c.yaml", "out/ctl/space.yaml")
    state = {"space_path": str(tmp_path / "c.yaml"), "tracking_uri": None,
             "experiment_id": "1", "parent_run_id": "p",
             "overrides": {"confirm_knobs_from": str(tmp_path / "treated")},
             "confirm": {"finalists": given, "seeds": [1, 2, 3]}}
    (tmp_path / "out" / "ctl" / "sweep.json").write_text(json.dumps(state))
    shutil.rmtree(tmp_path / "treated")
    resumed = Sweep.resume_from("out/ctl")
    assert list(resumed.space.confirm.given) == given


@pytest.mark.parametrize("finalists, flags, message", [
    ([{"trial_id": "t1", "params": {"energy_reg_weight": 0.1}}], [],
     "--confirm-knobs-from: finalist t1 sets energy_reg_weight, which c.yaml does not search"),
    ([{"trial_id": "t1", "params": {"lambda": "abc"}}], [], "--confirm-knobs-from: finalist t1: "),
    ([{"trial_id": "t1", "params": {"lambda": 10 ** 400}}], [], "--confirm-knobs-from: finalist t1"),
    ([], [], "that sweep has selected no finalists"),
    ([{"trial_id": "baseline", "params": {"lambda": 0.1}}], [], "must be distinct"),
    ([{"trial_id": "t1", "params": {"lambda": 0.1}}, {"trial_id": "t1", "params": {}}], [],
     "must be distinct"),
    ([{"trial_id": "t1\nx", "params": {"lambda": 0.1}}], [], "1-40 letters"),
    ([{"trial_id": "t1", "params": {"lambda": 0.1}}], ["--finalists", "1"],
     "the finalists are that sweep's; --finalists does not apply"),
    ([{"trial_id": "t1", "params": {"lambda": 0.1}}], ["--confirm-seed-offset", "10"],
     "no seed in common to pair"),
    ([{"trial_id": "t1", "params": {"lambda": 0.1}}], ["--space-doc", "ten_energy.yaml"],
     "a sweep of workload ten_lm, not saliency"),
])
def test_confirm_knobs_from_what_cannot_be_confirmed_is_one_line_exit_2(
        tmp_path, capsys, finalists, flags, message):
    import yaml
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE))
    doc = flags[1] if flags[:1] == ["--space-doc"] else None
    flags = [] if doc else flags
    treated = _sweep_with_finalists(tmp_path, finalists, space_doc=doc)
    out = tmp_path / "out"
    rc = run.main(["--space", str(path), "--dry-run", "--output", str(out),
                   "--confirm-knobs-from", treated, *flags])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and message in lines[0], lines
    assert len(lines[0]) < 600 and not out.exists()


def test_confirm_knobs_from_nowhere_or_nothing(tmp_path, capsys):
    rc = run.main(["--space", "entropy_lambda", "--dry-run", "--confirm-knobs-from",
                   str(tmp_path / "nowhere")])
    assert rc == 2 and "holds no sweep (sweep.json missing)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        run.main(["--space", "entropy_lambda", "--dry-run", "--confirm-knobs-from", ""])
    assert e.value.code == 2 and "must name a run directory" in capsys.readouterr().err


def test_a_list_knob_and_a_conditional_one_from_another_sweep(tmp_path):
    """ten_energy's hten_scales travels as "1,2,4" in Tune configs and is searched only when
    use_hten: accepted where it applies, refused where its condition does not hold."""
    from sweeps.errors import SpaceError
    from sweeps.space import load_space
    from sweeps.sweep import Overrides
    ok = [{"trial_id": "a", "params": {"energy_reg_weight": 1e-4, "use_hten": True,
                                       "hten_scales": "1,2,4"}}]
    treated = _sweep_with_finalists(tmp_path, ok, space_doc="ten_energy.yaml")
    s = Overrides(confirm_knobs_from=treated).apply(load_space("ten_energy.yaml"))
    assert s.confirm.given[0]["params"]["hten_scales"] == "1,2,4"
    idle = [{"trial_id": "b", "params": {"energy_reg_weight": 1e-4, "use_hten": False,
                                         "hten_scales": "1,2,4"}}]
    treated = _sweep_with_finalists(tmp_path, idle, name="idle", space_doc="ten_energy.yaml")
    with pytest.raises(SpaceError, match="sets hten_scales where its condition"):
        Overrides(confirm_knobs_from=treated).apply(load_space("ten_energy.yaml"))
