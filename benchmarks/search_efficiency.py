"""Time-to-answer: TPE + ASHA vs TPE without early stopping vs random search, on a surrogate of
the saliency sweep whose optimum is known.

    python benchmarks/search_efficiency.py [--space entropy_lambda.yaml] [--metric val_ig]
        [--trials 12] [--seeds 10] [--fixed-s 20] [--epoch-s 2] [--asha-min-iters 1 2 4]
        [--json out.json]                     # ~1.5 min; +50 s per extra --asha-min-iters
    python benchmarks/search_efficiency.py --rescore out.json --fixed-s 5   # re-charge, no Ray

The search machinery is the product's: the space file is loaded with sweeps.space.load_space,
and each method is that Space (sampler seed s) through sweeps.search.make_searcher (Optuna TPE
or random, the baseline first, ASHA-stopped trials PRUNED in the study) and make_scheduler
(ASHA on `epoch`, or FIFO without early stopping), run by a real `ray.tune.Tuner` with the
shipped budget shape (trials one at a time). Only the trainable differs: a plain Tune function
that reports, epoch by epoch, a learning curve of the surrogate below instead of training.

The surrogate (built from benchmarks/rung_curves.json, measured by
`benchmarks/rung_agreement.py measure`: the saliency workload with the space's fixed knobs,
8 epochs, lambda ∈ {0.01, 0.03, 0.1, 0.3, 1, 3} × compute_every ∈ {1, 2, 3} plus lambda = 0,
several model seeds on one data draw):
  mean curve    for each compute_every and epoch, the mean over seeds of the metric at each
                measured lambda, interpolated in log10(lambda) by a monotone cubic (PCHIP);
                lambda = 0 (the baseline) is the mean of its own runs;
  noise         the residual curve (run − mean, whole curve, so its correlation across epochs is
                kept) of one measured model seed at the nearest measured lambda and the same
                compute_every, scaled by sqrt(n/(n−1)) for the n seeds; one model seed per sweep
                (sampler seed mod n), as a sweep's search trials share the baseline's seed;
  optimum       the largest mean final value (epoch 8) over compute_every ∈ {1, 2, 3} and a
                dense log grid of lambda over the space's range (the baseline is not a candidate).
Wall time is charged, not slept: each trial costs --fixed-s plus --epoch-s per epoch it ran,
trials run one after the other. The sweep's answer after t trials is the search trial with the
best observed final value among those that ran every epoch (the product's rule); "trials to 1 %"
is the first t at which the answer's true (mean-curve) final value is within 1 % of the optimum;
the final regret is the optimum minus the true value of the answer after the last trial.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from typing import Any, Sequence

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

CURVES = os.path.join(REPO, "benchmarks", "rung_curves.json")


class Surrogate:
    """Learning curves of one metric as a function of (lambda, compute_every); see the module
    doc. Values are as measured (`maximize` says which way is better)."""

    def __init__(self, runs: Sequence[dict], space_name: str, metric: str, maximize: bool = True,
                 lam_range: tuple[float, float] = (0.01, 3.0)):
        from scipy.interpolate import PchipInterpolator
        runs = [r for r in runs if r["space"] == space_name and metric in r["curves"]]
        if not runs:
            raise ValueError(f"no measured runs of {space_name} with {metric}")
        self.metric, self.maximize, self.lam_range = metric, maximize, lam_range
        self.seeds = sorted({int(r["seed"]) for r in runs})
        self.epochs = min(len(r["curves"][metric]) for r in runs)
        curves: dict[tuple[float, int], dict[int, np.ndarray]] = {}
        for r in runs:
            lam = float(r["params"].get("lambda", 0.0))
            ce = 0 if lam == 0 else int(r["params"]["compute_every"])
            curves.setdefault((lam, ce), {})[int(r["seed"])] = np.asarray(
                r["curves"][metric][:self.epochs], dtype=float)
        # only configs measured on every seed: residuals then come from the same seeds
        self.curves = {k: v for k, v in curves.items() if set(v) == set(self.seeds)}
        n = len(self.seeds)
        inflate = math.sqrt(n / (n - 1)) if n > 1 else 0.0
        self.mean = {k: np.mean(list(v.values()), axis=0) for k, v in self.curves.items()}
        self.residual = {k: {s: inflate * (c - self.mean[k]) for s, c in v.items()}
                         for k, v in self.curves.items()}
        self.compute_every = sorted({ce for _, ce in self.curves if ce})
        self.lambdas = {ce: sorted(lam for lam, c in self.curves if c == ce and lam > 0)
                        for ce in self.compute_every}
        self._interp = {ce: PchipInterpolator(np.log10(lams),
                                              np.stack([self.mean[(lam, ce)] for lam in lams]),
                                              axis=0, extrapolate=False)
                        for ce, lams in self.lambdas.items()}

    def _key(self, lam: float, ce: int) -> tuple[float, int]:
        """The measured config nearest to (lam, ce) in log10(lambda)."""
        if lam <= 0:
            return (0.0, 0)
        lams = self.lambdas[ce]
        return (min(lams, key=lambda x: abs(math.log10(x) - math.log10(lam))), ce)

    def mean_curve(self, lam: float, ce: int) -> np.ndarray:
        if lam <= 0:
            return self.mean[(0.0, 0)]
        lams = self.lambdas[ce]
        x = min(max(math.log10(lam), math.log10(lams[0])), math.log10(lams[-1]))
        return np.asarray(self._interp[ce](x), dtype=float)

    def curve(self, lam: float, ce: int, model_seed: int) -> np.ndarray:
        """One trial's curve: the mean curve plus one measured seed's residual curve."""
        seed = self.seeds[model_seed % len(self.seeds)]
        return self.mean_curve(lam, ce) + self.residual[self._key(lam, ce)][seed]

    def true_final(self, lam: float, ce: int) -> float:
        return float(self.mean_curve(lam, ce)[-1])

    def optimum(self, points: int = 2001) -> tuple[float, float, int]:
        """(best mean final value, its lambda, its compute_every) over the searched range."""
        lo, hi = self.lam_range
        best = None
        for ce in self.compute_every:
            for lam in np.logspace(math.log10(lo), math.log10(hi), points):
                v = self.true_final(float(lam), ce)
                if best is None or (v > best[0] if self.maximize else v < best[0]):
                    best = (v, float(lam), ce)
        return best


def score_run(trials: Sequence[dict], true_final, optimum: float, maximize: bool, epochs: int,
              fixed_s: float, epoch_s: float, within: float = 0.01) -> dict:
    """Time-to-answer of one sweep. `trials` in the order they ran, each {lam, ce, baseline,
    epochs_run, observed}; `true_final(lam, ce)` the noise-free final value."""
    better = (lambda a, b: a > b) if maximize else (lambda a, b: a < b)
    target = optimum - within * abs(optimum) if maximize else optimum + within * abs(optimum)
    clock, answer, reached_t, reached_s, epochs_total, finished = 0.0, None, None, None, 0, 0
    for i, t in enumerate(trials, 1):
        clock += fixed_s + t["epochs_run"] * epoch_s
        epochs_total += t["epochs_run"]
        if not t["baseline"] and t["epochs_run"] >= epochs and math.isfinite(t["observed"]):
            finished += 1
            if answer is None or better(t["observed"], answer["observed"]):
                answer = t
        if answer is not None and reached_t is None:
            v = true_final(answer["lam"], answer["ce"])
            if (v >= target) if maximize else (v <= target):
                reached_t, reached_s = i, clock
    final = true_final(answer["lam"], answer["ce"]) if answer else math.nan
    regret = (optimum - final) if maximize else (final - optimum)
    return {"trials_to_1pct": reached_t, "sim_s_to_1pct": reached_s, "sim_s_total": clock,
            "regret": regret, "regret_rel": regret / abs(optimum), "epochs": epochs_total,
            "finished": finished,
            "answer": None if answer is None else {"lambda": answer["lam"], "compute_every":
                                                   answer["ce"], "true_final": final}}


# ---------------------------------------------------------------------------------------------
# Ray Tune
# ---------------------------------------------------------------------------------------------
def surrogate_trainable(config: dict, surrogate: Surrogate, model_seed: int,
                        metric: str) -> None:
    from ray import tune
    lam = float(config.get("lambda", 0.0))
    ce = int(config.get("compute_every", surrogate.compute_every[0]))
    for epoch, value in enumerate(surrogate.curve(lam, ce, model_seed), 1):
        tune.report({metric: float(value), "epoch": epoch})


def run_sweep(space, surrogate: Surrogate, model_seed: int, storage: str) -> tuple[list, float]:
    from ray import tune
    from sweeps.keys import BASELINE_TAG, EPOCH
    from sweeps.search import make_scheduler, make_searcher
    metric = space.primary.name
    tuner = tune.Tuner(
        tune.with_parameters(surrogate_trainable, surrogate=surrogate, model_seed=model_seed,
                             metric=metric),
        tune_config=tune.TuneConfig(search_alg=make_searcher(space),
                                    scheduler=make_scheduler(space),
                                    num_samples=space.num_trials(),
                                    max_concurrent_trials=space.budget.max_concurrent,
                                    reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, verbose=0))
    t0 = time.perf_counter()
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        grid = tuner.fit()
    real = time.perf_counter() - t0
    trials = []
    for r in grid:
        if r.error:
            raise RuntimeError(f"a surrogate trial failed: {r.error}")
        m, c = r.metrics, r.config
        trials.append({"order": int(str(m["experiment_tag"]).split("_")[0]),
                       "lam": float(c.get("lambda", 0.0)),
                       "ce": int(c.get("compute_every", surrogate.compute_every[0])),
                       "baseline": bool(c.get(BASELINE_TAG)), "epochs_run": int(m[EPOCH]),
                       "observed": float(m[metric])})
    trials.sort(key=lambda t: t["order"])
    return trials, real


def methods(space, min_iters: Sequence[int]) -> dict[str, Any]:
    out = {}
    if space.early_stop is not None:
        for k in [space.early_stop.min_iter] + [k for k in min_iters
                                                if k != space.early_stop.min_iter]:
            es = dataclasses.replace(space.early_stop, min_iter=k)
            out[f"TPE + ASHA (min_iter {k}, eta {es.eta}, rungs "
                f"{','.join(map(str, es.rungs(space.epochs()))) or 'none'})"] = \
                dataclasses.replace(space, early_stop=es)
    out["TPE, no early stopping"] = dataclasses.replace(space, early_stop=None)
    out["random, no early stopping"] = dataclasses.replace(space, method="random",
                                                           early_stop=None)
    return out


def mean_sd(values) -> str:
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return "—"
    return f"{np.mean(v):.1f} ± {np.std(v, ddof=1):.1f}" if len(v) > 1 else f"{v[0]:.1f}"


def format_table(summary: dict, n_seeds: int) -> str:
    head = ["method", "trials to 1 % (reached)", "charged s to 1 %", "charged s, whole sweep",
            "epochs trained", "search trials finished", "no answer", "final regret (bits)",
            "regret > 1 %", "real s / sweep"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, runs in summary.items():
        s = [r["score"] for r in runs]
        reached = sum(x["trials_to_1pct"] is not None for x in s)
        regrets = [x["regret"] for x in s if x["answer"] is not None]
        regret = (f"{np.mean(regrets):.4f} (max {np.max(regrets):.4f})" if regrets else "—")
        lines.append("| " + " | ".join([
            name, f"{mean_sd([x['trials_to_1pct'] for x in s])} ({reached}/{n_seeds})",
            mean_sd([x["sim_s_to_1pct"] for x in s]), mean_sd([x["sim_s_total"] for x in s]),
            mean_sd([x["epochs"] for x in s]), mean_sd([x["finished"] for x in s]),
            f"{sum(x['answer'] is None for x in s)}/{n_seeds}", regret,
            f"{sum(x['answer'] is not None and x['regret_rel'] > 0.01 for x in s)}/{n_seeds}",
            mean_sd([r["real_s"] for r in runs])]) + " |")
    return "\n".join(lines)


def rescore(args) -> int:
    from sweeps.space import load_space
    with open(args.rescore) as f:
        saved = json.load(f)
    a = saved["args"]
    space = load_space(a["space"])
    name = os.path.basename(space.path)
    with open(a["curves"]) as f:
        runs = json.load(f)["runs"]
    metric = a["metric"] or space.primary.name
    lam_p = next(p for p in space.parameters if p.name == "lambda")
    surrogate = Surrogate(runs, name, metric, a["metric"] is not None or
                          space.primary.goal == "maximize",
                          (lam_p.distribution.low, lam_p.distribution.high))
    opt = saved["optimum"]["value"]
    for sweeps in saved["methods"].values():
        for r in sweeps:
            r["score"] = score_run(r["trials"], surrogate.true_final, opt, surrogate.maximize,
                                   surrogate.epochs, args.fixed_s, args.epoch_s)
    print(f"{a['space']}, metric {metric}, {a['trials']} trials per sweep (baseline first), "
          f"{a['seeds']} sampler seeds; re-charged {args.fixed_s:g} s per trial + "
          f"{args.epoch_s:g} s per epoch; mean ± sd over seeds\n")
    print(format_table(saved["methods"], a["seeds"]))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="entropy_lambda.yaml")
    ap.add_argument("--metric", default=None, help="objective (default: the space's); "
                    "e.g. ood_ig to select on the out-of-domain gain instead")
    ap.add_argument("--curves", default=CURVES)
    ap.add_argument("--trials", type=int, default=12, help="trials per sweep, baseline included")
    ap.add_argument("--seeds", type=int, default=10, help="sampler seeds 0..n-1")
    ap.add_argument("--fixed-s", type=float, default=20.0, help="charged per trial")
    ap.add_argument("--epoch-s", type=float, default=2.0, help="charged per epoch")
    ap.add_argument("--asha-min-iters", type=int, nargs="*", default=[],
                    help="more ASHA grace periods to compare besides the space's")
    ap.add_argument("--json")
    ap.add_argument("--rescore", metavar="JSON", help="re-charge the sweeps of an earlier --json "
                    "run with --fixed-s/--epoch-s and print the table; no Ray")
    args = ap.parse_args()
    if args.rescore:
        return rescore(args)

    from sweeps.space import Objective, load_space
    space = load_space(args.space)
    if args.metric:
        space = dataclasses.replace(space, objectives=(Objective(args.metric, "maximize"),))
    space = space.override(trials=args.trials, max_concurrent=1)
    space = dataclasses.replace(space, budget=dataclasses.replace(space.budget,
                                                                  time_limit_s=None))
    lam_p = next(p for p in space.parameters if p.name == "lambda")
    with open(args.curves) as f:
        runs = json.load(f)["runs"]
    name = os.path.basename(space.path)
    surrogate = Surrogate(runs, name, space.primary.name, space.primary.goal == "maximize",
                          (lam_p.distribution.low, lam_p.distribution.high))
    opt, opt_lam, opt_ce = surrogate.optimum()
    base = surrogate.true_final(0.0, 0)
    print(f"surrogate: {name}, metric {space.primary.name}, {len(surrogate.seeds)} model "
          f"seeds; optimum {opt:.4f} at lambda {opt_lam:.3g}, compute_every {opt_ce} "
          f"(baseline lambda=0: {base:.4f}); 1 % = {0.01 * abs(opt):.4f}", flush=True)

    import optuna
    import ray
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    temp = tempfile.mkdtemp(prefix="se_", dir="/tmp")
    storage = tempfile.mkdtemp(prefix="se_tune_", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp,
             logging_level="ERROR",
             runtime_env={"env_vars": {"PYTHONPATH": REPO}})
    t_all = time.perf_counter()
    summary: dict[str, list] = {}
    try:
        for name, sp in methods(space, args.asha_min_iters).items():
            for seed in range(args.seeds):
                s = dataclasses.replace(sp, seed=seed)
                trials, real = run_sweep(s, surrogate, seed, storage)
                score = score_run(trials, surrogate.true_final, opt, surrogate.maximize,
                                  s.epochs(), args.fixed_s, args.epoch_s)
                summary.setdefault(name, []).append({"seed": seed, "real_s": real,
                                                     "trials": trials, "score": score})
                print(f"{name}, seed {seed}: {len(trials)} trials, real {real:.1f} s, "
                      f"to 1 %: {score['trials_to_1pct']}, regret {score['regret']:.4f}",
                      flush=True)
    finally:
        ray.shutdown()
        import shutil
        for d in (storage, temp):
            shutil.rmtree(d, ignore_errors=True)
    wall = time.perf_counter() - t_all
    print(f"\n{args.space}, metric {space.primary.name}, {args.trials} trials per sweep "
          f"(baseline first), {args.seeds} sampler seeds; charged {args.fixed_s:g} s per trial + "
          f"{args.epoch_s:g} s per epoch; mean ± sd over seeds; {wall:.0f} s real in all\n")
    print(format_table(summary, args.seeds))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "optimum": {"value": opt, "lambda": opt_lam,
                                                       "compute_every": opt_ce},
                       "baseline_final": base, "real_s": wall, "methods": summary}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
