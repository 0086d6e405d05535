"""The one training loop every kit-built workload runs (seeding, resume, DDP, divergence,
global-mean metrics, per-epoch report + checkpoint), and the workload-facing pieces it needs.

A workload supplies `setup(cfg, session) -> Trial`: its model, optimizer, training dataset,
one training step and one evaluation. The loop owns the rest:

* data: a DistributedSampler (also for one process) shuffled by (seed, epoch), so a resumed run
  sees the batches of an uninterrupted one and W workers together see exactly the global batch
  of one process; each rank gets batch_size / W examples per step (drop-last);
* seeding: the global torch RNG is re-seeded per (seed, rank, epoch), so dropout masks of a
  resumed run equal the original's;
* a step: `trial.step(ddp_model, batch, step)` returns the loss; if it is non-finite on any
  rank, every rank reports the epoch with DIVERGED = 1 and stops; otherwise backward, optional
  gradient clipping and per-step learning rate, optimizer step;
* per epoch: the step's (sum, count) pairs reduced over ranks → global means, the regularizer
  step count (`probe_steps`), the workload's evaluation, then every rank reports and rank 0
  attaches a checkpoint (model, optimizer, {epoch, step, the epoch's metrics});
* resume (`restore`): the newest checkpoint every rank can read, older ones after an unreadable
  one (each skip a one-line warning; reports then carry CHECKPOINT_FALLBACKS), a fresh start
  if none loads; a run restored from its final epoch's checkpoint reports that epoch's saved
  metrics once more and ends (a sweep killed before Tune recorded the end resumes cleanly).
"""
from __future__ import annotations

import copy
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from workloads import timeline
from workloads.contract import DIVERGED, EPOCH, Session, Workload
from workloads.knobs import ConfigError

CHECKPOINT_MODEL = "model.pt"
CHECKPOINT_OPTIMIZER = "optimizer.pt"
CHECKPOINT_STATE = "state.json"
# state.json keeps the epoch's reported metrics here: a run restored from its final checkpoint
# reports them again instead of nothing (see `train`).
STATE_METRICS = "metrics"
# Extra report key, on every epoch report of a run that had to skip k unreadable checkpoints
# (newest first) before one loaded, or k = all of them before a fresh start: float(k).
CHECKPOINT_FALLBACKS = "checkpoint_fallbacks"
WARNING_CHARS = 400  # a fallback warning is one line of at most this many characters
# Reported by every kit workload: optimizer steps of the epoch that carried a regularizer term.
PROBE_STEPS = "probe_steps"


@dataclass
class StepResult:
    loss: torch.Tensor                      # what backward() runs on (already weighted)
    # {metric: (sum, count)} of this step; the epoch reports the global Σsum / Σcount
    means: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    regularized: bool = False               # this step carried the regularizer


@dataclass
class Trial:
    """What a workload builds for one training run."""
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    train_data: Dataset                     # map-style; default collation stacks the items
    step: Callable[[torch.nn.Module, Any, int], StepResult]      # (DDP model, CPU batch, step)
    evaluate: Callable[[torch.nn.Module, Session], dict[str, float]]  # global metrics
    grad_clip: float = 0.0                  # max grad norm; 0 = no clipping
    lr_at: Callable[[int, int], float] | None = None  # (step, total steps) -> lr; None = fixed


