"""A DeepGaze-style saliency model (the spatial-priority pathway of DeepGaze IIE / III).

    images (B, 3, H, W) in [0, 1] ──backbone──► features (B, C, h, w)
        ──readout (GroupNorm → 1×1 conv → softplus, twice; → 1×1 conv)──► logits (B, 1, h, w)
        ──bilinear upsample──► (B, 1, H, W) ──Gaussian blur, learned σ──►
        + w_cb · centerbias (B, H, W) ──log-softmax over the H·W pixels──► log p (B, H, W)

The output is a normalized log-density per image (`logsumexp` over pixels is 0), so the model
is a probabilistic fixation model scored by log-likelihood (Kümmerer et al. 2015).

Why the pieces are what they are:
* The center bias is an *input*, one log-density per sample. Training batches get the dataset's
  center bias; entropy probes get a uniform one, so data and probes share one forward pass
  (one forward per backward keeps DDP's gradient bucketing simple and correct).
* No BatchNorm anywhere in the default model: norms are GroupNorm(1, C), i.e. LayerNorm over
  (C, h, w) per sample, without running statistics. Probe images concatenated into the batch
  therefore cannot change what the model computes on the data images, and train/eval modes
  compute the same function.
* The final 1×1 conv starts at zero, so an untrained model predicts exactly the center bias
  (information gain 0); anything above 0 is learned from image content.
* A pluggable backbone (`"package.module:factory"`, a zero-argument callable returning an
  `nn.Module` mapping (B, 3, H, W) in [0, 1] to (B, C, h, w)) replaces the small CNN; it may
  expose `out_channels`, otherwise C is found with one dummy forward. Nothing is downloaded.
  A backbone with BatchNorm would mix probe and data statistics in train mode: freeze it
  (keep it in eval mode by overriding `train`) or use one without batch statistics.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
    backbone: str = ""                 # "" → SmallCNN; else "package.module:factory"
    width: int = 16                    # SmallCNN base channel count
    readout: list[int] = field(default_factory=lambda: [16, 8])  # hidden 1×1 conv widths
    blur_init: float = 0.03            # initial blur σ as a fraction of the image width
    centerbias_weight_init: float = 1.0


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    # zero padding on purpose: borders are one source of the implicit spatial bias we measure
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation),
        nn.GroupNorm(1, cout),
        nn.GELU(),
    )


class SmallCNN(nn.Module):
    """A from-scratch CPU-friendly backbone: stride 4 overall, dilations for a wide context.

    Returns the concatenation of the last two stages (local contrast + context), like
    DeepGaze reading out several layers of its backbone.
    """

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.stem = nn.Sequential(_block(3, w, stride=2), _block(w, 2 * w, stride=2))
        self.mid = _block(2 * w, 2 * w, dilation=2)
        self.ctx = _block(2 * w, 4 * w, dilation=4)
        self.out_channels = 6 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x - 0.5)                      # (B, 2w, H/4, W/4)
        m = self.mid(x)                             # (B, 2w, H/4, W/4)
        c = self.ctx(m)                             # (B, 4w, H/4, W/4)
        return torch.cat([m, c], dim=1)             # (B, 6w, H/4, W/4)


def load_backbone(spec: str) -> nn.Module:
    """Import `package.module:factory` and call it; ValueError naming the spec on failure."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"backbone must look like 'package.module:factory' (got {spec!r})")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"backbone {spec!r} cannot be imported: {e}") from e
    module = factory()
    if not isinstance(module, nn.Module):
        raise ValueError(f"backbone {spec!r} returned {type(module).__name__}, not nn.Module")
    return module


def _out_channels(backbone: nn.Module) -> int:
    c = getattr(backbone, "out_channels", None)
    if isinstance(c, int):
        return c
    was_training = backbone.training
    backbone.eval()  # a dummy forward must not touch BatchNorm running statistics
    with torch.no_grad():
        c = backbone(torch.zeros(1, 3, 64, 64)).shape[1]
    backbone.train(was_training)
    return int(c)


class GaussianBlur(nn.Module):
    """Separable Gaussian blur with a learned width σ = exp(log_sigma) · image width.

    Replicate padding, so a constant map stays constant (the blur adds no spatial bias).
    The kernel radius is 3σ, capped at a quarter of the image side.
    """

    def __init__(self, sigma_init: float):
        super().__init__()
        self.log_sigma = nn.Parameter(torch.tensor(math.log(sigma_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W)
        h, w = x.shape[-2:]
        sigma = self.log_sigma.exp() * w                                # pixels
        radius = int(min(math.ceil(3.0 * float(sigma.detach())), max(1, min(h, w) // 4)))
        k = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
        g = torch.exp(-0.5 * (k / sigma.to(x.dtype)) ** 2)
        g = g / g.sum()                                                 # (2r+1,)
        x = F.pad(x, (radius, radius, 0, 0), mode="replicate")
        x = F.conv2d(x, g.view(1, 1, 1, -1))                            # (B, 1, H, W+2r) → W
        x = F.pad(x, (0, 0, radius, radius), mode="replicate")
        return F.conv2d(x, g.view(1, 1, -1, 1))                         # (B, 1, H, W)


class SaliencyModel(nn.Module):
    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config = config or ModelConfig()
        self.backbone = load_backbone(config.backbone) if config.backbone else SmallCNN(
            config.width)
        layers: list[nn.Module] = []
        cin = _out_channels(self.backbone)
        for cout in config.readout:
            layers += [nn.GroupNorm(1, cin), nn.Conv2d(cin, cout, 1), nn.Softplus()]
            cin = cout
        final = nn.Conv2d(cin, 1, 1)
        nn.init.zeros_(final.weight)  # start at the center-bias baseline (IG = 0)
        nn.init.zeros_(final.bias)
        self.readout = nn.Sequential(*layers, nn.GroupNorm(1, cin), final)
        self.blur = GaussianBlur(config.blur_init)
        self.centerbias_weight = nn.Parameter(torch.tensor(config.centerbias_weight_init))

    def forward(self, images: torch.Tensor, centerbias: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [0, 1], centerbias log-density (B, H, W) → log p (B, H, W)."""
        b, _, h, w = images.shape
        if centerbias.shape != (b, h, w):
            raise ValueError(f"centerbias must be (B, H, W) = {(b, h, w)}, "
                             f"got {tuple(centerbias.shape)}")
        x = self.readout(self.backbone(images))                         # (B, 1, h', w')
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)  # (B, 1, H, W)
        x = self.blur(x)[:, 0].float()                                  # (B, H, W)
        x = x + self.centerbias_weight.float() * centerbias.float()     # (B, H, W)
        return torch.log_softmax(x.flatten(1), dim=1).view(b, h, w)     # (B, H, W)


def configure_optimizers(model: nn.Module, *, lr: float, weight_decay: float,
                         betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """AdamW with weight decay on conv/linear weights only.

    Biases, norm gains, the blur width and the center-bias weight are scalars/vectors whose
    natural value is not 0 (decaying log σ would shrink the blur towards σ = 1 image width).
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)
