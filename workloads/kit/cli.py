"""`python -m workloads.<name> [--smoke] [--epochs N] [--set knob=value ...]`: one CLI for every
workload. Bad input (an unknown knob, a value outside its domain, a bad data directory) is one
line on stderr and exit code 2, before any training; a diverged run exits 1."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Mapping

from workloads.contract import DIVERGED, EPOCH, LocalSession, Workload
from workloads.knobs import ConfigError, describe_knobs, format_knob, public_values, shown


class PrintingSession(LocalSession):
    """A LocalSession that prints one line per epoch on rank 0."""

    def report(self, metrics: Mapping[str, float], checkpoint_dir: str | None = None) -> None:
        super().report(metrics, checkpoint_dir)
        if self.rank == 0:
            first = [EPOCH] if EPOCH in metrics else []
            keys = first + sorted(k for k in metrics if k != EPOCH)
            print(" ".join(f"{k}={metrics[k]:.4g}" for k in keys), flush=True)


def parse_sets(items: list[str]) -> dict[str, Any]:
    """["k=v", ...] → {k: v}; ConfigError for an item without '='."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--set expects KNOB=VALUE (got {shown(item)})")
        out[name] = value
    return out


def main(workload: Workload, argv: list[str] | None = None, doc: str | None = None) -> int:
    p = argparse.ArgumentParser(
        prog=f"python -m workloads.{workload.name}", description=doc,
        epilog="knobs (name = default [type] (domain)):\n" + "\n".join(
            describe_knobs(workload.knobs)),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes (seconds on a CPU)")
    p.add_argument("--epochs", type=int, help="override the epochs knob")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KNOB=VALUE",
                   help="override any knob, e.g. --set lambda=0.5 hten_scales=1,2,4")
    p.add_argument("--checkpoint-root", help="copy each epoch's checkpoint here")
    args = p.parse_args(argv)
    try:
        overrides: dict[str, Any] = dict(workload.smoke) if args.smoke else {}
        overrides.update(parse_sets(args.set))
        if args.epochs is not None:
            overrides["epochs"] = args.epochs
        cfg = workload.resolve(overrides)
        problems = workload.problems(cfg)
        if problems:
            raise ConfigError("; ".join(problems))
    except ConfigError as e:
        print(f"error: {workload.name}: {e}", file=sys.stderr)
        return 2
    session = PrintingSession.from_env(checkpoint_root=args.checkpoint_root)
    if session.rank == 0:
        print(f"{workload.name}: " + ", ".join(f"{k}={format_knob(v)}" for k, v in
                                              public_values(cfg).items()), flush=True)
    t0 = time.perf_counter()
    try:
        workload.train(public_values(cfg), session)
    except (ConfigError, *workload.input_errors) as e:
        print(f"error: {workload.name}: {e}", file=sys.stderr)
        return 2
    if session.rank == 0:
        print(f"done: {len(session.history)} epoch(s) in {time.perf_counter() - t0:.1f}s",
              flush=True)
    return 1 if session.history and session.history[-1].get(DIVERGED) else 0
