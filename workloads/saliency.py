"""The `saliency` workload: DeepGaze-style training with the implicit-bias entropy regularizer,
built on the training kit. Run: `python -m workloads.saliency --smoke`; knobs: `--help`.

Regularizer (saliency/regularizer.py): on steps where `probe_due(step, compute_every, lambda)`
holds (step counted across epochs) the loss is NLL − lambda·compute_every·H(bias map), so
lambda is a weight per optimizer step; lambda = 0 or compute_every = 0 is bit-for-bit the
baseline. Probes (`probes`): `uniform` gray images, or `neutral` content without positional
information (synthetic: freshly generated images with uniformly placed objects; real data:
patch-shuffled training images).

Data (saliency/data.py): mit1003_dir / cat2000_dir, or (None) the planted-prior synthetic
benchmark (saliency/synthetic.py) generated once under data_root, keyed by every generator
parameter. `centerbias_input` decides how much of the positional prior the model is handed
(sharp: all of it, the control; blurred: a wide blur of it; uniform: none).

Metrics reported every epoch (besides the kit's epoch / diverged / probe_steps), IG in bits per
fixation over the scored set's own center bias (Kümmerer et al.), global means over ranks:
  train_nll                  −log2 p over the epoch's training fixations (data term only)
  val_ig/_ll/_nss/_auc       in-domain validation split
  ood_ig/_ll/_nss/_auc       CAT2000-layout set (synthetic: the prior shift), the model given
                             that set's own center-bias input
  ood_ig_transfer            the same, the model given the in-domain center-bias input
  content_ig                 synthetic content-shift set (NaN for real data)
  *_ig_oracle                IG of the true density (synthetic only): the ceiling
  bias_entropy_uniform/_neutral   entropy (bits) of the mean density predicted for fixed gray /
                             position-neutral probes with a uniform center bias (eval mode);
                             *_frac = H / log2(S²); probe_entropy_neutral: the mean entropy of
                             the single neutral probe maps; bias_kl_neutral = log2(S²) − H:
                             the positional bias left, in bits (0 = a uniform mean map; the
                             32 probes' content alone keeps it above 0)
Definitions: saliency/metrics.py.
"""
from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch.utils.data import TensorDataset

from saliency import synthetic
from saliency.data import (CENTERBIAS_INPUTS, EvalSet, SaliencyData, data_problems,
                           load_data_cached, neutral_probe_pool)
from saliency.errors import DataError
from saliency.evaluation import metric_partial_sums, probe_entropies
from saliency.metrics import finalize
from saliency.model import ModelConfig, SaliencyModel, configure_optimizers
from saliency.regularizer import (PROBE_KINDS, RegularizerConfig, bias_entropy_frac,
                                  fixed_probes, training_losses)
from workloads import kit
from workloads.contract import Goal, Session
from workloads.kit import (FINITE, EachIn, LoopKnobs, OneOf, StepResult, Trial, above, at_least,
                           between, knob)
from workloads.kit.cli import main as cli_main
from workloads.knobs import shown


@dataclass
class SaliencyKnobs(LoopKnobs):
    # the regularizer
    lam: float = knob(0.0, FINITE, alias="lambda", help="weight of −H per optimizer step")
    compute_every: int = knob(5, at_least(0), help="regularize every n-th step; 0 = off")
    probes: str = knob("neutral", OneOf(PROBE_KINDS), help="probe kind the regularizer uses")
    num_probes: int = knob(16, at_least(1), help="probes per regularized step / measurement")
    uniform_intensities: list[float] = knob([0.0, 0.5, 1.0], EachIn(between(0, 1)))
    centerbias_input: str = knob("sharp", OneOf(CENTERBIAS_INPUTS),
                                 help="prior handed to the model: sharp | blurred | uniform")
    blur_bandwidth: float = knob(0.25, above(0), help="kernel of the blurred input (of side)")
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
    data_seed: int = knob(0, help="the synthetic draw and the train/val split; confirm runs "
                                  "get fresh ones")
    num_images: int = knob(300, at_least(2))
    ood_images: int = knob(120, at_least(2))
    fixations_per_image: int = knob(40, at_least(1))
    skip_bad: bool = knob(False, help="skip unreadable files with a warning")
    cb_bandwidth: float = knob(0.05, above(0), help="center-bias smoothing (datasets.py)")
    cb_uniform: float = knob(0.01, between(0, 1, lo_open=True))


