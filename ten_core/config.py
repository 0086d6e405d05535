"""Architecture config for TEN / HTEN language models, its presets and its validation.

Architecture only: optimizer, data and schedule knobs belong to the workload
(`workloads/ten_lm.py`). `energy_reg_weight` lives here because `compute_loss` returns the
weighted total (`loss = ce_loss + energy_reg_weight * energy_loss`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ten_core.scan import SCAN_METHODS

# How the decay logits α start (EigenstateCore.reset_parameters):
#   "paper"  α ~ U(alpha_init) = U(−3, 0): |λ| = σ(α) ∈ [0.047, 0.5], memories ≤ 2 steps
#   "long"   memories 1/(1−|λ|) log-uniform over `memory_range` tokens (S4D / Mamba style)
DECAY_INITS: tuple[str, ...] = ("paper", "long")

# Target sizes of the named presets, in parameters; tests/ten_core/test_ten_config.py checks that
# every preset lands within 10 % (counted on the meta device, nothing allocated).
PRESET_PARAMS: dict[str, int] = {
    "nano": 33_000_000,
    "micro": 85_000_000,
    "small": 180_000_000,
    "medium": 320_000_000,
    "large": 520_000_000,
    "xlarge": 1_200_000_000,
}


@dataclass
class TENConfig:
    vocab_size: int = 256          # byte-level
    d_model: int = 96              # residual width d
    n_layers: int = 2
    n_eigen: int = 48              # K complex eigenstates per layer (split over scales in HTEN)
    n_heads: int = 2               # resonance coupling is block-diagonal over heads
    mlp_ratio: int = 4
    dropout: float = 0.0
    chunk_size: int = 16           # scan chunk L (benchmarks/ten_speed.py tunes it)
    scan_method: str = "unrolled"  # inside a chunk: "unrolled" (fast on CPU) or "matmul"
    use_hten: bool = False
    hten_scales: tuple[int, ...] = (1, 2, 4, 8)
    energy_reg_weight: float = 0.01
    resonance_eps: float = 0.1     # R = I + eps·M: the coupling starts as a small perturbation
    decay_init: str = "paper"      # one of DECAY_INITS
    alpha_init: tuple[float, float] = (-3.0, 0.0)  # "paper": α ~ U(lo, hi), |λ| = σ(α) at init
    # "long": memory 1/(1−|λ|) in tokens, log-uniform over [lo, hi] (the workload: hi = seq_len);
    # an HTEN scale-s core, whose step spans s tokens, gets [lo, max(lo, hi/s)] steps
    memory_range: tuple[float, float] = (1.05, 128.0)

    def __post_init__(self) -> None:
        self.hten_scales = tuple(self.hten_scales)
        self.alpha_init = tuple(self.alpha_init)
        self.memory_range = tuple(self.memory_range)
        problems = self.problems()
        if problems:
            raise ValueError("invalid TENConfig: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Every violation at once, each naming the field and what is allowed."""
        out: list[str] = []

        def positive_int(name: str) -> bool:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                out.append(f"{name}: must be a positive int (got {v!r})")
                return False
            return True

        ok = {n: positive_int(n) for n in ("vocab_size", "d_model", "n_layers", "n_eigen",
                                            "n_heads", "mlp_ratio")}
        if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int) \
                or self.chunk_size < 2:
            out.append(f"chunk_size: must be an int >= 2 (got {self.chunk_size!r})")
        if self.scan_method not in SCAN_METHODS:
            out.append(f"scan_method: must be one of {list(SCAN_METHODS)} "
                       f"(got {self.scan_method!r})")
        if not 0.0 <= self.dropout < 1.0:
            out.append(f"dropout: must be in [0, 1) (got {self.dropout!r})")
        if not self.energy_reg_weight >= 0.0:  # also rejects NaN
            out.append(f"energy_reg_weight: must be >= 0 (got {self.energy_reg_weight!r})")
        if not self.resonance_eps >= 0.0:
            out.append(f"resonance_eps: must be >= 0 (got {self.resonance_eps!r})")
        lo, hi = (self.alpha_init + (None, None))[:2]
        if len(self.alpha_init) != 2 or not (isinstance(lo, (int, float))
                                             and isinstance(hi, (int, float)) and lo <= hi):
            out.append(f"alpha_init: must be a pair (lo, hi) with lo <= hi "
                       f"(got {self.alpha_init!r})")
        if self.decay_init not in DECAY_INITS:
            out.append(f"decay_init: must be one of {list(DECAY_INITS)} (got {self.decay_init!r})")
        lo, hi = (self.memory_range + (None, None))[:2]
        if len(self.memory_range) != 2 or not (isinstance(lo, (int, float))
                                               and isinstance(hi, (int, float)) and 1 < lo <= hi):
            out.append(f"memory_range: must be a pair (lo, hi) of token counts with 1 < lo <= hi "
                       f"(got {self.memory_range!r})")
        if ok["n_eigen"] and ok["n_heads"] and not self.use_hten \
                and self.n_eigen % self.n_heads:
            out.append(f"n_eigen: must be divisible by n_heads={self.n_heads} "
                       f"(got {self.n_eigen})")

        scales = self.hten_scales
        bad = [s for s in scales if isinstance(s, bool) or not isinstance(s, int) or s < 1]
        if not scales:
            out.append("hten_scales: must be a non-empty list of distinct positive ints (got [])")
        elif bad:
            out.append(f"hten_scales: must be positive ints (got {list(scales)}; "
                       f"bad: {bad})")
        elif len(set(scales)) != len(scales):
            dup = sorted({s for s in scales if scales.count(s) > 1})
            out.append(f"hten_scales: must be distinct (got {list(scales)}; duplicated: {dup})")
        elif self.use_hten and ok["n_eigen"] and ok["n_heads"]:
            S = len(scales)
            if self.n_eigen % S:
                allowed = [k for k in range(1, 9) if self.n_eigen % k == 0]
                out.append(f"hten_scales: n_eigen={self.n_eigen} must be divisible by the "
                           f"number of scales (got {S} scales {list(scales)}; allowed counts: "
                           f"{allowed})")
            elif (self.n_eigen // S) % self.n_heads:
                out.append(f"n_heads: each of the {S} scales has n_eigen/{S}="
                           f"{self.n_eigen // S} eigenstates, which must be divisible by "
                           f"n_heads (got {self.n_heads})")
        return out

    @property
    def eigen_per_scale(self) -> int:
        return self.n_eigen // len(self.hten_scales) if self.use_hten else self.n_eigen

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "TENConfig":
        """A preset with some fields replaced; ValueError for an unknown preset or field."""
        if name not in PRESETS:
            raise ValueError(f"preset: unknown preset {name!r}; allowed: {list(PRESETS)}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(f"unknown TENConfig field(s) {unknown}; allowed: {sorted(fields)}")
        return cls(**{**PRESETS[name], **overrides})


# d_model / n_layers / n_eigen chosen so the count lands on the PRESET_PARAMS table
# (≈ (10 d² + 6 d K) per block: gate + out 2d², MLP 8d², β / selectivity / eigenvectors 6dK).
# K = d/2 everywhere; K/|scales| stays divisible by n_heads for the HTEN presets.
PRESETS: dict[str, dict[str, Any]] = {
    # tiny: a few hundred K parameters, an epoch of CPU training in seconds (tests, CPU sweeps)
    "tiny": dict(d_model=96, n_layers=2, n_eigen=48, n_heads=2, energy_reg_weight=0.01),
    "nano": dict(d_model=512, n_layers=10, n_eigen=256, n_heads=8, energy_reg_weight=0.01),
    "micro": dict(d_model=768, n_layers=11, n_eigen=384, n_heads=8, energy_reg_weight=0.01),
    "small": dict(d_model=1024, n_layers=13, n_eigen=512, n_heads=8, energy_reg_weight=0.01),
    "medium": dict(d_model=1280, n_layers=15, n_eigen=640, n_heads=8, energy_reg_weight=0.02),
    "large": dict(d_model=1536, n_layers=17, n_eigen=768, n_heads=8, energy_reg_weight=0.02,
                  use_hten=True, hten_scales=(1, 2, 4, 8)),
    "xlarge": dict(d_model=2048, n_layers=22, n_eigen=1024, n_heads=16, energy_reg_weight=0.02,
                   use_hten=True, hten_scales=(1, 2, 4, 8)),
}


def preset_names() -> list[str]:
    return list(PRESETS)
