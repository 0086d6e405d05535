"""The confirmation verdict: is a finalist really better than the baseline, with confidence?

After the search, each finalist and the baseline are re-run on the same fresh seeds; seed i of a
finalist is paired with seed i of the baseline (same init, data order and, for a workload
with a data seed, the same fresh data draw), which cancels most of the seed-to-seed noise. Per
finalist and criterion we look at the per-seed *improvement* over the baseline (always oriented
so that positive = better, also for minimized metrics) and test it against the criterion's
threshold:

  superiority      `better_by: m`       improvement > m     (e.g. m = 0: strictly better)
  non-inferiority  `not_worse_than: m`  improvement > -m    (a loss smaller than m is fine)

Statistics (pure numpy/scipy: used before and after Ray runs, so no Ray or MLflow here):
  * paired t. With the 3-5 seeds a confirmation can afford, a bootstrap has only a handful of
    distinct resamples and its percentile interval undercovers badly; the t interval is exact
    for normal seed noise and is what a reviewer expects.
  * two one-sided tests per (finalist, criterion): "met" (H0: improvement <= threshold) and
    "failed" (H0: improvement >= threshold), each Holm-corrected across all finalists x criteria.
    Each one-sided test runs at (1 - confidence) / 2, so the pair matches a two-sided
    `confidence` interval (the ICH E9 convention for superiority/non-inferiority), and the error
    of *any* wrong claim over the whole table stays <= 1 - confidence.
  * GO = every criterion met; NO-GO = some criterion failed (checked first, so it would win);
    INCONCLUSIVE otherwise, with the number of seeds at which the observed effect would just
    settle it (even odds, if it is the true one). Any follow-up (sweeps.confirm.follow_up) is a
    second test after this one: over both, the error rate is above the stated level.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Optional, Sequence

import numpy as np
from scipy import stats

Goal = Literal["maximize", "minimize"]
Kind = Literal["superiority", "non_inferiority"]
SEEDS_CAP = 100  # beyond this a confirmation is not a practical next step
SYMBOL = {"met": "✓", "failed": "✗", "unsettled": "?"}
# An sd this small relative to the differences is floating-point residue of identical steps
# (0.7 - 0.6 vs 0.8 - 0.7 differ in the 17th digit), not seed noise: treated as zero spread.
_ZERO_SPREAD = 1e-9


@dataclass(frozen=True)
class Criterion:
    metric: str
    kind: Kind
    margin: float
    relative: bool  # margin (and improvement) as a fraction of the baseline's value
    goal: Goal

    def __post_init__(self) -> None:
        if self.kind not in ("superiority", "non_inferiority"):
            raise ValueError(f"criterion {self.metric}: kind {self.kind!r} is not "
                             "superiority|non_inferiority")
        if self.goal not in ("maximize", "minimize"):
            raise ValueError(f"criterion {self.metric}: goal {self.goal!r} is not "
                             "maximize|minimize")
        if not math.isfinite(self.margin):
            raise ValueError(f"criterion {self.metric}: margin must be finite (got {self.margin})")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], goal: Goal) -> "Criterion":
        """One `decision.criteria` entry of a space file: {metric: val_ig, not_worse_than: 0.02}."""
        sup, ni = "better_by" in spec, "not_worse_than" in spec
        if sup == ni:
            raise ValueError(f"criterion {spec.get('metric')!r}: give exactly one of "
                             "better_by / not_worse_than")
        return cls(metric=str(spec["metric"]), kind="superiority" if sup else "non_inferiority",
                   margin=float(spec["better_by" if sup else "not_worse_than"]),
                   relative=bool(spec.get("relative", False)), goal=goal)

    def threshold(self) -> float:
        """The bar on the improvement scale: the improvement must exceed it."""
        return self.margin if self.kind == "superiority" else -self.margin


def improvements(candidate: Sequence[float], baseline: Sequence[float], *, goal: Goal,
                 relative: bool = False) -> np.ndarray:
    """Per-seed paired improvement of candidate over baseline; positive = better.

    Relative improvements are taken per seed, (c_i - b_i) / |b_i|, not as a ratio of means: each
    seed then gives one paired observation and the t test applies unchanged, whereas a ratio of
    means needs the delta method or Fieller, neither trustworthy with 3 seeds. (The per-seed
    ratio's bias is negligible when the baseline varies by a few % across seeds.)
    A seed whose candidate run diverged (its value is -inf, see sweeps/confirm.py), or where a
    relative change is undefined (baseline exactly 0), is a FAILED seed and becomes -inf: the
    worst possible improvement. A seed with no comparison — the baseline run failed, or the
    candidate's run is missing (NaN: crashed, never ran) — is dropped (NaN): an infrastructure
    failure, or a failed reference, is no evidence against the candidate.
    """
    c, b = np.asarray(candidate, dtype=float), np.asarray(baseline, dtype=float)
    if c.ndim != 1 or c.shape != b.shape:
        raise ValueError(f"candidate and baseline must be paired per seed (got {len(c)} vs "
                         f"{len(b)} values)")
    with np.errstate(all="ignore"):
        d = c - b if goal == "maximize" else b - c
        if relative:
            d = d / np.abs(b)
    d = np.where(np.isfinite(d), d, -np.inf)
    return np.where(np.isnan(c) | ~np.isfinite(b), np.nan, d)


@dataclass(frozen=True)
class PairedT:
    n: int
    n_failed: int
    mean: float
    sd: float
    lo: float         # two-sided `confidence` interval for the mean improvement
    hi: float
    p_greater: float  # one-sided p, H0: mean improvement <= threshold
    p_less: float     # one-sided p, H0: mean improvement >= threshold


def paired_t_interval(diffs: Sequence[float], confidence: float, *,
                      threshold: float = 0.0) -> PairedT:
    """Paired t interval and one-sided p-values for per-seed improvements `diffs`.

    Paired t rather than a bootstrap: with 3-5 seeds the bootstrap has too few distinct
    resamples and undercovers. Special cases (never raises):
    * NaN diffs (no comparison) are dropped; failed seeds (-inf) are the limit of the t test as their value -> -inf:
      t -> -sqrt(k(n-1)/(n-k)) for k of n failed, whatever the finite seeds show. So a failed
      seed can only push toward "failed": it can never be "met", and k = n is certainly failed.
    * fewer than 2 seeds, or zero spread (identical improvements on every seed): no spread
      estimate, so nothing can be concluded (p = 1 both ways, an unbounded interval). Identical
      differences come from a quantized metric (an accuracy over a few examples, a count) or
      from runs that do not differ (a regularizer that never fired); neither says how large
      the seed-to-seed noise is, and calling them exact (p = 0) would let a quantized metric
      "pass" on 2 seeds.
    """
    d = np.asarray(diffs, dtype=float)
    d = d[~np.isnan(d)]  # pairs without a comparison (see `improvements`) are dropped
    n, ok = d.size, np.isfinite(d)
    k = int(n - ok.sum())
    tail = (1.0 - confidence) / 2.0
    nan = math.nan
    if k:
        t_lim = -math.inf if k == n else -math.sqrt(k * (n - 1) / (n - k))
        p_less = 0.0 if k == n else float(stats.t.cdf(t_lim, n - 1))
        hi = -math.inf if p_less <= tail else math.inf  # where the interval's upper end goes
        return PairedT(n, k, -math.inf, nan, -math.inf, hi, 1.0 - p_less, p_less)
    if n < 2:
        return PairedT(n, 0, float(d.mean()) if n else nan, nan, -math.inf, math.inf, 1.0, 1.0)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd <= _ZERO_SPREAD * max(float(np.abs(d).max()), 1e-300):
        return PairedT(n, 0, mean, 0.0, -math.inf, math.inf, 1.0, 1.0)
    se = sd / math.sqrt(n)
    t_stat = (mean - threshold) / se
    half = float(stats.t.ppf(1.0 - tail, n - 1)) * se
    return PairedT(n, 0, mean, sd, mean - half, mean + half,
                   float(stats.t.sf(t_stat, n - 1)), float(stats.t.cdf(t_stat, n - 1)))


@dataclass(frozen=True)
class Holm:
    adjusted: np.ndarray    # Holm-adjusted p-values (reject iff adjusted <= alpha)
    rejected: np.ndarray
    step_alpha: np.ndarray  # the level Holm compared this test to (see below)


def holm(p_values: Sequence[float], alpha: float) -> Holm:
    """Holm-Bonferroni step-down; valid under any dependence (our tests share seeds and baseline).

    step_alpha is alpha / (m - j) at the step j where the test was rejected or, for tests not
    rejected, at the step where the procedure stopped. A test is rejected iff p <= step_alpha,
    so an interval at that level excludes the threshold exactly when the test is settled.
    """
    p = np.nan_to_num(np.asarray(p_values, dtype=float), nan=1.0)
    m = p.size
    order = np.argsort(p, kind="stable")
    adj_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = adj_sorted
    rejected = adjusted <= alpha
    rank = np.empty(m, dtype=int)
    rank[order] = np.arange(m)
    stop = int(rejected.sum())  # rejections are a prefix of the sorted order
    return Holm(adjusted, rejected, alpha / (m - np.minimum(rank, stop)))


def estimate_seeds_needed(mean: float, sd: float, threshold: float, *, alpha_one_sided: float,
                          n_now: int, cap: int = SEEDS_CAP) -> Optional[int]:
    """Smallest total n in (n_now, cap] with |mean - threshold| > t_crit(n-1) * sd / sqrt(n).

    A plug-in estimate: if the observed mean and sd held, n paired seeds would settle the
    criterion (about a coin flip's chance in reality: it is where the test becomes borderline).
    None if no n up to `cap` works, the mean sits exactly on the threshold, or there is no
    spread to extrapolate from (sd 0: see `paired_t_interval`).
    """
    gap = abs(mean - threshold)
    if not (math.isfinite(gap) and math.isfinite(sd)) or gap == 0.0 or sd <= 0.0:
        return None
    n = np.arange(max(2, n_now + 1), cap + 1)
    ok = gap > stats.t.ppf(1.0 - alpha_one_sided, n - 1) * sd / np.sqrt(n)
    return int(n[ok][0]) if ok.any() else None


@dataclass(frozen=True)
class CriterionResult:
    metric: str
    kind: str
    margin: float
    relative: bool
    goal: str
    n_seeds: int
    n_failed_seeds: int
    mean: float              # mean improvement (-inf if any seed failed)
    ci_low: float            # paired-t interval at ci_level, the level Holm applied to this test
    ci_high: float
    ci_level: float          # >= confidence; excludes the threshold iff status != "unsettled"
    threshold: float
    p_met: float             # raw one-sided p-values
    p_failed: float
    p_met_adjusted: float     # Holm over finalists x criteria, x2 for testing both directions;
    p_failed_adjusted: float  # compare with 1 - confidence
    status: str              # "met" | "failed" | "unsettled"
    seeds_needed: Optional[int] = None  # total paired seeds likely to settle it (unsettled only)
    sd: float = math.nan     # sd of the per-seed improvements (0: identical, nothing testable)
    diffs: tuple[float, ...] = ()  # per-seed improvement (NaN: no comparison, -inf: failed seed)


@dataclass(frozen=True)
class FinalistVerdict:
    trial_id: str
    knobs: dict
    criteria: tuple[CriterionResult, ...]
    verdict: str                  # "GO" | "NO-GO" | "INCONCLUSIVE"
    seeds_needed: Optional[int]   # total paired seeds likely to settle an INCONCLUSIVE finalist
    seeds_note: str               # why seeds_needed is what it is, in words
    objective_gain: float         # mean improvement in the search objective (ranks GO finalists)


@dataclass(frozen=True)
class Verdict:
    verdict: str                  # the sweep's: "GO" | "NO-GO" | "INCONCLUSIVE"
    trial_id: Optional[str]       # the chosen finalist when GO
    finalists: tuple[FinalistVerdict, ...]
    confidence: float
    method: str
    seeds: int = 0                # confirmation seeds run (a comparison may have fewer pairs)
    # the baseline's value per seed for every criterion's metric (NaN: no run, -inf: diverged):
    # a relative improvement's scale, and what a between-arm comparison shows (sweeps/compare.py)
    baseline: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready (strict JSON: non-finite numbers become None; n_failed_seeds says why),
        except per-seed `diffs` and `baseline` values, where a failed seed (diverged) is
        "failed" and a seed without a comparison (no run) "missing", so a reader can tell them
        apart."""
        def seed(x: float) -> Any:
            return x if math.isfinite(x) else "missing" if math.isnan(x) else "failed"

        out = dataclasses.asdict(self)
        for f in out["finalists"]:
            for c in f["criteria"]:
                c["diffs"] = [seed(x) for x in c["diffs"]]
        out["baseline"] = {m: [seed(x) for x in v] for m, v in out["baseline"].items()}
        return strict_json(out)


def strict_json(x: Any) -> Any:
    """`x` (dicts, lists, tuples, numbers, strings) with every non-finite float as None, as
    strict JSON requires."""
    if isinstance(x, dict):
        return {k: strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict_json(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


def within_noise(diff: float, seed_sd: float) -> bool:
    """A single-seed difference smaller than the seed spread (sweeps.report.seed_spread: the sd
    over confirmation seeds of finalist − baseline) cannot be told from noise. False when
    either number is unknown (non-finite)."""
    return math.isfinite(diff) and math.isfinite(seed_sd) and abs(diff) < seed_sd


def _series(values: Mapping[str, Sequence[float]], metric: str, who: str) -> Sequence[float]:
    if metric not in values:  # a crashed run must be passed as NaN per seed, not left out
        raise ValueError(f"{who} has no values for metric {metric!r}")
    return values[metric]


def _finalist_seeds(results: Sequence[CriterionResult]) -> tuple[Optional[int], str]:
    open_ = [r for r in results if r.status == "unsettled"]
    if not open_:
        return None, "settled"
    diverged = [r.metric for r in open_ if r.n_failed_seeds]
    if diverged:
        return None, (f"runs diverged on {', '.join(diverged)}: more seeds cannot make it GO; "
                      "fix stability first")
    # It settles as NO-GO once any criterion heading below its bar fails, else as GO once all met.
    falling = [r for r in open_ if r.mean < r.threshold and r.sd != 0.0]
    flat = [r.metric for r in open_ if r.sd == 0.0]
    if flat and not falling:  # (a NO-GO can still come from a criterion with spread)
        return None, (f"{', '.join(flat)}: the same difference on every seed, so no spread to "
                      "test with (a quantized metric, or runs identical to the baseline)")
    needed = [r.seeds_needed for r in (falling or open_)]
    known = [n for n in needed if n is not None]
    # Plug-in estimates (observed mean and sd): at that n the test is borderline, so even odds.
    if falling and known:
        first = min((r for r in falling if r.seeds_needed is not None),
                    key=lambda r: r.seeds_needed)
        return first.seeds_needed, (f"~{first.seeds_needed} seeds: even odds of NO-GO on "
                                    f"{first.metric} if the effect is as seen")
    if not falling and len(known) == len(needed):
        return max(known), f"~{max(known)} seeds: even odds of GO if the effect is as seen"
    if any(r.mean == r.threshold for r in (falling or open_)):
        return None, "effect equals the threshold: no feasible number of seeds"
    return None, f"more than {SEEDS_CAP} seeds"


def decide(*, finalists: Mapping[str, Mapping[str, Sequence[float]]],
           baseline: Mapping[str, Sequence[float]], knobs: Mapping[str, dict],
           criteria: Sequence[Criterion], confidence: float, objective: str,
           objective_goal: Goal) -> Verdict:
    """The verdict for finalists vs baseline. finalists: trial_id -> metric -> per-seed values,
    aligned by seed index with baseline's metric -> per-seed values (NaN for a diverged run)."""
    if not finalists or not criteria:
        raise ValueError("decide needs at least one finalist and one criterion")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1) (got {confidence})")
    alpha = 1.0 - confidence
    keys = [(tid, c) for tid in finalists for c in criteria]
    diffs = [improvements(_series(finalists[tid], c.metric, f"finalist {tid}"),
                          _series(baseline, c.metric, "baseline"), goal=c.goal,
                          relative=c.relative) for tid, c in keys]
    tests = [paired_t_interval(d, confidence, threshold=c.threshold())
             for d, (_, c) in zip(diffs, keys)]
    # x2: Bonferroni over the two directions, i.e. each one-sided test at alpha / 2.
    h_met = holm([min(1.0, 2 * t.p_greater) for t in tests], alpha)
    h_fail = holm([min(1.0, 2 * t.p_less) for t in tests], alpha)
    m = len(keys)
    results: dict[str, list[CriterionResult]] = {tid: [] for tid in finalists}
    for i, ((tid, c), d, t) in enumerate(zip(keys, diffs, tests)):
        status = ("failed" if h_fail.rejected[i] else "met" if h_met.rejected[i] else "unsettled")
        # The interval at the level Holm used in this test's likelier direction.
        step = float((h_met if t.p_greater <= t.p_less else h_fail).step_alpha[i])
        ci = paired_t_interval(d, 1.0 - step, threshold=c.threshold())
        need = None
        if status == "unsettled" and not t.n_failed:
            # Judged at Holm's strictest step (Bonferroni): conservative.
            need = estimate_seeds_needed(t.mean, t.sd, c.threshold(),
                                         alpha_one_sided=alpha / (2 * m), n_now=t.n)
        results[tid].append(CriterionResult(
            c.metric, c.kind, c.margin, c.relative, c.goal, t.n, t.n_failed, t.mean, ci.lo, ci.hi,
            1.0 - step, c.threshold(), t.p_greater, t.p_less, float(h_met.adjusted[i]),
            float(h_fail.adjusted[i]), status, need, t.sd, tuple(float(x) for x in d)))
    verdicts = []
    for tid, rs in results.items():
        statuses = {r.status for r in rs}
        v = "NO-GO" if "failed" in statuses else "GO" if statuses == {"met"} else "INCONCLUSIVE"
        n, note = _finalist_seeds(rs) if v == "INCONCLUSIVE" else (None, "settled")
        gain = improvements(_series(finalists[tid], objective, f"finalist {tid}"),
                            _series(baseline, objective, "baseline"), goal=objective_goal)
        gain = gain[~np.isnan(gain)]  # seeds without a comparison, as in the tests above
        verdicts.append(FinalistVerdict(tid, dict(knobs.get(tid, {})), tuple(rs), v, n, note,
                                        float(gain.mean()) if gain.size else -math.inf))
    go = [f for f in verdicts if f.verdict == "GO"]
    if go:
        overall, best = "GO", max(go, key=lambda f: f.objective_gain).trial_id
    else:
        overall = "NO-GO" if all(f.verdict == "NO-GO" for f in verdicts) else "INCONCLUSIVE"
        best = None
    n_seeds = len(_series(baseline, criteria[0].metric, "baseline"))
    fewest = min(t.n for t in tests)
    method = (f"paired t, Holm over {m} tests ({len(finalists)} finalists x {len(criteria)} "
              f"criteria), {confidence:.0%} confidence, {n_seeds} seeds paired by seed"
              + (f" (as few as {fewest} pairs where a run is missing)" if fewest < n_seeds
                 else ""))
    base_values = {c.metric: tuple(float(x) for x in baseline[c.metric]) for c in criteria}
    return Verdict(overall, best, tuple(verdicts), confidence, method, n_seeds, base_values)


def format_improvement(x: float, relative: bool, *, sign: bool = True) -> str:
    """"+0.064" or "+22.9%" (a relative improvement): the verdict's way of writing a number."""
    if not math.isfinite(x):
        return "-inf" if x < 0 else "+inf" if x > 0 else "nan"
    if relative:
        return f"{x * 100:+.1f}%" if sign else f"{x * 100:.1f}%"
    return f"{x:+.3g}" if sign else f"{x:.3g}"


def format_verdict_table(verdict: Verdict) -> str:
    """A markdown table a reviewer can read without the code."""
    crits = verdict.finalists[0].criteria
    head = ["finalist", "knobs", *(_criterion_header(r) for r in crits), "verdict", "seeds needed"]
    chosen = f" (trial {verdict.trial_id})" if verdict.trial_id else ""
    lines = [f"**Verdict: {verdict.verdict}{chosen}** · {verdict.method}",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for f in verdict.finalists:
        knobs = format_knobs(f.knobs, ", ").replace("|", "\\|")
        cells = [_criterion_cell(r, verdict.seeds) for r in f.criteria]
        seeds = str(f.seeds_needed) if f.seeds_needed is not None else "-"
        if f.verdict == "INCONCLUSIVE":  # the note starts with the count when there is one
            seeds = f.seeds_note if f.seeds_needed is not None else f"- ({f.seeds_note})"
        lines.append("| " + " | ".join([f.trial_id, knobs or "-", *cells, f.verdict, seeds]) + " |")
    lines += ["", "Δ = mean improvement over the baseline on paired seeds, oriented so that "
              "positive = better (also for minimized metrics); % = relative to the baseline. "
              "[lo, hi] = paired-t interval at the Holm-corrected level applied to that test "
              f"(at least {verdict.confidence:.0%} per test, not a simultaneous band): it "
              "excludes the bar exactly when the test is settled. ✓ met, ✗ failed, "
              "? unsettled."]
    return "\n".join(lines)


def ci_levels(verdict: Verdict) -> str:
    """"98.8%–99.2%": the range of the levels its intervals are at (one value if they agree)."""
    return level_range([r.ci_level for f in verdict.finalists for r in f.criteria])


def level_range(levels: Sequence[float]) -> str:
    """"98.8%–99.2%" from interval levels (one value if they agree to 0.05 %; "" if none)."""
    if not levels:
        return ""
    lo, hi = min(levels), max(levels)
    return f"{lo:.1%}" + (f"–{hi:.1%}" if hi - lo > 5e-4 else "")


def format_knobs(knobs: Mapping[str, Any], sep: str) -> str:
    """"lambda=0.1121, compute_every=3": floats to 4 significant digits (the table and CLI)."""
    return sep.join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in knobs.items())


def criterion_rule(kind: str, margin: float, relative: bool) -> str:
    """"better by > 5.0%" / "worse by < 0.02": a criterion's bar in words."""
    rule = "better by >" if kind == "superiority" else "worse by <"
    return f"{rule} {format_improvement(margin, relative, sign=False)}"


def _criterion_header(r: CriterionResult) -> str:
    return f"{r.metric} ({r.goal}): {criterion_rule(r.kind, r.margin, r.relative)}"


def _criterion_cell(r: CriterionResult, seeds: int = 0) -> str:
    bar = f"vs > {format_improvement(r.threshold, r.relative)} {SYMBOL[r.status]}"
    if r.n_failed_seeds:
        return f"diverged on {r.n_failed_seeds}/{r.n_seeds} seeds {bar}"
    pairs = f" (n={r.n_seeds})" if r.n_seeds < seeds else ""  # a run missing on some seed
    if r.sd == 0.0:
        return f"{format_improvement(r.mean, r.relative)} on every seed, no spread{pairs} {bar}"
    return (f"{format_improvement(r.mean, r.relative)} [{format_improvement(r.ci_low, r.relative)}, "
            f"{format_improvement(r.ci_high, r.relative)}]{pairs} {bar}")
