"""The saliency workload's data as tensors: MIT1003-layout train/val split, a CAT2000-layout
out-of-domain set, and their center biases (plain PyTorch/numpy; see datasets.py for files)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from saliency import datasets as D


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


def load_data(mit_dir: str, cat_dir: str, image_size: int, *, split_seed: int, skip_bad: bool,
              cb_bandwidth: float, cb_uniform: float) -> SaliencyData:
    """Read both layouts at image_size², split MIT1003 902/101-proportionally by split_seed."""
    s = image_size
    mit = D.load_mit1003(mit_dir, s, skip_bad=skip_bad)
    cat = D.load_cat2000(cat_dir, s, skip_bad=skip_bad)
    train_idx, val_idx = D.split_indices(len(mit), split_seed)
    train, val = [mit[i] for i in train_idx], [mit[i] for i in val_idx]
    cb = D.center_bias(train, (s, s), bandwidth=cb_bandwidth, uniform_weight=cb_uniform)
    ood_base = D.leave_one_out_center_bias(cat, (s, s), bandwidth=cb_bandwidth,
                                           uniform_weight=cb_uniform)
    (ti, tc), (vi, vc), (oi, oc) = D.stack(train), D.stack(val), D.stack(cat)
    return SaliencyData(ti, tc, vi, vc, oi, oc, D.log_density_to_torch(cb),
                        D.log_density_to_torch(ood_base))
