"""The workload contract: what `sweeps/` knows about a model family, and nothing more.

A workload module exposes one `WORKLOAD = Workload(...)`:

    defaults   a dataclass instance holding every knob (tunable or fixed) with its default
    metrics    {metric name: "minimize" | "maximize"} reported every epoch
    train      train(config: dict, session: Session) -> None
    smoke      knob overrides for a seconds-long CPU run (optional)
    check      check(resolved config) -> list of problems with its inputs (optional)

`train` runs epochs; at the end of each epoch *every* rank calls
`session.report(metrics, checkpoint_dir=...)` exactly once, rank 0 passing a directory written by
`save_checkpoint` and the others `None` (Ray Train needs all ranks to report). On start it resumes
from `session.restored_checkpoint_dir` when that is set. Every report carries `epoch`, the number
of epochs completed (1 after the first): ASHA's rungs and the sweep's "finished" test count it.

If the training loss becomes non-finite, the workload stops, reports the epoch with
`diverged=1.0` (other metrics may be NaN) and returns: the sweep records the trial as diverged.

Nothing here imports Ray or MLflow: a workload runs in a plain process (`LocalSession`), under
`torchrun` (`LocalSession.from_env()`), or under Ray Train (`sweeps/ray_session.py`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Protocol

import torch
import torch.distributed as dist

Goal = Literal["minimize", "maximize"]

CHECKPOINT_MODEL = "model.pt"
CHECKPOINT_OPTIMIZER = "optimizer.pt"
CHECKPOINT_STATE = "state.json"


class ConfigError(ValueError):
    """A knob value a workload cannot run with; the message names the knob and what is allowed."""


class Session(Protocol):
    world_size: int
    rank: int
    device: torch.device
    restored_checkpoint_dir: str | None

    def report(self, metrics: Mapping[str, float], checkpoint_dir: str | None = None) -> None: ...


@dataclass(frozen=True)
class Workload:
    name: str
    defaults: Any  # a dataclass instance: every knob with its default value
    metrics: Mapping[str, Goal]
    train: Callable[[Mapping[str, Any], Session], None]
    # Knob overrides that make one epoch take seconds on a CPU (used by every `--smoke`).
    smoke: Mapping[str, Any] = field(default_factory=dict)
    # check(resolved_config) -> problems with the inputs the config names (data directories,
    # files), one line each, run before any Ray time is spent. None: nothing to check.
    check: Callable[[Any], list[str]] | None = None

    def knob_types(self) -> dict[str, Any]:
        """{knob: annotated type} resolved from the defaults dataclass."""
        hints = typing.get_type_hints(type(self.defaults))
        return {f.name: hints[f.name] for f in dataclasses.fields(self.defaults)}

    def resolve(self, overrides: Mapping[str, Any]) -> Any:
        """The defaults dataclass with `overrides` applied and coerced; ConfigError if invalid."""
        types = self.knob_types()
        unknown = sorted(set(overrides) - set(types))
        if unknown:
            raise ConfigError(
                f"{self.name}: unknown knob(s) {unknown}; allowed: {sorted(types)}")
        values = {k: coerce_knob(k, v, types[k]) for k, v in overrides.items()}
        return dataclasses.replace(self.defaults, **values)


def coerce_knob(name: str, value: Any, annotation: Any) -> Any:
    """Coerce a config value (YAML, MLflow string, Optuna suggestion) to the knob's type.

    Lists of numbers also come as "1,2,4" strings: that is how sweeps encode HTEN scales so Optuna
    sees a plain categorical and MLflow shows a readable parameter.
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    try:
        if annotation is bool:
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if isinstance(value, bool):
                return value
            raise TypeError
        if annotation in (int, float):
            if isinstance(value, bool):
                raise TypeError
            if annotation is int and isinstance(value, float) and not value.is_integer():
                raise TypeError
            return annotation(value)
        if annotation is str:
            if not isinstance(value, str):
                raise TypeError
            return value
        if origin in (list, tuple) and args and args[0] in (int, float):
            if isinstance(value, str):
                value = [args[0](p) for p in value.split(",") if p.strip()]
            if not isinstance(value, (list, tuple)):
                raise TypeError
            items = [coerce_knob(name, v, args[0]) for v in value]
            return tuple(items) if origin is tuple else items
        if origin is typing.Union and type(None) in args:  # Optional[X]
            if value is None:
                return None
            inner = [a for a in args if a is not type(None)][0]
            return coerce_knob(name, value, inner)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise ConfigError(f"knob {name!r}: expected {_type_name(annotation)} (got {value!r})")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def format_knob(value: Any) -> str:
    """The flat, readable form of a knob value (MLflow params, CSV): lists as "1,2,4"."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


# --------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# Helpers every workload needs (kept here so the two workloads do not each grow their own)
# --------------------------------------------------------------------------------------------
def per_worker_batch(global_batch: int, world_size: int) -> int:
    """Each rank gets global_batch / world_size so results do not depend on the worker count."""
    if global_batch % world_size:
        raise ConfigError(
            f"knob 'batch_size': must be divisible by the number of workers {world_size} "
            f"(got {global_batch})")
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
