"""CLI: python sweeps/run.py --space entropy_lambda.yaml [flags]

Exit codes: 0 ok, 2 bad input (space file, flags, data paths, tracking URI, output directory,
cluster too small), 1 failure while running. Input is validated before Ray starts; bad input
is reported as bounded lines on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sweeps.errors import BadInput, SpaceError, clip  # noqa: E402
from sweeps.space import RULES, Bound  # noqa: E402
from sweeps.sweep import DEFAULT_OUTPUT, Sweep, latest_run_dir  # noqa: E402
from workloads.knobs import shown  # noqa: E402

# Error output is bounded whatever the input: each line, the number of lines, the total.
MAX_ERROR_LINES = 20
MAX_ERROR_BYTES = 4000


def bounded(rule: Bound):
    """An argparse type: an int or a finite float within `rule` (the same range the space file
    has for the key); nan, inf, 1e20 for an integer, out of range -> exit 2 naming the range."""
    def parse(text: str):
        try:
            value = int(text) if rule.integer else float(text)
        except (ValueError, OverflowError):
            value = None
        if value is None or not rule.accepts(value):
            raise argparse.ArgumentTypeError(f"must be {rule.describe()} (got {shown(text)})")
        return value
    return parse


def _non_empty(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must name a run directory (got an empty value)")
    return text


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse echoes bad values whole: bound them
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {clip(message, 300)}\n")


def parser() -> argparse.ArgumentParser:
    p = _ArgumentParser(prog="sweeps/run.py", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", help="space file, or a bare name in search_spaces/")
    p.add_argument("--trials", type=bounded(RULES["trials"]),
                   help="number of trials (incl. baseline)")
    p.add_argument("--max-concurrent", type=bounded(RULES["max_concurrent"]),
                   help="trials running at once")
    p.add_argument("--workers-per-trial", type=bounded(RULES["workers_per_trial"]),
                   help="DDP workers per trial")
    p.add_argument("--gpus-per-worker", type=bounded(RULES["gpus_per_worker"]),
                   help="GPUs per worker (0: CPU)")
    p.add_argument("--cpus-per-worker", type=bounded(RULES["cpus_per_worker"]),
                   help="CPUs per worker")
    p.add_argument("--seed", type=bounded(RULES["seed"]), help="seed of the Optuna sampler")
    p.add_argument("--finalists", type=bounded(RULES["finalists"]),
                   help="confirmation: how many of the best search trials to re-run")
    p.add_argument("--confirm-seeds", type=bounded(RULES["seeds"]),
                   help="confirmation: fresh seeds per finalist and for the baseline")
    p.add_argument("--confirm-seed-offset", type=bounded(RULES["seed_offset"]),
                   help="confirmation: skip this many seeds (a replication on seeds and data "
                        "an earlier confirmation did not use)")
    p.add_argument("--confirm-knobs-from", metavar="RUN_DIR", type=_non_empty,
                   help="confirmation: re-run the finalists that sweep selected (their knobs), "
                        "not this search's best: a control arm for sweeps/compare.py")
    p.add_argument("--address", help="existing Ray cluster (host:port or 'auto'); "
                                     "default: start a local one")
    p.add_argument("--mlflow-uri", help="MLflow tracking URI (default: sqlite in the sweep dir)")
    p.add_argument("--storage", help="shared storage for Tune results and checkpoints "
                                     "(s3://, gs://, or an NFS path; needed on multi-node)")
    p.add_argument("--optuna-storage", help="Optuna RDB URL (e.g. sqlite:///optuna.db) so "
                                            "optuna-dashboard can follow the study")
    p.add_argument("--name", help="sweep name (default: <space>-<timestamp>)")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="parent folder of sweep dirs")
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep --name (default: the latest of --space)")
    p.add_argument("--sync-mlflow", action="store_true",
                   help="send the MLflow writes a sweep (--name) spooled while its tracking "
                        "server was down, then exit")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan only")
    p.add_argument("--smoke", action="store_true", help="tiny budget and model sizes")
    p.add_argument("--ray-temp-dir", help=argparse.SUPPRESS)
    return p


def existing_run_dir(args: argparse.Namespace, flag: str) -> str:
    """The sweep a --resume / --sync-mlflow acts on: --name, else the latest of --space."""
    if args.name:
        return os.path.join(args.output, args.name)
    if args.space:
        stem = os.path.splitext(os.path.basename(args.space))[0]
        run_dir = latest_run_dir(args.output, stem)
        if run_dir is None:
            raise BadInput(f"{flag}: no sweep of {clip(args.space, 200)} in "
                           f"{clip(args.output, 200)}")
        return run_dir
    raise BadInput(f"{flag}: give --name (or --space for its latest sweep)")


def build(args: argparse.Namespace) -> Sweep:
    common = dict(address=args.address, storage=args.storage,
                  optuna_storage=args.optuna_storage, ray_temp_dir=args.ray_temp_dir)
    if args.mlflow_uri is not None:  # else --resume keeps the tracking store the sweep used
        common["mlflow_uri"] = args.mlflow_uri
    if args.resume:
        return Sweep.resume_from(existing_run_dir(args, "--resume"), **common)
    if not args.space:
        raise BadInput("--space: required (a file, or a name in search_spaces/)")
    return Sweep.from_yaml(args.space, trials=args.trials, max_concurrent=args.max_concurrent,
                           workers_per_trial=args.workers_per_trial,
                           gpus_per_worker=args.gpus_per_worker,
                           cpus_per_worker=args.cpus_per_worker, seed=args.seed,
                           smoke=args.smoke, finalists=args.finalists,
                           confirm_seeds=args.confirm_seeds,
                           confirm_seed_offset=args.confirm_seed_offset,
                           confirm_knobs_from=args.confirm_knobs_from, name=args.name,
                           output=args.output,
                           **common)


def _interrupted(signum, frame):
    # SIGTERM (a scheduler's or a terminal's "stop") ends like Ctrl-C: Ray is shut down, the
    # MLflow runs are marked KILLED, and --resume continues.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupted) if on_main_thread else None
    try:
        return _main(args)
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _main(args: argparse.Namespace) -> int:
    try:
        if args.sync_mlflow:
            return sync_mlflow(args)
        sweep = build(args)
        sweep.check_inputs(write_probe=not args.dry_run)  # --dry-run writes nothing
        if args.dry_run:
            print(sweep.plan())
            if args.address:
                print(cluster_fit(sweep, args.address))
            return 0
        print(sweep.plan(), flush=True)
        result = sweep.run(resume=args.resume)
    except SpaceError as e:
        print_problems(e.problems)
        return 2
    except BadInput as e:
        print_problems([str(e)])
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue with --resume", file=sys.stderr)
        return 1
    return 0 if result.best_config is not None else 1


def sync_mlflow(args: argparse.Namespace) -> int:
    """--sync-mlflow: replay a sweep's spool into its tracking store (0: all sent, 1: the
    server still does not answer; what is left stays in the spool)."""
    from sweeps.mlflow_spool import replay
    sweep = Sweep.resume_from(existing_run_dir(args, "--sync-mlflow"), flag="--sync-mlflow",
                              mlflow_uri=args.mlflow_uri)
    sent, left, error = replay(sweep.run_dir, sweep.tracking_uri)
    if left:
        print(f"MLflow {clip(sweep.tracking_uri, 200)}: sent {sent}, {left} still waiting "
              f"({error}); try again when the server answers", file=sys.stderr)
        return 1
    print(f"MLflow {clip(sweep.tracking_uri, 200)}: sent {sent} spooled write(s); "
          f"the spool of {sweep.name} is empty")
    return 0


def print_problems(problems: list[str]) -> None:
    """One bounded `error:` line per problem, at most MAX_ERROR_LINES / MAX_ERROR_BYTES in all
    (the rest counted), so no input makes the error report itself unbounded."""
    lines: list[str] = []
    size = 0
    for i, problem in enumerate(problems):
        line = "error: " + clip(problem)
        if len(lines) == MAX_ERROR_LINES or size + len(line.encode()) + 1 > MAX_ERROR_BYTES - 80:
            lines.append(f"error: ... and {len(problems) - i} more problem(s); fix these first")
            break
        lines.append(line)
        size += len(line.encode()) + 1
    print("\n".join(lines), file=sys.stderr)


def cluster_fit(sweep: Sweep, address: str) -> str:
    """--dry-run --address: the sweep's demand against what the cluster has (no trial runs)."""
    import ray

    from sweeps.capacity import Demand, check_capacity
    from sweeps.cluster_info import autoscaler_max_resources

    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    try:
        return "\n".join(check_capacity(Demand.of(sweep.space), ray.cluster_resources(),
                                        autoscaler_max_resources()))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
