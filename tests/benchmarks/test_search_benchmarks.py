"""Pure pieces of benchmarks/rung_agreement.py and benchmarks/search_efficiency.py."""
import math

import numpy as np
import pytest

from benchmarks.rung_agreement import asha_epochs, kendall_tau, rungs_for, simulate_sweeps
from benchmarks.search_efficiency import Surrogate, score_run


class _T:
    def __init__(self, i):
        self.trial_id = f"t{i}"


@pytest.mark.parametrize("min_iter", [1, 2, 4])
def test_asha_epochs_matches_rays_bracket(min_iter):
    """Our replay of ASHA gives the epochs Ray's own bracket would stop each trial at."""
    from ray.tune.schedulers.async_hyperband import _Bracket
    rng = np.random.default_rng(min_iter)
    curves = rng.normal(size=(30, 8)).cumsum(axis=1).tolist()
    bracket = _Bracket(min_t=min_iter, max_t=8, reduction_factor=3, s=0)
    expected = []
    for i, c in enumerate(curves):
        ran = 8
        for epoch in range(1, 9):
            if bracket.on_result(_T(i), epoch, c[epoch - 1]) == "STOP":
                ran = epoch
                break
        expected.append(ran)
    assert asha_epochs(curves, rungs_for(min_iter, 3, 8), 3, 8) == expected
    assert any(e < 8 for e in expected)


def test_rung_simulation_on_curves_whose_early_ranking_is_reversed():
    """Curves that cross after epoch 2: ranking at epoch 1 is the reverse of the final one."""
    grid = [[1.0 - 0.1 * i] * 2 + [0.1 * i] * 6 for i in range(1, 10)]
    baseline = [0.0] * 8
    assert kendall_tau([c[0] for c in grid], [c[-1] for c in grid]) == pytest.approx(-1)
    rng = np.random.default_rng(0)
    early = simulate_sweeps(grid, baseline, 1, rungs_for(1, 3, 8), 3, 6, 200, rng)
    late = simulate_sweeps(grid, baseline, 4, rungs_for(4, 3, 8), 3, 6, 200, rng)
    assert early["p_best_dropped"] > 0.5 and early["mean_loss"] > 0
    assert late["p_best_dropped"] == 0 and late["mean_loss"] == 0
    assert late["tau_mean"] == pytest.approx(1) and late["p_tau_below_half"] == 0


def _runs():
    """Synthetic measurements: final value = 1 - (log10 lambda + 1)^2 / 10, ce 2 better by 0.01,
    seeds 0/1 offset by ∓0.005."""
    runs = []
    for seed, off in ((0, -0.005), (1, 0.005)):
        runs.append({"space": "a", "params": {"lambda": 0.0}, "baseline": True, "seed": seed,
                     "curves": {"m": [0.5 + off, 0.8 + off]}})
        for lam in (0.01, 0.1, 1.0):
            for ce in (1, 2):
                f = 1 - (math.log10(lam) + 1) ** 2 / 10 + (0.01 if ce == 2 else 0)
                runs.append({"space": "a", "params": {"lambda": lam, "compute_every": ce},
                             "baseline": False, "seed": seed,
                             "curves": {"m": [f / 2 + off, f + off]}})
    return runs


def test_surrogate_interpolates_the_measured_means_and_keeps_seed_residuals():
    s = Surrogate(_runs(), "a", "m", maximize=True, lam_range=(0.01, 1.0))
    assert s.true_final(0.1, 2) == pytest.approx(1.01)
    assert s.true_final(0.0, 0) == pytest.approx(0.8)
    value, lam, ce = s.optimum()
    assert value == pytest.approx(1.01) and lam == pytest.approx(0.1) and ce == 2
    # residual of seed 0 at the nearest measured lambda, inflated by sqrt(2/1)
    assert s.curve(0.12, 2, 0)[-1] - s.true_final(0.12, 2) == pytest.approx(-0.005 * math.sqrt(2))
    assert 0.9 < s.true_final(0.03, 1) < 1.0  # between the knots, not beyond them


def test_score_run_counts_time_to_an_answer_within_one_percent():
    true = {(0.0, 0): 0.5, (1.0, 1): 0.9, (0.1, 1): 0.995, (0.2, 1): 0.97}
    trials = [{"lam": 0.0, "ce": 0, "baseline": True, "epochs_run": 8, "observed": 0.5},
              {"lam": 1.0, "ce": 1, "baseline": False, "epochs_run": 8, "observed": 0.9},
              {"lam": 0.1, "ce": 1, "baseline": False, "epochs_run": 2, "observed": 0.6},
              {"lam": 0.1, "ce": 1, "baseline": False, "epochs_run": 8, "observed": 0.99},
              # noisier, observed higher but truly worse: becomes the answer
              {"lam": 0.2, "ce": 1, "baseline": False, "epochs_run": 8, "observed": 1.0}]
    s = score_run(trials, lambda lam, ce: true[(lam, ce)], 1.0, True, 8, 20, 2)
    assert s["trials_to_1pct"] == 4 and s["sim_s_to_1pct"] == 4 * 20 + 26 * 2
    assert s["sim_s_total"] == 5 * 20 + 34 * 2 and s["epochs"] == 34
    assert s["regret"] == pytest.approx(0.03) and s["answer"]["lambda"] == 0.2


def test_score_run_without_a_finished_search_trial_has_no_answer():
    trials = [{"lam": 0.0, "ce": 0, "baseline": True, "epochs_run": 8, "observed": 0.5},
              {"lam": 1.0, "ce": 1, "baseline": False, "epochs_run": 4, "observed": 0.4}]
    s = score_run(trials, lambda lam, ce: 0.9, 1.0, True, 8, 20, 2)
    assert s["answer"] is None and s["finished"] == 0 and s["trials_to_1pct"] is None
    assert math.isnan(s["regret"]) and s["sim_s_total"] == 40 + 12 * 2


def test_a_dominant_baseline_in_ashas_records_stops_the_search_trials():
    """The baseline is best at every epoch (as lambda = 0 is for val_ig): recorded by ASHA it
    sets the cutoff, so the first search trial is always stopped and sweeps can end with none
    finished; kept out, the first search trial always finishes."""
    grid = [[0.5 - 0.01 * i] * 8 for i in range(10)]
    baseline = [1.0] * 8
    rng = np.random.default_rng(0)
    inside = simulate_sweeps(grid, baseline, 4, rungs_for(4, 3, 8), 3, 6, 100, rng)
    outside = simulate_sweeps(grid, baseline, 4, rungs_for(4, 3, 8), 3, 6, 100, rng,
                              baseline_in_asha=False)
    assert asha_epochs([baseline] + grid[:1], rungs_for(4, 3, 8), 3, 8) == [8, 4]
    assert inside["p_none_finished"] > 0.2 and inside["finished"] < outside["finished"]
    assert outside["p_none_finished"] == 0 and outside["finished"] >= 1
