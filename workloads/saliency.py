"""The `saliency` workload: DeepGaze-style training with the uniform-image entropy regularizer.

Knobs (`SaliencyConfig`, every one with a default; see `_KNOBS` for the list):
  lambda, compute_every, num_uniform_samples, uniform_intensities   the regularizer: on optimizer
      steps where `workloads.entropy.probe_due(step, compute_every, lambda)` holds (step counted
      across epochs) the loss is NLL − lambda·H(bias map); lambda = 0 or compute_every = 0 is
      bit-for-bit the baseline.
  lr, weight_decay, batch_size (GLOBAL; each of W workers gets batch_size / W), epochs,
  steps_per_epoch (0 = one full pass; otherwise at most that many steps), image_size (working
  resolution S: images are resized to S×S), seed (model init, shuffling, probes), amp (CPU/GPU
  bfloat16 autocast), backbone ("" = small CNN; "package.module:factory"), width (small CNN).
  Data: mit1003_dir / cat2000_dir (None → the synthetic datasets, generated once under
  data_root, default <tmp>/saliency_synth, in a subdirectory keyed by data_seed and the sizes
  num_images / ood_images / fixations_per_image), data_seed (synthetic data and the 902/101-
  proportion split), skip_bad, cb_bandwidth / cb_uniform (center-bias smoothing, see
  saliency/datasets.py).

Metrics reported every epoch (`epoch` and `diverged` are reported too):
  train_nll          mean −log2 p over all training fixations of the epoch (bits/fixation; the
                     data term only, without −lambda·H)
  val_ig / ood_ig    information gain over the center bias, bits/fixation. val: MIT1003 split
                     (baseline = training center bias); ood: CAT2000 (baseline = its own
                     leave-one-image-out center bias). The model always gets the *training*
                     center bias as input: it cannot know the out-of-domain one.
  val_ll / ood_ll    log-likelihood relative to a uniform model, bits/fixation
  val_nss / ood_nss  NSS of the predicted density; val_auc / ood_auc  AUC-Judd (mean over images)
  bias_entropy       entropy (bits) of the mean density predicted for `num_uniform_samples` fixed
                     uniform probes (intensities cycled in order) with a uniform center bias,
                     measured in eval mode after the epoch; bias_entropy_frac = H / log2(S²)
Definitions: saliency/metrics.py. Run: `python -m workloads.saliency --smoke`.

Distributed: shards come from a DistributedSampler seeded by (seed, epoch) (also with one
process, so a resumed run sees the same batches); each rank's loss is its own batch's NLL per
fixation (minus lambda·H of its own probes) and DDP averages gradients; every metric is a
global mean from all-reduced (sum, count) pairs. Validation / OOD images are dealt to ranks
round-robin without padding, so nothing is counted twice.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from saliency import datasets as D
from saliency import synthetic
from saliency.metrics import add_sums, empty_sums, finalize, metric_sums
from saliency.model import ModelConfig, SaliencyModel, configure_optimizers
from saliency.regularizer import (RegularizerConfig, bias_entropy, bias_entropy_frac,
                                  fixed_probes, training_losses, uniform_centerbias)
from workloads import contract
from workloads.contract import ConfigError, LocalSession, Session, Workload

# (name, type, default). `lambda` is a Python keyword, hence the hand-built dataclass below.
_KNOBS: list[tuple[str, Any, Any]] = [
    ("lambda", float, 0.0),
    ("compute_every", int, 50),
    ("num_uniform_samples", int, 16),
    ("uniform_intensities", list[float], [0.0, 0.5, 1.0]),
    ("lr", float, 2e-3),
    ("weight_decay", float, 1e-4),
    ("batch_size", int, 16),
    ("epochs", int, 8),
    ("steps_per_epoch", int, 0),
    ("image_size", int, 64),
    ("seed", int, 0),
    ("amp", bool, False),
    ("backbone", str, ""),
    ("width", int, 16),
    ("mit1003_dir", Optional[str], None),
    ("cat2000_dir", Optional[str], None),
    ("data_root", str, ""),
    ("data_seed", int, 0),
    ("num_images", int, 300),
    ("ood_images", int, 120),
    ("fixations_per_image", int, 40),
    ("skip_bad", bool, False),
    ("cb_bandwidth", float, 0.05),
    ("cb_uniform", float, 0.01),
]


def _make_config_class() -> type:
    """A dataclass whose fields include `lambda`.

    `dataclasses.make_dataclass` refuses keyword field names, and the generated __init__ /
    __repr__ / __eq__ would be syntax errors, so those three are written by hand; fields(),
    asdict() and replace() work as on any dataclass.
    """
    ns: dict[str, Any] = {"__annotations__": {n: t for n, t, _ in _KNOBS},
                          "__doc__": "Every knob of the saliency workload (see the module doc)."}
    for name, _, default in _KNOBS:
        ns[name] = field(default_factory=lambda d=default: list(d)) if isinstance(
            default, list) else default

    def __init__(self, **kwargs):
        unknown = sorted(set(kwargs) - {n for n, _, _ in _KNOBS})
        if unknown:
            raise TypeError(f"SaliencyConfig: unknown field(s) {unknown}")
        for f in dataclasses.fields(self):
            if f.name in kwargs:
                value = kwargs[f.name]
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                value = f.default
            object.__setattr__(self, f.name, value)

    def __repr__(self):
        body = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"SaliencyConfig({body})"

    def __eq__(self, other):
        return type(other) is type(self) and dataclasses.asdict(self) == dataclasses.asdict(other)

    ns.update(__init__=__init__, __repr__=__repr__, __eq__=__eq__, __hash__=None,
              __module__=__name__, __qualname__="SaliencyConfig")
    return dataclass(init=False, repr=False, eq=False)(type("SaliencyConfig", (), ns))


SaliencyConfig = _make_config_class()

METRICS: dict[str, contract.Goal] = {
    "val_ig": "maximize", "val_ll": "maximize", "val_nss": "maximize", "val_auc": "maximize",
    "ood_ig": "maximize", "ood_ll": "maximize", "ood_nss": "maximize", "ood_auc": "maximize",
    "bias_entropy": "maximize", "bias_entropy_frac": "maximize", "train_nll": "minimize",
}


def _coerce_floats(value: Any) -> list[float]:
    """list[float] knob: a list/tuple of numbers or a "0,0.5,1" string."""
    if isinstance(value, str):
        value = [p for p in value.split(",") if p.strip()]
    try:
        if isinstance(value, (list, tuple)) and not any(isinstance(v, bool) for v in value):
            return [float(v) for v in value]
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"knob 'uniform_intensities': expected a list of floats (got {value!r})")


def resolve_config(config: Mapping[str, Any] | Any) -> Any:
    """Knob dict (or SaliencyConfig) → validated SaliencyConfig; ConfigError if invalid.

    `contract.coerce_knob` only knows lists of ints, so the one list[float] knob is coerced
    here before the rest goes through `WORKLOAD.resolve`.
    """
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    overrides = dict(config)
    intensities = overrides.pop("uniform_intensities", None)
    cfg = WORKLOAD.resolve(overrides)
    if intensities is not None:
        cfg = dataclasses.replace(cfg, uniform_intensities=_coerce_floats(intensities))
    problems = _knob_problems(cfg)
    if problems:
        raise ConfigError("; ".join(problems))
    return cfg


def _knob_problems(cfg: Any) -> list[str]:
    problems = []
    for name, ok, allowed in [
        ("compute_every", cfg.compute_every >= 0, ">= 0"),
        ("num_uniform_samples", cfg.num_uniform_samples >= 1, ">= 1"),
        ("uniform_intensities", bool(cfg.uniform_intensities) and all(
            0.0 <= v <= 1.0 for v in cfg.uniform_intensities), "non-empty, values in [0, 1]"),
        ("lambda", math.isfinite(getattr(cfg, "lambda")), "finite"),
        ("lr", cfg.lr > 0, "> 0"), ("weight_decay", cfg.weight_decay >= 0, ">= 0"),
        ("batch_size", cfg.batch_size >= 1, ">= 1"), ("epochs", cfg.epochs >= 1, ">= 1"),
        ("steps_per_epoch", cfg.steps_per_epoch >= 0, ">= 0"),
        ("image_size", cfg.image_size >= 16, ">= 16"), ("width", cfg.width >= 1, ">= 1"),
        ("num_images", cfg.num_images >= 2, ">= 2"), ("ood_images", cfg.ood_images >= 2, ">= 2"),
        ("fixations_per_image", cfg.fixations_per_image >= 1, ">= 1"),
        ("cb_bandwidth", cfg.cb_bandwidth > 0, "> 0"),
        ("cb_uniform", 0 < cfg.cb_uniform <= 1, "in (0, 1]"),
    ]:
        if not ok:
            problems.append(f"knob {name!r}: must be {allowed} (got {getattr(cfg, name)!r})")
    return problems


def check(cfg: Any) -> list[str]:
    """Problems with a resolved config's values and the data directories it names (cheap: the
    layout is checked, not every file; bad files are reported by the loaders at train time)."""
    problems = _knob_problems(cfg)
    layouts = [("mit1003_dir", cfg.mit1003_dir, ["ALLSTIMULI", "ALLFIXATIONMAPS"], ""),
               ("cat2000_dir", cfg.cat2000_dir, ["Stimuli", "FIXATIONLOCS"], "trainSet")]
    for knob, root, subdirs, nest in layouts:
        if root is None:
            continue
        base = os.path.join(root, nest) if nest and os.path.isdir(
            os.path.join(root, nest)) else root
        missing = [os.path.join(base, d) for d in subdirs
                   if not os.path.isdir(os.path.join(base, d))]
        if not os.path.isdir(root):
            problems.append(f"knob {knob!r}: {root}: no such directory")
        elif missing:
            problems.append(f"knob {knob!r}: {root}: missing {', '.join(missing)} (expected the "
                            f"{'MIT1003' if nest == '' else 'CAT2000 trainSet'} layout, see "
                            f"saliency/datasets.py)")
    return problems


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
@dataclass
class SaliencyData:
    train_images: torch.Tensor     # (N, 3, S, S) uint8
    train_counts: torch.Tensor     # (N, S, S) float32 fixations per pixel
    val_images: torch.Tensor
    val_counts: torch.Tensor
    ood_images: torch.Tensor
    ood_counts: torch.Tensor
    centerbias: torch.Tensor       # (S, S) training center-bias log-density (model input, val IG)
    ood_baseline: torch.Tensor     # (N_ood, S, S) leave-one-out OOD center bias (ood IG)


def synthetic_root(cfg: Any) -> str:
    """Where the synthetic default lives: one subdirectory per (data_seed, sizes), so changing a
    size never silently reuses data generated for another."""
    default = synthetic.default_root(cfg.data_seed, cfg.num_images, cfg.ood_images,
                                     cfg.fixations_per_image)
    return os.path.join(cfg.data_root, os.path.basename(default)) if cfg.data_root else default


def prepare_data(cfg: Any, session: Session) -> SaliencyData:
    """Load (generating the synthetic default if no directories are configured) and tensorize."""
    mit_dir, cat_dir = cfg.mit1003_dir, cfg.cat2000_dir
    if mit_dir is None or cat_dir is None:
        root = synthetic_root(cfg)
        gen = dict(seed=cfg.data_seed, num_images=cfg.num_images, ood_images=cfg.ood_images,
                   fixations_per_image=cfg.fixations_per_image)
        if session.rank == 0:
            synthetic.ensure_generated(root, **gen)
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        synthetic.ensure_generated(root, **gen)  # no-op on a shared disk; atomic otherwise
        mit_dir = mit_dir or os.path.join(root, "MIT1003")
        cat_dir = cat_dir or os.path.join(root, "CAT2000")
    s = cfg.image_size
    mit = D.load_mit1003(mit_dir, s, skip_bad=cfg.skip_bad)
    cat = D.load_cat2000(cat_dir, s, skip_bad=cfg.skip_bad)
    train_idx, val_idx = D.split_indices(len(mit), cfg.data_seed)
    train, val = [mit[i] for i in train_idx], [mit[i] for i in val_idx]
    cb = D.center_bias(train, (s, s), bandwidth=cfg.cb_bandwidth, uniform_weight=cfg.cb_uniform)
    ood_base = D.leave_one_out_center_bias(cat, (s, s), bandwidth=cfg.cb_bandwidth,
                                           uniform_weight=cfg.cb_uniform)
    (ti, tc), (vi, vc), (oi, oc) = D.stack(train), D.stack(val), D.stack(cat)
    return SaliencyData(ti, tc, vi, vc, oi, oc, D.log_density_to_torch(cb),
                        D.log_density_to_torch(ood_base))


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: torch.nn.Module, images: torch.Tensor, counts: torch.Tensor,
             centerbias: torch.Tensor, baseline: torch.Tensor, indices: range,
             device: torch.device, batch_size: int = 64, amp: bool = False) -> dict[str, float]:
    """Metric partial sums over `indices` (this rank's shard); baseline (S, S) or (N, S, S)."""
    sums = empty_sums()
    idx = list(indices)
    for i in range(0, len(idx), batch_size):
        sel = torch.tensor(idx[i:i + batch_size])
        x = images[sel].to(device).float().div_(255)                       # (B, 3, S, S)
        cb = centerbias.to(device).expand(len(sel), *centerbias.shape[-2:])  # (B, S, S)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            log_p = model(x, cb)                                            # (B, S, S)
        base = baseline[sel] if baseline.ndim == 3 else baseline.expand_as(log_p)
        add_sums(sums, metric_sums(log_p.float(), base.to(device), counts[sel].to(device)))
    return sums


@torch.no_grad()
def measure_bias_entropy(model: torch.nn.Module, cfg: Any, device: torch.device) -> float:
    """Bias-map entropy (bits) for fixed uniform probes, eval mode (a measurement, not a loss)."""
    was_training = model.training
    model.eval()
    s, n = cfg.image_size, cfg.num_uniform_samples
    log_p = model(fixed_probes(n, cfg.uniform_intensities, s, s).to(device),
                  uniform_centerbias(n, s, s, device))
    model.train(was_training)
    return float(bias_entropy(log_p))


def train(config: Mapping[str, Any], session: Session) -> None:
    """Train for cfg.epochs, reporting the metric set every epoch (see the module docstring)."""
    cfg = resolve_config(config)
    device, rank, world = session.device, session.rank, session.world_size
    per_worker = contract.per_worker_batch(cfg.batch_size, world)
    data = prepare_data(cfg, session)

    torch.manual_seed(cfg.seed)
    model = SaliencyModel(ModelConfig(backbone=cfg.backbone, width=cfg.width)).to(device)
    optimizer = configure_optimizers(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_epoch, step = 0, 0
    if session.restored_checkpoint_dir:
        state = contract.load_checkpoint(session.restored_checkpoint_dir, model, optimizer, device)
        start_epoch, step = int(state["epoch"]) + 1, int(state["step"])
    ddp_model = contract.wrap_ddp(model, session)
    reg = RegularizerConfig(lam=getattr(cfg, "lambda"), compute_every=cfg.compute_every,
                            num_uniform_samples=cfg.num_uniform_samples,
                            uniform_intensities=list(cfg.uniform_intensities), seed=cfg.seed)

    n_train = data.train_images.shape[0]
    # Always a DistributedSampler (also for one process): shuffling seeded by (seed, epoch), so a
    # resumed run sees the same batches as an uninterrupted one.
    sampler = DistributedSampler(range(n_train), num_replicas=world, rank=rank, shuffle=True,
                                 seed=cfg.seed)
    if len(sampler) < per_worker:
        raise ConfigError(f"knob 'batch_size': {cfg.batch_size} needs at least {per_worker} "
                          f"training images per worker (have {len(sampler)} of {n_train})")
    centerbias = data.centerbias.to(device)
    s = cfg.image_size

    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        order = list(sampler)
        batches = [order[i:i + per_worker] for i in range(0, len(order) - per_worker + 1,
                                                          per_worker)]        # drop last
        if cfg.steps_per_epoch:
            batches = batches[:cfg.steps_per_epoch]
        ddp_model.train()
        nll_sums = {"nll_sum": 0.0, "n_fix": 0.0}
        for sel in batches:
            sel = torch.tensor(sel)
            images = data.train_images[sel].to(device).float().div_(255)    # (B, 3, S, S)
            counts = data.train_counts[sel].to(device)                        # (B, S, S)
            cb = centerbias.expand(len(sel), s, s)                            # (B, S, S)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp):
                out = training_losses(ddp_model, images, cb, counts, step=step, reg=reg,
                                      rank=rank)
            loss = out["loss"]
            if contract.any_rank(not bool(torch.isfinite(loss)), device):
                metrics = {k: float("nan") for k in METRICS}
                metrics.update(epoch=float(epoch + 1), diverged=1.0)
                session.report(metrics, checkpoint_dir=None)
                return
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            nll_sums["nll_sum"] += float(out["nll_sum"])
            nll_sums["n_fix"] += float(out["n_fix"])

        module = getattr(ddp_model, "module", ddp_model)  # eval without DDP's collectives
        module.eval()
        val = evaluate(module, data.val_images, data.val_counts, data.centerbias,
                       data.centerbias, range(rank, data.val_images.shape[0], world), device,
                       amp=cfg.amp)
        ood = evaluate(module, data.ood_images, data.ood_counts, data.centerbias,
                       data.ood_baseline, range(rank, data.ood_images.shape[0], world), device,
                       amp=cfg.amp)
        h = measure_bias_entropy(module, cfg, device)
        module.train()
        sums = {f"train_{k}": v for k, v in nll_sums.items()}
        sums.update({f"val_{k}": v for k, v in val.items()})
        sums.update({f"ood_{k}": v for k, v in ood.items()})
        sums = contract.all_reduce_sums(sums, device)
        metrics = {"epoch": float(epoch + 1),  # epochs completed (1-based)
                   "train_nll": sums["train_nll_sum"] / max(sums["train_n_fix"], 1.0)}
        for prefix in ("val", "ood"):
            metrics.update(finalize({k[len(prefix) + 1:]: v for k, v in sums.items()
                                     if k.startswith(prefix + "_")}, prefix))
        metrics.update(bias_entropy=h, bias_entropy_frac=bias_entropy_frac(h, s, s),
                       diverged=0.0)
        contract.report_epoch(session, metrics, model, optimizer,
                              {"epoch": epoch, "step": step})


# Knob overrides for seconds-long CPU runs (sweeps' --smoke and this module's CLI). Sizes only:
# the regularizer knobs stay whatever the space searches or fixes.
SMOKE = {"epochs": 2, "num_images": 40, "ood_images": 12, "image_size": 32, "batch_size": 8,
         "num_uniform_samples": 4, "width": 8}

WORKLOAD = Workload(name="saliency", defaults=SaliencyConfig(), metrics=METRICS, train=train,
                    smoke=SMOKE, check=check)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workloads.saliency", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, help="override the epochs knob")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, 2 epochs (CI)")
    p.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                   help="any knob, e.g. --set lambda=0.5 --set mit1003_dir=/data/MIT1003")
    p.add_argument("--checkpoint-root", help="copy each epoch's checkpoint here")
    args = p.parse_args(argv)
    # the CLI smoke run also exercises the regularizer path (probes every 2nd step)
    knobs: dict[str, Any] = {**SMOKE, "lambda": 0.1, "compute_every": 2} if args.smoke else {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set expects KNOB=VALUE (got {item!r})")
        knobs[name] = None if value.lower() in ("none", "null") else value
    if args.epochs is not None:
        knobs["epochs"] = args.epochs
    session = LocalSession.from_env(checkpoint_root=args.checkpoint_root)
    printed = 0

    def report(metrics, checkpoint_dir=None):
        nonlocal printed
        LocalSession.report(session, metrics, checkpoint_dir)
        if session.rank == 0:
            print(json.dumps({k: round(v, 4) for k, v in metrics.items()}), flush=True)
        printed += 1

    session.report = report  # type: ignore[method-assign]
    t0 = time.time()
    try:
        train(knobs, session)
    except (ConfigError, D.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if session.rank == 0:
        print(f"done: {printed} epoch(s) in {time.time() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