METRICS: dict[str, Goal] = {"train_nll": "minimize", **{name: "maximize" for name in (
    "val_ig", "val_ll", "val_nss", "val_auc", "ood_ig", "ood_ll", "ood_nss", "ood_auc",
    "ood_ig_transfer", "content_ig", "val_ig_oracle", "ood_ig_oracle", "content_ig_oracle",
    "bias_entropy_uniform", "bias_entropy_uniform_frac", "bias_entropy_neutral",
    "bias_entropy_neutral_frac", "probe_entropy_neutral")}, "bias_kl_neutral": "minimize"}
EVAL_PROBES = 32  # fixed probes per kind for the bias-entropy measurement

_IG = "bits/fixation"
_SETS = {"val": "the in-domain validation split",
         "ood": "the out-of-domain set (CAT2000 layout; synthetic: the prior shift), the model "
                "given that set's own center bias"}
# What reports and plots say about each metric (module doc and saliency/metrics.py in full).
METRIC_DOCS: dict[str, tuple[str, str]] = {
    "train_nll": (_IG, "training NLL, −log2 p per training fixation (data term only)"),
    **{f"{k}_ig": (_IG, f"information gain over the center-bias baseline on {v} (0 = no "
                        "better than the center bias)") for k, v in _SETS.items()},
    **{f"{k}_ll": (_IG, f"log-likelihood over a uniform model on {v}") for k, v in _SETS.items()},
    **{f"{k}_nss": ("sd", f"normalized scanpath saliency on {v}") for k, v in _SETS.items()},
    **{f"{k}_auc": ("", f"AUC of fixated vs all pixels on {v}") for k, v in _SETS.items()},
    "ood_ig_transfer": (_IG, "ood_ig with the model given the in-domain center bias"),
    "content_ig": (_IG, "information gain on the synthetic content-shift set"),
    **{f"{k}_ig_oracle": (_IG, f"information gain of the true density on the {k} set: the "
                               "ceiling (synthetic only)") for k in ("val", "ood", "content")},
    **{f"bias_entropy_{k}": ("bits", f"entropy of the mean density predicted for fixed {v} "
                                     f"probes with a uniform center bias: the model's implicit "
                                     f"spatial bias") for k, v in (("uniform", "gray"),
                                                                   ("neutral", "position-neutral"))},
    **{f"bias_entropy_{k}_frac": ("", f"bias_entropy_{k} / log2(pixels): 1 = no spatial bias")
       for k in ("uniform", "neutral")},
    "probe_entropy_neutral": ("bits", "mean entropy of the single position-neutral probe maps"),
    "bias_kl_neutral": ("bits", "the regularizer's target: log2(pixels) − "
                                "bias_entropy_neutral, the KL from uniform of the mean map "
                                "for position-neutral probes (0 = a uniform mean map; the "
                                "probes' own content keeps it above 0 even for a model with "
                                "no positional bias, so a drop is not all positional bias)"),
}


def check(cfg: SaliencyKnobs) -> list[str]:
    """Data directories a config names must exist and decode, a backbone's module must be
    importable: checked before any Ray time."""
    problems = data_problems(cfg.mit1003_dir, cfg.cat2000_dir, skip_bad=cfg.skip_bad)
    return problems + backbone_problems(cfg.backbone)


