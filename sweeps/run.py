"""CLI: python sweeps/run.py --space entropy_lambda.yaml [flags]

Exit codes: 0 ok, 2 bad input (space file, flags, data paths, tracking URI, cluster too
small), 1 failure while running. Input is validated before Ray starts.
"""
from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sweeps.errors import BadInput, SpaceError  # noqa: E402
from sweeps.sweep import DEFAULT_OUTPUT, Sweep, latest_run_dir  # noqa: E402


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {text})")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (got {text})")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sweeps/run.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", help="space file, or a bare name in search_spaces/")
    p.add_argument("--trials", type=positive_int, help="number of trials (incl. baseline)")
    p.add_argument("--max-concurrent", type=positive_int, help="trials running at once")
    p.add_argument("--workers-per-trial", type=positive_int, help="DDP workers per trial")
    p.add_argument("--gpus-per-worker", type=non_negative_float, help="GPUs per worker (0: CPU)")
    p.add_argument("--cpus-per-worker", type=non_negative_float, help="CPUs per worker")
    p.add_argument("--seed", type=int, help="seed of the Optuna sampler")
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
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan only")
    p.add_argument("--smoke", action="store_true", help="tiny budget and model sizes")
    p.add_argument("--ray-temp-dir", help=argparse.SUPPRESS)
    return p


def build(args: argparse.Namespace) -> Sweep:
    common = dict(mlflow_uri=args.mlflow_uri, address=args.address, storage=args.storage,
                  optuna_storage=args.optuna_storage, ray_temp_dir=args.ray_temp_dir)
    if args.resume:
        if args.name:
            run_dir = os.path.join(args.output, args.name)
        elif args.space:
            stem = os.path.splitext(os.path.basename(args.space))[0]
            run_dir = latest_run_dir(args.output, stem)
            if run_dir is None:
                raise BadInput(f"--resume: no sweep of {args.space} in {args.output}")
        else:
            raise BadInput("--resume: give --name (or --space to resume its latest sweep)")
        return Sweep.resume_from(run_dir, **common)
    if not args.space:
        raise BadInput("--space: required (a file, or a name in search_spaces/)")
    return Sweep.from_yaml(args.space, trials=args.trials, max_concurrent=args.max_concurrent,
                           workers_per_trial=args.workers_per_trial,
                           gpus_per_worker=args.gpus_per_worker,
                           cpus_per_worker=args.cpus_per_worker, seed=args.seed,
                           smoke=args.smoke, name=args.name, output=args.output, **common)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        sweep = build(args)
        sweep.check_inputs()
        if args.dry_run:
            print(sweep.plan())
            if args.address:
                print(cluster_fit(sweep, args.address))
            return 0
        print(sweep.plan(), flush=True)
        result = sweep.run(resume=args.resume)
    except SpaceError as e:
        for line in e.problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue with --resume", file=sys.stderr)
        return 1
    return 0 if result.best_config is not None else 1


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
