"""The Temporal Eigenstate Network layer and block.

A TEN layer keeps K complex eigenstates per sequence. Each step the input x(t) projects to
amplitudes β_k(t), and every eigenstate decays and rotates by its own input-selective eigenvalue:

    c_k(t) = λ_k(t)·c_k(t−1) + β_k(t),    λ_k(t) = σ(α_k + Δα_k(t)) · exp(i(ω_k + Δω_k(t))),
    Δα, Δω = 0.1·tanh(W_sel x(t)),   β(t) = W_β x(t).

|σ(·)| < 1 for every real argument, so |λ| ≤ 1 whatever the input: the state cannot blow up
(√E(t) grows at most linearly in t; tests/ten_core/test_ten_properties.py). The states are
read out through learned eigenvectors V (complex, K × d) after a block-diagonal resonance
coupling R = I + ε·M per head, gated by the input, and projected back to d:

    y(t) = W_out( Re(Σ_k (R c(t))_k V_k) ⊙ silu(W_gate x(t)) ).

Energy. The raw state energy Σ_k |c_k(t)|² is not a property of the model's behaviour: scaling
β_k by s and V_k by 1/s leaves every output unchanged and multiplies it by s², so a penalty on it
can be met by moving scale from W_β into V (or into W_out). The energy returned beside the output
is therefore measured against each eigenstate's own input power, per sequence:

    E(t) = mean_k |c_k(t)|² / P_k,    P_k = mean_t' |β_k(t')|²  (over the sequence),

the power gain of eigenstate k's filter on its input — invariant to any (complex) rescaling of
β_k, so to every β ↔ read-out rescaling, and set by the spectrum and by how coherent the input
is over time: ≈ 1/(1−|λ|²) for uncorrelated input, up to ≈ 1/(1−|λ|)² for constant input.
Penalizing it shortens memories or decorrelates what they integrate; it changes the function.
`EigenstateCore.energy` (raw) remains for the stability bound, and the one-step API (which
cannot know the sequence's input power) returns the raw energy.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ten_core.config import TENConfig
from ten_core.scan import eigen_scan, eigen_scan_ref, eigen_step

SELECTIVITY = 0.1  # |Δα|, |Δω| ≤ 0.1: input can nudge, not override, the learned spectrum
TINY_POWER = 1e-30  # P_k floor: a row with β_k ≡ 0 has c_k ≡ 0 and relative energy 0


class EigenstateCore(nn.Module):
    """x (B, T, d) -> eigenstate read-out (B, T, d), energy (B, T), final state (B, K)."""

    def __init__(self, d_model: int, n_eigen: int, n_heads: int, *, chunk_size: int = 16,
                 scan_method: str = "unrolled", resonance_eps: float = 0.1,
                 alpha_init: tuple[float, float] = (-3.0, 0.0), decay_init: str = "paper",
                 memory_range: tuple[float, float] = (1.05, 128.0)):
        super().__init__()
        assert n_eigen % n_heads == 0, "validated by TENConfig"
        self.d_model, self.n_eigen, self.n_heads = d_model, n_eigen, n_heads
        self.chunk_size, self.scan_method, self.alpha_init = chunk_size, scan_method, alpha_init
        self.decay_init, self.memory_range = decay_init, memory_range  # memory_range in steps
        K, hk = n_eigen, n_eigen // n_heads
        # One projection, one GEMM: [β as (re, im) pairs (2K) | (Δα, Δω) pre-activations (2K)].
        # No bias: a constant β would drive every state without input, and a constant Δα, Δω is
        # already what α, ω are.
        self.in_proj = nn.Linear(d_model, 4 * K, bias=False)
        self.alpha = nn.Parameter(torch.empty(K))  # decay logits: |λ| = σ(α)
        self.omega = nn.Parameter(torch.empty(K))  # rotation per step, radians
        self.resonance = nn.Parameter(torch.empty(n_heads, hk, hk))  # M in R = I + ε·M
        self.eigvec = nn.Parameter(torch.empty(K, 2, d_model))  # V_k = eigvec[k,0] + i·eigvec[k,1]
        self.register_buffer("eye", torch.eye(hk), persistent=False)
        self.resonance_eps = resonance_eps
        # α, ω are the spectrum: weight decay would pull every |λ| towards σ(0) = 1/2 and every
        # frequency towards 0, so `TENLM.configure_optimizers` keeps them out of it.
        self.alpha._no_weight_decay = True
        self.omega._no_weight_decay = True
        self.reset_parameters()

    def reset_parameters(self) -> None:
        K = self.n_eigen
        with torch.no_grad():
            if self.decay_init == "long":
                # Memory τ = 1/(1−|λ|) = Σ_t |λ|^t, the total weight an input keeps, in steps,
                # log-uniform over memory_range (S4D / Mamba spread time-scales the same way):
                #   |λ| = σ(α) = 1 − 1/τ   ⇔   α = logit(1 − 1/τ) = ln(τ − 1).
                # (1.05, 128) gives α ∈ [−3.0, 4.84], |λ| ∈ [0.048, 0.992].
                lo, hi = (math.log(m) for m in self.memory_range)
                tau = torch.empty(K).uniform_(lo, hi).exp_()
                self.alpha.copy_(torch.log(tau - 1.0))
            else:
                # "paper": α ~ U(−3, 0), |λ| = σ(α) ∈ [0.047, 0.5] — the TEN paper's appendix: a
                # short memory (τ ≤ 2 steps) that AdamW (|Δα| ≲ lr per step) can only slowly grow.
                self.alpha.uniform_(*self.alpha_init)
            # Frequencies evenly spread over [0, 2π): the K eigenstates start as a Fourier-like
            # basis, each rotating at a distinct rate, so none is redundant at init.
            self.omega.copy_(torch.arange(K, dtype=torch.float32) * (2 * math.pi / K))
            # M ~ N(0, 1/hk): ε·M has spectral norm ≈ 2ε, a mild coupling around R = I.
            self.resonance.normal_(0.0, 1.0 / math.sqrt(self.resonance.shape[-1]))
            if not self.eigvec.is_meta:
                # QR-orthonormal eigenvectors: the (2K × d) read-out is an isometry on its row
                # space, so the read-out neither amplifies nor collapses eigenstates at init.
                nn.init.orthogonal_(self.eigvec.view(2 * K, self.d_model))

    def spectrum(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (..., d) -> β complex (..., K), log|λ| (..., K) ≤ 0, angle (..., K), all fp32."""
        K = self.n_eigen
        p = self.in_proj(x).float()  # (..., 4K)
        beta = torch.view_as_complex(p[..., :2 * K].unflatten(-1, (K, 2)))  # (..., K), a view
        d_alpha, d_omega = (SELECTIVITY * torch.tanh(p[..., 2 * K:])).chunk(2, dim=-1)
        log_mag = F.logsigmoid(self.alpha + d_alpha)  # (..., K): log σ(·) ≤ 0, so |λ| ≤ 1
        angle = self.omega + d_omega  # (..., K)
        return beta, log_mag, angle

    def readout(self, c: torch.Tensor) -> torch.Tensor:
        """c (..., K) complex -> Re((R c) · V) (..., d). R is folded into V: Re(Σ_k (Rc)_k V_k)
        = Re(Σ_j c_j (RᵀV)_j), so the coupling costs K·hk·d once, not per token."""
        H, hk = self.n_heads, self.n_eigen // self.n_heads
        R = self.eye + self.resonance_eps * self.resonance  # (H, hk, hk)
        v = torch.einsum("hij,hizd->hjzd", R, self.eigvec.view(H, hk, 2, self.d_model))
        # Re(c·V) = c_re·V_re − c_im·V_im, matched to view_as_real's (re, im) interleaving.
        w = (v * v.new_tensor([1.0, -1.0]).view(2, 1)).reshape(2 * self.n_eigen, self.d_model)
        cr = torch.view_as_real(c).flatten(-2)  # (..., 2K): re0, im0, re1, im1, ...
        return cr.to(w.dtype) @ w  # (..., d)

    @staticmethod
    def energy(c: torch.Tensor) -> torch.Tensor:
        """Raw E = Σ_k |c_k|²: (..., K) complex -> (...). Real view: |·| has no grad at 0."""
        return torch.view_as_real(c).square().sum(dim=(-1, -2))

    @staticmethod
    def relative_energy(c: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """mean_k |c_k(t)|² / P_k with P_k = mean_t |β_k(t)|²: (B, T, K) × 2 complex -> (B, T).
        Each row is normalized by its own input power (probe rows never touch data rows)."""
        power = torch.view_as_real(beta).square().sum(-1).mean(dim=1, keepdim=True)  # (B, 1, K)
        e = torch.view_as_real(c).square().sum(-1)  # (B, T, K)
        return (e / power.clamp_min(TINY_POWER)).mean(dim=-1)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None, *,
                reference: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.autocast(device_type=x.device.type, enabled=False):  # scan math in fp32
            beta, log_mag, angle = self.spectrum(x.float())  # (B, T, K) each
            if reference:  # the Python-loop twin, for tests and the benchmark
                c, last = eigen_scan_ref(beta, log_mag, angle, state)  # (B, T, K), (B, K)
            else:
                c, last = eigen_scan(beta, log_mag, angle, state, chunk_size=self.chunk_size,
                                     method=self.scan_method)
            energy = self.relative_energy(c, beta)  # (B, T)
        return self.readout(c).to(x.dtype), energy, last

    def step(self, x: torch.Tensor, state: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One token: x (B, d), state (B, K) -> read-out (B, d), raw energy (B,), state (B, K)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            c = eigen_step(*self.spectrum(x.float()), state)  # (B, K)
        return self.readout(c).to(x.dtype), self.energy(c), c

    def init_state(self, batch_size: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.zeros(batch_size, self.n_eigen, dtype=torch.complex64, device=device)


class TENLayer(nn.Module):
    """The token mixer: eigenstate core, input gate, output projection."""

    def __init__(self, cfg: TENConfig):
        super().__init__()
        d = cfg.d_model
        self.core = EigenstateCore(d, cfg.n_eigen, cfg.n_heads, chunk_size=cfg.chunk_size,
                                   scan_method=cfg.scan_method,
                                   resonance_eps=cfg.resonance_eps, alpha_init=cfg.alpha_init,
                                   decay_init=cfg.decay_init, memory_range=cfg.memory_range)
        self.gate = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.out_proj._residual = True  # scaled init, see TENLM._init_weights

    def forward(self, x: torch.Tensor, *, reference: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, d) -> y (B, T, d), energy (B, T)."""
        r, energy, _ = self.core(x, reference=reference)  # (B, T, d), (B, T)
        return self.out_proj(r * F.silu(self.gate(x))), energy

    def init_state(self, batch_size: int, device: torch.device | None = None) -> torch.Tensor:
        return self.core.init_state(batch_size, device)

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                   torch.Tensor]:
        """x (B, d) -> y (B, d), energy (B,), new state."""
        r, energy, state = self.core.step(x, state)
        return self.out_proj(r * F.silu(self.gate(x))), energy, state


class MLP(nn.Module):
    def __init__(self, cfg: TENConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model)
        self.proj = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model)
        self.proj._residual = True
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class TENBlock(nn.Module):
    """Pre-norm residual block: x + mixer(LN(x)), then x + MLP(LN(x)). The mixer is a TENLayer
    (default) or an HTENLayer; both return (y, energy) and share the one-step API."""

    def __init__(self, cfg: TENConfig, mixer: nn.Module | None = None):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model)
        self.mixer = mixer if mixer is not None else TENLayer(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, *, reference: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, d) -> x (B, T, d), energy (B, T)."""
        y, energy = self.mixer(self.ln_1(x), reference=reference)
        x = x + self.drop(y)
        return x + self.mlp(self.ln_2(x)), energy

    def init_state(self, batch_size: int, device: torch.device | None = None):
        return self.mixer.init_state(batch_size, device)

    def step(self, x: torch.Tensor, state):
        """x (B, d) -> x (B, d), energy (B,), new state."""
        y, energy, state = self.mixer.step(self.ln_1(x), state)
        x = x + self.drop(y)
        return x + self.mlp(self.ln_2(x)), energy, state