def backbone_problems(spec: str) -> list[str]:
    """A "package.module:factory" backbone whose module can be found (located with find_spec,
    not executed: only the worker that builds the model imports it and calls the factory)."""
    if not spec:
        return []
    module, _, factory = spec.partition(":")
    if not (module and factory.isidentifier()
            and all(part.isidentifier() for part in module.split("."))):
        return [f"knob 'backbone': must look like 'package.module:factory' "
                f"(got {shown(spec, 100)})"]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return [] if found else [f"knob 'backbone': module {shown(module, 100)} cannot be imported "
                             f"(not on the Python path of this process)"]


def prepare_data(cfg: SaliencyKnobs, session: Session) -> SaliencyData:
    """Load (generating the synthetic default once, on rank 0, if no directories are set)."""
    mit_dir, cat_dir, content_dir = cfg.mit1003_dir, cfg.cat2000_dir, None
    synthetic_data = mit_dir is None and cat_dir is None
    if mit_dir is None or cat_dir is None:
        root = synthetic_root(cfg)
        gen = dict(seed=cfg.data_seed, num_images=cfg.num_images, ood_images=cfg.ood_images,
                   fixations_per_image=cfg.fixations_per_image)
        if session.rank == 0:
            synthetic.ensure_generated(root, **gen)
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        synthetic.ensure_generated(root, **gen)  # no-op on a shared disk; atomic otherwise
        mit_dir = mit_dir or os.path.join(root, synthetic.IN_DOMAIN.dirname)
        cat_dir = cat_dir or os.path.join(root, synthetic.PRIOR_SHIFT.dirname)
        if synthetic_data:
            content_dir = os.path.join(root, synthetic.CONTENT_SHIFT.dirname)
    # decoded once per machine and dataset, not once per worker per trial (saliency/data.py)
    return load_data_cached(mit_dir, cat_dir, cfg.image_size, split_seed=cfg.data_seed,
                            skip_bad=cfg.skip_bad, cb_bandwidth=cfg.cb_bandwidth,
                            cb_uniform=cfg.cb_uniform, centerbias_input=cfg.centerbias_input,
                            blur_bandwidth=cfg.blur_bandwidth, content_dir=content_dir,
                            oracle=synthetic_data)


def synthetic_root(cfg: SaliencyKnobs) -> str:
    """Where the synthetic default lives: keyed by every generator parameter (synthetic.py)."""
    default = synthetic.default_root(cfg.data_seed, cfg.num_images, cfg.ood_images,
                                     cfg.fixations_per_image)
    return os.path.join(cfg.data_root, os.path.basename(default)) if cfg.data_root else default


def epoch_metrics(model: torch.nn.Module, data: SaliencyData, probes: dict[str, torch.Tensor],
                  cfg: SaliencyKnobs, session: Session) -> dict[str, float]:
    """Every evaluation set's metrics (global means over the ranks' shards) and the bias
    entropies; see the module doc."""
    device, rank, world = session.device, session.rank, session.world_size
    sets: dict[str, EvalSet] = {"val": data.val, "ood": data.ood, "transfer": data.ood_transfer}
    if data.content is not None:
        sets["content"] = data.content
    model.eval()
    sums = {}
    for name, es in sets.items():
        part = metric_partial_sums(model, es.images, es.counts, es.model_input, es.baseline,
                                   range(rank, es.images.shape[0], world), device, amp=cfg.amp)
        sums.update({f"{name}/{k}": v for k, v in part.items()})
    entropies = {kind: probe_entropies(model, p, device) for kind, p in probes.items()}
    model.train()
    sums = kit.all_reduce_sums(sums, device)
    per_set = {name: finalize({k.split("/", 1)[1]: v for k, v in sums.items()
                               if k.startswith(name + "/")}, name) for name in sets}
    s, nan = cfg.image_size, float("nan")
    metrics = {**per_set["val"], **per_set["ood"], "ood_ig_transfer": per_set["transfer"]["transfer_ig"],
               "content_ig": per_set["content"]["content_ig"] if "content" in per_set else nan,
               "val_ig_oracle": data.val.oracle_ig, "ood_ig_oracle": data.ood.oracle_ig,
               "content_ig_oracle": data.content.oracle_ig if data.content else nan}
    for kind, (h, _) in entropies.items():
        metrics[f"bias_entropy_{kind}"] = h
        metrics[f"bias_entropy_{kind}_frac"] = bias_entropy_frac(h, s, s)
    metrics["probe_entropy_neutral"] = entropies["neutral"][1]
    # KL(bias map || uniform) = log2(S²) - H: the bias left (0 = a uniform mean map)
    metrics["bias_kl_neutral"] = math.log2(s * s) - entropies["neutral"][0]
    return metrics


