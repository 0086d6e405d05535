"""Metrics and entropy on cases small enough to compute by hand."""
import math

import numpy as np
import pytest
import torch

from saliency import metrics as M
from saliency.regularizer import bias_entropy, bias_entropy_frac

P = np.array([[0.4, 0.3], [0.2, 0.1]])          # a 2x2 density
LOG_P = np.log(P)


# ------------------------------------------------------------------------------------ entropy
def test_entropy_of_uniform_map_is_log2_pixels():
    h, w = 8, 16
    log_p = torch.full((3, h, w), -math.log(h * w))
    assert bias_entropy(log_p).item() == pytest.approx(math.log2(h * w), abs=1e-5)
    assert bias_entropy_frac(bias_entropy(log_p).item(), h, w) == pytest.approx(1.0, abs=1e-6)


def test_entropy_of_one_hot_map_is_zero():
    log_p = torch.full((1, 4, 4), -math.inf)
    log_p[0, 1, 2] = 0.0
    assert bias_entropy(log_p).item() == 0.0


def test_bias_map_mixes_in_probability_space():
    # two one-hots on different pixels: the mean density is 1/2, 1/2 → exactly 1 bit
    # (averaging log-densities would give -inf everywhere instead)
    log_p = torch.full((2, 4, 4), -math.inf)
    log_p[0, 0, 0] = 0.0
    log_p[1, 3, 3] = 0.0
    assert bias_entropy(log_p).item() == pytest.approx(1.0, abs=1e-6)


# ------------------------------------------------------------------------------------ LL / IG
def test_log_likelihood_by_hand():
    # fixation on p = 0.4 of N = 4 pixels: log2(0.4) + log2(4) = log2(1.6)
    assert M.log_likelihood(LOG_P, [0], [0]) == pytest.approx(math.log2(1.6))
    # two fixations: mean of log2 0.4 and log2 0.1, plus 2 bits
    assert M.log_likelihood(LOG_P, [0, 1], [0, 1]) == pytest.approx(
        (math.log2(0.4) + math.log2(0.1)) / 2 + 2)
    uniform = np.full((2, 2), math.log(0.25))
    assert M.log_likelihood(uniform, [0, 1, 1], [1, 0, 1]) == pytest.approx(0.0, abs=1e-12)


def test_information_gain_by_hand():
    base = np.log(np.array([[0.25, 0.25], [0.25, 0.25]]))
    # over a uniform baseline IG equals LL
    assert M.information_gain(LOG_P, base, [0], [1]) == pytest.approx(math.log2(0.3 / 0.25))
    # the baseline against itself scores 0 by definition; duplicates count twice
    assert M.information_gain(base, base, [0, 0], [0, 0]) == 0.0
    other = np.log(np.array([[0.1, 0.2], [0.3, 0.4]]))
    assert M.information_gain(LOG_P, other, [0, 1, 1], [0, 1, 1]) == pytest.approx(
        (math.log2(4) + 2 * math.log2(0.25)) / 3)


def test_unnormalized_map_is_rejected():
    with pytest.raises(ValueError, match="normalized"):
        M.log_likelihood(np.log(P * 2), [0], [0])


# ------------------------------------------------------------------------------------ NSS
def test_nss_by_hand():
    # mean 0.25, sample std sqrt((0.15² + 0.05² + 0.05² + 0.15²) / 3) = sqrt(0.05 / 3)
    std = math.sqrt(0.05 / 3)
    assert M.nss(P, [0], [0]) == pytest.approx(0.15 / std)
    assert M.nss(P, [0, 1], [0, 1]) == pytest.approx((0.15 - 0.15) / 2 / std)
    assert M.nss(P, [1, 1], [0, 0]) == pytest.approx(-0.05 / std)
    assert M.nss(np.ones((3, 3)), [1], [1]) == 0.0


# ------------------------------------------------------------------------------------ AUC
def test_auc_judd_by_hand():
    s = np.array([[4.0, 3.0], [2.0, 1.0]])
    # fixation on the 3: threshold 3 → TPR 1, FPR 1/3 (only the 4 of 3 negatives);
    # area of (0,0)-(1/3,1)-(1,1) = 1/3 · 1/2 + 2/3 · 1 = 5/6
    assert M.auc_judd(s, [0], [1]) == pytest.approx(5 / 6)
    assert M.auc_judd(s, [0], [0]) == pytest.approx(1.0)      # fixation on the maximum
    assert M.auc_judd(s, [1], [1]) == pytest.approx(0.5)      # on the minimum: chance
    # two fixations (on 4 and 2): ROC (0,0) → t=4 (FPR 0, TPR 1/2) → t=2 (1/2, 1) → (1,1);
    # trapezoids 0 + 1/2 · (1/2 + 1)/2 + 1/2 · 1 = 3/8 + 1/2 = 7/8
    assert M.auc_judd(s, [0, 1], [0, 0]) == pytest.approx(7 / 8)
    # duplicate fixations collapse to one fixated pixel (a binary fixation map)
    assert M.auc_judd(s, [0, 0, 0], [1, 1, 1]) == pytest.approx(5 / 6)


def test_auc_judd_constant_map_is_chance():
    assert M.auc_judd(np.zeros((4, 4)), [0, 2], [1, 3]) == pytest.approx(0.5)


def test_auc_judd_is_invariant_to_monotone_transforms():
    rng = np.random.default_rng(0)
    s = rng.random((6, 7))
    ys, xs = rng.integers(0, 6, 5), rng.integers(0, 7, 5)
    assert M.auc_judd(np.log(s), ys, xs) == pytest.approx(M.auc_judd(s, ys, xs))


# ------------------------------------------------------------------------------------ batched
def test_metric_sums_agree_with_per_image_functions():
    rng = np.random.default_rng(1)
    b, h, w = 3, 5, 6
    log_p = torch.log_softmax(torch.randn(b, h * w, dtype=torch.float64), 1).view(b, h, w)
    base = torch.log_softmax(torch.randn(b, h * w, dtype=torch.float64), 1).view(b, h, w)
    counts = torch.zeros(b, h, w)
    fix = []
    for i in range(b):
        ys, xs = rng.integers(0, h, 4), rng.integers(0, w, 4)
        ys[1], xs[1] = ys[0], xs[0]  # a duplicate fixation
        np.add.at(counts[i].numpy(), (ys, xs), 1.0)
        fix.append((ys, xs))
    sums = M.metric_sums(log_p, base, counts)
    out = M.finalize(sums, "val")
    n = sum(len(y) for y, _ in fix)
    ll = sum(M.log_likelihood(log_p[i], *fix[i]) * len(fix[i][0]) for i in range(b)) / n
    ig = sum(M.information_gain(log_p[i], base[i], *fix[i]) * len(fix[i][0])
             for i in range(b)) / n
    nss = sum(M.nss(log_p[i].exp(), *fix[i]) * len(fix[i][0]) for i in range(b)) / n
    auc = sum(M.auc_judd(log_p[i], *fix[i]) for i in range(b)) / b
    assert sums["n_fix"] == n and sums["n_img"] == b
    assert out["val_ll"] == pytest.approx(ll)
    assert out["val_ig"] == pytest.approx(ig)
    assert out["val_nss"] == pytest.approx(nss)
    assert out["val_auc"] == pytest.approx(auc)
