"""ten_lm: byte-level language modelling with TEN / HTEN, built on the training kit.

    python -m workloads.ten_lm                 # ~1 min on 2 CPU cores, prints per-epoch metrics
    python -m workloads.ten_lm --smoke         # seconds
    python -m workloads.ten_lm --set use_hten=true hten_scales=1,2,4 lambda=0.05 compute_every=4
    torchrun --nproc-per-node 2 -m workloads.ten_lm   # DDP (gloo on CPU), same global batch

Per epoch every rank reports (all floats), besides the kit's epoch / diverged / probe_steps:
    val_ce        cross-entropy on the validation bytes, nats/byte (global token mean)
    val_bpb       the same in bits per byte (val_ce / ln 2)
    train_loss    mean training objective ce + energy_reg_weight·energy (entropy term excluded)
    train_ce      mean training cross-entropy
    energy        mean E(t) = Σ_k |c_k(t)|² over validation tokens and layers (raw, unweighted)
    bias_entropy  entropy in bits of the mean next-byte distribution on 8 fixed content-free
                  probes (4 constant, 4 uniform random, 128 bytes), measured under no_grad after
                  the epoch, also when lambda = 0, so trials are comparable

Entropy regularizer (the same math as the saliency model, `regularizers/entropy.py`): on steps
where `probe_due(step, compute_every, lambda)`, `num_probes` content-free byte sequences ride
in the same forward pass as the batch (one forward, one backward — DDP-safe); H is the entropy
of the mean next-byte density over all probe positions and the loss is task_loss − lambda·H.
With lambda = 0 or compute_every = 0 no probe is built: the run is bit-for-bit the baseline.
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F

from regularizers.entropy import bias_entropy_bits, probe_due
from ten_core import PRESETS, TENLM, TENConfig
from workloads import kit
from workloads.contract import Goal, Session
from workloads.kit import (DISTINCT_POSITIVE_INTS, FINITE, LoopKnobs, OneOf, StepResult, Trial,
                           above, at_least, between, knob)
from workloads.kit.cli import main as cli_main
from workloads.text_data import ByteWindows, load_corpus, split


@dataclass
class TenLMKnobs(LoopKnobs):
    # model: the preset's architecture; these knobs override its values
    preset: str = knob("tiny", OneOf(tuple(PRESETS)))
    energy_reg_weight: Optional[float] = knob(None, at_least(0), help="None: the preset's")
    use_hten: bool = knob(False)
    hten_scales: list[int] = knob([1, 2, 4, 8], DISTINCT_POSITIVE_INTS)
    chunk_size: int = knob(16, at_least(2))
    dropout: float = knob(0.0, between(0, 1, hi_open=True))
    # optimisation (epochs, steps_per_epoch, batch_size, seed: LoopKnobs)
    epochs: int = knob(3, at_least(1))
    steps_per_epoch: int = knob(150, at_least(0), help="cap per epoch; 0 = the full epoch")
    lr: float = knob(3e-3, above(0))
    weight_decay: float = knob(0.1, at_least(0))
    grad_clip: float = knob(1.0, above(0))
    warmup_steps: int = knob(20, at_least(0))
    seq_len: int = knob(128, at_least(1))
    amp: bool = knob(False, help="bf16 autocast on CUDA; no-op on CPU")
    # data
    data_path: Optional[str] = knob(None, help="None = generated corpus")
    corpus_bytes: int = knob(1_000_000, at_least(0))
    corpus_seed: int = knob(0, help="fixed apart from seed: all trials, same data")
    val_fraction: float = knob(0.1, between(0, 1, lo_open=True, hi_open=True))
    eval_windows: int = knob(512, at_least(0), help="cap on validation windows; 0 = all")
    # entropy regularizer
    lam: float = knob(0.0, FINITE, alias="lambda")
    compute_every: int = knob(0, at_least(0), help="0 = off")
    num_probes: int = knob(4, at_least(1))


METRICS: dict[str, Goal] = {
    "val_ce": "minimize", "val_bpb": "minimize", "train_loss": "minimize",
    "energy": "minimize", "bias_entropy": "maximize",
}
EVAL_PROBES, EVAL_PROBE_LEN, EVAL_PROBE_SEED = 8, 128, 20240601


def model_config(cfg: TenLMKnobs) -> TENConfig:
    weight = {} if cfg.energy_reg_weight is None else {"energy_reg_weight": cfg.energy_reg_weight}
    return TENConfig.from_preset(cfg.preset, use_hten=cfg.use_hten,
                                 hten_scales=tuple(cfg.hten_scales), chunk_size=cfg.chunk_size,
                                 dropout=cfg.dropout, **weight)


def build_model(cfg: TenLMKnobs) -> TENLM:
    """The model every rank starts from: seeded, so all ranks (and reruns) agree."""
    torch.manual_seed(cfg.seed)
    return TENLM(model_config(cfg))


def datasets(cfg: TenLMKnobs) -> tuple[ByteWindows, ByteWindows]:
    train, val = split(load_corpus(cfg.data_path, cfg.corpus_bytes, cfg.corpus_seed),
                       cfg.val_fraction)
    return ByteWindows(train, cfg.seq_len), ByteWindows(val, cfg.seq_len)


def seeded_generator(*key: int) -> torch.Generator:
    """A private torch RNG for `key` (e.g. (seed, rank, step)), independent of the global one."""
    return torch.Generator().manual_seed(kit.mix_seed(*key))


def make_probes(n: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    """Content-free inputs (n, seq_len): ⌈n/2⌉ constant-byte rows, ⌊n/2⌋ uniform-random rows."""
    n_const = (n + 1) // 2
    const = torch.randint(0, 256, (n_const, 1), generator=generator).expand(n_const, seq_len)
    rand = torch.randint(0, 256, (n - n_const, seq_len), generator=generator)
    return torch.cat([const, rand]).long()


def probe_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Bias entropy (bits) of probe logits (P, T, V): all P·T next-byte densities are mixed."""
    return bias_entropy_bits(F.log_softmax(logits.float(), dim=-1).flatten(0, 1))


