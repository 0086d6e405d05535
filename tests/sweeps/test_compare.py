"""Between-arm comparison (sweeps/compare.py): run directories built from the shipped space
files, confirmation runs with chosen per-seed values, and each arm's verdict from the real
sweeps.confirm.verdict; expected numbers from scipy and hand arithmetic. No Ray."""
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from sweeps import confirm
from sweeps.compare import compare, format_comparison, load_arm, main
from sweeps.confirm import BASELINE
from sweeps.errors import BadInput
from sweeps.keys import CONFIRM_OF
from sweeps.space import load_space
from workloads.contract import DIVERGED, SEED_KNOB

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAM = {"lambda": 0.11205837185064169, "compute_every": 3}
OTHER = {"lambda": 0.017898101977688687, "compute_every": 3}
METRICS = ("ood_ig", "val_ig", "bias_kl_neutral")


def make_arm(root, name, space_file, seeds, arms, *, diverged=(), missing=()):
    """A finished sweep's run directory: space.yaml, sweep.json and verdict.json.
    arms: {trial_id or BASELINE: (knobs, {metric: [value per seed]})}; (trial_id, seed) pairs
    in `diverged` are runs that diverged, in `missing` runs that never reported."""
    run = os.path.join(root, name)
    os.makedirs(run)
    src = os.path.join(REPO, "search_spaces", space_file)
    shutil.copyfile(src, os.path.join(run, "space.yaml"))
    space = load_space(src)
    finalists = [{"trial_id": t, "params": k} for t, (k, _) in arms.items() if t != BASELINE]
    runs = []
    for of, (_, values) in arms.items():
        for i, s in enumerate(seeds):
            m = {"epoch": space.epochs(), **{k: v[i] for k, v in values.items()}}
            if (of, s) in diverged:
                m[DIVERGED] = 1.0
            if (of, s) not in missing:
                runs.append({"config": {CONFIRM_OF: of, SEED_KNOB: s}, "metrics": m,
                             "error": None})
    v = confirm.verdict(space, finalists, list(seeds), runs)
    with open(os.path.join(run, "verdict.json"), "w") as f:
        json.dump(v.to_dict(), f)
    state = {"space_path": src, "tracking_uri": None, "experiment_id": "1",
             "parent_run_id": f"parent-{name}", "overrides": {},
             "confirm": {"finalists": finalists, "seeds": list(seeds)}}
    with open(os.path.join(run, "sweep.json"), "w") as f:
        json.dump(state, f)
    return run


def values(ood, val, bias):
    return dict(zip(METRICS, (list(ood), list(val), list(bias))))


def shifted(base, **by):
    """base + a per-seed shift for the named metrics."""
    return {m: list(np.add(v, by.get(m, 0.0))) for m, v in base.items()}


SEEDS = [1, 2, 3, 4, 5]
BASE_A = values([0.80, 0.82, 0.79, 0.81, 0.80], [1.30, 1.31, 1.29, 1.30, 1.32],
                [0.42, 0.41, 0.43, 0.42, 0.40])
FIN_A = values([0.87, 0.88, 0.85, 0.89, 0.86], [1.29, 1.31, 1.28, 1.30, 1.30],
               [0.33, 0.32, 0.33, 0.32, 0.31])
BASE_B = values([0.95, 0.96, 0.94, 0.95, 0.97], [1.40, 1.41, 1.40, 1.39, 1.40],
                [0.17, 0.18, 0.17, 0.16, 0.17])
FIN_B = values([0.96, 0.965, 0.955, 0.955, 0.975], [1.39, 1.40, 1.40, 1.38, 1.39],
               [0.11, 0.12, 0.12, 0.10, 0.11])


def arm_pair(tmp_path, *, a_extra=None, b_seeds=SEEDS, b_order=None, **kw):
    a = make_arm(tmp_path, "blurred", "entropy_lambda.yaml", SEEDS,
                 {"ta": (LAM, FIN_A), **(a_extra or {}), BASELINE: ({}, BASE_A)},
                 diverged=kw.get("diverged_a", ()), missing=kw.get("missing_a", ()))
    fin_b, base_b = FIN_B, BASE_B
    if b_order:  # the same per-seed values, listed in another seed order
        fin_b, base_b = ({m: [v[i] for i in b_order] for m, v in d.items()}
                         for d in (FIN_B, BASE_B))
    b = make_arm(tmp_path, "control", "entropy_lambda_control.yaml", b_seeds,
                 {"tc": (LAM, fin_b), BASELINE: ({}, base_b)})
    return a, b


