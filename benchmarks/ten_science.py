"""Does HTEN help, or only longer memories? And what does the energy term do? (ten_lm, stdlib)

    python benchmarks/ten_science.py [--seeds 3] [--steps 450] [--batch-size 16] [--jobs 2]
                                     [--parts init,dose] [--corpus stdlib] [--json out.json]

Trains the `ten_lm` workload (tiny preset, the real `stdlib` corpus, seq_len 128, lr 3e-3 with
warmup + cosine over the whole budget: the workload's defaults, but batch 16 instead of 32 to fit
the time budget — the 450-step schedule, whose learning-rate sum caps how far α can move, is the
sweep's) in plain processes, one thread each, `--jobs` at a time, every run with the same step
budget (3 epochs of steps/3), and prints markdown tables of mean ± sd over model seeds (init and
data order; the corpus is fixed):

1. TEN and HTEN [1,2,4] under both decay inits (`paper`: α ~ U(−3, 0); `long`: memories
   log-uniform over 1.05 … 128 tokens), at the preset's energy_reg_weight (0.01). Δ is the
   paired difference to TEN with the same init and seed. The parameter counts are reported: the
   two models have equal budgets to < 1 %.
2. energy_reg_weight dose-response (0, 1e-4, 1e-3, 1e-2, 1e-1) for TEN with `--dose-init`
   (default: the workload's default decay_init), with the learned memory quantiles (tokens,
   p10 / p50 / p90 over all eigenstates); Δ is paired to weight 0, same seed.

References printed alongside: the validation text's unigram entropy and zlib -9 on it (bits/byte).
`--corpus generated` repeats it on the synthetic corpus the earlier HTEN result came from.
Runtime with the defaults: ≈ 12 min on the 2-core VM (24 trainings of ≈ 55 s; README, Benchmarks).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REPORT = ("val_bpb", "energy", "bias_entropy_rel", "n_params", "lambda_abs_p50", "memory_p10",
          "memory_p50", "memory_p90", "train_ce")
WEIGHTS = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
MODELS = {"TEN": {"use_hten": False}, "HTEN [1,2,4]": {"use_hten": True, "hten_scales": [1, 2, 4]}}
INITS = ("paper", "long")


def train_one(job: dict) -> dict:
    from benchmarks.common import train_once
    history, seconds = train_once("ten_lm", job["knobs"])
    last = history[-1]
    return {**job, "metrics": {k: last[k] for k in last if k in REPORT or k.startswith("memory_")},
            "history_val_bpb": [h["val_bpb"] for h in history], "seconds": seconds}


def mean_sd(values) -> str:
    v = np.asarray(list(values), dtype=float)
    sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    digits = 3 if abs(v.mean()) < 100 else 0
    return f"{v.mean():.{digits}f} ± {sd:.{digits}f}"


def signed(values) -> str:
    v = np.asarray(list(values), dtype=float)
    sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    mean = 0.0 if round(float(v.mean()), 3) == 0 else float(v.mean())
    return f"{mean:+.3f} ± {sd:.3f}".replace("-", "−")


def references(corpus: str) -> dict:
    from workloads.corpus import stdlib_manifest
    from workloads.text_data import corpus_splits, entropy_bits, unigram
    _, val = corpus_splits(corpus, None, 0, 0, 0.1)
    raw = val.tobytes()
    manifest = stdlib_manifest() if corpus == "stdlib" else {
        "python": "-", "files": 0, "bytes": 1_000_000, "sha256": "(generated, seed 0)"}
    return {"manifest": manifest, "val_bytes": len(raw),
            "unigram_bpb": entropy_bits(unigram(val)),
            "zlib9_bpb": 8 * len(zlib.compress(raw, 9)) / len(raw)}


def init_table(results: list[dict], seeds: list[int]) -> str:
    by = {(r["model"], r["decay_init"], r["seed"]): r["metrics"] for r in results
          if r["part"] == "init"}
    head = ["model", "decay_init", "n_params", "val_bpb", "Δ val_bpb vs TEN", "memory p50",
            "memory p90", "energy", "bias_entropy_rel"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for init in INITS:
        for model in MODELS:
            ms = [by[(model, init, s)] for s in seeds]
            delta = ("—" if model == "TEN" else
                     signed(by[(model, init, s)]["val_bpb"] - by[("TEN", init, s)]["val_bpb"]
                            for s in seeds))
            lines.append("| " + " | ".join([
                model, init, f"{int(ms[0]['n_params']):,}", mean_sd(m["val_bpb"] for m in ms),
                delta, mean_sd(m["memory_p50"] for m in ms), mean_sd(m["memory_p90"] for m in ms),
                mean_sd(m["energy"] for m in ms), mean_sd(m["bias_entropy_rel"] for m in ms)])
                + " |")
    return "\n".join(lines)


def dose_table(results: list[dict], seeds: list[int]) -> str:
    by = {(r["weight"], r["seed"]): r["metrics"] for r in results if r["part"] == "dose"}
    head = ["energy_reg_weight", "val_bpb", "Δ val_bpb vs 0", "energy", "memory p10",
            "memory p50", "memory p90", "|λ| p50"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for w in WEIGHTS:
        ms = [by[(w, s)] for s in seeds]
        delta = "—" if w == 0 else signed(by[(w, s)]["val_bpb"] - by[(0.0, s)]["val_bpb"]
                                          for s in seeds)
        lines.append("| " + " | ".join([
            f"{w:g}", mean_sd(m["val_bpb"] for m in ms), delta, mean_sd(m["energy"] for m in ms),
            mean_sd(m["memory_p10"] for m in ms), mean_sd(m["memory_p50"] for m in ms),
            mean_sd(m["memory_p90"] for m in ms), mean_sd(m["lambda_abs_p50"] for m in ms)])
            + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from workloads import ten_lm
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=450, help="optimizer steps per training")
    p.add_argument("--batch-size", type=int, default=16, help="global batch (windows of 128)")
    p.add_argument("--jobs", type=int, default=2, help="trainings at once (1 thread each)")
    p.add_argument("--dose-init", default=ten_lm.WORKLOAD.defaults.decay_init,
                   choices=INITS)
    p.add_argument("--parts", default="init,dose", help="comma list of: init, dose")
    p.add_argument("--corpus", default="stdlib", choices=("stdlib", "generated"))
    p.add_argument("--json", help="write every run's metrics here")
    args = p.parse_args(argv)
    seeds = list(range(args.seeds))
    parts = set(args.parts.split(","))
    base = {"preset": "tiny", "epochs": 3, "steps_per_epoch": max(1, args.steps // 3),
            "batch_size": args.batch_size, "corpus": args.corpus}

    jobs, keys = [], set()
    for seed in seeds:
        if "init" in parts:
            for init in INITS:
                for model, extra in MODELS.items():
                    jobs.append({"part": "init", "model": model, "decay_init": init,
                                 "seed": seed, "weight": None,
                                 "knobs": {**base, **extra, "decay_init": init, "seed": seed}})
        if "dose" in parts:
            for w in WEIGHTS:
                jobs.append({"part": "dose", "model": "TEN", "decay_init": args.dose_init,
                             "seed": seed, "weight": w,
                             "knobs": {**base, "decay_init": args.dose_init, "seed": seed,
                                       "energy_reg_weight": w}})
    # the init table's TEN run at the preset's weight (0.01) is the dose run at 0.01: run once
    default_w = ten_lm.model_config(ten_lm.WORKLOAD.resolve({})).energy_reg_weight
    unique = []
    for j in jobs:
        cfg = ten_lm.WORKLOAD.resolve(j["knobs"])
        knobs = {**ten_lm.WORKLOAD.public_values(cfg),
                 "energy_reg_weight": ten_lm.model_config(cfg).energy_reg_weight}
        key = j["key"] = json.dumps(knobs, sort_keys=True)
        if key not in keys:
            keys.add(key)
            unique.append(j)
    refs = references(args.corpus)
    m = refs["manifest"]
    print(f"corpus: {args.corpus}, {m['python']}, {m['files']} files, {m['bytes']:,} bytes, "
          f"sha256 {m['sha256'][:16]}…; "
          f"{len(unique)} trainings of {base['epochs'] * base['steps_per_epoch']} steps × batch "
          f"{args.batch_size}, {args.jobs} at a time", flush=True)
    t0 = time.perf_counter()
    done: dict[str, dict] = {}
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for r in pool.imap_unordered(train_one, unique):
            done[r["key"]] = r
            print(f"  [{len(done)}/{len(unique)}] {r['part']} {r['model']} {r['decay_init']} "
                  f"w={r['weight']} seed={r['seed']}: val_bpb {r['metrics']['val_bpb']:.4f} "
                  f"memory_p50 {r['metrics']['memory_p50']:.2f} ({r['seconds']:.0f}s)",
                  flush=True)
    wall = time.perf_counter() - t0
    results = [{**j, "metrics": done[j["key"]]["metrics"],
                "history_val_bpb": done[j["key"]]["history_val_bpb"],
                "seconds": done[j["key"]]["seconds"]} for j in jobs]
    print(f"\nreferences on the validation text ({refs['val_bytes']:,} bytes): "
          f"unigram entropy {refs['unigram_bpb']:.3f} bits/byte, zlib -9 {refs['zlib9_bpb']:.3f}")
    if "init" in parts:
        print(f"\n### TEN vs HTEN under both decay inits ({len(seeds)} seeds, mean ± sd; "
              f"energy_reg_weight {default_w:g})\n")
        print(init_table(results, seeds))
    if "dose" in parts:
        print(f"\n### energy_reg_weight dose-response (TEN, decay_init {args.dose_init}, "
              f"{len(seeds)} seeds; memory in tokens)\n")
        print(dose_table(results, seeds))
    print(f"\nwall time {wall:.0f} s ({len(unique)} trainings, {args.jobs} at a time)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"references": refs, "args": vars(args), "wall_s": wall,
                       "results": [{k: v for k, v in r.items() if k != "key"} for r in results]},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
