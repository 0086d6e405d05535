"""Dose–response of the implicit-bias entropy regularizer on the planted-prior benchmark.

    python benchmarks/entropy_dose_response.py [--json out.json] [--seeds 3] [--epochs 12]

For each center-bias arm (`blurred`: the model must learn part of the positional prior
implicitly; `sharp`: it is handed the prior — the control) and each lambda, trains the
saliency workload (defaults; neutral probes, compute_every 2) in a plain process for several
model seeds on the same generated data, and prints mean ± sd over seeds of every decision
metric and the paired difference to lambda = 0 (same seed). Runs 2 trainings at once (one per
core). The question it answers: does the best lambda move `ood_ig` over the lambda = 0 baseline
by more than the seed-to-seed spread, does `bias_entropy_neutral` rise with lambda, and does
the sharp control stay flat? Runtime on the 2-core CI machine: see the README.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

METRICS = ("val_ig", "ood_ig", "ood_ig_transfer", "content_ig", "bias_entropy_uniform_frac",
           "bias_entropy_neutral_frac", "probe_entropy_neutral")
CEILINGS = ("val_ig_oracle", "ood_ig_oracle", "content_ig_oracle")
LAMBDAS = (0.0, 0.03, 0.1, 0.3, 1.0)
ARMS = ("blurred", "sharp")


def train_one(job: dict) -> dict:
    from benchmarks.common import train_once
    history, seconds = train_once("saliency", job["knobs"])
    last = history[-1]
    return {**job, "metrics": {k: last[k] for k in METRICS + CEILINGS + ("probe_steps",)},
            "seconds": seconds}


def mean_sd(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def paired_ci(diffs) -> str:
    """mean [95 % t interval] of paired differences (df = n - 1)."""
    from scipy import stats
    d = np.asarray(diffs, dtype=float)
    mu = float(d.mean())
    if len(d) < 2:
        return f"{mu:+.3f}"
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return f"{mu:+.3f} [{mu - half:+.3f}, {mu + half:+.3f}]"


def table(results: list[dict], arm: str, seeds: list[int]) -> str:
    rows = [r for r in results if r["arm"] == arm]
    by = {(r["lambda"], r["seed"]): r["metrics"] for r in rows}
    lambdas = sorted({r["lambda"] for r in rows})
    shown = ("val_ig", "ood_ig", "ood_ig_transfer", "content_ig", "bias_entropy_neutral_frac")
    head = ["lambda", *shown, "Δ val_ig [95% CI]", "Δ ood_ig [95% CI]"]
    lines = [f"### arm: {arm} ({len(seeds)} model seeds, one data draw; mean ± sd over seeds; "
             f"Δ = paired difference to λ = 0 with the same seed, t interval)",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for lam in lambdas:
        cells = [f"{lam:g}"]
        for m in shown:
            mu, sd = mean_sd([by[(lam, s)][m] for s in seeds])
            cells.append(f"{mu:.3f} ± {sd:.3f}")
        for m in ("val_ig", "ood_ig"):
            cells.append("—" if lam == 0 else
                         paired_ci([by[(lam, s)][m] - by[(0.0, s)][m] for s in seeds]))
        lines.append("| " + " | ".join(cells) + " |")
    first = rows[0]["metrics"]
    lines.append("")
    lines.append("ceilings (IG of the true density): " + ", ".join(
        f"{c} {first[c]:.3f}" for c in CEILINGS))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--compute-every", type=int, default=2)
    ap.add_argument("--lambdas", type=float, nargs="+", default=list(LAMBDAS))
    ap.add_argument("--arms", nargs="+", default=list(ARMS))
    ap.add_argument("--json", help="write every run's final metrics here")
    ap.add_argument("--from-json", help="print the tables of an earlier --json run, no training")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        seeds = sorted({r["seed"] for r in saved["runs"]})
        for arm in sorted({r["arm"] for r in saved["runs"]}):
            print(table(saved["runs"], arm, seeds), "\n")
        return 0
    seeds = list(range(args.seeds))
    lambdas = sorted(set(args.lambdas) | {0.0})
    data_root = tempfile.mkdtemp(prefix="dose_")
    import workloads.saliency as W  # generate the data once, before the workers start
    from workloads.contract import LocalSession
    W.prepare_data(W.WORKLOAD.resolve({"data_root": data_root}), LocalSession())
    jobs = [{"arm": arm, "lambda": lam, "seed": seed,
             "knobs": {"centerbias_input": arm, "lambda": lam, "compute_every": args.compute_every,
                       "probes": "neutral", "epochs": args.epochs, "seed": seed,
                       "data_root": data_root}}
            for arm in args.arms for lam in lambdas for seed in seeds]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(2) as pool:
        results = pool.map(train_one, jobs, chunksize=1)
    wall = time.perf_counter() - t0
    print(f"{len(jobs)} trainings ({args.epochs} epochs each) in {wall:.0f} s wall\n")
    for arm in args.arms:
        print(table(results, arm, seeds), "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "wall_s": wall, "runs": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