def test_difference_of_paired_improvements_matches_scipy_and_holm(tmp_path):
    a, b = arm_pair(tmp_path, a_extra={"tb": (OTHER, FIN_A)})
    c = compare(load_arm(a, "A"), load_arm(b, "B"))
    assert [(d.metric, d.trial_a, d.trial_b) for d in c.differences] == [
        ("ood_ig", "ta", "tc"), ("val_ig", "ta", "tc"), ("bias_kl_neutral", "ta", "tc")]
    assert c.seeds == tuple(SEEDS) and c.knob_differences == ("centerbias_input: blurred vs sharp",)
    assert c.unmatched == ("A: tb (lambda=0.0179, compute_every=3)",)
    da = np.subtract(FIN_A["ood_ig"], BASE_A["ood_ig"])
    db = np.subtract(FIN_B["ood_ig"], BASE_B["ood_ig"])
    e = da - db
    ood = c.differences[0]
    assert ood.effect_a == pytest.approx(da.mean()) and ood.effect_b == pytest.approx(db.mean())
    assert ood.baseline_a == pytest.approx(np.mean(BASE_A["ood_ig"]))
    assert ood.mean == pytest.approx(e.mean()) and ood.n == 5 and ood.positive_seeds == 5
    # bias is minimized and relative: improvement = (base - fin) / base per seed, per arm
    ra = (np.array(BASE_A["bias_kl_neutral"]) - FIN_A["bias_kl_neutral"]) / BASE_A["bias_kl_neutral"]
    rb = (np.array(BASE_B["bias_kl_neutral"]) - FIN_B["bias_kl_neutral"]) / BASE_B["bias_kl_neutral"]
    bias = c.differences[2]
    assert bias.relative and bias.mean == pytest.approx((ra - rb).mean())
    assert bias.status == "B improves more (relative)" and bias.ci_high < 0
    # Holm, by hand: the smallest p is tested at 0.05 / 3, then 0.05 / 2, then 0.05
    p = {d.metric: d.p for d in c.differences}
    for d in c.differences:
        e_m = _e(d.metric, d.relative)
        assert d.p == pytest.approx(stats.ttest_1samp(e_m, 0.0).pvalue, rel=1e-9)
    order = sorted(p, key=p.get)
    adjusted = np.maximum.accumulate([min(1, (3 - j) * p[m]) for j, m in enumerate(order)])
    for j, m in enumerate(order):
        d = next(x for x in c.differences if x.metric == m)
        assert d.p_adjusted == pytest.approx(adjusted[j])
    first = next(x for x in c.differences if x.metric == order[0])
    assert first.ci_level == pytest.approx(1 - 0.05 / 3)
    lo, hi = stats.t.interval(1 - 0.05 / 3, 4, loc=e_of(first).mean(), scale=stats.sem(e_of(first)))
    assert (first.ci_low, first.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    assert ood.status == "A improves more" and ood.ci_low > 0
    text = format_comparison(c, {"ood_ig": "bits/fixation", "bias_kl_neutral": "bits"})
    assert "A improves more" in text and "bits/fixation" in text and " pp" in text
    assert "0.416 / 0.17 bits" in text  # the baselines a relative effect is a fraction of
    assert "relative to that arm's own baseline" in text and "Not compared" in text
    assert "centerbias_input: blurred vs sharp" in text and "ta / tc" in text


def _e(metric, relative):
    fa, ba, fb, bb = (np.array(d[metric]) for d in (FIN_A, BASE_A, FIN_B, BASE_B))
    sign = -1.0 if metric == "bias_kl_neutral" else 1.0
    ia, ib = sign * (fa - ba), sign * (fb - bb)
    if relative:
        ia, ib = ia / np.abs(ba), ib / np.abs(bb)
    return ia - ib


def e_of(d):
    return _e(d.metric, d.relative)


def test_significant_alone_is_not_after_holm_and_metric_prespecifies(tmp_path):
    base = values([0.8] * 5, [1.3, 1.31, 1.29, 1.3, 1.32], [0.4, 0.41, 0.42, 0.4, 0.39])
    e = np.array([0.012, 0.03, 0.004, 0.02, 0.016])  # p = 0.019: below 0.05, above 0.05 / 3
    noise = np.array([0.01, -0.01, 0.005, 0.0, -0.005])
    fin_b = shifted(base, ood_ig=0.01 + noise, val_ig=noise / 10, bias_kl_neutral=-0.02 + noise)
    fin_a = shifted(fin_b, ood_ig=e, val_ig=np.array([1, -1, 2, -2, 0]) * 1e-3,
                    bias_kl_neutral=np.array([1, -1, 2, -2, 0]) * 1e-3)
    a = make_arm(tmp_path, "a", "entropy_lambda.yaml", SEEDS, {"x": (LAM, fin_a),
                                                               BASELINE: ({}, base)})
    b = make_arm(tmp_path, "b", "entropy_lambda.yaml", SEEDS, {"y": (LAM, fin_b),
                                                               BASELINE: ({}, base)})
    assert 0.05 / 3 < stats.ttest_1samp(e, 0.0).pvalue < 0.05
    family = compare(load_arm(a, "A"), load_arm(b, "B"))
    ood = family.differences[0]
    assert ood.metric == "ood_ig" and ood.status == "no difference shown"
    assert ood.mean == pytest.approx(e.mean()) and ood.ci_low < 0
    # where the observed difference would just be shown, at Holm's strictest step (0.05 / 6)
    n, crit = ood.seeds_needed, lambda k: stats.t.ppf(1 - 0.05 / 6, k - 1) * ood.sd / math.sqrt(k)
    assert n is not None and n > 5 and abs(ood.mean) > crit(n)
    assert n == 6 or abs(ood.mean) <= crit(n - 1)
    assert f"(~{n} seeds: even odds of showing it" in format_comparison(family, {})
    alone = compare(load_arm(a, "A"), load_arm(b, "B"), metrics=["ood_ig"])
    assert alone.differences[0].seeds_needed is None  # shown: nothing more to ask
    assert [d.metric for d in alone.differences] == ["ood_ig"]
    assert alone.differences[0].status == "A improves more"
    assert alone.differences[0].ci_level == pytest.approx(0.95)
    assert not alone.differences[0].n_missing and alone.knob_differences == ()
    with pytest.raises(BadInput, match="--metric: oops is not a criterion"):
        compare(load_arm(a, "A"), load_arm(b, "B"), metrics=["oops"])


def test_same_improvement_in_both_arms_is_no_difference(tmp_path):
    rng = np.random.default_rng(0)
    base = values(0.8 + rng.normal(0, 0.01, 6), [1.3] * 6, [0.4] * 6)
    bump = 0.05 + rng.normal(0, 0.01, 6)

    def fin(noise):
        return values(np.add(base["ood_ig"], bump + noise), [1.29] * 6, [0.3] * 6)
    a = make_arm(tmp_path, "a", "entropy_lambda.yaml", range(1, 7),
                 {"x": (LAM, fin(rng.normal(0, 0.01, 6))), BASELINE: ({}, base)})
    b = make_arm(tmp_path, "b", "entropy_lambda.yaml", range(1, 7),
                 {"y": (LAM, fin(rng.normal(0, 0.01, 6))), BASELINE: ({}, base)})
    c = compare(load_arm(a, "A"), load_arm(b, "B"))
    ood = c.differences[0]
    assert ood.status == "no difference shown" and ood.ci_low < 0 < ood.ci_high
    assert ood.effect_a > 0.03 and ood.effect_b > 0.03  # both arms do have the effect
    row = next(x for x in format_comparison(c, {}).splitlines() if "| ood_ig |" in x)
    assert ood.seeds_needed and f"(~{ood.seeds_needed} seeds: even odds" in row
    beyond = dataclasses.replace(c, differences=(dataclasses.replace(ood, seeds_needed=None),
                                                 c.differences[1]))
    rows = format_comparison(beyond, {}).splitlines()
    assert "no difference shown (more than 100 seeds)" in next(x for x in rows if "| ood_ig |" in x)
    assert "more than" not in next(x for x in rows if "| val_ig" in x)  # not tested: no count
    # identical val_ig differences on every seed: no spread, nothing to test
    assert c.differences[1].status.startswith("not tested: the same difference on every seed")
    assert c.to_dict()["differences"][1]["ci_low"] is None  # strict JSON


def test_shared_seeds_in_any_order_missing_runs_dropped_diverged_not_tested(tmp_path):
    a, b = arm_pair(tmp_path, b_seeds=[5, 3, 7, 4], b_order=[4, 2, 0, 3],
                    missing_a={("ta", 4)}, diverged_a={("ta", 3)})
    c = compare(load_arm(a, "A"), load_arm(b, "B"))
    assert c.seeds == (3, 4, 5)
    ood = c.differences[0]
    # seed 4 has no run in A: dropped and counted; seeds 3 and 5 pair A's with B's same seed
    assert ood.n_missing == 1 and ood.n == 1
    assert ood.status.startswith("not tested: a failed seed in A ")  # seed 3 diverged in A
    assert ood.failed_a == 1 and ood.failed_b == 0 and ood.p == 1.0
    assert math.isnan(ood.ci_level) and math.isnan(ood.ci_low)
    # without the diverged seed the pairing by seed value (not by position) shows
    a2, b2 = arm_pair(tmp_path / "2", b_seeds=[5, 3, 7, 4], b_order=[4, 2, 0, 3])
    c2 = compare(load_arm(a2, "A"), load_arm(b2, "B"))
    e = _e("ood_ig", False)  # B's values were permuted with their seeds: same pairs as ordered
    ood2 = c2.differences[0]
    assert ood2.n == 3 and ood2.mean == pytest.approx(e[[2, 3, 4]].mean())
    assert "(1 without a run, 1 failed in A)" in format_comparison(c, {})


def test_criteria_judged_differently_are_listed_not_dropped_silently(tmp_path):
    a, b = arm_pair(tmp_path)
    vpath = os.path.join(b, "verdict.json")
    v = json.load(open(vpath))
    crits = v["finalists"][0]["criteria"]
    crits[1]["relative"] = False                            # val_ig absolute in B
    crits[2]["goal"] = "maximize"                           # bias maximized in B
    json.dump(v, open(vpath, "w"))
    c = compare(load_arm(a, "A"), load_arm(b, "B"))
    assert [d.metric for d in c.differences] == ["ood_ig"]
    assert any("val_ig" in x and "relative in one arm" in x for x in c.not_compared)
    assert any("bias_kl_neutral" in x and "maximized in one arm" in x for x in c.not_compared)
    assert "Criteria not compared" in format_comparison(c, {})
    del crits[0]                                            # ood_ig not judged in B
    json.dump(v, open(vpath, "w"))
    with pytest.raises(BadInput, match="share no criterion judged alike"):
        compare(load_arm(a, "A"), load_arm(b, "B"))


def test_knobs_match_by_type_and_value(tmp_path):
    a, b = arm_pair(tmp_path)
    vpath = os.path.join(b, "verdict.json")
    v = json.load(open(vpath))
    v["finalists"][0]["knobs"]["lambda"] = LAM["lambda"] * (1 + 1e-12)  # JSON round-off: same
    json.dump(v, open(vpath, "w"))
    assert len(compare(load_arm(a, "A"), load_arm(b, "B")).differences) == 3
    v["finalists"][0]["knobs"]["lambda"] = LAM["lambda"] * (1 + 1e-6)   # another setting
    json.dump(v, open(vpath, "w"))
    with pytest.raises(BadInput, match="no finalist has the same knobs"):
        compare(load_arm(a, "A"), load_arm(b, "B"))
    v["finalists"][0]["knobs"]["lambda"] = str(LAM["lambda"])           # a string is not 0.112
    json.dump(v, open(vpath, "w"))
    with pytest.raises(BadInput, match="no finalist has the same knobs"):
        compare(load_arm(a, "A"), load_arm(b, "B"))


def test_arms_of_different_workloads_or_the_same_sweep_are_refused(tmp_path):
    a, b = arm_pair(tmp_path)
    arm_a, arm_b = load_arm(a, "A"), load_arm(b, "B")
    ten = dataclasses.replace(arm_b, space=load_space("ten_energy.yaml"))
    with pytest.raises(BadInput, match="different workloads"):
        compare(arm_a, ten)
    copy = shutil.copytree(a, tmp_path / "copy")  # another folder, the same sweep
    with pytest.raises(BadInput, match="same sweep"):
        compare(arm_a, load_arm(str(copy), "B"))


def _edit(path, fn):
    data = json.load(open(path))
    fn(data)
    json.dump(data, open(path, "w"))


def _crit(v):
    return v["finalists"][0]["criteria"][0]


@pytest.mark.parametrize("breakage, message", [
    ("no_verdict", "verdict.json: cannot read"),
    ("old_verdict", "no per-seed differences"),
    ("not_json", "verdict.json: not JSON"),
    ("no_confirm", "has no confirmation stage"),
    ("no_state", "sweep.json missing"),
    ("seed_count", "5 values for 6 confirmation seeds"),
    ("dup_seeds", "confirm seeds must be distinct"),
    ("no_seeds", "confirm seeds must be distinct and at least one"),
    ("dict_diff", "each value must be a number"),
    ("huge_diff", "each value must be a number"),
    ("bool_diff", "each value must be a number"),
    ("relative_str", "not a verdict"),
])
def test_bad_run_directory_is_one_line_exit_2(tmp_path, capsys, breakage, message):
    a, b = arm_pair(tmp_path)
    vpath, spath = os.path.join(b, "verdict.json"), os.path.join(b, "sweep.json")
    seeds = lambda s: _edit(spath, lambda d: d["confirm"].__setitem__("seeds", s))  # noqa: E731
    diff0 = lambda x: _edit(vpath, lambda d: _crit(d)["diffs"].__setitem__(0, x))  # noqa: E731
    {"no_verdict": lambda: os.remove(vpath),
     "old_verdict": lambda: _edit(vpath, lambda d: [c.pop("diffs") for f in d["finalists"]
                                                    for c in f["criteria"]]),
     "not_json": lambda: open(vpath, "w").write("{" + "x" * 10_000),
     "no_confirm": lambda: _edit(spath, lambda d: d.pop("confirm")),
     "no_state": lambda: os.remove(spath),
     "seed_count": lambda: seeds([1, 2, 3, 4, 5, 6]),
     "dup_seeds": lambda: seeds([1, 1, 2, 3, 4]),
     "no_seeds": lambda: seeds([]),
     "dict_diff": lambda: diff0({"a": 1}),
     "huge_diff": lambda: diff0(10 ** 400),
     "bool_diff": lambda: diff0(True),
     "relative_str": lambda: _edit(vpath, lambda d: _crit(d).__setitem__("relative", "false")),
     }[breakage]()
    out = tmp_path / "cmp.json"
    assert main([a, b, "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("error: B:")
    assert len(err) < 600 and sorted(os.listdir(tmp_path)) == ["blurred", "control"]


def test_nothing_to_pair_and_bad_flags_are_exit_2(tmp_path, capsys):
    three = lambda d: {m: v[:3] for m, v in d.items()}  # noqa: E731
    a = make_arm(tmp_path, "a", "entropy_lambda.yaml", [1, 2, 3],
                 {"x": (LAM, three(FIN_A)), BASELINE: ({}, three(BASE_A))})
    b = make_arm(tmp_path, "b", "entropy_lambda.yaml", [1, 2, 3],
                 {"y": (OTHER, three(FIN_B)), BASELINE: ({}, three(BASE_B))})
    c = make_arm(tmp_path, "c", "entropy_lambda.yaml", [7, 8, 9],
                 {"y": (LAM, three(FIN_B)), BASELINE: ({}, three(BASE_B))})
    cases = [([a, b], "no finalist has the same knobs in both sweeps"),
             ([a, c], "the arms share no confirmation seed (A: 1–3, B: 7–9)"),
             ([a, a], "A and B are the same sweep"),
             ([a, c, "--confidence", "nan"], "--confidence: must be in (0, 1)"),
             ([a, c, "--json", str(tmp_path)], "--json:"),
             ([a, c, "--json", str(tmp_path / "no" / "x.json")], "--json:")]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (argv, err)


def test_cli_prints_the_table_and_writes_json(tmp_path):
    a, b = arm_pair(tmp_path)
    out = tmp_path / "cmp.json"
    r = subprocess.run([sys.executable, os.path.join(REPO, "sweeps", "compare.py"), a, b,
                        "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Between arms: A = blurred (entropy_lambda.yaml), B = control " in r.stdout
    assert "A improves more" in r.stdout and "bits/fixation" in r.stdout
    data = json.loads(out.read_text())
    assert [d["metric"] for d in data["differences"]] == list(METRICS)
    assert data["seeds"] == SEEDS and math.isclose(data["confidence"], 0.95)
    assert sorted(os.listdir(tmp_path)) == ["blurred", "cmp.json", "control"]  # no temp left


def test_a_failed_seed_keeps_its_row_in_the_family_at_p_1(tmp_path):
    """One criterion with a failed seed in B, the others tested: Holm still counts 3 tests."""
    a, b = arm_pair(tmp_path)
    _edit(os.path.join(b, "verdict.json"),
          lambda d: d["finalists"][0]["criteria"][1]["diffs"].__setitem__(2, "failed"))
    c = compare(load_arm(a, "A"), load_arm(b, "B"))
    val = c.differences[1]
    assert val.metric == "val_ig" and val.status.startswith("not tested: a failed seed in B")
    assert val.p == 1.0 and val.failed_b == 1 and val.n == 4
    tested = [d for d in c.differences if d is not val]
    p = sorted(d.p for d in tested)
    assert min(d.p_adjusted for d in tested) == pytest.approx(min(1.0, 3 * p[0]))
    assert max(d.ci_level for d in tested) == pytest.approx(1 - 0.05 / 3)  # m = 3, not 2
    text = format_comparison(c, {})
    assert "(1 failed in B)" in text and "| - | 0/4" not in text


def test_failed_in_both_arms_and_a_verdict_without_baseline_values(tmp_path):
    a, b = arm_pair(tmp_path)
    for run in (a, b):
        _edit(os.path.join(run, "verdict.json"), lambda d: (
            d["finalists"][0]["criteria"][0]["diffs"].__setitem__(0, "failed"),
            d.pop("baseline")))
    c = compare(load_arm(a, "A"), load_arm(b, "B"))
    assert c.differences[0].status.startswith("not tested: a failed seed in A and B")
    assert math.isnan(c.differences[1].baseline_a)  # older verdicts: baselines unknown
    row = next(x for x in format_comparison(c, {}).splitlines() if "| ood_ig |" in x)
    assert "| - |" in row and "nan" not in row


def test_verdict_and_sweep_json_must_name_the_same_finalists(tmp_path, capsys):
    a, b = arm_pair(tmp_path)
    _edit(os.path.join(b, "sweep.json"),
          lambda d: d["confirm"]["finalists"][0].__setitem__("trial_id", "zz"))
    assert main([a, b]) == 2
    assert "finalists are not the ones sweep.json confirmed" in capsys.readouterr().err
    _edit(os.path.join(b, "sweep.json"),
          lambda d: d["confirm"]["finalists"][0].__setitem__("trial_id", "tc"))
    _edit(os.path.join(b, "verdict.json"),
          lambda d: d["finalists"].append(dict(d["finalists"][0])))  # the same finalist twice
    assert main([a, b]) == 2
    assert "each trial id and each finalist's criterion metrics once" in capsys.readouterr().err


def test_json_never_lands_in_a_run_directory_or_on_a_non_file(tmp_path, capsys):
    a, b = arm_pair(tmp_path)
    before = open(os.path.join(a, "verdict.json")).read()
    os.mkfifo(tmp_path / "fifo")
    for target, message in ((os.path.join(a, "verdict.json"), "inside a compared sweep"),
                            (os.path.join(b, "x.json"), "inside a compared sweep"),
                            (str(tmp_path / "fifo"), "not a regular file")):
        assert main([a, b, "--json", target]) == 2
        assert message in capsys.readouterr().err
    assert open(os.path.join(a, "verdict.json")).read() == before
    assert not os.path.exists(os.path.join(b, "x.json"))


def test_metric_restricts_the_family_and_says_so(tmp_path):
    a, b = arm_pair(tmp_path)
    out = tmp_path / "cmp.json"
    r = subprocess.run([sys.executable, os.path.join(REPO, "sweeps", "compare.py"), a, b,
                        "--metric", "ood_ig", "--json", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Holm over 1 test at family-wise 95%" in r.stdout
    assert ("Family restricted by --metric to ood_ig; not in it: bias_kl_neutral, val_ig. "
            "Valid only if chosen before") in r.stdout
    data = json.loads(out.read_text())
    assert data["restricted_to"] == ["ood_ig"] and len(data["differences"]) == 1
    assert data["differences"][0]["ci_level"] == pytest.approx(0.95)
    assert oct(os.stat(out).st_mode & 0o777) != oct(0o600)  # a normal file, not mkstemp's mode


def test_seeds_pair_the_data_only_when_the_arms_data_seeds_agree(tmp_path):
    a, b = arm_pair(tmp_path)
    arm_a, arm_b = load_arm(a, "A"), load_arm(b, "B")
    assert compare(arm_a, arm_b).data_paired
    base = int(arm_b.space.trial_config({})["data_seed"])
    moved = dataclasses.replace(arm_b, space=arm_b.space.override(fixed={"data_seed": base + 100}))
    c = compare(arm_a, moved)
    assert not c.data_paired and any(k.startswith("data_seed:") for k in c.knob_differences)
    text = format_comparison(c, {})
    assert "the data draws are not paired" in text and "more than one knob" in text