def neutral_probes(cfg: SaliencyKnobs, data: SaliencyData, n: int, stream: int) -> torch.Tensor:
    """n position-neutral probes (uint8); `stream` keeps training and measurement sets apart."""
    generated = cfg.mit1003_dir is None and cfg.cat2000_dir is None
    return neutral_probe_pool(data.train_images, n, cfg.image_size,
                              kit.mix_seed(cfg.data_seed, stream), generated=generated)


def setup(cfg: SaliencyKnobs, session: Session) -> Trial:
    device, world, s = session.device, session.world_size, cfg.image_size
    data = prepare_data(cfg, session)
    torch.manual_seed(cfg.seed)
    model = SaliencyModel(ModelConfig(backbone=cfg.backbone, width=cfg.width)).to(device)
    optimizer = configure_optimizers(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    pool = None
    if cfg.probes == "neutral" and cfg.lam != 0.0 and cfg.compute_every > 0:
        pool = neutral_probes(cfg, data, 256, stream=1)  # training probes, drawn per step
    reg = RegularizerConfig(lam=cfg.lam, compute_every=cfg.compute_every,
                            num_uniform_samples=cfg.num_probes,
                            uniform_intensities=list(cfg.uniform_intensities), seed=cfg.seed,
                            probes=cfg.probes, neutral_pool=pool)
    measure = {"uniform": fixed_probes(EVAL_PROBES, cfg.uniform_intensities, s, s),
               "neutral": neutral_probes(cfg, data, EVAL_PROBES, stream=2).float().div_(255)}
    train_input = data.train_input.to(device)

    def step(ddp_model: torch.nn.Module, batch: Any, step: int) -> StepResult:
        images, counts = batch
        images = images.to(device).float().div_(255)                         # (B, 3, S, S)
        counts = counts.to(device)                                            # (B, S, S)
        cb = train_input.expand(len(images), s, s)                            # (B, S, S)
        # DDP: the NLL is normalized by the global batch's fixation count (regularizer.py)
        total = kit.all_reduce_sums({"n": float(counts.sum())}, device)["n"] if world > 1 else None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp):
            out = training_losses(ddp_model, images, cb, counts, step=step, reg=reg,
                                  fixation_total=total, world_size=world)
        return StepResult(out["loss"], {"train_nll": (float(out["nll_sum"]), float(out["n_fix"]))},
                          out["probed"])

    return Trial(model, optimizer, TensorDataset(data.train_images, data.train_counts), step,
                 evaluate=lambda m, sess: epoch_metrics(m, data, measure, cfg, sess))


# Knob overrides for seconds-long CPU runs (sweeps' --smoke and this module's CLI). Sizes only:
# the regularizer knobs stay whatever the space searches or fixes.
SMOKE = {"epochs": 2, "num_images": 40, "ood_images": 12, "image_size": 32, "batch_size": 8,
         "num_probes": 4, "width": 8}

WORKLOAD = kit.make_workload(name="saliency", knobs=SaliencyKnobs, metrics=METRICS, setup=setup,
                             smoke=SMOKE, check=check, input_errors=(DataError,),
                             data_seed_knob="data_seed", metric_docs=METRIC_DOCS)
train = WORKLOAD.train


def main(argv: list[str] | None = None) -> int:
    return cli_main(WORKLOAD, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
