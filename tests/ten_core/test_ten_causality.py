"""Causality: logits at positions ≤ t must not depend on tokens after t (TEN and HTEN).

A leak would let the model read the bytes it is asked to predict and report a fake-good loss.
The checker is itself tested: a naive (non-shifted) HTEN upsampling must fail it.
"""
import pytest
import torch
import torch.nn.functional as F

from ten_core import DECAY_INITS, TENConfig, TENLM
from ten_core import hten
from ten_core.scan import SCAN_METHODS

torch.set_num_threads(1)
T = 40
CUTS = (0, 5, 14, 22, 31)  # includes cuts inside, at the end of, and before coarse blocks


def max_leak(model: TENLM, x: torch.Tensor, t: int) -> tuple[float, float]:
    """(max |Δlogits| at positions ≤ t, at positions > t) after re-drawing tokens after t."""
    g = torch.Generator().manual_seed(t)
    x2 = x.clone()
    x2[:, t + 1:] = torch.randint(0, 256, x2[:, t + 1:].shape, generator=g)
    with torch.no_grad():
        a, b = model(x)["logits"], model(x2)["logits"]
    past = (a[:, :t + 1] - b[:, :t + 1]).abs().max().item()
    future = (a[:, t + 1:] - b[:, t + 1:]).abs().max().item() if t + 1 < x.shape[1] else 1.0
    return past, future


def make_model(scales=None, method="unrolled", decay_init="paper") -> TENLM:
    torch.manual_seed(0)
    cfg = TENConfig(d_model=32, n_layers=2, n_eigen=24, n_heads=2, chunk_size=8,
                    scan_method=method, use_hten=scales is not None,
                    hten_scales=tuple(scales or (1, 2, 4, 8)), decay_init=decay_init,
                    memory_range=(1.05, T))
    return TENLM(cfg).eval()


@pytest.mark.parametrize("decay_init", DECAY_INITS)
@pytest.mark.parametrize("method", SCAN_METHODS)
@pytest.mark.parametrize("scales", [None, [1, 2], [1, 2, 4], [1, 2, 4, 8]],
                         ids=["ten", "hten-1-2", "hten-1-2-4", "hten-1-2-4-8"])
def test_future_tokens_do_not_change_past_logits(scales, method, decay_init):
    model = make_model(scales, method, decay_init)
    x = torch.randint(0, 256, (2, T), generator=torch.Generator().manual_seed(1))
    for t in CUTS:
        past, future = max_leak(model, x, t)
        assert past <= 1e-6, f"position <= {t} changed by {past} when tokens > {t} changed"
        assert future > 1e-4  # the perturbation is real: later positions do see it


def naive_upsample(y: torch.Tensor, s: int, T: int) -> torch.Tensor:
    """The tempting, wrong upsampling: block j repeated over its own tokens [js, js + s − 1]."""
    rep = y.repeat_interleave(s, dim=1)  # (B, n·s, d)
    return F.pad(rep, (0, 0, 0, T - rep.shape[1]))


@pytest.mark.parametrize("scales", [[1, 2], [1, 2, 4, 8]])
def test_checker_catches_naive_upsampling(monkeypatch, scales):
    monkeypatch.setattr(hten, "causal_upsample", naive_upsample)
    model = make_model(scales)
    x = torch.randint(0, 256, (2, T), generator=torch.Generator().manual_seed(1))
    leaks = [max_leak(model, x, t)[0] for t in CUTS]
    assert max(leaks) > 1e-3, "the causality check failed to detect a future leak"


def test_causal_upsample_positions():
    """Position t reads block ⌊(t+1)/s⌋ − 1, the latest block that has ended at or before t."""
    s, T = 4, 11
    y = torch.arange(1, T // s + 1, dtype=torch.float32).view(1, -1, 1)  # block j has value j+1
    up = hten.causal_upsample(y, s, T)[0, :, 0]
    expected = torch.tensor([(t + 1) // s for t in range(T)], dtype=torch.float32)
    torch.testing.assert_close(up, expected)  # 0 = no complete block yet