# --------------------------------------------------------------------------------------------
# Helpers (workloads use some of these too)
# --------------------------------------------------------------------------------------------
def mix_seed(*key: int) -> int:
    """A well-mixed 32-bit seed from a tuple of ints (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence(list(key)).generate_state(1)[0])


def per_worker_batch(global_batch: int, world_size: int) -> int:
    """Each rank gets global_batch / world_size so results do not depend on the worker count."""
    if global_batch % world_size:
        raise ConfigError(f"knob 'batch_size': must be divisible by the number of workers "
                          f"{world_size} (got {global_batch})")
    return global_batch // world_size


def wrap_ddp(model: torch.nn.Module, session: Session) -> torch.nn.Module:
    """DistributedDataParallel when the process group has more than one rank, else the model."""
    if session.world_size <= 1:
        return model
    device_ids = [session.device.index] if session.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def all_reduce_sums(sums: Mapping[str, float], device: torch.device) -> dict[str, float]:
    """Sum per-rank partial sums over all ranks (identity in a single process).

    Metrics are reported as global means, so each rank accumulates (sum, count) pairs and
    divides after this reduction — never an average of per-rank averages.
    """
    keys = sorted(sums)
    if not (dist.is_available() and dist.is_initialized()) or not keys:
        return dict(sums)
    t = torch.tensor([float(sums[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist()))


def any_rank(flag: bool, device: torch.device) -> bool:
    """True if `flag` is true on any rank (used to stop all ranks together on divergence)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def save_checkpoint(directory: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: Mapping[str, Any]) -> None:
    """model + optimizer tensors (loadable with weights_only=True) and a JSON state (the loop's:
    epoch, step and the epoch's reported metrics)."""
    module = getattr(model, "module", model)  # unwrap DDP so checkpoints load anywhere
    torch.save(module.state_dict(), os.path.join(directory, CHECKPOINT_MODEL))
    torch.save(optimizer.state_dict(), os.path.join(directory, CHECKPOINT_OPTIMIZER))
    with open(os.path.join(directory, CHECKPOINT_STATE), "w") as f:
        json.dump(dict(state), f)


def load_checkpoint(directory: str, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None, device: torch.device) -> dict:
    """Restore what `save_checkpoint` wrote; returns the JSON state."""
    module = getattr(model, "module", model)
    module.load_state_dict(torch.load(os.path.join(directory, CHECKPOINT_MODEL),
                                      map_location=device, weights_only=True))
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(os.path.join(directory, CHECKPOINT_OPTIMIZER),
                                             map_location=device, weights_only=True))
    with open(os.path.join(directory, CHECKPOINT_STATE)) as f:
        return json.load(f)


