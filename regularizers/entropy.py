"""Entropy of a model's implicit bias: one implementation for every model package.

A model's *bias* is what it predicts for content-free input (uniform images for saliency,
constant or uniformly random byte sequences for ten_lm). The bias map is the **mean predicted
density** over the probes — mixing happens in probability space, not by averaging
log-densities — and its Shannon entropy is measured in bits. Training maximizes it:
on probe batches the loss is `task_loss - lambda * H`.
"""
from __future__ import annotations

import math

import torch


def mixture_log_density(log_probs: torch.Tensor) -> torch.Tensor:
    """log of the mean of n normalized densities: (n, N) -> (N,) = logsumexp_n - log n."""
    n = log_probs.shape[0]
    return torch.logsumexp(log_probs, dim=0) - math.log(n)


def entropy_bits(log_probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in bits of normalized log-probabilities over the last dim: (..., N) -> (...).

    0·log 0 is taken as 0 (exp(-inf) * -inf would be NaN).
    """
    p = log_probs.exp()
    plogp = torch.where(p > 0, p * log_probs, torch.zeros_like(p))
    return -plogp.sum(dim=-1) / math.log(2.0)


def bias_entropy_bits(log_probs: torch.Tensor) -> torch.Tensor:
    """Entropy (bits) of the mean of the n probe densities in `log_probs` (n, N)."""
    return entropy_bits(mixture_log_density(log_probs.float()))


def probe_due(step: int, compute_every: int, lam: float) -> bool:
    """Whether optimizer step `step` (0-based, counted across epochs) carries the regularizer.

    lambda == 0 or compute_every == 0 is the baseline: no probes run at all, so the random
    streams and the arithmetic are exactly those of the unregularized run.
    """
    return lam != 0.0 and compute_every > 0 and step % compute_every == 0
