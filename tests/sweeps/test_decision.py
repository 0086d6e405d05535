"""Confirmation verdict statistics (sweeps/decision.py): pure functions, no Ray.

Expected values are derived independently: scipy for t intervals and p-values, a plain-loop
Holm and hand-computed numbers for the multiple-testing correction, and data built so that each
decision row is unambiguous (and re-checked against scipy's one-sided t test)."""
import ast
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from sweeps.decision import (Criterion, decide, estimate_seeds_needed, format_verdict_table,
                             holm, improvements, paired_t_interval, within_noise)

NAN = float("nan")
ALPHA = 0.05


def naive_holm(p, alpha):
    """Textbook step-down, written as a loop (independent of the vectorized version)."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    rejected, adjusted = [False] * m, [0.0] * m
    for j, i in enumerate(order):
        if p[i] <= alpha / (m - j):
            rejected[i] = True
        else:
            break
    for r, i in enumerate(order):
        adjusted[i] = max(min(1.0, (m - j) * p[order[j]]) for j in range(r + 1))
    return rejected, adjusted


def one(cand, base, crit, *, confidence=0.95):
    """decide() for a single finalist on a single criterion (Holm over m = 1 test)."""
    return decide(finalists={"t1": {crit.metric: cand}}, baseline={crit.metric: base},
                  knobs={"t1": {"lam": 0.1}}, criteria=[crit], confidence=confidence,
                  objective=crit.metric, objective_goal=crit.goal)


# --- the interval and the p-values, against scipy -------------------------------------------

@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
@pytest.mark.parametrize("threshold", [0.0, 0.05, -0.02, 0.2])
def test_paired_t_matches_scipy(confidence, threshold):
    d = np.array([0.12, 0.05, 0.09, 0.15, 0.02])
    r = paired_t_interval(d, confidence, threshold=threshold)
    lo, hi = stats.t.interval(confidence, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert r.lo == pytest.approx(lo, rel=1e-12) and r.hi == pytest.approx(hi, rel=1e-12)
    assert r.mean == pytest.approx(d.mean()) and r.n == 5 and r.n_failed == 0
    for alt, p in (("greater", r.p_greater), ("less", r.p_less)):
        assert p == pytest.approx(stats.ttest_1samp(d, threshold, alternative=alt).pvalue,
                                  rel=1e-10)


def test_paired_t_hand_example():
    # d = 1, 2, 3: mean 2, sd 1, df 2; t_{0.975, 2} = 4.303 from any t table.
    r = paired_t_interval([1.0, 2.0, 3.0], 0.95)
    assert r.sd == pytest.approx(1.0)
    assert r.lo == pytest.approx(2 - 4.303 / math.sqrt(3), abs=1e-3)
    assert r.hi == pytest.approx(2 + 4.303 / math.sqrt(3), abs=1e-3)


@pytest.mark.parametrize("diffs", [[0.1, 0.2, -math.inf], [0.1, -math.inf, 0.3, -math.inf],
                                   [0.3, -math.inf, 0.2, 0.25, 0.4]])
def test_failed_seed_is_the_t_test_limit_at_minus_infinity(diffs):
    r = paired_t_interval(diffs + [NAN], 0.95, threshold=0.0)  # a NaN pair is dropped
    huge = [x if math.isfinite(x) else -1e12 for x in diffs]
    expect = stats.ttest_1samp(huge, 0.0, alternative="less").pvalue
    assert r.p_less == pytest.approx(expect, rel=1e-6)
    assert r.p_greater > 0.5 and r.mean == -math.inf and r.n_failed == sum(
        not math.isfinite(x) for x in diffs)


def test_all_seeds_failed_is_certainly_failed_and_single_seed_concludes_nothing():
    r = paired_t_interval([-math.inf] * 3, 0.95)
    assert (r.p_less, r.p_greater, r.n_failed) == (0.0, 1.0, 3)
    r = paired_t_interval([NAN, NAN, NAN], 0.95)  # no comparison at all: nothing concluded
    assert (r.n, r.p_less, r.p_greater) == (0, 1.0, 1.0)
    r = paired_t_interval([0.5], 0.95)
    assert (r.p_less, r.p_greater, r.lo, r.hi) == (1.0, 1.0, -math.inf, math.inf)


# --- Holm -----------------------------------------------------------------------------------

def test_holm_hand_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> max(0.06, 0.04) = 0.06
    h = holm([0.01, 0.04, 0.03, 0.005], 0.05)
    assert h.adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert h.rejected.tolist() == [True, False, False, True]
    # rejected at steps 1 (alpha/3) and 0 (alpha/4); the rest where it stopped (step 2: alpha/2)
    assert h.step_alpha == pytest.approx([0.05 / 3, 0.05 / 2, 0.05 / 2, 0.05 / 4])


def test_holm_matches_loop_implementation_on_random_inputs():
    rng = np.random.default_rng(7)
    for _ in range(300):
        m = int(rng.integers(1, 12))
        p = np.round(rng.uniform(0, 0.1, m) ** rng.uniform(0.5, 3), 3)  # ties included
        alpha = float(rng.choice([0.01, 0.05, 0.1]))
        h = holm(p, alpha)
        rejected, adjusted = naive_holm(list(p), alpha)
        assert h.rejected.tolist() == rejected
        assert h.adjusted == pytest.approx(adjusted, abs=1e-12)
        # the level reported per test is one the test passes iff it is rejected
        assert ((p <= h.step_alpha + 1e-15) == h.rejected).all()
        assert (h.step_alpha >= alpha / m - 1e-15).all()


# --- improvements ---------------------------------------------------------------------------

def test_improvements_orientation_relative_and_failed_seeds():
    assert improvements([3.0, 5.0], [2.0, 4.0], goal="maximize") == pytest.approx([1.0, 1.0])
    assert improvements([3.0, 5.0], [2.0, 4.0], goal="minimize") == pytest.approx([-1.0, -1.0])
    assert improvements([3.0, 5.0], [2.0, -4.0], goal="maximize",
                        relative=True) == pytest.approx([0.5, 9.0 / 4.0])
    assert improvements([1.5, 3.0], [2.0, 4.0], goal="minimize",
                        relative=True) == pytest.approx([0.25, 0.25])
    got = improvements([-math.inf, math.inf, 1.0, NAN, 1.0, 1.0],
                       [1.0, 1.0, 0.0, 1.0, NAN, -math.inf], goal="maximize", relative=True)
    # the candidate diverged, or relative to a 0 baseline: failed; the candidate's run is
    # missing, or the baseline failed: no comparison (NaN, dropped)
    assert got[:3].tolist() == [-math.inf] * 3 and all(map(math.isnan, got[3:]))
    with pytest.raises(ValueError, match="paired"):
        improvements([1.0, 2.0], [1.0], goal="maximize")


def test_criterion_thresholds_and_spec():
    sup = Criterion.from_spec({"metric": "ood_ig", "better_by": 0.0}, "maximize")
    ni = Criterion.from_spec({"metric": "val_ig", "not_worse_than": 0.02, "relative": True},
                             "maximize")
    assert (sup.kind, sup.threshold(), sup.relative) == ("superiority", 0.0, False)
    assert (ni.kind, ni.threshold(), ni.relative) == ("non_inferiority", -0.02, True)
    for bad in ({"metric": "x"}, {"metric": "x", "better_by": 0.1, "not_worse_than": 0.1}):
        with pytest.raises(ValueError):
            Criterion.from_spec(bad, "maximize")
    with pytest.raises(ValueError):
        Criterion("x", "superiority", 0.1, False, "max")


# --- the decision table ---------------------------------------------------------------------

B_MAX = [0.50, 0.52, 0.48, 0.51, 0.49]
B_MIN = [2.0, 2.1, 1.9, 2.05, 1.95]
B_BIG = [10.0, 10.2, 9.8, 10.1, 9.9]
JIT = [0.001, -0.001, 0.0005, -0.0005, 0.0]
NOISE = [0.02, -0.02, 0.01, -0.015, 0.01]


def add(base, shift, jit=JIT):
    return [b + shift + j for b, j in zip(base, jit)]


def mul(base, factor, jit=JIT):
    return [b * (factor + j) for b, j in zip(base, jit)]


ROWS = [  # id, goal, kind, margin, relative, candidate, baseline, expected status
    ("sup-met-abs-max", "maximize", "superiority", 0.0, False, add(B_MAX, 0.05), B_MAX, "met"),
    ("sup-failed-below-margin", "maximize", "superiority", 0.10, False, add(B_MAX, 0.05), B_MAX,
     "failed"),
    ("sup-unsettled-noise", "maximize", "superiority", 0.0, False, add(B_MAX, 0.001, NOISE),
     B_MAX, "unsettled"),
    ("sup-met-min", "minimize", "superiority", 0.0, False, add(B_MIN, -0.3), B_MIN, "met"),
    ("sup-failed-min-worse", "minimize", "superiority", 0.0, False, add(B_MIN, 0.3), B_MIN,
     "failed"),
    ("ni-met-abs-max", "maximize", "non_inferiority", 0.02, False, add(B_MAX, -0.002), B_MAX,
     "met"),
    ("ni-failed-abs-max", "maximize", "non_inferiority", 0.02, False, add(B_MAX, -0.05), B_MAX,
     "failed"),
    ("ni-unsettled-on-margin", "maximize", "non_inferiority", 0.02, False,
     add(B_MAX, -0.02, NOISE), B_MAX, "unsettled"),
    ("ni-met-rel-min", "minimize", "non_inferiority", 0.02, True, mul(B_MIN, 1.001), B_MIN,
     "met"),
    ("ni-failed-rel-min", "minimize", "non_inferiority", 0.02, True, mul(B_MIN, 1.05), B_MIN,
     "failed"),
    # same data, +0.2 on a ~10 baseline: enough in absolute terms, only +2% in relative terms
    ("sup-met-abs-margin", "maximize", "superiority", 0.05, False, add(B_BIG, 0.2), B_BIG, "met"),
    ("sup-failed-rel-margin", "maximize", "superiority", 0.05, True, add(B_BIG, 0.2), B_BIG,
     "failed"),
    ("sup-met-rel-max", "maximize", "superiority", 0.05, True, mul(B_BIG, 1.10), B_BIG, "met"),
    ("sup-met-rel-min", "minimize", "superiority", 0.05, True, mul(B_MIN, 0.90), B_MIN, "met"),
]
VERDICT_OF = {"met": "GO", "failed": "NO-GO", "unsettled": "INCONCLUSIVE"}


@pytest.mark.parametrize("rid,goal,kind,margin,relative,cand,base,expected", ROWS,
                         ids=[r[0] for r in ROWS])
def test_decision_table(rid, goal, kind, margin, relative, cand, base, expected):
    crit = Criterion("m", kind, margin, relative, goal)
    v = one(cand, base, crit)
    (f,) = v.finalists
    (r,) = f.criteria
    assert r.status == expected and f.verdict == VERDICT_OF[expected] and v.verdict == f.verdict
    # independent re-derivation: hand-oriented diffs, scipy one-sided tests at alpha/2 (m = 1)
    d = [(c - b if goal == "maximize" else b - c) / (abs(b) if relative else 1.0)
         for c, b in zip(cand, base)]
    thr = margin if kind == "superiority" else -margin
    met = stats.ttest_1samp(d, thr, alternative="greater").pvalue <= ALPHA / 2
    failed = stats.ttest_1samp(d, thr, alternative="less").pvalue <= ALPHA / 2
    assert (met, failed) == (expected == "met", expected == "failed")
    # with one test the reported interval is the plain 95% paired-t interval
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=np.mean(d), scale=stats.sem(d))
    assert (r.ci_low, r.ci_high, r.ci_level) == (pytest.approx(lo), pytest.approx(hi),
                                                 pytest.approx(0.95))
    if expected != "unsettled":
        assert f.seeds_needed is None and f.seeds_note == "settled"
    else:  # these rows sit on the bar: no feasible number of seeds, and the note says so
        assert f.seeds_needed is None and "more than 100" in f.seeds_note
    assert v.trial_id == ("t1" if expected == "met" else None)


@pytest.mark.parametrize("cand,base,n_failed", [
    ([0.6, -math.inf, 0.61], [0.5, 0.5, 0.5], 1),      # the candidate diverged on one seed
    ([-math.inf, -math.inf, 0.61, 0.7, 0.65], [0.5] * 5, 2),
])
def test_diverged_seed_counts_as_failed_seed_not_a_crash(cand, base, n_failed):
    v = one(cand, base, Criterion("ood_ig", "superiority", 0.0, False, "maximize"))
    (f,) = v.finalists
    (r,) = f.criteria
    assert r.n_failed_seeds == n_failed and r.status != "met" and f.verdict != "GO"
    assert v.verdict != "GO" and r.mean == -math.inf
    assert f.seeds_needed is None and "diverged" in f.seeds_note
    json.dumps(v.to_dict(), allow_nan=False)
    assert f"diverged on {n_failed}/{len(cand)} seeds" in format_verdict_table(v)


@pytest.mark.parametrize("cand,base", [
    ([0.6, 0.62, 0.61], [NAN, NAN, NAN]),  # the baseline failed: no evidence either way
    ([NAN, NAN, NAN], [0.5, 0.5, 0.5]),    # the candidate's runs crashed (infrastructure)
    ([0.6, NAN, 0.61], [0.5, 0.5, NAN]),   # one comparable pair left
])
def test_missing_comparisons_are_inconclusive_never_no_go(cand, base):
    v = one(cand, base, Criterion("ood_ig", "superiority", 0.0, False, "maximize"))
    assert v.verdict == "INCONCLUSIVE" and v.finalists[0].criteria[0].n_failed_seeds == 0
    json.dumps(v.to_dict(), allow_nan=False)


def test_every_seed_diverged_is_no_go():
    v = one([-math.inf] * 3, [0.5, 0.5, 0.5],
            Criterion("val_ig", "non_inferiority", 0.02, True, "maximize"))
    assert v.finalists[0].criteria[0].status == "failed" and v.verdict == "NO-GO"


@pytest.mark.parametrize("margin", [0.25, 0.5, 1.0])
def test_zero_spread_concludes_nothing(margin):
    # 1.5-1.0, 2.5-2.0, 3.5-3.0 are all exactly 0.5 in binary floating point: sd = 0. A quantized
    # metric gives that with real noise, so it is no evidence either way (it was "met", p = 0).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v = one([1.5, 2.5, 3.5], [1.0, 2.0, 3.0],
                Criterion("m", "superiority", margin, False, "maximize"))
    (r,) = v.finalists[0].criteria
    assert r.status == "unsettled" and r.mean == 0.5 and r.sd == 0.0
    assert (r.ci_low, r.ci_high) == (-math.inf, math.inf) and r.p_met == r.p_failed == 1.0
    f = v.finalists[0]
    assert f.verdict == "INCONCLUSIVE" and f.seeds_needed is None
    assert "same difference on every seed" in f.seeds_note and "m:" in f.seeds_note
    assert "+0.5 on every seed, no spread vs > " in format_verdict_table(v)


def test_floating_point_residue_is_zero_spread_too():
    # an accuracy over 10 examples, +0.1 on every seed: the differences agree to ~1e-17 only
    base = [0.6, 0.7, 0.3]
    v = one([b + 0.1 for b in base], base, Criterion("acc", "superiority", 0.0, False, "maximize"))
    (r,) = v.finalists[0].criteria
    assert 0 < np.std(np.subtract([b + 0.1 for b in base], base)) < 1e-15  # the residue is real
    assert r.sd == 0.0 and r.status == "unsettled" and v.verdict == "INCONCLUSIVE"


def test_zero_spread_does_not_hide_a_criterion_heading_to_no_go():
    noise = [0.03, -0.02, 0.01, -0.025, 0.005]
    v = decide(finalists={"t": {"a": [1.0] * 5, "b": add(B_MAX, -0.015, noise)}},
               baseline={"a": [1.0] * 5, "b": B_MAX}, knobs={},
               criteria=[Criterion("a", "non_inferiority", 0.1, False, "maximize"),
                         Criterion("b", "superiority", 0.0, False, "maximize")],
               confidence=0.95, objective="b", objective_goal="maximize")
    f = v.finalists[0]
    assert f.criteria[0].sd == 0.0 and f.verdict == "INCONCLUSIVE"
    assert f.seeds_needed is not None and "even odds of NO-GO on b " in f.seeds_note


def test_zero_spread_beside_a_testable_criterion_still_names_it():
    # bit-identical runs on one metric, a clear effect on another: the flat one blocks GO
    v = decide(finalists={"t": {"a": [1.0, 2.0, 3.0], "b": [2.0, 3.1, 3.9]}},
               baseline={"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, 3.0]}, knobs={},
               criteria=[Criterion("a", "non_inferiority", 0.1, False, "maximize"),
                         Criterion("b", "superiority", 0.0, False, "maximize")],
               confidence=0.95, objective="b", objective_goal="maximize")
    a, b = v.finalists[0].criteria
    assert a.status == "unsettled" and a.sd == 0.0 and b.sd > 0
    assert v.verdict == "INCONCLUSIVE" and v.finalists[0].seeds_needed is None
    assert v.finalists[0].seeds_note.startswith("a: the same difference")


# --- seeds needed ---------------------------------------------------------------------------

def smallest_n(gap, sd, a, n_now, cap=100):
    for n in range(n_now + 1, cap + 1):
        if gap > stats.t.ppf(1 - a, n - 1) * sd / math.sqrt(n):
            return n
    return None


def test_seeds_needed_shrinks_as_the_effect_grows():
    noise = [0.03, -0.02, 0.01, -0.025, 0.005]  # mean 0
    crit = Criterion("m", "superiority", 0.0, False, "maximize")
    got = []
    for effect in (0.01, 0.015, 0.025):
        v = one(add(B_MAX, effect, noise), B_MAX, crit)
        (f,) = v.finalists
        d = np.array([effect + j for j in noise])
        assert f.verdict == "INCONCLUSIVE" and "even odds of GO" in f.seeds_note
        expect = smallest_n(abs(d.mean()), d.std(ddof=1), ALPHA / 2, 5)
        assert f.seeds_needed == expect == f.criteria[0].seeds_needed
        got.append(f.seeds_needed)
    assert got[0] > got[1] > got[2] > 5


def test_seeds_needed_heading_to_failure_and_beyond_cap():
    noise = [0.03, -0.02, 0.01, -0.025, 0.005]
    crit = Criterion("m", "superiority", 0.0, False, "maximize")
    f = one(add(B_MAX, -0.015, noise), B_MAX, crit).finalists[0]
    assert f.verdict == "INCONCLUSIVE" and "even odds of NO-GO on m " in f.seeds_note
    assert f.seeds_needed > 5
    f = one(add(B_MAX, 0.0005, noise), B_MAX, crit).finalists[0]
    assert f.seeds_needed is None and "more than 100" in f.seeds_note
    assert estimate_seeds_needed(0.1, 0.1, 0.1, alpha_one_sided=0.025, n_now=3) is None
    # no spread: nothing to extrapolate from (it was 4: any n "settled" a zero sd)
    assert estimate_seeds_needed(0.5, 0.0, 0.1, alpha_one_sided=0.025, n_now=3) is None


# --- several finalists: Holm across finalists x criteria, and the sweep's verdict -----------

def test_holm_across_finalists_and_criteria_matches_independent_computation():
    rng = np.random.default_rng(3)
    base = {"a": list(rng.normal(1.0, 0.1, 4)), "b": list(rng.normal(5.0, 0.5, 4))}
    crits = [Criterion("a", "superiority", 0.0, False, "maximize"),
             Criterion("b", "non_inferiority", 0.05, True, "minimize")]
    finalists = {f"t{i}": {"a": list(np.array(base["a"]) + rng.normal(0.08 * i, 0.03, 4)),
                           "b": list(np.array(base["b"]) * rng.normal(1.0, 0.02, 4))}
                 for i in range(4)}
    v = decide(finalists=finalists, baseline=base, knobs={}, criteria=crits, confidence=0.9,
               objective="a", objective_goal="maximize")
    p_met, p_fail = [], []
    for tid in finalists:
        for c in crits:
            d = [(x - y if c.goal == "maximize" else y - x) / (abs(y) if c.relative else 1)
                 for x, y in zip(finalists[tid][c.metric], base[c.metric])]
            p_met.append(stats.ttest_1samp(d, c.threshold(), alternative="greater").pvalue)
            p_fail.append(stats.ttest_1samp(d, c.threshold(), alternative="less").pvalue)
    rej_met, adj_met = naive_holm([min(1, 2 * p) for p in p_met], 0.1)
    rej_fail, adj_fail = naive_holm([min(1, 2 * p) for p in p_fail], 0.1)
    got = [r for f in v.finalists for r in f.criteria]
    assert [r.p_met_adjusted for r in got] == pytest.approx(adj_met)
    assert [r.p_failed_adjusted for r in got] == pytest.approx(adj_fail)
    assert [r.status for r in got] == ["failed" if rf else "met" if rm else "unsettled"
                                       for rm, rf in zip(rej_met, rej_fail)]
    assert "Holm over 8 tests" in v.method


def test_reported_interval_clears_the_threshold_exactly_when_settled():
    rng = np.random.default_rng(11)
    crits = [Criterion("a", "superiority", 0.02, False, "maximize"),
             Criterion("b", "non_inferiority", 0.1, False, "minimize")]
    for _ in range(40):
        base = {"a": list(rng.normal(1, 0.1, 5)), "b": list(rng.normal(1, 0.1, 5))}
        fin = {f"t{i}": {k: list(np.array(v) + rng.normal(rng.normal(0, 0.1), 0.05, 5))
                         for k, v in base.items()} for i in range(3)}
        v = decide(finalists=fin, baseline=base, knobs={}, criteria=crits, confidence=0.95,
                   objective="a", objective_goal="maximize")
        for r in (r for f in v.finalists for r in f.criteria):
            assert 0.95 <= r.ci_level < 1
            if r.status == "met":
                assert r.ci_low >= r.threshold
            elif r.status == "failed":
                assert r.ci_high <= r.threshold
            else:
                assert r.ci_low <= r.threshold <= r.ci_high


def sweep(deltas, *, goal="maximize", objective_deltas=None):
    base = {"q": B_MAX, "obj": B_MAX}
    fin = {tid: {"q": add(B_MAX, dq if goal == "maximize" else -dq),
                 "obj": add(B_MAX, (objective_deltas or deltas)[tid])} for tid, dq in deltas.items()}
    return decide(finalists=fin, baseline=base, knobs={t: {"lam": i} for i, t in enumerate(fin)},
                  criteria=[Criterion("q", "superiority", 0.0, False, goal)], confidence=0.95,
                  objective="obj" if objective_deltas else "q",
                  objective_goal="maximize" if objective_deltas else goal)


@pytest.mark.parametrize("deltas,objective_deltas,goal,verdict,trial", [
    ({"small": 0.05, "big": 0.1, "bad": -0.1}, None, "maximize", "GO", "big"),
    ({"small": 0.05, "big": 0.1}, None, "minimize", "GO", "big"),
    # both meet the criterion; the search objective, not the criterion, picks the winner
    ({"x": 0.1, "y": 0.05}, {"x": -0.01, "y": 0.02}, "maximize", "GO", "y"),
    ({"a": -0.1, "b": -0.05}, None, "maximize", "NO-GO", None),
    ({"a": -0.1, "b": 0.0}, None, "maximize", "INCONCLUSIVE", None),
])
def test_sweep_verdict(deltas, objective_deltas, goal, verdict, trial):
    if deltas.get("b") == 0.0:  # make "b" noisy around zero: unsettled
        v = decide(finalists={"a": {"q": add(B_MAX, -0.1)}, "b": {"q": add(B_MAX, 0.0, NOISE)}},
                   baseline={"q": B_MAX}, knobs={},
                   criteria=[Criterion("q", "superiority", 0.0, False, goal)], confidence=0.95,
                   objective="q", objective_goal="maximize")
    else:
        v = sweep(deltas, goal=goal, objective_deltas=objective_deltas)
    assert (v.verdict, v.trial_id) == (verdict, trial)


def test_a_missing_seed_does_not_decide_which_go_finalist_wins():
    # both GO on the criterion; "a" lost one run (NaN: crashed) and gains less in the objective
    a = add(B_MAX, 0.05)
    a[2] = NAN
    for order in (("a", "b"), ("b", "a")):
        fin = {"a": {"q": a}, "b": {"q": add(B_MAX, 0.1)}}
        v = decide(finalists={t: fin[t] for t in order}, baseline={"q": B_MAX}, knobs={},
                   criteria=[Criterion("q", "superiority", 0.0, False, "maximize")],
                   confidence=0.95, objective="q", objective_goal="maximize")
        assert [f.verdict for f in v.finalists] == ["GO", "GO"]
        assert v.trial_id == "b", order
        gains = {f.trial_id: f.objective_gain for f in v.finalists}
        assert gains["a"] == pytest.approx(0.05, abs=0.002)  # over the 4 seeds it has


def test_a_comparison_on_fewer_pairs_says_so():
    a = add(B_MAX, 0.05)
    a[2] = NAN  # one confirm run missing
    v = decide(finalists={"a": {"q": a}}, baseline={"q": B_MAX}, knobs={},
               criteria=[Criterion("q", "superiority", 0.0, False, "maximize")],
               confidence=0.95, objective="q", objective_goal="maximize")
    assert v.seeds == 5 and "5 seeds paired by seed (as few as 4 pairs" in v.method
    assert "(n=4)" in format_verdict_table(v)
    full = one(add(B_MAX, 0.05), B_MAX, Criterion("q", "superiority", 0.0, False, "maximize"))
    assert "as few as" not in full.method and "(n=" not in format_verdict_table(full)


def test_table_and_json_are_readable():
    base = {"ood_ig": B_MAX, "val_ig": B_MAX}
    fin = {"trial_a": {"ood_ig": add(B_MAX, 0.05), "val_ig": mul(B_MAX, 0.999)},
           "trial_b": {"ood_ig": add(B_MAX, -0.05), "val_ig": mul(B_MAX, 1.0)}}
    crits = [Criterion.from_spec({"metric": "ood_ig", "better_by": 0.0}, "maximize"),
             Criterion.from_spec({"metric": "val_ig", "not_worse_than": 0.02, "relative": True},
                                 "maximize")]
    v = decide(finalists=fin, baseline=base, knobs={"trial_a": {"lam": 0.1}, "trial_b": {}},
               criteria=crits, confidence=0.95, objective="ood_ig", objective_goal="maximize")
    assert (v.verdict, v.trial_id) == ("GO", "trial_a")
    text = format_verdict_table(v)
    assert "trial_a" in text and "trial_b" in text and "lam=0.1" in text
    assert "✓" in text and "✗" in text and "%" in text and "Holm over 4 tests" in text
    assert "worse by < 2.0%" in text and "better by > 0" in text
    d = json.loads(json.dumps(v.to_dict(), allow_nan=False))
    assert d["finalists"][0]["criteria"][1]["relative"] is True


@pytest.mark.parametrize("diff,sd,expected", [(0.01, 0.02, True), (-0.01, 0.02, True),
                                              (0.03, 0.02, False), (0.02, 0.02, False),
                                              (NAN, 0.02, False), (0.01, NAN, False)])
def test_within_noise(diff, sd, expected):
    assert within_noise(diff, sd) is expected


def test_bad_inputs_are_caller_errors():
    crit = Criterion("m", "superiority", 0.0, False, "maximize")
    with pytest.raises(ValueError, match="paired"):
        one([1.0, 2.0], [1.0, 2.0, 3.0], crit)
    with pytest.raises(ValueError, match="no values for metric"):
        decide(finalists={"t": {"other": [1.0]}}, baseline={"m": [1.0]}, knobs={},
               criteria=[crit], confidence=0.95, objective="m", objective_goal="maximize")


def test_module_imports_neither_ray_nor_mlflow():
    src = Path(__file__).resolve().parents[2] / "sweeps" / "decision.py"
    names = set()
    for node in ast.walk(ast.parse(src.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    assert not names & {"ray", "mlflow"} and names <= {"__future__", "dataclasses", "math",
                                                       "typing", "numpy", "scipy"}
