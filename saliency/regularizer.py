"""The uniform-image entropy regularizer and the training loss that carries it.

A saliency model's *implicit spatial bias* is what it predicts for content-free input: uniform
gray images with a *uniform* center bias. The bias map is the mean predicted density over
`num_uniform_samples` such probes (mixed in probability space by
`regularizers.entropy.mixture_log_density`); `H` is its Shannon entropy in bits. On optimizer steps
where `regularizers.entropy.probe_due(step, compute_every, lambda)` holds, the loss is

    loss = NLL - lambda * H          (both in bits; NLL per fixation)

and otherwise just NLL. Probes are concatenated to the data batch and go through the *same*
forward pass, in whatever mode the model is in (train mode during training — switching to
eval inside the regularizer would measure a different function than the one being trained).
The norms of the default model are per sample, so probes cannot change the data predictions.

Probe intensities come from a generator seeded by (seed, rank, step), never the global RNG:
with lambda = 0 or compute_every = 0 no probe is built and the run is bit-for-bit the baseline.
Each rank draws its own `num_uniform_samples` probes; DDP averages the per-rank gradients.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from regularizers.entropy import bias_entropy_bits, probe_due

LOG2E = 1.0 / math.log(2.0)


@dataclass
class RegularizerConfig:
    lam: float = 0.0
    compute_every: int = 50
    num_uniform_samples: int = 16
    uniform_intensities: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])
    seed: int = 0

    def __post_init__(self):
        if self.compute_every < 0:
            raise ValueError(f"`compute_every >= 0` must hold (got {self.compute_every})")
        if self.num_uniform_samples < 1:
            raise ValueError(f"`num_uniform_samples >= 1` must hold "
                             f"(got {self.num_uniform_samples})")
        if not self.uniform_intensities or not all(
                0.0 <= v <= 1.0 for v in self.uniform_intensities):
            raise ValueError(f"`uniform_intensities` must be a non-empty list of values in "
                             f"[0, 1] (got {self.uniform_intensities})")


def probe_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """A CPU generator private to (seed, rank, step); the global RNG is never touched."""
    state = np.random.SeedSequence([seed, rank, step]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def uniform_probes(n: int, intensities: Sequence[float], height: int, width: int,
                   generator: torch.Generator) -> torch.Tensor:
    """n gray images (n, 3, H, W), each one intensity drawn uniformly from `intensities`."""
    idx = torch.randint(len(intensities), (n,), generator=generator)             # (n,)
    values = torch.tensor(list(intensities), dtype=torch.float32)[idx]           # (n,)
    return values.view(n, 1, 1, 1).expand(n, 3, height, width).contiguous()     # (n, 3, H, W)


def fixed_probes(n: int, intensities: Sequence[float], height: int,
                 width: int) -> torch.Tensor:
    """Deterministic probes for *measuring* the bias: intensities cycled in order."""
    values = torch.tensor([intensities[i % len(intensities)] for i in range(n)],
                          dtype=torch.float32)
    return values.view(n, 1, 1, 1).expand(n, 3, height, width).contiguous()     # (n, 3, H, W)


def uniform_centerbias(n: int, height: int, width: int,
                       device: torch.device | None = None) -> torch.Tensor:
    """A uniform log-density (n, H, W): every pixel -log(H*W)."""
    return torch.full((n, height, width), -math.log(height * width), device=device)


def bias_entropy(probe_log_density: torch.Tensor) -> torch.Tensor:
    """Entropy in bits of the mean probe density: (n, H, W) normalized log-densities → ()."""
    return bias_entropy_bits(probe_log_density.flatten(1))


def bias_entropy_frac(entropy_bits: float, height: int, width: int) -> float:
    """H / log2(H*W): 1 for a uniform bias map, 0 for a single pixel."""
    return float(entropy_bits) / math.log2(height * width)


def training_losses(model: torch.nn.Module, images: torch.Tensor, centerbias: torch.Tensor,
                    counts: torch.Tensor, *, step: int, reg: RegularizerConfig,
                    rank: int = 0) -> dict:
    """One forward pass (data + probes when due) → losses by name.

    images (B, 3, H, W), centerbias (B, H, W) log-density, counts (B, H, W) fixations per pixel.
    Returns `loss` (weighted total), `nll_loss` (bits/fixation on this batch), `entropy`
    (bits, unweighted; None when no probes ran), `nll_sum` (bits, detached), `n_fix`, `probed`.
    """
    b, _, h, w = images.shape
    due = probe_due(step, reg.compute_every, reg.lam)
    entropy = None
    if due:
        probes = uniform_probes(reg.num_uniform_samples, reg.uniform_intensities, h, w,
                                probe_generator(reg.seed, rank, step)).to(images.device)
        cb = uniform_centerbias(reg.num_uniform_samples, h, w, images.device)
        log_p = model(torch.cat([images, probes]), torch.cat([centerbias, cb]))  # (B+n, H, W)
        entropy = bias_entropy(log_p[b:])
        log_p = log_p[:b]                                                       # (B, H, W)
    else:
        log_p = model(images, centerbias)                                       # (B, H, W)
    n_fix = counts.sum()
    nll_sum = -(counts * log_p).sum() * LOG2E
    nll = nll_sum / n_fix
    loss = nll - reg.lam * entropy if due else nll
    return {"loss": loss, "nll_loss": nll, "entropy": entropy, "nll_sum": nll_sum.detach(),
            "n_fix": n_fix.detach(), "probed": due}
