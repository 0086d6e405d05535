"""ten_lm: byte-level language modelling with TEN / HTEN — a training entry behind the contract.

    python -m workloads.ten_lm                 # ~1 min on 2 CPU cores, prints per-epoch metrics
    python -m workloads.ten_lm --smoke         # seconds
    python -m workloads.ten_lm --set use_hten=true hten_scales=1,2,4 lambda=0.05 compute_every=4
    torchrun --nproc-per-node 2 -m workloads.ten_lm   # DDP (gloo on CPU), same global batch

Per epoch every rank reports (all floats):
    val_ce        cross-entropy on the validation bytes, nats/byte (global token mean)
    val_bpb       the same in bits per byte (val_ce / ln 2)
    train_loss    mean training objective ce + energy_reg_weight·energy (entropy term excluded)
    energy        mean E(t) = Σ_k |c_k(t)|² over validation tokens and layers (raw, unweighted)
    bias_entropy  entropy in bits of the mean next-byte distribution on 8 fixed content-free
                  probes (4 constant, 4 uniform random, 128 bytes), measured under no_grad after
                  the epoch, also when lambda = 0, so trials are comparable
    epoch (completed epochs), probe_steps (optimizer steps that carried the entropy term),
    diverged (1.0 when the loss went non-finite; the run then stops)

Entropy regularizer (the same math as the saliency workload, `workloads/entropy.py`): on
optimizer steps where `probe_due(step, compute_every, lambda)`, `num_probes` content-free byte
sequences are appended to the batch and run in the same forward pass (one forward, one backward
— DDP-safe); H is the entropy of the mean next-byte density over all probe positions and the
loss is task_loss − lambda·H. With lambda = 0 or compute_every = 0 no probe is ever built, so
the run is bit-for-bit the baseline.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import time
from dataclasses import field
from typing import Any, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from ten_core import TENLM, TENConfig
from workloads import contract
from workloads.contract import ConfigError, LocalSession, Session, Workload
from workloads.entropy import bias_entropy_bits, probe_due
from workloads.text_data import ByteWindows, load_corpus, split

_KNOBS = [
    # model (architecture from the preset; these knobs override the preset's values)
    ("preset", str, field(default="tiny")),
    ("energy_reg_weight", float, field(default=0.01)),
    ("use_hten", bool, field(default=False)),
    ("hten_scales", list[int], field(default_factory=lambda: [1, 2, 4, 8])),
    ("chunk_size", int, field(default=16)),
    ("dropout", float, field(default=0.0)),
    # optimisation
    ("lr", float, field(default=3e-3)),
    ("weight_decay", float, field(default=0.1)),
    ("grad_clip", float, field(default=1.0)),
    ("warmup_steps", int, field(default=20)),
    ("batch_size", int, field(default=32)),  # GLOBAL: each of W workers gets batch_size / W
    ("seq_len", int, field(default=128)),
    ("epochs", int, field(default=3)),
    ("steps_per_epoch", int, field(default=150)),  # cap per epoch; 0 = the full epoch
    ("seed", int, field(default=0)),
    ("amp", bool, field(default=False)),  # bf16 autocast on CUDA; no-op on CPU
    # data
    ("data_path", Optional[str], field(default=None)),  # None = generated corpus
    ("corpus_bytes", int, field(default=1_000_000)),
    ("corpus_seed", int, field(default=0)),  # fixed apart from `seed`: all trials, same data
    ("val_fraction", float, field(default=0.1)),
    ("eval_windows", int, field(default=512)),  # cap on validation windows; 0 = all
    # entropy regularizer
    ("lambda", float, field(default=0.0)),
    ("compute_every", int, field(default=0)),  # 0 = off
    ("num_probes", int, field(default=4)),
]


def _knob_dataclass(name: str, knobs: list[tuple[str, Any, Any]]) -> type:
    """A dataclass whose fields may be Python keywords ("lambda").

    `dataclasses` generates __init__/__repr__/__eq__ as source code, which cannot name a field
    `lambda` (make_dataclass refuses it outright), so those three are written generically here;
    fields(), asdict(), replace() and typing.get_type_hints() work as for any dataclass.
    """
    ns: dict[str, Any] = {"__annotations__": {k: t for k, t, _ in knobs}, "__module__": __name__,
                          "__qualname__": name}
    ns.update({k: f for k, _, f in knobs})
    cls = dataclasses.dataclass(init=False, repr=False, eq=False)(type(name, (), ns))

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"{name}: unknown knob(s) {unknown}")
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            setattr(self, f.name, values.get(f.name, default))

    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(cls))
        return f"{name}({inner})"

    def __eq__(self, other: object) -> bool:
        return type(other) is cls and dataclasses.asdict(self) == dataclasses.asdict(other)

    cls.__init__, cls.__repr__, cls.__eq__ = __init__, __repr__, __eq__
    return cls


# Every knob with its type and default. "lambda" is a Python keyword: read it with
# getattr(cfg, "lambda").
TenLMConfig = _knob_dataclass("TenLMConfig", _KNOBS)

METRICS: dict[str, contract.Goal] = {
    "val_ce": "minimize", "val_bpb": "minimize", "train_loss": "minimize",
    "energy": "minimize", "bias_entropy": "maximize",
}
EVAL_PROBES, EVAL_PROBE_LEN, EVAL_PROBE_SEED = 8, 128, 20240601


def check_config(cfg: Any) -> None:
    """ConfigError listing every bad knob at once."""
    p = []
    for name in ("batch_size", "seq_len", "epochs"):
        if getattr(cfg, name) < 1:
            p.append(f"knob {name!r}: must be >= 1 (got {getattr(cfg, name)})")
    for name in ("steps_per_epoch", "compute_every", "warmup_steps", "eval_windows",
                 "corpus_bytes"):
        if getattr(cfg, name) < 0:
            p.append(f"knob {name!r}: must be >= 0 (got {getattr(cfg, name)})")
    if not cfg.lr > 0:
        p.append(f"knob 'lr': must be > 0 (got {cfg.lr})")
    if not cfg.weight_decay >= 0:
        p.append(f"knob 'weight_decay': must be >= 0 (got {cfg.weight_decay})")
    if not cfg.grad_clip > 0:
        p.append(f"knob 'grad_clip': must be > 0 (got {cfg.grad_clip})")
    if not 0 < cfg.val_fraction < 1:
        p.append(f"knob 'val_fraction': must be in (0, 1) (got {cfg.val_fraction})")
    if not math.isfinite(getattr(cfg, "lambda")):
        p.append(f"knob 'lambda': must be finite (got {getattr(cfg, 'lambda')})")
    if cfg.num_probes < 1 and probe_due(0, cfg.compute_every, getattr(cfg, "lambda")):
        p.append(f"knob 'num_probes': must be >= 1 when the entropy term is on "
                 f"(got {cfg.num_probes})")
    try:
        model_config(cfg)
    except ValueError as e:
        p.append(str(e))
    if p:
        raise ConfigError("ten_lm: " + "; ".join(p))


def model_config(cfg: Any) -> TENConfig:
    return TENConfig.from_preset(cfg.preset, energy_reg_weight=cfg.energy_reg_weight,
                                 use_hten=cfg.use_hten, hten_scales=tuple(cfg.hten_scales),
                                 chunk_size=cfg.chunk_size, dropout=cfg.dropout)


def build_model(cfg: Any) -> TENLM:
    """The model every rank starts from: seeded, so all ranks (and reruns) agree."""
    torch.manual_seed(cfg.seed)
    return TENLM(model_config(cfg))


def datasets(cfg: Any) -> tuple[ByteWindows, ByteWindows]:
    train, val = split(load_corpus(cfg.data_path, cfg.corpus_bytes, cfg.corpus_seed),
                       cfg.val_fraction)
    return ByteWindows(train, cfg.seq_len), ByteWindows(val, cfg.seq_len)


def _mix(*key: int) -> int:
    """A well-mixed 32-bit seed from a tuple of ints (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence(list(key)).generate_state(1)[0])


