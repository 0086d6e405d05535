"""Added training-step time of the uniform-image entropy regularizer (saliency workload).

Times full optimizer steps (forward, backward, AdamW) of the default saliency model in one
process, all configurations in the same run and interleaved round by round, so machine load
drifts hit them alike:

    baseline        lambda = 0                    (no probes at all)
    every 50        lambda > 0, compute_every=50  (16 probes on every 50th step)
    every 1         lambda > 0, compute_every=1   (16 probes on every step)

Each round runs `steps_per_round` (default 50, so one probed step per compute_every=50 block)
consecutive steps per configuration. The headline overhead is the median over rounds of
block time / baseline block time - 1 (paired by round, robust to other jobs on a shared
machine); the mean-based overhead is shown beside it. Because one probed step in 50 is a small
effect inside timing noise, the *expected* overhead at compute_every=50 from per-step medians
is also given: (median probed step - median baseline step) / 50 / median baseline step.

    python benchmarks/entropy_overhead.py [--json PATH] [--smoke] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from saliency.model import ModelConfig, SaliencyModel, configure_optimizers  # noqa: E402
from saliency.regularizer import RegularizerConfig, training_losses  # noqa: E402


def make_batch(batch: int, size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=g)                      # (B, 3, S, S)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    cb = -(((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (0.2 * size) ** 2))
    cb = torch.log_softmax(cb.flatten().float(), 0).view(size, size).expand(batch, size, size)
    counts = (torch.rand(batch, size, size, generator=g) > 0.99).float()         # (B, S, S)
    return images, cb, counts


class Runner:
    """One model + optimizer per configuration; `step()` times one optimizer step."""

    def __init__(self, reg: RegularizerConfig, size: int, batch: int, width: int):
        torch.manual_seed(0)
        self.model = SaliencyModel(ModelConfig(width=width)).train()
        self.opt = configure_optimizers(self.model, lr=1e-3, weight_decay=1e-4)
        self.reg, self.batch = reg, make_batch(batch, size)
        self.step_index, self.times, self.probed_times, self.plain_times = 0, [], [], []
        self.blocks: list[float] = []

    def step(self) -> None:
        t0 = time.perf_counter()
        out = training_losses(self.model, *self.batch, step=self.step_index, reg=self.reg)
        self.opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        self.opt.step()
        dt = time.perf_counter() - t0
        self.times.append(dt)
        (self.probed_times if out["probed"] else self.plain_times).append(dt)
        self.step_index += 1


def run(size: int, batch: int, width: int, probes: int, rounds: int, steps_per_round: int,
        warmup: int) -> dict:
    configs = {
        "baseline (lambda=0)": RegularizerConfig(lam=0.0, compute_every=50,
                                                 num_uniform_samples=probes),
        "compute_every=50": RegularizerConfig(lam=0.1, compute_every=50,
                                              num_uniform_samples=probes),
        "compute_every=1": RegularizerConfig(lam=0.1, compute_every=1,
                                             num_uniform_samples=probes),
    }
    runners = {name: Runner(reg, size, batch, width) for name, reg in configs.items()}
    for r in runners.values():  # warm-up (allocator, kernels); the step counter keeps running
        for _ in range(warmup):
            r.step()
        r.times.clear(), r.probed_times.clear(), r.plain_times.clear()
    for _ in range(rounds):
        for r in runners.values():
            t0 = time.perf_counter()
            for _ in range(steps_per_round):
                r.step()
            r.blocks.append(time.perf_counter() - t0)
    base = runners["baseline (lambda=0)"]
    base_mean, base_median = statistics.fmean(base.times), statistics.median(base.times)
    rows = []
    for name, r in runners.items():
        mean = statistics.fmean(r.times)
        paired = statistics.median(b / a for a, b in zip(base.blocks, r.blocks))
        rows.append({"config": name, "compute_every": configs[name].compute_every,
                     "lambda": configs[name].lam, "probes": probes, "steps": len(r.times),
                     "probed_steps": len(r.probed_times), "mean_step_ms": 1e3 * mean,
                     "median_step_ms": 1e3 * statistics.median(r.times),
                     "overhead_pct": 100.0 * (paired - 1.0),
                     "overhead_pct_of_means": 100.0 * (mean / base_mean - 1.0)})
    probed_median = statistics.median(runners["compute_every=1"].probed_times)
    probe_cost = probed_median - base_median
    return {
        "rows": rows,
        "probed_step_median_ms": 1e3 * probed_median,
        "baseline_step_median_ms": 1e3 * base_median,
        "expected_overhead_pct_every_50": 100.0 * probe_cost / 50.0 / base_median,
        "target_overhead_pct_every_50": 5.0,
        "setup": {"image_size": size, "batch_size": batch, "width": width, "probes": probes,
                  "rounds": rounds, "steps_per_round": steps_per_round, "warmup": warmup,
                  "threads": torch.get_num_threads(), "torch": torch.__version__,
                  "machine": platform.machine(), "python": platform.python_version()},
    }


def table(result: dict) -> str:
    lines = ["| configuration | compute_every | probes | steps (probed) | mean step ms | "
             "median step ms | overhead (median of rounds) | overhead (of means) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['config']} | {r['compute_every']} | {r['probes']} | "
                     f"{r['steps']} ({r['probed_steps']}) | {r['mean_step_ms']:.1f} | "
                     f"{r['median_step_ms']:.1f} | {r['overhead_pct']:+.1f} % | "
                     f"{r['overhead_pct_of_means']:+.1f} % |")
    s = result["setup"]
    lines.append("")
    lines.append(f"Expected overhead at compute_every=50 from medians: "
                 f"{result['expected_overhead_pct_every_50']:.2f} % (target <= 5 %; probed step "
                 f"{result['probed_step_median_ms']:.1f} ms vs "
                 f"{result['baseline_step_median_ms']:.1f} ms). Setup: image {s['image_size']}², "
                 f"batch {s['batch_size']}, width {s['width']}, {s['threads']} thread(s), "
                 f"torch {s['torch']}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", metavar="PATH", help="write the numbers as JSON here")
    p.add_argument("--smoke", action="store_true", help="tiny sizes and few steps (CI)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--probes", type=int, default=16)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--steps-per-round", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (1 = steadier numbers on a shared machine)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.image_size, args.batch_size, args.width = 32, 4, 8
        args.rounds, args.steps_per_round, args.warmup = 1, 4, 1
    result = run(args.image_size, args.batch_size, args.width, args.probes, args.rounds,
                 args.steps_per_round, args.warmup)
    print(table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
