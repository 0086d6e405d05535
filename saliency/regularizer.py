"""The implicit-bias entropy regularizer and the training loss that carries it.

A saliency model's *implicit spatial bias* is what it predicts for input without positional
information, given a *uniform* center bias. Two probe kinds:

* `uniform`: gray images (intensities from `uniform_intensities`) — cheap, but a trainable
  backbone can tell them from natural images, so their entropy can be maximized without touching
  the positional bias that acts on real content (measured: gray-probe entropy → 0.9999 of the
  maximum while the entropy on position-neutral probes did not move);
* `neutral`: position-neutral content (images whose objects are placed uniformly, or
  patch-shuffled training images) from a pool the caller supplies.

The bias map is the mean predicted density over the probes (mixed in probability space by
`regularizers.entropy.mixture_log_density`); `H` is its Shannon entropy in bits. On optimizer
steps where `probe_due(step, compute_every, lambda)` holds, the loss is

    loss = NLL - lambda * compute_every * H          (NLL in bits per fixation)

so `lambda` is the regularization weight *per optimizer step*: the same lambda spends the same
total weight whatever compute_every is (with compute_every = 5 each application weighs 5·lambda).
That makes lambda comparable across compute_every for SGD, not exactly under Adam, whose
second-moment estimate grows with the rarer, larger gradients: a parameter driven by H alone
moved 0.168 / 0.123 / 0.109 over 192 steps at compute_every 1 / 2 / 3 (same lambda). Compare
lambdas at equal compute_every.

Probes are concatenated to the data batch and go through the same forward pass, in whatever
mode the model is in. Their randomness comes from a generator seeded by (seed, step) — never by
rank, so every DDP rank regularizes the same probes — and never from the global RNG: with
lambda = 0 or compute_every = 0 no probe is built and the run is bit-for-bit the baseline.

DDP: pass `fixation_total` (the global batch's fixation count) and `world_size`; each rank's
NLL term is then world_size · Σ_rank / total, so DDP's gradient average equals the gradient of
the one-process objective on the same global batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from regularizers.entropy import bias_entropy_bits, entropy_bits, probe_due

LOG2E = 1.0 / math.log(2.0)


PROBE_KINDS = ("uniform", "neutral")


@dataclass
class RegularizerConfig:
    lam: float = 0.0               # weight per optimizer step (see the module doc)
    compute_every: int = 50
    num_uniform_samples: int = 16  # probes per application (either kind)
    uniform_intensities: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])
    seed: int = 0
    probes: str = "uniform"        # "uniform" | "neutral"
    neutral_pool: torch.Tensor | None = None  # (P, 3, H, W) uint8 position-neutral images

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
        if self.probes not in PROBE_KINDS:
            raise ValueError(f"`probes` must be one of {PROBE_KINDS} (got {self.probes!r})")
        if self.probes == "neutral" and self.neutral_pool is None and probe_due(
                0, self.compute_every, self.lam):
            raise ValueError("`probes='neutral'` needs a `neutral_pool` of images")

    @property
    def weight(self) -> float:
        """The weight of H on a regularized step: lambda · compute_every."""
        return self.lam * self.compute_every


def probe_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator private to (seed, step); the global RNG is never touched."""
    state = np.random.SeedSequence([seed, step]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def training_probes(reg: RegularizerConfig, step: int, height: int,
                    width: int) -> torch.Tensor:
    """The probes (n, 3, H, W) in [0, 1] of optimizer step `step`: the same on every rank."""
    g = probe_generator(reg.seed, step)
    if reg.probes == "uniform":
        return uniform_probes(reg.num_uniform_samples, reg.uniform_intensities, height, width, g)
    pool = reg.neutral_pool
    idx = torch.randint(pool.shape[0], (reg.num_uniform_samples,), generator=g)    # (n,)
    return pool[idx].float().div_(255)                                             # (n, 3, H, W)


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
                    fixation_total: torch.Tensor | float | None = None,
                    world_size: int = 1) -> dict:
    """One forward pass (data + probes when due) → losses by name.

    images (B, 3, H, W), centerbias (B, H, W) log-density, counts (B, H, W) fixations per pixel.
    Returns `loss` (weighted total), `nll_loss` (bits/fixation of the global objective),
    `entropy` (bits, unweighted; None when no probes ran), `nll_sum` (bits, detached), `n_fix`,
    `probed`.
    """
    b, _, h, w = images.shape
    due = probe_due(step, reg.compute_every, reg.lam)
    entropy = None
    if due:
        probes = training_probes(reg, step, h, w).to(images.device)
        cb = uniform_centerbias(reg.num_uniform_samples, h, w, images.device)
        log_p = model(torch.cat([images, probes]), torch.cat([centerbias, cb]))  # (B+n, H, W)
        entropy = bias_entropy(log_p[b:])
        log_p = log_p[:b]                                                       # (B, H, W)
    else:
        log_p = model(images, centerbias)                                       # (B, H, W)
    n_fix = counts.sum()
    total = n_fix if fixation_total is None else fixation_total
    nll_sum = -(counts * log_p).sum() * LOG2E
    nll = nll_sum / total
    if world_size != 1:  # DDP averages gradients over ranks (see the module doc)
        nll = nll * world_size
    loss = nll - reg.weight * entropy if due else nll
    return {"loss": loss, "nll_loss": nll, "entropy": entropy, "nll_sum": nll_sum.detach(),
            "n_fix": n_fix.detach(), "probed": due}


def patch_shuffled(images: torch.Tensor, n: int, grid: int, seed: int) -> torch.Tensor:
    """n position-neutral probes (n, 3, S, S) uint8 from real images (N, 3, S, S): each probe is
    one image cut into grid×grid patches put back in a random order — its content stays, where
    things are in the frame does not (no fixations are used)."""
    g = torch.Generator().manual_seed(seed)
    _, c, h, w = images.shape
    ph, pw = h // grid, w // grid
    src = images[torch.randint(images.shape[0], (n,), generator=g), :, :ph * grid, :pw * grid]
    patches = src.reshape(n, c, grid, ph, grid, pw).permute(0, 2, 4, 1, 3, 5)  # (n, g, g, c, ph, pw)
    patches = patches.reshape(n, grid * grid, c, ph, pw)
    order = torch.argsort(torch.rand(n, grid * grid, generator=g), dim=1)       # (n, g²)
    patches = patches[torch.arange(n)[:, None], order]
    out = patches.reshape(n, grid, grid, c, ph, pw).permute(0, 3, 1, 4, 2, 5)
    out = out.reshape(n, c, ph * grid, pw * grid)
    if out.shape[-2:] != (h, w):  # sides not divisible by grid: pad with the mean intensity
        full = torch.full((n, c, h, w), int(images.float().mean()), dtype=images.dtype)
        full[..., :ph * grid, :pw * grid] = out
        out = full
    return out.contiguous()


def per_probe_entropy(probe_log_density: torch.Tensor) -> torch.Tensor:
    """Mean entropy (bits) of the individual probe maps (n, H, W) → (). Beside the mixture
    entropy it tells a flat bias map apart from probe maps peaked in different places."""
    return entropy_bits(probe_log_density.flatten(1).float()).mean()