def seeded_generator(*key: int) -> torch.Generator:
    """A private torch RNG for `key` (e.g. (seed, rank, step)), independent of the global one."""
    return torch.Generator().manual_seed(_mix(*key))


def make_probes(n: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    """Content-free inputs (n, seq_len): ⌈n/2⌉ constant-byte rows, ⌊n/2⌋ uniform-random rows."""
    n_const = (n + 1) // 2
    const = torch.randint(0, 256, (n_const, 1), generator=generator).expand(n_const, seq_len)
    rand = torch.randint(0, 256, (n - n_const, seq_len), generator=generator)
    return torch.cat([const, rand]).long()


def probe_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Bias entropy (bits) of probe logits (P, T, V): all P·T next-byte densities are mixed."""
    return bias_entropy_bits(F.log_softmax(logits.float(), dim=-1).flatten(0, 1))


def lr_at(step: int, total: int, cfg: Any) -> float:
    """Linear warmup, then cosine decay to 10 % of lr; a function of the step only (resumable)."""
    warm = max(1, min(cfg.warmup_steps, total // 10 or 1))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def autocast(cfg: Any, device: torch.device):
    if cfg.amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: TENLM, val: ByteWindows, cfg: Any, session: Session) -> dict[str, float]:
    """Validation CE / energy as global token means: each rank sums its shard, then all-reduce."""
    model.eval()
    n = len(val) if cfg.eval_windows == 0 else min(len(val), cfg.eval_windows)
    mine = list(range(session.rank, n, session.world_size))
    per = contract.per_worker_batch(cfg.batch_size, session.world_size)
    ce_sum = energy_sum = tokens = 0.0
    for i in range(0, len(mine), per):
        xb, yb = (torch.stack(t).to(session.device)
                  for t in zip(*(val[j] for j in mine[i:i + per])))
        with autocast(cfg, session.device):
            out = model(xb, yb)
        ce_sum += out["ce_loss"].item() * yb.numel()
        energy_sum += out["energy_loss"].item() * yb.numel()
        tokens += yb.numel()
    s = contract.all_reduce_sums({"ce": ce_sum, "energy": energy_sum, "tokens": tokens},
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


def train(config: Mapping[str, Any] | Any, session: Session) -> None:
    """Train for cfg.epochs epochs; every rank reports once per epoch (contract.report_epoch)."""
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    cfg = WORKLOAD.resolve(config)
    check_config(cfg)
    lam, device, W, rank = getattr(cfg, "lambda"), session.device, session.world_size, session.rank
    per_worker = contract.per_worker_batch(cfg.batch_size, W)

    train_ds, val_ds = datasets(cfg)
    # Same shard logic for W = 1 and W > 1: rank r takes every W-th index of one seeded
    # permutation, so a step of W workers sees exactly the global batch of a single process.
    sampler = DistributedSampler(train_ds, num_replicas=W, rank=rank, shuffle=True,
                                 seed=cfg.seed, drop_last=True)
    loader = DataLoader(train_ds, batch_size=per_worker, sampler=sampler, drop_last=True)
    if len(loader) == 0:
        raise ConfigError(f"ten_lm: the training split has {len(train_ds)} windows of "
                          f"seq_len={cfg.seq_len}, fewer than batch_size={cfg.batch_size}; "
                          f"raise corpus_bytes or lower batch_size / seq_len")
    steps_per_epoch = min(len(loader), cfg.steps_per_epoch or len(loader))
    total_steps = cfg.epochs * steps_per_epoch

    model = build_model(cfg).to(device)
    optimizer = model.configure_optimizers(lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_epoch, step = 0, 0
    if session.restored_checkpoint_dir:
        state = contract.load_checkpoint(session.restored_checkpoint_dir, model, optimizer,
                                         device)
        start_epoch, step = int(state["epoch"]) + 1, int(state["step"])
    ddp_model = contract.wrap_ddp(model, session)

    for epoch in range(start_epoch, cfg.epochs):
        # Re-seed per (seed, rank, epoch): dropout masks of a resumed run equal the original's.
        torch.manual_seed(_mix(cfg.seed, rank, epoch))
        sampler.set_epoch(epoch)
        model.train()
        sums = {"loss": 0.0, "ce": 0.0, "steps": 0.0, "probe_steps": 0.0}
        for _, (xb, yb) in zip(range(steps_per_epoch), loader):
            xb, yb = xb.to(device), yb.to(device)  # (b, T) each
            probing = probe_due(step, cfg.compute_every, lam)
            if probing:  # probes ride in the same forward pass, after the data rows
                probes = make_probes(cfg.num_probes, cfg.seq_len,
                                     seeded_generator(cfg.seed, rank, step))
                xb = torch.cat([xb, probes.to(device)])  # (b + P, T)
            with autocast(cfg, device):
                out = ddp_model(xb, yb)  # losses over the first b rows only (see TENLM.forward)
            loss = out["loss"]
            if probing:
                loss = loss - lam * probe_entropy(out["logits"][yb.shape[0]:])
            if contract.any_rank(not bool(torch.isfinite(loss)), device):
                metrics = {k: float("nan") for k in METRICS}
                session.report({**metrics, "epoch": float(epoch + 1), "diverged": 1.0,
                                "probe_steps": sums["probe_steps"]}, checkpoint_dir=None)
                return
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, cfg)
            optimizer.step()
            step += 1
            sums["loss"] += out["loss"].item()
            sums["ce"] += out["ce_loss"].item()
            sums["steps"] += 1.0
            sums["probe_steps"] += float(probing)

        # every rank ran the same number of equal-sized steps: the global mean is sum / count
        sums = contract.all_reduce_sums(sums, device)
        metrics = evaluate(model, val_ds, cfg, session)
        metrics.update(train_loss=sums["loss"] / max(sums["steps"], 1.0),
                       train_ce=sums["ce"] / max(sums["steps"], 1.0),
                       probe_steps=sums["probe_steps"] / W, epoch=float(epoch + 1),
                       diverged=0.0)
        contract.report_epoch(session, metrics, model, optimizer, {"epoch": epoch, "step": step})


def check(cfg: Any) -> list[str]:
    """Problems with a resolved config (knob ranges, the data file), before any Ray time."""
    problems = []
    try:
        check_config(cfg)
    except ConfigError as e:
        problems += str(e).removeprefix("ten_lm: ").split("; ")
    if cfg.data_path is not None and not os.path.isfile(cfg.data_path):
        problems.append(f"knob 'data_path': {cfg.data_path}: no such file")
    return problems


# Seconds per epoch on a CPU: what every `--smoke` (CLI here, sweeps) runs.
SMOKE = {"epochs": 2, "steps_per_epoch": 10, "corpus_bytes": 100_000, "seq_len": 64,
         "batch_size": 8}

WORKLOAD = Workload(name="ten_lm", defaults=TenLMConfig(), metrics=METRICS, train=train,
                    smoke=SMOKE, check=check)


class _PrintingSession(LocalSession):
    def report(self, metrics: Mapping[str, float], checkpoint_dir: str | None = None) -> None:
        super().report(metrics, checkpoint_dir)
        if self.rank == 0:
            print(" ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--preset", default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny run (seconds), for CI")
    ap.add_argument("--set", nargs="*", default=[], metavar="KNOB=VALUE",
                    help="override any knob, e.g. --set use_hten=true hten_scales=1,4")
    args = ap.parse_args(argv)
    overrides: dict[str, Any] = dict(kv.split("=", 1) for kv in args.set)
    if args.smoke:
        overrides = {**SMOKE, "epochs": 1, **overrides}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.preset is not None:
        overrides["preset"] = args.preset
    try:
        cfg = WORKLOAD.resolve(overrides)
        check_config(cfg)
    except ConfigError as e:
        print(f"error: {e}")
        return 2
    session = _PrintingSession.from_env()  # joins the process group under torchrun
    if session.rank == 0:
        print("ten_lm:", ", ".join(f"{k}={contract.format_knob(v)}"
                                   for k, v in dataclasses.asdict(cfg).items()), flush=True)
    t0 = time.perf_counter()
    train(dataclasses.asdict(cfg), session)
    if session.rank == 0:
        print(f"done in {time.perf_counter() - t0:.1f}s", flush=True)
    return 1 if session.history and session.history[-1].get("diverged") else 0


if __name__ == "__main__":
    raise SystemExit(main())
