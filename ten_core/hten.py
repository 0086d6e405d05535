"""Hierarchical TEN: eigenstates at several time scales, combined causally.

Each scale s in S gets K/|S| eigenstates and runs on the sequence average-pooled over blocks of
s tokens, so one of its steps spans s tokens and a decay |λ| per step is a memory s times longer
in tokens. The per-scale read-outs are brought back to length T and mixed with learned softmax
weights, then gated and projected like a TEN layer.

Causality is the whole difficulty. Pooled block j averages tokens [j·s, (j+1)·s − 1], so its
output may only feed positions t ≥ (j+1)·s − 1, the block's last token. Repeating block j over
its own positions [j·s, (j+1)·s − 1] (the obvious upsampling) would hand position j·s a summary
of s − 1 future tokens: the model would "predict" bytes it has already been shown and report a
fake-good loss. `causal_upsample` therefore repeats each block s times and shifts right by
s − 1: position t reads block ⌊(t+1)/s⌋ − 1, the latest block that has ended at or before t,
and positions before the first complete block read zeros.

A trailing partial block (T not divisible by s) could only feed positions ≥ T, which do not
exist, so it is simply not computed — equivalent to padding the end and discarding it.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ten_core.config import TENConfig
from ten_core.ten import EigenstateCore


def pool(x: torch.Tensor, s: int) -> torch.Tensor:
    """Mean over complete blocks of s tokens: (B, T, d) -> (B, ⌊T/s⌋, d)."""
    B, T, d = x.shape
    n = T // s
    return x[:, :n * s].reshape(B, n, s, d).mean(dim=2)


def causal_upsample(y: torch.Tensor, s: int, T: int) -> torch.Tensor:
    """Block outputs (B, n, d) -> (B, T, d) where position t sees block ⌊(t+1)/s⌋ − 1 (or 0).

    Requires n = ⌊T/s⌋; then (s − 1) + n·s ≥ T, so the shifted sequence covers all T positions.
    """
    B, n, d = y.shape
    rep = y.unsqueeze(2).expand(B, n, s, d).reshape(B, n * s, d)  # block j on [js, js+s−1]
    return F.pad(rep, (0, 0, s - 1, 0))[:, :T]  # shift right by s − 1: block j on [js+s−1, …]


class HTENLayer(nn.Module):
    """x (B, T, d) -> y (B, T, d), energy (B, T): the relative energy (ten.py) of the
    eigenstates feeding t, averaged over scales (each holds K/|S|: a mean over all K)."""

    def __init__(self, cfg: TENConfig):
        super().__init__()
        d, k = cfg.d_model, cfg.eigen_per_scale
        self.scales = tuple(cfg.hten_scales)
        lo, hi = cfg.memory_range  # tokens; a step of scale s spans s tokens
        self.cores = nn.ModuleList(
            EigenstateCore(d, k, cfg.n_heads, chunk_size=cfg.chunk_size,
                           scan_method=cfg.scan_method, resonance_eps=cfg.resonance_eps,
                           alpha_init=cfg.alpha_init, decay_init=cfg.decay_init,
                           memory_range=(lo, max(lo, hi / s)))
            for s in self.scales)
        # Equal mixing weights at init: no scale is preferred before the data says so.
        self.scale_logits = nn.Parameter(torch.zeros(len(self.scales)))
        self.gate = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.out_proj._residual = True

    def forward(self, x: torch.Tensor, *, reference: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, d = x.shape
        weights = torch.softmax(self.scale_logits.float(), dim=0)  # (S,)
        mix = x.new_zeros(B, T, d)
        energy = x.new_zeros(B, T, dtype=torch.float32)
        for w, s, core in zip(weights, self.scales, self.cores):
            if T // s == 0:  # not one complete block yet: this scale feeds nothing
                continue
            r, e, _ = core(pool(x, s), reference=reference)  # (B, T//s, d), (B, T//s)
            mix = mix + w.to(r.dtype) * causal_upsample(r, s, T)  # (B, T, d)
            energy = energy + causal_upsample(e.unsqueeze(-1), s, T).squeeze(-1)  # (B, T)
        return self.out_proj(mix * F.silu(self.gate(x))), energy / len(self.scales)

    # ---- one token at a time (generation) -----------------------------------------------------
    # Per scale: the eigenstate c, the running sum of the current block's inputs and how many
    # tokens it holds, and the read-out / energy of the last completed block (what t may see).
    def init_state(self, batch_size: int, device: torch.device | None = None) -> list[dict]:
        d = self.gate.in_features
        return [dict(c=core.init_state(batch_size, device),
                     acc=torch.zeros(batch_size, d, device=device), n=0,
                     r=torch.zeros(batch_size, d, device=device),
                     e=torch.zeros(batch_size, device=device))
                for core in self.cores]

    def step(self, x: torch.Tensor, state: list[dict]
             ) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
        """x (B, d) -> y (B, d), raw energy Σ|c|² over all scales (B,), new state."""
        weights = torch.softmax(self.scale_logits.float(), dim=0)
        mix, energy, new = torch.zeros_like(x), torch.zeros_like(x[:, 0], dtype=torch.float32), []
        for w, s, core, st in zip(weights, self.scales, self.cores, state):
            acc, n, c, r, e = st["acc"] + x, st["n"] + 1, st["c"], st["r"], st["e"]
            if n == s:  # this token closes a block: the block may feed this very position
                r, e, c = core.step(acc / s, c)  # (B, d), (B,), (B, K/|S|)
                acc, n = torch.zeros_like(acc), 0
            new.append(dict(c=c, acc=acc, n=n, r=r, e=e))
            mix = mix + w.to(r.dtype) * r
            energy = energy + e
        return self.out_proj(mix * F.silu(self.gate(x))), energy, new
