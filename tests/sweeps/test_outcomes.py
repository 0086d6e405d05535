"""Divergence handling and outcome labels (pure functions; no Ray needed)."""
import math


from sweeps.ray_session import sanitize_metrics
from sweeps.report import _pareto_rank, trial_outcome


def test_nan_objective_becomes_worst_and_marks_diverged():
    out = sanitize_metrics({"val_bpb": float("nan"), "val_ce": 1.0, "epoch": 2},
                           [("val_bpb", "minimize")])
    assert out["val_bpb"] == math.inf and out["diverged"] == 1.0 and out["val_ce"] == 1.0
    out = sanitize_metrics({"val_ig": float("-inf")}, [("val_ig", "maximize")])
    assert out["val_ig"] == -math.inf and out["diverged"] == 1.0


def test_finite_metrics_pass_through_with_diverged_zero():
    out = sanitize_metrics({"val_ig": 0.3, "epoch": 1}, [("val_ig", "maximize")])
    assert out == {"val_ig": 0.3, "epoch": 1.0, "diverged": 0.0}


def test_outcomes():
    assert trial_outcome({"epoch": 3, "diverged": 0.0}, epochs=3) == "finished"
    assert trial_outcome({"epoch": 1, "diverged": 0.0}, epochs=3) == "pruned"
    assert trial_outcome({"epoch": 1, "diverged": 1.0}, epochs=3) == "diverged"
    assert trial_outcome({}, epochs=3, errored=True) == "error"


def test_pareto_rank_orders_fronts():
    # larger is better on both axes: (3,1) and (1,3) are non-dominated; (1,1) is dominated
    assert _pareto_rank([(3, 1), (1, 3), (1, 1), (2, 2)]) == [0, 0, 1, 0]


def test_results_table_ranks_and_shows_what_the_baseline_ran_with():
    from sweeps.report import results_table
    from sweeps.space import load_space
    space = load_space("joint")  # minimize val_bpb; baseline lambda=0, energy 0, no HTEN
    trials = [
        {"trial_id": "base", "config": {"baseline": True, "lambda": 0.0,
                                        "energy_reg_weight": 0.0, "use_hten": False},
         "metrics": {"epoch": 3, "val_bpb": 1.6}},
        {"trial_id": "good", "config": {"lambda": 0.1, "compute_every": 10,
                                        "energy_reg_weight": 0.01, "use_hten": True,
                                        "hten_scales": "1,2"},
         "metrics": {"epoch": 3, "val_bpb": 1.5}},
        {"trial_id": "nan", "config": {"lambda": 0.2, "compute_every": 10,
                                       "energy_reg_weight": 0.01, "use_hten": False},
         "metrics": {"epoch": 1, "val_bpb": math.inf, "diverged": 1.0}},
    ]
    df = results_table(space, trials)
    assert list(df["trial_id"]) == ["good", "base", "nan"]
    assert list(df["outcome"]) == ["finished", "finished", "diverged"]
    base = df[df["trial_id"] == "base"].iloc[0]
    # compute_every comes from the workload default; hten_scales is not used without HTEN
    assert base["compute_every"] == 0 and base["hten_scales"] == ""
