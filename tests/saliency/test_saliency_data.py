"""saliency/data.py on the planted-prior benchmark: center-bias input arms, the OOD sets scored
with their own center bias, oracle ceilings."""
import math
import os

import pytest
import torch

from saliency import synthetic
from saliency.data import load_data

S = 32


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = str(tmp_path_factory.mktemp("planted") / "d")
    synthetic.ensure_generated(r, seed=3, num_images=40, ood_images=24, fixations_per_image=30)
    return r


def load(root, arm, oracle=True):
    return load_data(os.path.join(root, "MIT1003"), os.path.join(root, "CAT2000"), S,
                     split_seed=0, skip_bad=False, cb_bandwidth=0.05, cb_uniform=0.01,
                     centerbias_input=arm, blur_bandwidth=0.25,
                     content_dir=os.path.join(root, "CAT2000_content"), oracle=oracle)


def row_center_of_mass(log_density: torch.Tensor) -> float:
    p = log_density.exp()
    p = p / p.sum()
    return float((p.sum(-1) * torch.arange(p.shape[-2])).sum() / (p.shape[-2] - 1))


def entropy(log_density: torch.Tensor) -> float:
    return float(-(log_density.exp() * log_density).sum())


def test_ood_is_scored_and_fed_with_its_own_center_bias(root):
    d = load(root, "sharp")
    assert d.ood.model_input.shape == (d.ood.images.shape[0], S, S)  # leave one out, per image
    # the in-domain prior is high in the frame, the prior-shift set's low; each input follows
    assert row_center_of_mass(d.train_input) < 0.5 < row_center_of_mass(d.ood.model_input[0])
    assert torch.equal(d.ood_transfer.model_input, d.train_input)
    assert torch.equal(d.ood.images, d.ood_transfer.images)
    torch.testing.assert_close(d.ood.model_input, d.ood.baseline)  # sharp: input = baseline
    assert d.content is not None and d.content.images.shape[0] == 24


def test_arms_hand_the_model_less_and_less_of_the_prior(root):
    sharp, blurred, uniform = (load(root, a) for a in ("sharp", "blurred", "uniform"))
    h = [entropy(d.train_input) for d in (sharp, blurred, uniform)]
    assert h[0] < h[1] < h[2] == pytest.approx(math.log(S * S))
    # the IG baseline never changes with the arm: every arm is scored the same way
    for d in (blurred, uniform):
        torch.testing.assert_close(d.val.baseline, sharp.val.baseline)
        torch.testing.assert_close(d.ood.baseline, sharp.ood.baseline)


def test_oracle_ceilings_only_for_synthetic_data(root):
    d = load(root, "sharp")
    for es in (d.val, d.ood, d.content):
        assert math.isfinite(es.oracle_ig) and es.oracle_ig > 0.3  # the truth beats the prior
    assert math.isnan(load(root, "sharp", oracle=False).ood.oracle_ig)
