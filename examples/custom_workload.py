"""A user's own model family, written only against the public contract and the training kit:
an MLP regressing a noisy nonlinear function of generated inputs, with `dropout` and
`weight_decay` as the regularization knobs a sweep tunes.

    python -m examples.custom_workload --smoke          # trains in a few seconds, no Ray
    python sweeps/run.py --space examples/custom_space.yaml --smoke

The whole recipe is: a knob dataclass (defaults + domains), the metrics and their goals, and
`setup(cfg, session) -> Trial` (model, optimizer, training data, one step, one evaluation).
The kit's loop does seeding, resume, DDP, divergence, global-mean metrics and checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from workloads import kit
from workloads.contract import Session
from workloads.kit import LoopKnobs, StepResult, Trial, above, at_least, between, knob
from workloads.kit.cli import main as cli_main


@dataclass
class MLPKnobs(LoopKnobs):
    epochs: int = knob(4, at_least(1))
    batch_size: int = knob(64, at_least(1))
    hidden: int = knob(64, at_least(1), help="width of the two hidden layers")
    dropout: float = knob(0.0, between(0, 1, hi_open=True))
    weight_decay: float = knob(0.0, at_least(0), help="AdamW decoupled weight decay")
    lr: float = knob(3e-3, above(0))
    n_train: int = knob(512, at_least(8), help="generated training examples")
    n_val: int = knob(256, at_least(8))
    noise: float = knob(0.3, at_least(0), help="std of the label noise")
    data_seed: int = knob(0, help="one draw for every search trial; confirm runs get fresh ones")


METRICS = {"val_mse": "minimize", "train_mse": "minimize"}
# Optional: what reports and plot axes say about each metric ({name: (unit, meaning)}).
METRIC_DOCS = {"val_mse": ("", "mean squared error on the held-out draw (its floor is noise², "
                               "the label noise's variance)"),
               "train_mse": ("", "mean squared error over the epoch's training batches")}
IN_FEATURES = 8


def make_data(n: int, cfg: MLPKnobs, split: int) -> TensorDataset:
    """y = sin(x·w) + 0.5·(x_0·x_1) + noise, from a generator seeded by (data_seed, split)."""
    g = torch.Generator().manual_seed(kit.mix_seed(cfg.data_seed, split))
    w = torch.randn(IN_FEATURES, generator=torch.Generator().manual_seed(cfg.data_seed))
    x = torch.randn(n, IN_FEATURES, generator=g)                        # (n, F)
    y = torch.sin(x @ w) + 0.5 * x[:, 0] * x[:, 1]                      # (n,)
    y = y + cfg.noise * torch.randn(n, generator=g)
    return TensorDataset(x, y.unsqueeze(1))                              # (n, F), (n, 1)


def build_model(cfg: MLPKnobs) -> nn.Module:
    torch.manual_seed(cfg.seed)  # every rank starts from the same weights
    return nn.Sequential(nn.Linear(IN_FEATURES, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout),
                         nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout),
                         nn.Linear(cfg.hidden, 1))


@torch.no_grad()
def evaluate(model: nn.Module, val: TensorDataset, session: Session) -> dict[str, float]:
    """Validation MSE as a global mean: each rank sums its shard, then all-reduce."""
    model.eval()
    x, y = val.tensors
    mine = torch.arange(session.rank, len(val), session.world_size)
    err = (model(x[mine].to(session.device)) - y[mine].to(session.device)).pow(2).sum()
    s = kit.all_reduce_sums({"se": float(err), "n": float(len(mine))}, session.device)
    model.train()
    return {"val_mse": s["se"] / max(s["n"], 1.0)}


def setup(cfg: MLPKnobs, session: Session) -> Trial:
    device = session.device
    model = build_model(cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    val = make_data(cfg.n_val, cfg, split=1)

    def step(ddp_model: nn.Module, batch: Any, step: int) -> StepResult:
        x, y = (t.to(device) for t in batch)                             # (b, F), (b, 1)
        loss = (ddp_model(x) - y).pow(2).mean()
        return StepResult(loss, {"train_mse": (loss.item() * len(x), float(len(x)))})

    return Trial(model, optimizer, make_data(cfg.n_train, cfg, split=0), step,
                 evaluate=lambda m, s: evaluate(m, val, s))


def check(cfg: MLPKnobs) -> list[str]:
    if cfg.batch_size > cfg.n_train:
        return [f"knob 'batch_size': {cfg.batch_size} exceeds n_train={cfg.n_train}"]
    return []


SMOKE = {"epochs": 2, "n_train": 128, "n_val": 64, "hidden": 16, "batch_size": 32}

WORKLOAD = kit.make_workload(name="custom_mlp", knobs=MLPKnobs, metrics=METRICS, setup=setup,
                             smoke=SMOKE, check=check, data_seed_knob="data_seed",
                             metric_docs=METRIC_DOCS)


if __name__ == "__main__":
    raise SystemExit(cli_main(WORKLOAD, doc=__doc__))
