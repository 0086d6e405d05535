"""The `saliency` workload: DeepGaze-style training with the uniform-image entropy regularizer,
built on the training kit. Run: `python -m workloads.saliency --smoke`; knobs: `--help`.

Regularizer: on steps where `regularizers.entropy.probe_due(step, compute_every, lambda)` holds
(step counted across epochs) the loss is NLL − lambda·H(bias map) (saliency/regularizer.py);
lambda = 0 or compute_every = 0 is bit-for-bit the baseline.

Data: mit1003_dir / cat2000_dir, or (None) the synthetic datasets generated once under
data_root (default <tmp>/saliency_synth) in a subdirectory keyed by data_seed and the sizes;
data_seed also fixes the 902/101-proportion split. Images are resized to image_size².

Metrics reported every epoch (besides the kit's epoch / diverged / probe_steps):
  train_nll          mean −log2 p over all training fixations of the epoch (bits/fixation; the
                     data term only, without −lambda·H)
  val_ig / ood_ig    information gain over the center bias, bits/fixation. val: MIT1003 split
                     (baseline = training center bias); ood: CAT2000 (baseline = its own
                     leave-one-image-out center bias). The model always gets the *training*
                     center bias as input.
  val_ll / ood_ll    log-likelihood relative to a uniform model, bits/fixation
  val_nss / ood_nss  NSS of the predicted density; val_auc / ood_auc  AUC-Judd (mean over images)
  bias_entropy       entropy (bits) of the mean density predicted for `num_uniform_samples` fixed
                     uniform probes (intensities cycled in order) with a uniform center bias,
                     measured in eval mode after the epoch; bias_entropy_frac = H / log2(S²)
Definitions: saliency/metrics.py. Validation / OOD images are dealt to ranks round-robin
without padding and every metric is a global mean of all-reduced (sum, count) pairs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch.utils.data import TensorDataset

from saliency import datasets as D
from saliency import synthetic
from saliency.data import SaliencyData, load_data
from saliency.errors import DataError
from saliency.evaluation import measure_bias_entropy, metric_partial_sums
from saliency.metrics import finalize
from saliency.model import ModelConfig, SaliencyModel, configure_optimizers
from saliency.regularizer import RegularizerConfig, bias_entropy_frac, training_losses
from workloads import kit
from workloads.contract import Goal, Session
from workloads.kit import (FINITE, EachIn, LoopKnobs, StepResult, Trial, above, at_least,
                           between, knob)
from workloads.kit.cli import main as cli_main


@dataclass
class SaliencyKnobs(LoopKnobs):
    # the regularizer
    lam: float = knob(0.0, FINITE, alias="lambda", help="weight of −H (per application)")
    compute_every: int = knob(50, at_least(0), help="regularize every n-th step; 0 = off")
    num_uniform_samples: int = knob(16, at_least(1))
    uniform_intensities: list[float] = knob([0.0, 0.5, 1.0], EachIn(between(0, 1)))
    # optimisation (steps_per_epoch, seed: LoopKnobs)
    lr: float = knob(2e-3, above(0))
    weight_decay: float = knob(1e-4, at_least(0))
    batch_size: int = knob(16, at_least(1), help="GLOBAL; W workers get batch_size/W each")
    epochs: int = knob(8, at_least(1))
    amp: bool = knob(False, help="bfloat16 autocast (CPU and GPU)")
    # model
    image_size: int = knob(64, at_least(16), help="working resolution S: images resized to S×S")
    backbone: str = knob("", help='"" = small CNN; or "package.module:factory"')
    width: int = knob(16, at_least(1), help="channels of the small CNN")
    # data
    mit1003_dir: Optional[str] = knob(None, help="None: synthetic")
    cat2000_dir: Optional[str] = knob(None, help="None: synthetic")
    data_root: str = knob("", help="where synthetic data is generated; '' = <tmp>")
    data_seed: int = knob(0)
    num_images: int = knob(300, at_least(2))
    ood_images: int = knob(120, at_least(2))
    fixations_per_image: int = knob(40, at_least(1))
    skip_bad: bool = knob(False, help="skip unreadable files with a warning")
    cb_bandwidth: float = knob(0.05, above(0), help="center-bias smoothing (datasets.py)")
    cb_uniform: float = knob(0.01, between(0, 1, lo_open=True))


METRICS: dict[str, Goal] = {
    "val_ig": "maximize", "val_ll": "maximize", "val_nss": "maximize", "val_auc": "maximize",
    "ood_ig": "maximize", "ood_ll": "maximize", "ood_nss": "maximize", "ood_auc": "maximize",
    "bias_entropy": "maximize", "bias_entropy_frac": "maximize", "train_nll": "minimize",
}


def check(cfg: SaliencyKnobs) -> list[str]:
    """Data directories a config names: they must exist and every file must decode (read at a
    tiny size, so this is cheap), reported before any Ray time is spent."""
    problems = []
    for knob_name, root, load in (("mit1003_dir", cfg.mit1003_dir, D.load_mit1003),
                                  ("cat2000_dir", cfg.cat2000_dir, D.load_cat2000)):
        if root is None:
            continue
        try:
            load(root, 16, skip_bad=cfg.skip_bad)
        except DataError as e:
            problems.append(f"knob {knob_name!r}: {str(e)[:300]}")
    return problems


def prepare_data(cfg: SaliencyKnobs, session: Session) -> SaliencyData:
    """Load (generating the synthetic default once, on rank 0, if no directories are set)."""
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
    return load_data(mit_dir, cat_dir, cfg.image_size, split_seed=cfg.data_seed,
                     skip_bad=cfg.skip_bad, cb_bandwidth=cfg.cb_bandwidth,
                     cb_uniform=cfg.cb_uniform)


def synthetic_root(cfg: SaliencyKnobs) -> str:
    """Where the synthetic default lives: keyed by every generator parameter (synthetic.py)."""
    default = synthetic.default_root(cfg.data_seed, cfg.num_images, cfg.ood_images,
                                     cfg.fixations_per_image)
    return os.path.join(cfg.data_root, os.path.basename(default)) if cfg.data_root else default


def epoch_metrics(model: torch.nn.Module, data: SaliencyData, cfg: SaliencyKnobs,
                  session: Session) -> dict[str, float]:
    """val_* and ood_* (global means over all ranks' shards) and the bias entropy."""
    device, rank, world = session.device, session.rank, session.world_size
    model.eval()
    shard = {"val": range(rank, data.val_images.shape[0], world),
             "ood": range(rank, data.ood_images.shape[0], world)}
    val = metric_partial_sums(model, data.val_images, data.val_counts, data.centerbias,
                              data.centerbias, shard["val"], device, amp=cfg.amp)
    ood = metric_partial_sums(model, data.ood_images, data.ood_counts, data.centerbias,
                              data.ood_baseline, shard["ood"], device, amp=cfg.amp)
    h = measure_bias_entropy(model, cfg.num_uniform_samples, cfg.uniform_intensities,
                             cfg.image_size, device)
    model.train()
    sums = {f"val_{k}": v for k, v in val.items()}
    sums.update({f"ood_{k}": v for k, v in ood.items()})
    sums = kit.all_reduce_sums(sums, device)
    metrics: dict[str, float] = {}
    for prefix in ("val", "ood"):
        metrics.update(finalize({k[len(prefix) + 1:]: v for k, v in sums.items()
                                 if k.startswith(prefix + "_")}, prefix))
    s = cfg.image_size
    metrics.update(bias_entropy=h, bias_entropy_frac=bias_entropy_frac(h, s, s))
    return metrics


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def setup(cfg: SaliencyKnobs, session: Session) -> Trial:
    device, rank, s = session.device, session.rank, cfg.image_size
    data = prepare_data(cfg, session)
    torch.manual_seed(cfg.seed)
    model = SaliencyModel(ModelConfig(backbone=cfg.backbone, width=cfg.width)).to(device)
    optimizer = configure_optimizers(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    reg = RegularizerConfig(lam=cfg.lam, compute_every=cfg.compute_every,
                            num_uniform_samples=cfg.num_uniform_samples,
                            uniform_intensities=list(cfg.uniform_intensities), seed=cfg.seed)
    centerbias = data.centerbias.to(device)

    def step(ddp_model: torch.nn.Module, batch: Any, step: int) -> StepResult:
        images, counts = batch
        images = images.to(device).float().div_(255)                         # (B, 3, S, S)
        counts = counts.to(device)                                            # (B, S, S)
        cb = centerbias.expand(len(images), s, s)                             # (B, S, S)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp):
            out = training_losses(ddp_model, images, cb, counts, step=step, reg=reg, rank=rank)
        return StepResult(out["loss"], {"train_nll": (float(out["nll_sum"]), float(out["n_fix"]))},
                          out["probed"])

    return Trial(model, optimizer, TensorDataset(data.train_images, data.train_counts), step,
                 evaluate=lambda m, sess: epoch_metrics(m, data, cfg, sess))


# Knob overrides for seconds-long CPU runs (sweeps' --smoke and this module's CLI). Sizes only:
# the regularizer knobs stay whatever the space searches or fixes.
SMOKE = {"epochs": 2, "num_images": 40, "ood_images": 12, "image_size": 32, "batch_size": 8,
         "num_uniform_samples": 4, "width": 8}

WORKLOAD = kit.make_workload(name="saliency", knobs=SaliencyKnobs, metrics=METRICS, setup=setup,
                             smoke=SMOKE, check=check, input_errors=(DataError,))
train = WORKLOAD.train


def main(argv: list[str] | None = None) -> int:
    return cli_main(WORKLOAD, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
