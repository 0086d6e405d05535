"""The entropy regularizer: gradients, train mode, scheduling, exact baseline; the model."""
import math

import pytest
import torch

from saliency.model import ModelConfig, SaliencyModel, configure_optimizers, load_backbone
from saliency.regularizer import (RegularizerConfig, patch_shuffled, probe_generator,
                                  training_losses, training_probes, uniform_centerbias,
                                  uniform_probes)

S = 16


def _model(seed: int = 0, perturb: bool = True) -> SaliencyModel:
    torch.manual_seed(seed)
    model = SaliencyModel(ModelConfig(width=4, readout=[8]))
    if perturb:  # the final conv starts at zero (model == center bias); give it a bias to fix
        with torch.no_grad():
            model.readout[-1].weight.normal_(0, 0.5)
    return model


def _batch(b: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(b, 3, S, S, generator=g)
    yy, xx = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    cb = torch.log_softmax((-((yy - S / 2) ** 2 + (xx - S / 2) ** 2) / 20.0).flatten(), 0)
    counts = (torch.rand(b, S, S, generator=g) > 0.9).float()
    return images, cb.view(S, S).expand(b, S, S), counts


def _is_probe(images: torch.Tensor) -> torch.Tensor:
    return images.flatten(1).std(1) == 0  # uniform images; random data never is


def test_model_outputs_normalized_log_density_and_starts_at_center_bias():
    images, cb, _ = _batch()
    log_p = _model(perturb=False)(images, cb)
    assert log_p.shape == (4, S, S)
    assert torch.allclose(torch.logsumexp(log_p.flatten(1), 1), torch.zeros(4), atol=1e-5)
    assert torch.allclose(log_p, cb, atol=1e-5)  # zero-initialized readout → the center bias


def test_probes_in_the_batch_do_not_change_data_predictions():
    model = _model()
    images, cb, _ = _batch()
    probes = uniform_probes(5, [0.0, 1.0], S, S, probe_generator(0, 0))
    together = model(torch.cat([images, probes]), torch.cat([cb, uniform_centerbias(5, S, S)]))
    assert torch.allclose(together[:4], model(images, cb), atol=1e-6)


def test_probes_use_a_private_generator():
    state = torch.get_rng_state()
    a = uniform_probes(16, [0.0, 0.5, 1.0], S, S, probe_generator(3, 7))
    b = uniform_probes(16, [0.0, 0.5, 1.0], S, S, probe_generator(3, 7))
    c = uniform_probes(16, [0.0, 0.5, 1.0], S, S, probe_generator(3, 8))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a[:, 0, 0, 0].tolist()) <= {0.0, 0.5, 1.0} and _is_probe(a).all()


def test_regularizer_gradient_reaches_model_in_train_mode():
    model = _model().train()
    modes = []
    model.register_forward_pre_hook(lambda m, args: modes.append(m.training))
    images, cb, counts = _batch()
    reg = RegularizerConfig(lam=0.5, compute_every=2, num_uniform_samples=6)
    out = training_losses(model, images, cb, counts, step=0, reg=reg)
    assert out["probed"] and out["entropy"] is not None
    assert 0 < out["entropy"].item() <= math.log2(S * S) + 1e-4
    # lambda is per optimizer step: an application every 2nd step weighs 2 * lambda
    assert torch.allclose(out["loss"], out["nll_loss"] - 1.0 * out["entropy"])
    out["entropy"].backward()  # the raw regularizer alone
    first_conv = model.backbone.stem[0][0].weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    assert model.blur.log_sigma.grad is not None
    assert modes == [True] and model.training


def test_compute_every_is_honoured():
    model = _model()
    images, cb, counts = _batch()
    probe_passes = []
    model.register_forward_pre_hook(lambda m, args: probe_passes.append(
        int(_is_probe(args[0]).sum())))
    reg = RegularizerConfig(lam=0.3, compute_every=3, num_uniform_samples=5)
    probed = [training_losses(model, images, cb, counts, step=s, reg=reg)["probed"]
              for s in range(10)]
    assert probed == [s % 3 == 0 for s in range(10)]
    assert probe_passes == [5 if s % 3 == 0 else 0 for s in range(10)]  # one forward per step


def _train_steps(lam: float, compute_every: int, steps: int = 4) -> SaliencyModel:
    model = _model(seed=5)
    opt = configure_optimizers(model, lr=1e-2, weight_decay=1e-4)
    reg = RegularizerConfig(lam=lam, compute_every=compute_every, num_uniform_samples=4)
    for step in range(steps):
        images, cb, counts = _batch(seed=10 + step)
        loss = training_losses(model, images, cb, counts, step=step, reg=reg)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_lambda_zero_and_compute_every_zero_are_bit_for_bit_baseline():
    base = _train_steps(0.0, 0)
    for lam, every in [(0.0, 1), (0.0, 50), (0.7, 0)]:
        other = _train_steps(lam, every)
        for (name, a), b in zip(base.named_parameters(), other.parameters()):
            assert torch.equal(a, b), (lam, every, name)
    regularized = _train_steps(0.7, 1)
    assert not all(torch.equal(a, b) for a, b in zip(base.parameters(),
                                                      regularized.parameters()))


def test_regularizer_config_validates():
    with pytest.raises(ValueError, match="uniform_intensities"):
        RegularizerConfig(uniform_intensities=[0.5, 2.0])
    with pytest.raises(ValueError, match="compute_every"):
        RegularizerConfig(compute_every=-1)
    with pytest.raises(ValueError, match="neutral_pool"):
        RegularizerConfig(lam=1.0, compute_every=1, probes="neutral")
    RegularizerConfig(lam=0.0, compute_every=1, probes="neutral")  # off: no pool needed


def test_neutral_probes_come_from_the_pool_and_are_the_same_on_every_rank():
    pool = (torch.arange(10, dtype=torch.uint8) * 20).view(10, 1, 1, 1).expand(10, 3, S, S)
    reg = RegularizerConfig(lam=1.0, compute_every=1, num_uniform_samples=4, probes="neutral",
                            neutral_pool=pool.contiguous(), seed=3)
    a, b = training_probes(reg, 5, S, S), training_probes(reg, 5, S, S)
    assert torch.equal(a, b) and a.shape == (4, 3, S, S)  # no rank in the key: all ranks agree
    assert set((a[:, 0, 0, 0] * 255).round().tolist()) <= {20.0 * i for i in range(10)}
    assert not torch.equal(a, training_probes(reg, 6, S, S))


def test_patch_shuffled_probes_keep_content_and_lose_position():
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    probes = patch_shuffled(images, 20, grid=4, seed=0)
    assert probes.shape == (20, 3, 16, 16)
    for p in probes:  # every probe is a permutation of one image's 4x4 patches
        blocks = lambda x: sorted(x.reshape(3, 4, 4, 4, 4).permute(1, 3, 0, 2, 4)
                                  .reshape(16, -1).tolist())
        assert any(blocks(p) == blocks(im) for im in images)
    assert not all(torch.equal(p, images[0]) for p in probes)


def test_pluggable_backbone():
    model = SaliencyModel(ModelConfig(backbone="saliency.model:SmallCNN", readout=[4]))
    images, cb, _ = _batch(2)
    assert model(images, cb).shape == (2, S, S)
    with pytest.raises(ValueError, match="package.module:factory"):
        load_backbone("no_colon_here")
    with pytest.raises(ValueError, match="cannot be imported"):
        load_backbone("saliency.model:NoSuchFactory")