def lr_at(step: int, total: int, cfg: TenLMKnobs) -> float:
    """Linear warmup, then cosine decay to 10 % of lr; a function of the step only (resumable)."""
    warm = max(1, min(cfg.warmup_steps, total // 10 or 1))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def autocast(cfg: TenLMKnobs, device: torch.device):
    if cfg.amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: TENLM, val: ByteWindows, cfg: TenLMKnobs,
             session: Session) -> dict[str, float]:
    """Validation CE / energy as global token means: each rank sums its shard, then all-reduce."""
    model.eval()
    n = len(val) if cfg.eval_windows == 0 else min(len(val), cfg.eval_windows)
    mine = list(range(session.rank, n, session.world_size))
    per = kit.per_worker_batch(cfg.batch_size, session.world_size)
    ce_sum = energy_sum = tokens = 0.0
    for i in range(0, len(mine), per):
        xb, yb = (torch.stack(t).to(session.device)
                  for t in zip(*(val[j] for j in mine[i:i + per])))
        with autocast(cfg, session.device):
            out = model(xb, yb)
        ce_sum += out["ce_loss"].item() * yb.numel()
        energy_sum += out["energy_loss"].item() * yb.numel()
        tokens += yb.numel()
    s = kit.all_reduce_sums({"ce": ce_sum, "energy": energy_sum, "tokens": tokens},
                            session.device)
    ce = s["ce"] / max(s["tokens"], 1.0)
    # fixed probes, identical for every trial and rank: a comparable bias-entropy measurement
    probes = make_probes(EVAL_PROBES, EVAL_PROBE_LEN, seeded_generator(EVAL_PROBE_SEED))
    with autocast(cfg, session.device):
        logits = model(probes.to(session.device))["logits"]
    model.train()
    return {"val_ce": ce, "val_bpb": ce / math.log(2.0),
            "energy": s["energy"] / max(s["tokens"], 1.0),
            "bias_entropy": float(probe_entropy(logits))}


def setup(cfg: TenLMKnobs, session: Session) -> Trial:
    device, rank = session.device, session.rank
    train_ds, val_ds = datasets(cfg)
    model = build_model(cfg).to(device)
    optimizer = model.configure_optimizers(lr=cfg.lr, weight_decay=cfg.weight_decay)

    def step(ddp_model: torch.nn.Module, batch: Any, step: int) -> StepResult:
        xb, yb = (t.to(device) for t in batch)  # (b, T) each
        probing = probe_due(step, cfg.compute_every, cfg.lam)
        if probing:  # probes ride in the same forward pass, after the data rows
            probes = make_probes(cfg.num_probes, cfg.seq_len, seeded_generator(cfg.seed, rank, step))
            xb = torch.cat([xb, probes.to(device)])  # (b + P, T)
        with autocast(cfg, device):
            out = ddp_model(xb, yb)  # losses over the first b rows only (see TENLM.forward)
        loss = out["loss"]
        if probing:
            loss = loss - cfg.lam * probe_entropy(out["logits"][yb.shape[0]:])
        return StepResult(loss, {"train_loss": (out["loss"].item(), 1.0),
                                 "train_ce": (out["ce_loss"].item(), 1.0)}, probing)

    return Trial(model, optimizer, train_ds, step,
                 evaluate=lambda m, s: evaluate(m, val_ds, cfg, s), grad_clip=cfg.grad_clip,
                 lr_at=lambda s, total: lr_at(s, total, cfg))


def check(cfg: TenLMKnobs) -> list[str]:
    """Problems across knobs (the architecture they make) and with the data file."""
    problems = []
    try:
        model_config(cfg)
    except ValueError as e:
        problems.append(str(e))
    if cfg.data_path is not None and not os.path.isfile(cfg.data_path):
        problems.append(f"knob 'data_path': {cfg.data_path[:200]}: no such file")
    return problems


# Seconds per epoch on a CPU: what every `--smoke` (CLI here, sweeps) runs.
SMOKE = {"epochs": 2, "steps_per_epoch": 10, "corpus_bytes": 100_000, "seq_len": 64,
         "batch_size": 8}

WORKLOAD = kit.make_workload(name="ten_lm", knobs=TenLMKnobs, metrics=METRICS, setup=setup,
                             smoke=SMOKE, check=check)
train = WORKLOAD.train


def main(argv: list[str] | None = None) -> int:
    return cli_main(WORKLOAD, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
