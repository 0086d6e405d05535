"""Is early stopping safe here? How well the ranking at epoch k predicts the final ranking.

    python benchmarks/rung_agreement.py measure --space entropy_lambda.yaml --seeds 3  # ~7 min
    python benchmarks/rung_agreement.py measure --space entropy_lambda_control.yaml --seeds 3
    python benchmarks/rung_agreement.py measure --space ten_energy.yaml --seeds 2 --decades --sample 8
    python benchmarks/rung_agreement.py [--space entropy_lambda.yaml ...] [--trials 6 12]
        [--baseline-in-asha] [--json out.json]          # the analysis, ~1 min, no training

`measure` trains a space's workload, with the space's fixed knobs (Space.trial_knobs, as a
sweep's trial would get them), on a grid that covers the searched space — every categorical
choice, log-uniform ranges at 1-3-10 steps (e.g. lambda ∈ {0.01, 0.03, 0.1, 0.3, 1, 3} for
0.01–3; `--decades`: powers of ten only), conditional parameters only where their `when` holds,
`--sample N` keeps N of them at random — plus the space's baseline, for several model seeds, in
plain processes (LocalSession, one thread each, 2 at a time; saliency: one generated data draw),
and appends every epoch's metrics to benchmarks/rung_curves.json (resumable: runs already there
are skipped; `--time-limit-s` stops taking new trainings). The saliency curves also build the
surrogate of benchmarks/search_efficiency.py.

The analysis (default) answers, for each candidate `early_terminate.min_iter` k = 1 … epochs − 1
with the space's eta (rungs from sweeps.space.EarlyStop.rungs, as the scheduler uses them):
  tau(k)        Kendall τ between the epoch-k and the final-epoch ranking of all grid configs
                (and the baseline) of one seed — a sweep's search trials share the baseline's
                seed —, mean ± sd over seeds;
  sweep draws   simulated sequential sweeps of N trials — the baseline first (if the space has
                one), then grid configs drawn without replacement, all with one model seed —
                each run through Ray's ASHA rule (async successive halving, one bracket: a trial
                is stopped at a rung when its value is below the (1 − 1/eta) percentile of the
                values recorded there by the trials before it): P(τ < 0.5) (the sweep report's
                warning threshold), P(ASHA stopped the search trial with the best final value),
                the mean loss of the sweep's answer (the best search trial that ran every
                epoch) against that best final value, the search trials that ran every epoch
                (the confirmation stage picks its finalists among them), and the epochs trained
                relative to no early stopping.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HERE = os.path.dirname(os.path.abspath(__file__))
CURVES = os.path.join(HERE, "rung_curves.json")
# kept besides the space's objectives and decision metrics, when the workload reports them
EXTRA = ("ood_ig", "ood_ig_transfer", "bias_kl_neutral", "train_nll", "val_loss", "train_loss",
         "energy")


# ---------------------------------------------------------------------------------------------
# Pure pieces (tested in tests/benchmarks/test_search_benchmarks.py)
# ---------------------------------------------------------------------------------------------
def asha_epochs(curves: Sequence[Sequence[float]], rungs: Sequence[int], eta: float,
                epochs: int) -> list[int]:
    """Epochs each trial runs when `curves` (value per epoch, larger is better) arrive one after
    the other under Ray's ASHA rule (one bracket; max_concurrent 1): at each rung a trial is
    stopped if its value is below np.nanpercentile of the values recorded at that rung by the
    trials before it, at (1 − 1/eta)·100; its value is recorded either way."""
    recorded: dict[int, list[float]] = {r: [] for r in rungs}
    out = []
    for curve in curves:
        ran = epochs
        for r in sorted(rungs):
            value = float(curve[r - 1])
            prior = recorded[r]
            stop = bool(prior) and value < np.nanpercentile(prior, (1 - 1 / eta) * 100)
            prior.append(value)
            if stop:
                ran = r
                break
        out.append(ran)
    return out


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import kendalltau
    return float(kendalltau(a, b).statistic) if len(a) >= 3 else math.nan


def simulate_sweeps(grid: Sequence[Sequence[float]], baseline: Sequence[float] | None, k: int,
                    rungs: Sequence[int], eta: float, trials: int, draws: int,
                    rng: np.random.Generator, baseline_in_asha: bool = True) -> dict:
    """Sequential sweeps of `trials` trials over one seed's curves (larger is better): the
    baseline first (if any), then `grid` curves drawn without replacement. For each draw:
    Kendall τ between epoch k and the last epoch over all its trials, whether ASHA (`rungs`)
    stopped the search trial with the best final value, the loss of the sweep's answer (best
    final value among search trials that ran every epoch) against that best, how many search
    trials ran every epoch, and the fraction of epochs trained. `baseline_in_asha=False`: the
    baseline runs (and counts in τ and epochs) but ASHA neither records nor stops it."""
    epochs = len(grid[0])
    first = [] if baseline is None else [list(baseline)]
    taus, dropped, loss, finished, frac = [], [], [], [], []
    for _ in range(draws):
        pick = rng.choice(len(grid), size=trials - len(first), replace=False)
        curves = first + [list(grid[i]) for i in pick]
        taus.append(kendall_tau([c[k - 1] for c in curves], [c[-1] for c in curves]))
        if baseline_in_asha:
            ran = asha_epochs(curves, rungs, eta, epochs)[len(first):]
        else:
            ran = asha_epochs(curves[len(first):], rungs, eta, epochs)
        finals = [c[-1] for c in curves[len(first):]]
        best = int(np.argmax(finals))
        kept = [f for f, e in zip(finals, ran) if e == epochs]
        dropped.append(ran[best] < epochs)
        loss.append(finals[best] - (max(kept) if kept else -math.inf))
        finished.append(len(kept))
        frac.append((sum(ran) + epochs * len(first)) / (epochs * len(curves)))
    loss_arr = np.asarray(loss)
    return {"tau_mean": float(np.nanmean(taus)),
            "p_tau_below_half": float(np.mean(np.asarray(taus) < 0.5)),
            "p_best_dropped": float(np.mean(dropped)),
            "p_none_finished": float(np.mean(~np.isfinite(loss_arr))),
            "mean_loss": float(np.mean(loss_arr[np.isfinite(loss_arr)])),
            "finished": float(np.mean(finished)),
            "epoch_fraction": float(np.mean(frac))}


def rungs_for(min_iter: int, eta: int, epochs: int) -> list[int]:
    from sweeps.space import EarlyStop
    return EarlyStop(min_iter=min_iter, eta=eta).rungs(epochs)


def log_grid(lo: float, hi: float, mantissas: Sequence[int] = (1, 3)) -> list[float]:
    """m·10^e (m in `mantissas`) within [lo, hi], rounded to 12 significant digits."""
    out = []
    for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        for m in mantissas:
            v = float(f"{m * 10.0 ** e:.12g}")
            if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9):
                out.append(v)
    return sorted(out)


def space_grid(space, decades: bool = False) -> list[dict[str, Any]]:
    """Configs covering the space: categorical choices, log ranges at 1-3-10 steps (decades:
    powers of ten), linear ranges at 4 points; a conditional parameter only where it applies."""
    import optuna.distributions as od
    values = {}
    for p in space.parameters:
        d = p.distribution
        if isinstance(d, od.CategoricalDistribution):
            values[p.name] = list(d.choices)
        elif d.log:
            values[p.name] = log_grid(d.low, d.high, (1,) if decades else (1, 3))
        elif isinstance(d, od.IntDistribution):
            values[p.name] = sorted({int(round(v)) for v in np.linspace(d.low, d.high, 4)})
        else:
            values[p.name] = [float(v) for v in np.linspace(d.low, d.high, 4)]
    configs: list[dict[str, Any]] = [{}]
    for p in space.parameters:  # unconditional first (the parser orders them)
        nxt = []
        for c in configs:
            if all(c.get(k) == v for k, v in p.when.items()):
                nxt += [{**c, p.name: v} for v in values[p.name]]
            else:
                nxt.append(c)
        configs = nxt
    return configs


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------
def train_one(job: dict) -> dict:
    from benchmarks.common import train_once
    history, seconds = train_once(job["workload"], job["knobs"])
    curves = {m: [float(h[m]) for h in history] for m in job["metrics"] if m in history[-1]}
    return {k: job[k] for k in ("space", "params", "baseline", "seed")} | {
        "epochs": len(history), "seconds": seconds, "curves": curves}


def load_runs(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)["runs"]


def save_runs(path: str, runs: list[dict]) -> None:
    """One run per line, values to 6 significant digits (the file is kept in the repo)."""
    def compact(r: dict) -> dict:
        return {**r, "seconds": round(r["seconds"], 2),
                "curves": {m: [float(f"{v:.6g}") for v in vs] for m, vs in r["curves"].items()}}
    about = ("per-epoch metrics measured by benchmarks/rung_agreement.py measure (the space's "
             "fixed knobs, `params` searched, `seed` the model seed; LocalSession, 1 thread per "
             "training, 2 trainings at once; saliency: one generated data draw); `seconds`: wall "
             "time of the training")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write('{"about": ' + json.dumps(about) + ',\n "runs": [\n')
        f.write(",\n".join(json.dumps(compact(r), ensure_ascii=False) for r in runs))
        f.write("\n]}\n")
    os.replace(tmp, path)


def run_key(r: dict) -> str:
    return json.dumps([r["space"], r["params"], r["seed"]], sort_keys=True)


def measure(args) -> int:
    from sweeps.report import decision_metrics
    from sweeps.space import load_space
    space = load_space(args.space)
    name = os.path.basename(space.path)
    configs = space_grid(space, args.decades)
    if args.sample and args.sample < len(configs):
        keep = np.random.default_rng(args.sample_seed).choice(len(configs), args.sample,
                                                              replace=False)
        configs = [configs[i] for i in sorted(keep)]
    points = ([(dict(space.baseline), True)] if space.baseline else []) + [(c, False)
                                                                          for c in configs]
    metrics = list(dict.fromkeys(decision_metrics(space) + list(EXTRA)))
    done = load_runs(args.curves)
    have = {run_key(r) for r in done}
    jobs = [{"space": name, "workload": space.workload, "params": params, "baseline": base,
             "seed": seed, "metrics": metrics}
            for seed in range(args.seeds) for params, base in points]
    jobs = [j for j in jobs if run_key(j) not in have]
    print(f"{name}: {len(points)} configs x {args.seeds} seeds; {len(jobs)} trainings to run",
          flush=True)
    if not jobs:
        return 0
    data_root = None
    if space.workload == "saliency":  # generate the data once, before the workers start
        data_root = os.path.join(tempfile.gettempdir(), "rung_agreement_data")
        import workloads.saliency as W
        from workloads.contract import LocalSession
        W.prepare_data(W.WORKLOAD.resolve({"data_root": data_root}), LocalSession())
    for j in jobs:
        j["knobs"] = {**space.trial_knobs(j["params"]), "seed": j["seed"]}
        if data_root:
            j["knobs"]["data_root"] = data_root
    t0 = time.perf_counter()
    runs = list(done)
    o = space.primary.name
    with mp.get_context("spawn").Pool(2) as pool:
        for n, result in enumerate(pool.imap_unordered(train_one, jobs, chunksize=1), 1):
            runs.append(result)
            save_runs(args.curves, runs)
            elapsed = time.perf_counter() - t0
            print(f"[{n}/{len(jobs)}] {elapsed:.0f} s  {result['params']} seed {result['seed']}: "
                  f"{o} {result['curves'][o][-1]:.4f} ({result['seconds']:.1f} s)", flush=True)
            if args.time_limit_s and elapsed > args.time_limit_s and n < len(jobs):
                print("time limit: stopping; run again to continue", flush=True)
                pool.terminate()
                break
    print(f"measured in {time.perf_counter() - t0:.0f} s wall", flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------------
def by_seed(runs: list[dict], space_name: str, metric: str, sign: float) -> dict:
    """{seed: (baseline curve or None, [grid curves])}, larger = better (sign −1 if minimized);
    only configs measured on every seed, in one order."""
    rs = [r for r in runs if r["space"] == space_name and metric in r["curves"]]
    seeds = sorted({r["seed"] for r in rs})
    pkey = lambda r: json.dumps(r["params"], sort_keys=True)
    common = set.intersection(*[{pkey(r) for r in rs if r["seed"] == s and not r["baseline"]}
                                for s in seeds]) if seeds else set()
    out = {}
    for s in seeds:
        mine = {pkey(r): r for r in rs if r["seed"] == s}
        base = [r for r in rs if r["seed"] == s and r["baseline"]]
        grid = [[sign * v for v in mine[k]["curves"][metric]] for k in sorted(common)]
        if len(grid) >= 3:
            out[s] = ([sign * v for v in base[0]["curves"][metric]] if base else None, grid)
    return out


def analyze(runs: list[dict], space, trials: Sequence[int], draws: int, seed: int,
            metric: str | None = None, baseline_in_asha: bool = True) -> dict:
    name = os.path.basename(space.path)
    metric = metric or space.primary.name
    goal = space.primary.goal if metric == space.primary.name else (
        "minimize" if metric in ("train_nll", "bias_kl_neutral", "val_loss") else "maximize")
    sign = -1.0 if goal == "minimize" else 1.0
    seeds = by_seed(runs, name, metric, sign)
    if not seeds:
        raise SystemExit(f"{name}: no measured seed with >= 3 configs in the curves file")
    eta = space.early_stop.eta if space.early_stop else 3
    epochs = len(next(iter(seeds.values()))[1][0])
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(1, epochs):
        per_seed = []
        for b, g in seeds.values():
            cs = ([b] if b else []) + g
            per_seed.append(kendall_tau([c[k - 1] for c in cs], [c[-1] for c in cs]))
        row = {"k": k, "rungs": rungs_for(k, eta, epochs), "tau_all": per_seed,
               "tau_mean": float(np.mean(per_seed)),
               "tau_sd": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0}
        for n in trials:
            b0, g0 = next(iter(seeds.values()))
            n_eff = min(n, len(g0) + (b0 is not None))  # a sweep as large as the grid at most
            sims = [simulate_sweeps(g, b, k, row["rungs"], eta, n_eff,
                                    max(1, draws // len(seeds)), rng, baseline_in_asha)
                    for b, g in seeds.values()]
            row[f"sweep{n}"] = {m: float(np.mean([s[m] for s in sims])) for m in sims[0]}
            row[f"sweep{n}"]["trials"] = n_eff
        rows.append(row)
    # seed-to-seed sd of the final value, per config (the yardstick for the losses)
    finals: dict[str, list[float]] = {}
    for r in runs:
        if r["space"] == name and metric in r["curves"]:
            finals.setdefault(json.dumps(r["params"], sort_keys=True), []).append(
                r["curves"][metric][-1])
    sds = [float(np.std(v, ddof=1)) for v in finals.values() if len(v) > 1]
    b0, g0 = next(iter(seeds.values()))
    return {"space": name, "metric": metric, "goal": goal, "seeds": sorted(seeds),
            "configs": len(g0), "baseline": b0 is not None, "epochs": epochs, "eta": eta,
            "shipped_min_iter": space.early_stop.min_iter if space.early_stop else None,
            "draws": draws, "baseline_in_asha": baseline_in_asha, "final_seed_sd_median": float(np.median(sds)) if sds else math.nan,
            "rows": rows}


def format_table(res: dict, trials: Sequence[int]) -> str:
    head = ["min_iter k", "rungs", f"τ(epoch k, epoch {res['epochs']}), all configs"]
    for n in trials:
        n_eff = res["rows"][0][f"sweep{n}"]["trials"]
        head += [f"N={n_eff}: P(τ<0.5)", "P(best stopped)", "mean loss", "finished",
                 "P(none finished)", "epochs"]
    base = " + baseline" if res["baseline"] else ""
    lines = [f"{res['space']} ({res['metric']}, {res['goal']}; shipped min_iter "
             f"{res['shipped_min_iter']}): {res['configs']} grid configs{base} × "
             f"{len(res['seeds'])} seeds; τ mean ± sd over seeds; sweeps of N trials simulated "
             f"{res['draws']}× with ASHA eta {res['eta']}"
             f"{'' if res['baseline_in_asha'] else ' (baseline outside ASHA)'}; "
             f"median seed-to-seed sd of a "
             f"config's final value {res['final_seed_sd_median']:.4f}",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in res["rows"]:
        cells = [str(r["k"]), ",".join(map(str, r["rungs"])) or "none",
                 f"{r['tau_mean']:.2f} ± {r['tau_sd']:.2f}"]
        for n in trials:
            s = r[f"sweep{n}"]
            cells += [f"{s['p_tau_below_half']:.2f}", f"{s['p_best_dropped']:.2f}",
                      f"{s['mean_loss']:.4f}", f"{s['finished']:.1f}",
                      f"{s['p_none_finished']:.2f}",
                      f"{s['epoch_fraction']:.0%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--curves", default=CURVES, help="the curves file (default: %(default)s)")
    sub = ap.add_subparsers(dest="cmd")
    m = sub.add_parser("measure", help="train the grid and append to the curves file")
    m.add_argument("--space", default="entropy_lambda.yaml")
    m.add_argument("--seeds", type=int, default=3)
    m.add_argument("--decades", action="store_true", help="log ranges at powers of ten only")
    m.add_argument("--sample", type=int, default=0, help="keep this many grid configs")
    m.add_argument("--sample-seed", type=int, default=0)
    m.add_argument("--time-limit-s", type=float, default=540,
                   help="stop taking new trainings after this (0: none); rerun to continue")
    ap.add_argument("--space", nargs="+", default=None,
                    help="spaces to analyze (default: every space in the curves file)")
    ap.add_argument("--metric", default=None, help="default: the space's objective")
    ap.add_argument("--trials", type=int, nargs="+", default=[6, 12],
                    help="sweep sizes to simulate, baseline included (shipped spaces: 6)")
    ap.add_argument("--draws", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baseline-in-asha", action="store_true",
                    help="replay sweeps with the baseline in ASHA's rungs (the scheduler before "
                         "sweeps.search.BaselineExemptASHA; by default, as the product does, "
                         "ASHA neither records nor stops the baseline)")
    ap.add_argument("--json", help="write the analysis here")
    args = ap.parse_args()
    if args.cmd == "measure":
        return measure(args)
    from sweeps.space import load_space
    runs = load_runs(args.curves)
    names = args.space or sorted({r["space"] for r in runs})
    out = []
    for name in names:
        res = analyze(runs, load_space(name), args.trials, args.draws, args.seed, args.metric,
                      baseline_in_asha=args.baseline_in_asha)
        print(format_table(res, args.trials), "\n")
        out.append(res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
