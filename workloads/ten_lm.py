"""ten_lm: byte-level language modelling with TEN / HTEN, built on the training kit.

    python -m workloads.ten_lm                 # ~1 min on 2 CPU cores, prints per-epoch metrics
    python -m workloads.ten_lm --smoke         # seconds
    python -m workloads.ten_lm --set use_hten=true hten_scales=1,2,4 lambda=0.05 compute_every=4
    torchrun --nproc-per-node 2 -m workloads.ten_lm   # DDP (gloo on CPU), same global batch

Data: `corpus: stdlib` (workloads/corpus.py: this interpreter's standard-library source, split by
file; its SHA-256 is the `stdlib_sha256` knob), `generated`, or a `data_path` file (wins).
`decay_init`: `paper` (α ~ U(−3, 0)) or `long` (memories log-uniform over 1.05…seq_len tokens).

Per epoch every rank reports (all floats), besides the kit's epoch / diverged / probe_steps:
    val_ce, val_bpb   validation cross-entropy in nats / bits per byte (global token mean over
                      eval_windows windows spread evenly over the validation text)
    train_loss, train_ce   mean training ce + energy_reg_weight·energy; mean training ce
    energy            validation mean of the relative energy mean_k |c_k(t)|²/P_k (ten_core/ten.py)
    bias_entropy      entropy (bits) of the mean next-byte distribution on 8 fixed 128-byte
                      probes of i.i.d. bytes from the training text's unigram (order: no content)
    bias_entropy_rel  bias_entropy / H(unigram): 1.0 = predicts the unigram prior on such input
    n_params          parameter count (HTEN splits the K eigenstates over its scales)
    lambda_abs_pNN, memory_pNN   p10 / p50 / p90 over all eigenstates of |λ| = σ(α) and of the
                      memory s/(1−|λ|) in tokens (s: the HTEN scale, 1 for TEN);
                      memory_pNN_sS the same for HTEN scale S only

Entropy regularizer (saliency's math, regularizers/entropy.py): when `probe_due`, `num_probes`
such probes ride in the batch's forward pass; loss = task_loss − lambda·H, H the entropy of the
mean next-byte density over all probe positions. lambda = 0 or compute_every = 0: no probe, the
run is bit-for-bit the baseline.
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
from ten_core import DECAY_INITS, PRESETS, TENLM, TENConfig, spectrum_summary
from workloads import kit
from workloads.contract import Goal, Session
from workloads.kit import (DISTINCT_POSITIVE_INTS, FINITE, LoopKnobs, OneOf, StepResult, Trial,
                           above, at_least, between, knob)
from workloads.kit.cli import main as cli_main
from workloads.corpus import stdlib_problem, stdlib_sha256_knob
from workloads.text_data import ByteWindows, corpus_splits, entropy_bits, make_probes, unigram


@dataclass
class TenLMKnobs(LoopKnobs):
    # model: the preset's architecture; these knobs override its values
    preset: str = knob("tiny", OneOf(tuple(PRESETS)))
    energy_reg_weight: Optional[float] = knob(None, at_least(0), help="None: the preset's")
    use_hten: bool = knob(False)
    hten_scales: list[int] = knob([1, 2, 4, 8], DISTINCT_POSITIVE_INTS)
    chunk_size: int = knob(16, at_least(2))
    dropout: float = knob(0.0, between(0, 1, hi_open=True))
    decay_init: str = knob("long", OneOf(DECAY_INITS), help="see ten_core/config.py, README")
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
    corpus: str = knob("stdlib", OneOf(("stdlib", "generated")))
    data_path: Optional[str] = knob(None, help="a text or .npy byte file; wins over corpus")
    corpus_bytes: int = knob(0, at_least(0), help="cap; 0 = all of stdlib / 1 MB generated")
    corpus_seed: int = knob(0, help="generated corpus only; fixed apart from seed")
    stdlib_sha256: str = stdlib_sha256_knob()
    val_fraction: float = knob(0.1, between(0, 1, lo_open=True, hi_open=True))
    eval_windows: int = knob(512, at_least(0), help="cap on validation windows; 0 = all")
    # entropy regularizer
    lam: float = knob(0.0, FINITE, alias="lambda")
    compute_every: int = knob(0, at_least(0), help="0 = off")
    num_probes: int = knob(4, at_least(1))


METRICS: dict[str, Goal] = {
    "val_ce": "minimize", "val_bpb": "minimize", "train_loss": "minimize", "energy": "minimize",
    "bias_entropy": "maximize", "bias_entropy_rel": "maximize",
    # diagnostics, logged to MLflow; their goal is nominal (only the space's metric is searched)
    "n_params": "minimize", **{f"lambda_abs_p{q}": "maximize" for q in ("10", "50", "90")},
    **{f"memory_p{q}{s}": "maximize" for q in ("10", "50", "90") for s in ("", "_s1", "_s2",
                                                                          "_s4", "_s8")}}
EVAL_PROBES, EVAL_PROBE_LEN, EVAL_PROBE_SEED = 8, 128, 20240601
# What reports and plots say about each metric (the module doc in full).
METRIC_DOCS: dict[str, tuple[str, str]] = {
    "val_ce": ("nats/byte", "validation cross-entropy"),
    "val_bpb": ("bits/byte", "validation cross-entropy in bits"),
    "train_loss": ("", "training cross-entropy (nats/byte) + energy_reg_weight · energy"),
    "energy": ("", "validation mean relative energy of the eigenstates, mean_k |c_k(t)|²/P_k"),
    "bias_entropy": ("bits", "entropy of the mean next-byte distribution on content-free probes "
                             "(i.i.d. bytes from the training unigram)"),
    "bias_entropy_rel": ("", "bias_entropy / H(unigram): 1 = predicts the unigram prior there"),
    "n_params": ("", "parameter count"),
    **{f"lambda_abs_p{q}": ("", f"p{q} over all eigenstates of |λ|") for q in ("10", "50", "90")},
    **{f"memory_p{q}{s}": ("tokens", f"p{q} of the eigenstates' memory s/(1−|λ|)"
                           + (f", HTEN scale {s[2:]} only" if s else ""))
       for q in ("10", "50", "90") for s in ("", "_s1", "_s2", "_s4", "_s8")},
}


def model_config(cfg: TenLMKnobs) -> TENConfig:
    weight = {} if cfg.energy_reg_weight is None else {"energy_reg_weight": cfg.energy_reg_weight}
    return TENConfig.from_preset(cfg.preset, use_hten=cfg.use_hten,
                                 hten_scales=tuple(cfg.hten_scales), chunk_size=cfg.chunk_size,
                                 dropout=cfg.dropout, decay_init=cfg.decay_init,
                                 memory_range=(1.05, max(1.05, float(cfg.seq_len))), **weight)


def build_model(cfg: TenLMKnobs) -> TENLM:
    """The model every rank starts from: seeded, so all ranks (and reruns) agree."""
    torch.manual_seed(cfg.seed)
    return TENLM(model_config(cfg))


def datasets(cfg: TenLMKnobs) -> tuple[ByteWindows, ByteWindows]:
    train, val = corpus_splits(cfg.corpus, cfg.data_path, cfg.corpus_bytes, cfg.corpus_seed,
                               cfg.val_fraction)
    return ByteWindows(train, cfg.seq_len), ByteWindows(val, cfg.seq_len)


def seeded_generator(*key: int) -> torch.Generator:
    """A private torch RNG for `key` (e.g. (seed, rank, step)), independent of the global one."""
    return torch.Generator().manual_seed(kit.mix_seed(*key))


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
    on = cfg.amp and device.type == "cuda"
    return torch.autocast("cuda", dtype=torch.bfloat16) if on else contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: TENLM, val: ByteWindows, cfg: TenLMKnobs, session: Session,
             probs: torch.Tensor) -> dict[str, float]:
    """Validation CE / energy as global token means: each rank sums its shard, then all-reduce."""
    model.eval()
    n = len(val) if cfg.eval_windows == 0 else min(len(val), cfg.eval_windows)
    spread = torch.linspace(0, len(val) - 1, n).round().long().tolist() if n else []
    mine = spread[session.rank::session.world_size]  # n windows spread over all of val
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
    # fixed probes, identical for every trial and rank of a corpus: comparable measurements
    probes = make_probes(EVAL_PROBES, EVAL_PROBE_LEN, seeded_generator(EVAL_PROBE_SEED), probs)
    with autocast(cfg, session.device):
        logits = model(probes.to(session.device))["logits"]
    model.train()
    h = float(probe_entropy(logits))
    return {"val_ce": ce, "val_bpb": ce / math.log(2.0),
            "energy": s["energy"] / max(s["tokens"], 1.0), "bias_entropy": h,
            "bias_entropy_rel": h / max(entropy_bits(probs), 1e-12),
            "n_params": float(model.num_params()), **spectrum_summary(model)}


def setup(cfg: TenLMKnobs, session: Session) -> Trial:
    device, rank = session.device, session.rank
    train_ds, val_ds = datasets(cfg)
    probs = unigram(train_ds.data)  # the training text's byte distribution (probes)
    model = build_model(cfg).to(device)
    optimizer = model.configure_optimizers(lr=cfg.lr, weight_decay=cfg.weight_decay)

    def step(ddp_model: torch.nn.Module, batch: Any, step: int) -> StepResult:
        xb, yb = (t.to(device) for t in batch)  # (b, T) each
        probing = probe_due(step, cfg.compute_every, cfg.lam)
        if probing:  # probes ride in the same forward pass, after the data rows
            g = seeded_generator(cfg.seed, rank, step)
            xb = torch.cat([xb, make_probes(cfg.num_probes, cfg.seq_len, g, probs).to(device)])
        with autocast(cfg, device):
            out = ddp_model(xb, yb)  # losses over the first b rows only (see TENLM.forward)
        loss = out["loss"]
        if probing:
            loss = loss - cfg.lam * probe_entropy(out["logits"][yb.shape[0]:])
        return StepResult(loss, {"train_loss": (out["loss"].item(), 1.0),
                                 "train_ce": (out["ce_loss"].item(), 1.0)}, probing)

    return Trial(model, optimizer, train_ds, step, lambda m, s: evaluate(m, val_ds, cfg, s, probs),
                 grad_clip=cfg.grad_clip, lr_at=lambda s, total: lr_at(s, total, cfg))


def check(cfg: TenLMKnobs) -> list[str]:
    """Problems across knobs (the architecture they make) and with the data file."""
    problems = []
    try:
        model_config(cfg)
    except ValueError as e:
        problems.append(str(e))
    if cfg.data_path is not None and not os.path.isfile(cfg.data_path):
        problems.append(f"knob 'data_path': {cfg.data_path[:200]}: no such file")
    elif cfg.data_path is None and cfg.corpus == "stdlib":  # this worker's corpus is the run's
        problems += [p for p in [stdlib_problem(cfg.stdlib_sha256)] if p]
    return problems


# Seconds per epoch on a CPU: what every `--smoke` (CLI here, sweeps) runs.
SMOKE = {"epochs": 2, "steps_per_epoch": 10, "corpus_bytes": 100_000, "seq_len": 64,
         "batch_size": 8}

WORKLOAD = kit.make_workload(name="ten_lm", knobs=TenLMKnobs, metrics=METRICS, setup=setup,
                             smoke=SMOKE, check=check, metric_docs=METRIC_DOCS)
train = WORKLOAD.train


def main(argv: list[str] | None = None) -> int:
    return cli_main(WORKLOAD, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
