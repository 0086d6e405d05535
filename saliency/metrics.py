"""Saliency metrics as plain functions over arrays or tensors.

Conventions (Kümmerer, Wallis & Bethge 2015, "Information-theoretic model comparison unifies
saliency metrics", PNAS; and the MIT/Tübingen saliency benchmark code):

* A probabilistic model predicts a **normalized log-density over pixels** `log_density` (H, W):
  `logsumexp(log_density) == 0` (natural log). Fixations are integer pixel coordinates
  `ys` (rows) and `xs` (columns) at the resolution of the map; a pixel fixated k times counts
  k times everywhere except in AUC (see `auc_judd`).
* **LL** (bits/fixation, relative to a uniform model over the N pixels):
  `mean_f log2 p(x_f) + log2 N`. A uniform model scores 0, a perfect one log2 N.
* **IG** (bits/fixation over a baseline, normally the center bias):
  `mean_f [log2 p(x_f) - log2 p_baseline(x_f)]`. The baseline scores 0 by definition.
* **NSS**: the saliency map standardized to zero mean and unit standard deviation (sample std,
  ddof=1, as MATLAB's `std` in the MIT benchmark code), averaged over fixations. For a
  probabilistic model the saliency map is the *density* `exp(log_density)` (Kümmerer et al.
  2018, "Saliency benchmarking made easy": the density is the NSS-optimal map).
* **AUC-Judd** (Judd et al. 2009; MIT benchmark `AUC_Judd.m`): fixated pixels are the *unique*
  fixated pixels (the benchmark reads a binary fixation map). Thresholds are the saliency
  values at the fixated pixels; at threshold t, TPR = #fixated pixels with s >= t / #fixated,
  FPR = #non-fixated pixels with s >= t / #non-fixated; the ROC (0,0) → thresholds
  (descending) → (1,1) is integrated with the trapezoid rule. With distinct saliency values
  this is exactly Judd's `tp(i) = i / Nfix`; ties are resolved by counting every pixel at or
  above the threshold (Judd's code adds 1e-7 random jitter instead, which makes it random).
  AUC is invariant to monotone transforms, so the log-density can be passed directly.

Dataset aggregation: LL, IG and NSS are means over **all fixations** of the set (bits per
fixation, as in Kümmerer et al.); AUC is the mean over **images**. `metric_sums` returns the
partial sums so that distributed evaluation can add them over ranks before dividing.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch

LOG2E = 1.0 / math.log(2.0)
_NORM_TOL = 1e-3  # |logsumexp| above this means the caller passed an unnormalized map


def _as_tensor(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).double()


def _coords(ys, xs, shape) -> tuple[torch.Tensor, torch.Tensor]:
    ys = torch.as_tensor(np.asarray(ys) if not isinstance(ys, torch.Tensor) else ys).long()
    xs = torch.as_tensor(np.asarray(xs) if not isinstance(xs, torch.Tensor) else xs).long()
    if ys.shape != xs.shape or ys.ndim != 1:
        raise ValueError(f"ys and xs must be 1-D of equal length (got {tuple(ys.shape)}, "
                         f"{tuple(xs.shape)})")
    if ys.numel() == 0:
        raise ValueError("no fixations: a metric over zero fixations is undefined")
    h, w = shape
    if ys.min() < 0 or ys.max() >= h or xs.min() < 0 or xs.max() >= w:
        raise ValueError(f"fixation coordinates outside the {h}x{w} map")
    return ys, xs


def _check_normalized(log_density: torch.Tensor, what: str) -> None:
    total = torch.logsumexp(log_density.flatten(), 0).item()
    if not abs(total) <= _NORM_TOL:
        raise ValueError(f"{what} must be a normalized log-density (logsumexp == 0), "
                         f"got logsumexp = {total:.4g}")


def log_likelihood(log_density, ys, xs) -> float:
    """LL in bits/fixation relative to a uniform model: mean log2 p(x_f) + log2(H*W)."""
    ld = _as_tensor(log_density)
    _check_normalized(ld, "log_density")
    ys, xs = _coords(ys, xs, ld.shape)
    return float(ld[ys, xs].mean() * LOG2E + math.log2(ld.numel()))


def information_gain(log_density, baseline_log_density, ys, xs) -> float:
    """IG in bits/fixation over the baseline: mean [log2 p(x_f) - log2 p_base(x_f)]."""
    ld, base = _as_tensor(log_density), _as_tensor(baseline_log_density)
    if ld.shape != base.shape:
        raise ValueError(f"model and baseline maps differ in shape ({tuple(ld.shape)} vs "
                         f"{tuple(base.shape)})")
    _check_normalized(ld, "log_density")
    _check_normalized(base, "baseline_log_density")
    ys, xs = _coords(ys, xs, ld.shape)
    return float((ld[ys, xs] - base[ys, xs]).mean() * LOG2E)


def nss(saliency, ys, xs) -> float:
    """NSS: mean over fixations of the map standardized with its mean and sample std (ddof=1).

    For a probabilistic model pass the density `exp(log_density)`.
    """
    s = _as_tensor(saliency)
    ys, xs = _coords(ys, xs, s.shape)
    std = s.std(unbiased=True)
    if std == 0:
        return 0.0  # a constant map carries no information; MATLAB would give NaN
    z = (s - s.mean()) / std
    return float(z[ys, xs].mean())


def auc_judd(saliency, ys, xs) -> float:
    """AUC-Judd over the unique fixated pixels (see the module docstring for ties)."""
    s = _as_tensor(saliency).numpy()
    ys, xs = _coords(ys, xs, s.shape)
    fixated = np.zeros(s.shape, dtype=bool)
    fixated[ys.numpy(), xs.numpy()] = True
    return _auc_judd_mask(s.ravel(), fixated.ravel())


def _auc_judd_mask(s: np.ndarray, fixated: np.ndarray) -> float:
    n_fix, n_pix = int(fixated.sum()), s.size
    if n_fix == 0:
        raise ValueError("AUC-Judd needs at least one fixated pixel")
    if n_fix == n_pix:
        raise ValueError("AUC-Judd is undefined when every pixel is fixated (no negatives)")
    thresholds = np.unique(s[fixated])[::-1]                       # descending, distinct
    fix_sorted, all_sorted = np.sort(s[fixated]), np.sort(s)
    fix_ge = n_fix - np.searchsorted(fix_sorted, thresholds, side="left")
    all_ge = n_pix - np.searchsorted(all_sorted, thresholds, side="left")
    tpr = np.concatenate([[0.0], fix_ge / n_fix, [1.0]])
    fpr = np.concatenate([[0.0], (all_ge - fix_ge) / (n_pix - n_fix), [1.0]])
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2.0))


# --------------------------------------------------------------------------------------------
# Batched partial sums (what training evaluation uses; equal to the per-image functions above)
# --------------------------------------------------------------------------------------------
def metric_sums(log_density: torch.Tensor, baseline_log_density: torch.Tensor,
                counts: torch.Tensor) -> dict[str, float]:
    """Partial sums for a batch: log_density, baseline (B, H, W) normalized; counts (B, H, W).

    `counts[b, y, x]` is how many fixations image b has at pixel (y, x). Returns
    ll_sum/ig_sum/nss_sum (over fixations, bits for ll/ig), n_fix, auc_sum (over images), n_img.
    Images without fixations are skipped.
    """
    ld = log_density.detach().double().flatten(1)                 # (B, N)
    base = baseline_log_density.detach().double().flatten(1)      # (B, N)
    c = counts.detach().double().flatten(1)                       # (B, N)
    keep = c.sum(1) > 0
    ld, base, c = ld[keep], base[keep], c[keep]
    n = ld.shape[1]
    p = ld.exp()
    z = (p - p.mean(1, keepdim=True)) / p.std(1, keepdim=True).clamp_min(1e-300)  # (B, N)
    ll = ((ld * LOG2E + math.log2(n)) * c).sum()
    ig = ((ld - base) * LOG2E * c).sum()
    nss_sum = (z * c).sum()
    ld_np, c_np = ld.cpu().numpy(), c.cpu().numpy()
    auc = sum(_auc_judd_mask(ld_np[i], c_np[i] > 0) for i in range(ld_np.shape[0]))
    return {"ll_sum": float(ll), "ig_sum": float(ig), "nss_sum": float(nss_sum),
            "n_fix": float(c.sum()), "auc_sum": float(auc), "n_img": float(ld.shape[0])}


SUM_KEYS = ("ll_sum", "ig_sum", "nss_sum", "n_fix", "auc_sum", "n_img")


def empty_sums() -> dict[str, float]:
    """Zeroed partial sums: every rank must all-reduce the same keys, even with no images."""
    return {k: 0.0 for k in SUM_KEYS}


def finalize(sums: Mapping[str, float], prefix: str) -> dict[str, float]:
    """{prefix_ig, prefix_ll, prefix_nss, prefix_auc} from (possibly all-reduced) sums."""
    nf, ni = sums.get("n_fix", 0.0), sums.get("n_img", 0.0)
    nan = float("nan")
    return {f"{prefix}_ig": sums["ig_sum"] / nf if nf else nan,
            f"{prefix}_ll": sums["ll_sum"] / nf if nf else nan,
            f"{prefix}_nss": sums["nss_sum"] / nf if nf else nan,
            f"{prefix}_auc": sums["auc_sum"] / ni if ni else nan}


def add_sums(total: dict[str, float], part: Mapping[str, float]) -> dict[str, float]:
    for k, v in part.items():
        total[k] = total.get(k, 0.0) + v
    return total
