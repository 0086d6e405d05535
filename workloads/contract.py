"""The workload contract: what `sweeps/` knows about a model family, and nothing more.

A workload module exposes one `WORKLOAD = Workload(...)`:

    knobs      a dataclass type: every knob (tunable or fixed) with its default and valid domain
               (see workloads/knobs.py); it must have the int knobs named EPOCHS_KNOB and
               SEED_KNOB below
    metrics    {metric name: "minimize" | "maximize"} reported every epoch
    train      train(config: dict of public knob names, session: Session) -> None
    smoke      knob overrides for a seconds-long CPU run (optional)
    check      check(resolved knobs) -> problems across knobs or with the inputs they name (data
               directories, files), one line each, cheap, run before any Ray time (optional)
    input_errors  exception types `train` raises for bad input (e.g. a corrupt data file), which
               the CLIs turn into exit code 2 (optional)
    data_seed_knob  the int knob that draws or splits the data; confirmation runs vary it with
               the seed (optional)
    metric_docs  {metric name: (unit, what it measures)} for the metrics a reader will see:
               reports define them and plots put the unit on their axes (optional; a metric
               without one is shown by name alone)

`train` runs epochs; at the end of each epoch *every* rank calls `session.report(metrics,
checkpoint_dir=...)` exactly once, rank 0 passing a checkpoint directory and the others `None`
(Ray Train needs all ranks to report). On start it resumes from
`session.restored_checkpoint_dir` when that is set — or, when a session has the optional
attribute `restored_checkpoint_dirs` (a sequence, newest first; RaySession and LocalSession do)
and it is not empty, from the first of those that loads (the kit: workloads/kit/loop.py
`restore`, which then calls the sequence's `release()` if it has one: RaySession's drops the
copies it downloaded). Every report carries EPOCH, the number of epochs completed (1 after the
first), and DIVERGED: ASHA's rungs and the sweep's "finished" test count EPOCH against the
EPOCHS_KNOB; a trial with DIVERGED = 1 stopped because its loss became non-finite (other
metrics may then be NaN).

`workloads/kit/` implements all of this once (the loop, the CLI): a workload built with it
supplies only its knobs, how to build model/optimizer/data, one training step and one
evaluation. Nothing here imports Ray or MLflow: a workload runs in a plain process
(`LocalSession`), under `torchrun` (`LocalSession.from_env()`), or under Ray Train
(`sweeps/ray_session.py`).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Protocol

import torch
import torch.distributed as dist

from workloads import knobs as K
from workloads.knobs import ConfigError

Goal = Literal["minimize", "maximize"]

# Report keys every workload sends each epoch (sweeps import these; never spell them out).
EPOCH = "epoch"        # epochs completed, 1-based
DIVERGED = "diverged"  # 1.0 once the loss became NaN/inf; the run then stops
# Knobs every workload has: the epoch count (ASHA's max_t, "finished") and the seed
# (replicated confirmation runs vary it).
EPOCHS_KNOB = "epochs"
SEED_KNOB = "seed"


class Session(Protocol):
    world_size: int
    rank: int
    device: torch.device
    restored_checkpoint_dir: str | None

    def report(self, metrics: Mapping[str, float], checkpoint_dir: str | None = None) -> None: ...


@dataclass(frozen=True)
class Workload:
    name: str
    knobs: type
    metrics: Mapping[str, Goal]
    train: Callable[[Mapping[str, Any], Session], None]
    smoke: Mapping[str, Any] = field(default_factory=dict)
    check: Callable[[Any], list[str]] | None = None
    input_errors: tuple[type[BaseException], ...] = ()
    # The int knob that draws or splits the data (a synthetic draw, a train/val split), if the
    # workload has one. Replicated confirmation runs give it a fresh value along with the seed:
    # finalists chosen on one validation set are not re-scored on the same one.
    data_seed_knob: str | None = None
    # {metric: (unit, meaning)}, e.g. {"val_ig": ("bits/fixation", "information gain ...")}
    metric_docs: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        types = K.knob_types(self.knobs)
        required = (EPOCHS_KNOB, SEED_KNOB) + ((self.data_seed_knob,) if self.data_seed_knob
                                               else ())
        for name in required:
            if types.get(name) is not int:
                raise TypeError(f"workload {self.name!r}: knobs must include the int knob "
                                f"{name!r} (see workloads/contract.py)")
        reserved = {EPOCH, DIVERGED} & set(self.metrics)
        if reserved:
            raise TypeError(f"workload {self.name!r}: {sorted(reserved)} are report keys the "
                            f"contract reserves, not metrics")
        unknown = set(self.metric_docs) - set(self.metrics)
        if unknown:
            raise TypeError(f"workload {self.name!r}: metric_docs names metrics it does not "
                            f"report: {sorted(unknown)}")

    def metric_unit(self, name: str) -> str:
        """The metric's unit from `metric_docs` ("" when the workload gives none)."""
        return self.metric_docs.get(name, ("", ""))[0]

    def metric_label(self, name: str) -> str:
        """`name [unit]` for axes and tables; the bare name when the workload gives no unit."""
        unit = self.metric_unit(name)
        return f"{name} [{unit}]" if unit else name

    @property
    def defaults(self) -> Any:
        return self.knobs()

    def knob_types(self) -> dict[str, Any]:
        """{public knob name: annotated type}."""
        return K.knob_types(self.knobs)

    def knob_domain(self, name: str) -> K.Domain | None:
        return K.knob_domain(self.knobs, name)

    def resolve(self, overrides: Mapping[str, Any]) -> Any:
        """The knob dataclass with public-name `overrides` applied, coerced and checked against
        each knob's domain; ConfigError naming every bad knob."""
        return K.resolve(self.knobs, overrides)

    def problems(self, cfg: Any) -> list[str]:
        """The workload's own checks across knobs and of the inputs they name."""
        return list(self.check(cfg)) if self.check is not None else []

    def public_values(self, cfg: Any) -> dict[str, Any]:
        return K.public_values(cfg)


@dataclass
class LocalSession:
    """A session for plain processes, notebooks, tests and `torchrun`.

    Reports are kept in `history`; rank 0 copies each reported checkpoint to
    `checkpoint_root/epoch_NNNN` when `checkpoint_root` is set.
    """
    world_size: int = 1
    rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    restored_checkpoint_dir: str | None = None
    checkpoint_root: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    # newest first; when not empty, the loop tries these (in order) instead of the one above
    restored_checkpoint_dirs: list[str] = field(default_factory=list)

    @classmethod
    def from_env(cls, **kwargs: Any) -> "LocalSession":
        """Join the process group `torchrun` describes in the environment (if any)."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size > 1 and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend=backend)
        rank = dist.get_rank() if dist.is_initialized() else 0
        if torch.cuda.is_available():
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        return cls(world_size=world_size, rank=rank, device=device, **kwargs)

    def report(self, metrics: Mapping[str, float], checkpoint_dir: str | None = None) -> None:
        self.history.append(dict(metrics))
        if checkpoint_dir is not None and self.checkpoint_root is not None and self.rank == 0:
            target = os.path.join(self.checkpoint_root, f"epoch_{len(self.history):04d}")
            shutil.copytree(checkpoint_dir, target, dirs_exist_ok=True)
            self.checkpoints.append(target)
            self.restored_checkpoint_dir = None
            self.restored_checkpoint_dirs = []


__all__ = ["ConfigError", "DIVERGED", "EPOCH", "EPOCHS_KNOB", "SEED_KNOB", "Goal",
           "LocalSession", "Session", "Workload"]