def _cut(text: str, limit: int) -> str:
    """`text` on one line, at most `limit` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def warn(message: str) -> None:
    """One bounded line on stderr (a Ray worker's log, a terminal)."""
    print(_cut(f"WARNING: {message}", WARNING_CHARS), file=sys.stderr, flush=True)


def checkpoint_candidates(session: Session) -> Sequence[str]:
    """Checkpoint directories to resume from, newest first: `restored_checkpoint_dirs` when the
    session has that optional attribute (RaySession: the restored checkpoint, then older ones of
    the same run), else just `restored_checkpoint_dir` (if set)."""
    dirs = getattr(session, "restored_checkpoint_dirs", None)
    if dirs:
        return dirs
    return [session.restored_checkpoint_dir] if session.restored_checkpoint_dir else []


def _candidate_label(candidates: Sequence[str], i: int) -> str:
    label = getattr(candidates, "label", None)  # RaySession: the storage path, not a local copy
    return label(i) if callable(label) else str(candidates[i])


def _all_min(values: Sequence[float], device: torch.device) -> list[float]:
    """Element-wise minimum over all ranks (identity in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t.tolist()


@dataclass
class Restored:
    state: dict | None   # the loaded checkpoint's JSON state; None = start from scratch
    fallbacks: int       # unreadable checkpoints skipped before it (or before the fresh start)


def restore(session: Session, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            epochs: int) -> Restored:
    """Load the newest checkpoint that every rank can read, newest first; none → fresh start.

    Each rank tries candidate i (any error — truncated torch file, bad JSON, missing file, a
    failed download — makes it unusable), then all ranks agree with one all-reduce: i is taken
    only if it loaded on every rank, else every rank puts back the fresh weights and moves to
    i + 1. So all ranks resume from the same checkpoint on one node or many. A skipped
    checkpoint is logged (one line each); unreadable ones count in `fallbacks`.

    A checkpoint of a finished run (epoch + 1 >= epochs) written before state.json kept the
    epoch's metrics cannot be reported again; it is skipped (not counted as a fallback) so the
    run re-trains its last epoch(s) from the next one — the loop is deterministic per (seed,
    epoch), so that reproduces the same final metrics and weights.
    """
    candidates = checkpoint_candidates(session)
    try:
        return _restore_first_loadable(session, candidates, model, optimizer, epochs)
    finally:
        release = getattr(candidates, "release", None)  # RaySession: drop downloaded copies
        if callable(release):
            release()


def _restore_first_loadable(session: Session, candidates: Sequence[str], model: torch.nn.Module,
                            optimizer: torch.optim.Optimizer, epochs: int) -> Restored:
    low, neg_high = _all_min([len(candidates), -len(candidates)], session.device)
    count = int(low)
    if count != int(-neg_high) and session.rank == 0:
        warn(f"ranks see {count} to {int(-neg_high)} checkpoints to resume from; "
             f"trying the newest {count}")
    if count == 0:
        return Restored(None, 0)
    module = getattr(model, "module", model)
    fresh = copy.deepcopy(module.state_dict()), copy.deepcopy(optimizer.state_dict())
    fallbacks = 0
    for i in range(count):
        state, reason, unreadable = None, "", False
        try:
            state = load_checkpoint(candidates[i], model, optimizer, session.device)
            epoch, _ = int(state["epoch"]), int(state["step"])
            if epoch + 1 >= epochs and not isinstance(state.get(STATE_METRICS), dict):
                reason = "a finished run's checkpoint without saved metrics"
        except Exception as exc:  # noqa: BLE001 — any unreadable checkpoint is skipped
            reason, unreadable = _cut(f"{type(exc).__name__}: {exc}", 120), True
        ok, neg_unreadable = _all_min([0.0 if reason else 1.0, -1.0 if unreadable else 0.0],
                                      session.device)
        if ok == 1.0:
            if fallbacks and session.rank == 0:
                warn(f"resuming from checkpoint {_candidate_label(candidates, i)} after "
                     f"skipping {fallbacks} unreadable newer one(s)")
            return Restored(state, fallbacks)
        module.load_state_dict(fresh[0])
        optimizer.load_state_dict(fresh[1])
        fallbacks += int(neg_unreadable < 0)
        if reason or session.rank == 0:
            then = "trying an older one" if i + 1 < count else "starting from scratch"
            warn(f"rank {session.rank}: skipping checkpoint {_candidate_label(candidates, i)} "
                 f"({reason or 'another rank could not load it'}); {then}")
    return Restored(None, fallbacks)


def report_epoch(session: Session, metrics: Mapping[str, float], model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """All ranks report; rank 0 alone writes the checkpoint it attaches."""
    if session.rank != 0:
        session.report(metrics, checkpoint_dir=None)
        return
    with tempfile.TemporaryDirectory(prefix="ckpt_") as tmp:
        save_checkpoint(tmp, model, optimizer, state)
        session.report(metrics, checkpoint_dir=tmp)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
def _mark(phase: str, session: Session, epoch: int | None = None) -> None:
    """A timestamp for benchmarks/sweep_overhead.py (workloads/timeline.py; nothing unset)."""
    timeline.mark(phase, rank=session.rank, epoch=epoch)


def resolve_config(workload: Workload, config: Mapping[str, Any] | Any) -> Any:
    """Knob dataclass (or public-name mapping) → checked knobs; ConfigError naming every problem."""
    cfg = config if isinstance(config, workload.knobs) else workload.resolve(config)
    problems = workload.problems(cfg)
    if problems:
        raise ConfigError(f"{workload.name}: " + "; ".join(problems))
    return cfg


def train(workload: Workload, setup: Callable[[Any, Session], Trial],
          config: Mapping[str, Any] | Any, session: Session) -> None:
    """Train for cfg.epochs epochs; every rank reports once per epoch (see the module doc)."""
    cfg = resolve_config(workload, config)
    device, rank, world = session.device, session.rank, session.world_size
    per_worker = per_worker_batch(cfg.batch_size, world)
    _mark("setup_start", session)
    trial = setup(cfg, session)

    sampler = DistributedSampler(trial.train_data, num_replicas=world, rank=rank, shuffle=True,
                                 seed=cfg.seed, drop_last=True)
    loader = DataLoader(trial.train_data, batch_size=per_worker, sampler=sampler, drop_last=True)
    if len(loader) == 0:
        raise ConfigError(f"{workload.name}: knob 'batch_size': {cfg.batch_size} needs at least "
                          f"{per_worker} training examples per worker (have {len(sampler)} of "
                          f"{len(trial.train_data)})")
    steps_per_epoch = min(len(loader), cfg.steps_per_epoch or len(loader))
    total_steps = cfg.epochs * steps_per_epoch

    model, optimizer = trial.model, trial.optimizer
    start_epoch, step = 0, 0
    restored = restore(session, model, optimizer, cfg.epochs)
    extra = {CHECKPOINT_FALLBACKS: float(restored.fallbacks)} if restored.fallbacks else {}
    if restored.state is not None:
        start_epoch, step = int(restored.state["epoch"]) + 1, int(restored.state["step"])
        if start_epoch >= cfg.epochs:
            # Finished before (e.g. a sweep killed before Tune recorded the end): report the
            # final epoch's metrics again — every rank, no new checkpoint — instead of nothing.
            if rank == 0:
                warn(f"the restored checkpoint is of the finished epoch {start_epoch}: "
                     f"reporting its saved metrics again")
            session.report({**restored.state[STATE_METRICS], **extra}, checkpoint_dir=None)
            return
    ddp_model = wrap_ddp(model, session)
    _mark("setup_done", session)

    for epoch in range(start_epoch, cfg.epochs):
        torch.manual_seed(mix_seed(cfg.seed, rank, epoch))
        sampler.set_epoch(epoch)
        model.train()
        sums: dict[str, float] = {}
        regularized = 0.0
        _mark("steps_start", session, epoch)
        for _, batch in zip(range(steps_per_epoch), loader):
            out = trial.step(ddp_model, batch, step)
            if any_rank(not bool(torch.isfinite(out.loss)), device):
                metrics = {k: math.nan for k in workload.metrics}
                session.report({**metrics, EPOCH: float(epoch + 1), DIVERGED: 1.0,
                                PROBE_STEPS: regularized}, checkpoint_dir=None)
                return
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if trial.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), trial.grad_clip)
            if trial.lr_at is not None:
                for group in optimizer.param_groups:
                    group["lr"] = trial.lr_at(step, total_steps)
            optimizer.step()
            step += 1
            for name, (s, n) in out.means.items():
                sums[name + "/sum"] = sums.get(name + "/sum", 0.0) + s
                sums[name + "/count"] = sums.get(name + "/count", 0.0) + n
            regularized += float(out.regularized)

        _mark("steps_done", session, epoch)
        sums[PROBE_STEPS] = regularized
        sums = all_reduce_sums(sums, device)
        metrics = trial.evaluate(model, session)
        _mark("eval_done", session, epoch)
        for key in sums:
            if key.endswith("/sum"):
                name = key[:-len("/sum")]
                metrics[name] = sums[key] / max(sums[name + "/count"], 1.0)
        # every rank runs the same steps, so the per-rank count is the global sum / W
        metrics.update({PROBE_STEPS: sums[PROBE_STEPS] / world, EPOCH: float(epoch + 1),
                        DIVERGED: 0.0, **extra})
        report_epoch(session, metrics, model, optimizer,
                     {"epoch": epoch, "step": step,
                      STATE_METRICS: {k: float(v) for k, v in metrics.items()}})
        _mark("report_done", session, epoch)
