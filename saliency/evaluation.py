"""Evaluating a saliency model: metric partial sums over a shard of images (summed over ranks
by the caller, then finalized by saliency.metrics.finalize) and the bias-entropy measurement."""
from __future__ import annotations

from typing import Sequence

import torch

from saliency.metrics import add_sums, empty_sums, metric_sums
from saliency.regularizer import bias_entropy, per_probe_entropy, uniform_centerbias


@torch.no_grad()
def metric_partial_sums(model: torch.nn.Module, images: torch.Tensor, counts: torch.Tensor,
                        centerbias: torch.Tensor, baseline: torch.Tensor, indices: Sequence[int],
                        device: torch.device, batch_size: int = 64,
                        amp: bool = False) -> dict[str, float]:
    """Metric partial sums over `indices`; centerbias (S, S) or (N, S, S) is the model input,
    baseline (S, S) or (N, S, S) the IG reference."""
    sums = empty_sums()
    idx = list(indices)
    for i in range(0, len(idx), batch_size):
        sel = torch.tensor(idx[i:i + batch_size])
        x = images[sel].to(device).float().div_(255)                       # (B, 3, S, S)
        cb = (centerbias[sel] if centerbias.ndim == 3 else
              centerbias.expand(len(sel), *centerbias.shape[-2:])).to(device)  # (B, S, S)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            log_p = model(x, cb)                                            # (B, S, S)
        base = baseline[sel] if baseline.ndim == 3 else baseline.expand_as(log_p)
        add_sums(sums, metric_sums(log_p.float(), base.to(device), counts[sel].to(device)))
    return sums


@torch.no_grad()
def probe_entropies(model: torch.nn.Module, probes: torch.Tensor,
                    device: torch.device) -> tuple[float, float]:
    """(mixture entropy, mean per-probe entropy) in bits for fixed probes (n, 3, S, S) in
    [0, 1] with a uniform center bias, in eval mode (a measurement, not a loss)."""
    was_training = model.training
    model.eval()
    n, _, h, w = probes.shape
    log_p = model(probes.to(device), uniform_centerbias(n, h, w, device))  # (n, S, S)
    model.train(was_training)
    return float(bias_entropy(log_p)), float(per_probe_entropy(log_p))
