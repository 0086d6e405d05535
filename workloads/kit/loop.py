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
  attaches a checkpoint (model, optimizer, {epoch, step}).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from workloads.contract import DIVERGED, EPOCH, Session, Workload
from workloads.knobs import ConfigError

CHECKPOINT_MODEL = "model.pt"
CHECKPOINT_OPTIMIZER = "optimizer.pt"
CHECKPOINT_STATE = "state.json"
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
    """model + optimizer tensors (loadable with weights_only=True) and a JSON state (epoch, step)."""
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
    if session.restored_checkpoint_dir:
        state = load_checkpoint(session.restored_checkpoint_dir, model, optimizer, device)
        start_epoch, step = int(state["epoch"]) + 1, int(state["step"])
    ddp_model = wrap_ddp(model, session)

    for epoch in range(start_epoch, cfg.epochs):
        torch.manual_seed(mix_seed(cfg.seed, rank, epoch))
        sampler.set_epoch(epoch)
        model.train()
        sums: dict[str, float] = {}
        regularized = 0.0
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

        sums[PROBE_STEPS] = regularized
        sums = all_reduce_sums(sums, device)
        metrics = trial.evaluate(model, session)
        for key in sums:
            if key.endswith("/sum"):
                name = key[:-len("/sum")]
                metrics[name] = sums[key] / max(sums[name + "/count"], 1.0)
        # every rank runs the same steps, so the per-rank count is the global sum / W
        metrics.update({PROBE_STEPS: sums[PROBE_STEPS] / world, EPOCH: float(epoch + 1),
                        DIVERGED: 0.0})
        report_epoch(session, metrics, model, optimizer, {"epoch": epoch, "step": step})
