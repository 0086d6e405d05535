"""TENLM: a byte-level language model built from TEN (or HTEN) blocks.

    bytes (B, T) -> embedding -> n_layers × TENBlock -> LayerNorm -> tied head -> logits (B, T, V)

No positional embedding: the eigenstate recurrence is ordered by construction.

Losses are returned by name. `energy_loss` is the mean over batch, time and layers of the
relative energy E(t) = mean_k |c_k(t)|² / P_k (each eigenstate's state power over its input
power, ten.py): unchanged by any β ↔ read-out rescaling, so its weight acts on the function, not
the parametrization. `loss = ce_loss + energy_reg_weight * energy_loss` is already weighted, so
callers must never add the energy term again.

`spectrum()` / `spectrum_summary()` describe the learned decays: |λ| = σ(α) per eigenstate and
the memory 1/(1−|λ|) in tokens (a step of an HTEN scale s spans s tokens).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ten_core.config import TENConfig
from ten_core.hten import HTENLayer
from ten_core.ten import TENBlock


class TENLM(nn.Module):
    def __init__(self, cfg: TENConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            TENBlock(cfg, HTENLayer(cfg) if cfg.use_hten else None) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # weight tying
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # GPT-2 init for the ordinary layers. Projections that write into the residual stream
        # (tagged `_residual`) get std / √(2·n_layers): each block adds two of them, so the
        # residual variance stays O(1) with depth. The eigen-parameters (α, ω, M, V) are not
        # nn.Linear / nn.Embedding and keep their own init (EigenstateCore.reset_parameters).
        if isinstance(module, nn.Linear):
            std = 0.02 / math.sqrt(2 * self.cfg.n_layers) if getattr(module, "_residual",
                                                                   False) else 0.02
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weights counted once

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None, *,
                reference: bool = False) -> dict[str, torch.Tensor]:
        """input_ids (B, T) -> {"logits" (B, T, V), "energy" (B, T), "energy_loss", and with
        targets also "ce_loss" and "loss"}.

        `targets` (B', T) with B' ≤ B: the losses cover only the first B' rows. Extra rows
        (the entropy regularizer's content-free probes, run in the same forward pass) are
        computed and returned in the logits but do not enter ce_loss or energy_loss.
        `reference=True` runs the sequential scan twin (tests only; slow).
        """
        x = self.drop(self.tok_emb(input_ids))  # (B, T, d)
        energies = []
        for block in self.blocks:
            x, e = block(x, reference=reference)  # (B, T, d), (B, T)
            energies.append(e)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        energy = torch.stack(energies).mean(dim=0)  # (B, T), mean over layers
        rows = targets.shape[0] if targets is not None else input_ids.shape[0]
        out = {"logits": logits, "energy": energy, "energy_loss": energy[:rows].mean()}
        if targets is not None:
            ce = F.cross_entropy(logits[:rows].float().flatten(0, 1), targets.flatten(),
                                 ignore_index=-1)
            out["ce_loss"] = ce
            out["loss"] = ce + self.cfg.energy_reg_weight * out["energy_loss"]
        return out

    def compute_loss(self, input_ids: torch.Tensor, targets: torch.Tensor,
                     return_dict: bool = True) -> dict[str, torch.Tensor] | torch.Tensor:
        """{"loss", "ce_loss", "energy_loss", "logits", "energy"}, or just the loss tensor.

        Under DistributedDataParallel call the wrapper (`ddp_model(input_ids, targets)`):
        going around it through `.module.compute_loss` skips the gradient all-reduce.
        """
        out = self(input_ids, targets)
        return out if return_dict else out["loss"]

    def configure_optimizers(self, *, lr: float, weight_decay: float,
                             betas: tuple[float, float] = (0.9, 0.95),
                             eps: float = 1e-8) -> torch.optim.AdamW:
        """AdamW with three groups: matrices decay; biases / norms / mixing logits do not; the
        eigenvalue parameters (α, ω, tagged `_no_weight_decay`) get their own group, never
        decayed — decay would drag every |λ| to σ(0) = 1/2 and every frequency to 0."""
        decay, no_decay, eigen = [], [], []
        for p in self.parameters():  # de-duplicated, so the tied embedding appears once
            if not p.requires_grad:
                continue
            if getattr(p, "_no_weight_decay", False):
                eigen.append(p)
            elif p.dim() >= 2:
                decay.append(p)
            else:
                no_decay.append(p)
        groups = [dict(params=decay, weight_decay=weight_decay, name="decay"),
                  dict(params=no_decay, weight_decay=0.0, name="no_decay"),
                  dict(params=eigen, weight_decay=0.0, name="eigenvalues")]
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)

    # ---- recurrent generation ------------------------------------------------------------------
    def init_state(self, batch_size: int, device: torch.device | None = None) -> list:
        return [block.init_state(batch_size, device) for block in self.blocks]

    def step(self, tokens: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        """One byte per sequence: tokens (B,) -> logits (B, V), new state. Matches forward()."""
        x = self.tok_emb(tokens)  # (B, d)
        new_state = []
        for block, st in zip(self.blocks, state):
            x, _, st = block.step(x, st)
            new_state.append(st)
        return self.lm_head(self.ln_f(x)), new_state

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """prompt (B, T0) -> (B, T0 + max_new_tokens), sampling in O(1) memory per token."""
        state = self.init_state(prompt.shape[0], prompt.device)
        for t in range(prompt.shape[1]):
            logits, state = self.step(prompt[:, t], state)
        out = [prompt]
        for _ in range(max_new_tokens):
            probs = torch.softmax(logits.float() / max(temperature, 1e-6), dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
            out.append(nxt)
            logits, state = self.step(nxt[:, 0], state)
        return torch.cat(out, dim=1)


QUANTILES = (0.1, 0.5, 0.9)


@torch.no_grad()
def spectrum(model: TENLM) -> dict[int, torch.Tensor]:
    """{scale s: the decay logits α of every eigenstate of that scale, over all layers} (fp64);
    |λ| = σ(α) is the learned decay without the ±0.1 input selectivity. A TEN has scale 1 only."""
    out: dict[int, list[torch.Tensor]] = {}
    for block in model.blocks:
        mixer = block.mixer
        hten = isinstance(mixer, HTENLayer)
        pairs = zip(mixer.scales, mixer.cores) if hten else [(1, mixer.core)]
        for s, core in pairs:
            out.setdefault(s, []).append(core.alpha.detach().double().cpu())
    return {s: torch.cat(a) for s, a in sorted(out.items())}


@torch.no_grad()
def spectrum_summary(model: TENLM) -> dict[str, float]:
    """Quantiles p10 / p50 / p90 over all eigenstates of |λ| = σ(α) (`lambda_abs_pNN`) and of the
    memory in tokens s/(1−|λ|) = s·(1 + e^α) (`memory_pNN`); with HTEN also per scale s
    (`memory_pNN_s{s}`)."""
    out: dict[str, float] = {}
    lams, mems = [], []
    for s, alpha in spectrum(model).items():
        mem = s * (1.0 + alpha.clamp(max=700.0).exp())  # 1/(1 − σ(α)) = 1 + e^α, exact
        lams.append(torch.sigmoid(alpha))
        mems.append(mem)
        if model.cfg.use_hten:
            for q in QUANTILES:
                out[f"memory_p{round(100 * q):02d}_s{s}"] = float(torch.quantile(mem, q))
    lam, mem = torch.cat(lams), torch.cat(mems)
    for q in QUANTILES:
        out[f"lambda_abs_p{round(100 * q):02d}"] = float(torch.quantile(lam, q))
        out[f"memory_p{round(100 * q):02d}"] = float(torch.quantile(mem, q))
    return out


def count_parameters(cfg: TENConfig) -> int:
    """Parameters of TENLM(cfg), built on the meta device: no memory is allocated."""
    with torch.device("meta"):
        return TENLM(cfg).num_params()
