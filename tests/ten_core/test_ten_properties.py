"""Stability, energy, losses and gradients of the TEN layer and model."""
import math

import pytest
import torch

from ten_core import TENConfig, TENLM
from ten_core.scan import eigen_scan, eigenvalue
from ten_core.ten import EigenstateCore

torch.set_num_threads(1)


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_eigenvalues_inside_unit_circle_for_extreme_inputs(scale):
    torch.manual_seed(0)
    core = EigenstateCore(16, 8, 2)
    x = scale * torch.randn(3, 20, 16).sign()
    beta, log_mag, angle = core.spectrum(x)
    lam = eigenvalue(log_mag, angle)
    assert torch.isfinite(log_mag).all() and (log_mag <= 0).all()
    assert (lam.abs() <= 1.0).all()
    # σ(α ± 0.1) bounds: selectivity nudges the spectrum by at most 0.1 in α and ω
    assert (log_mag >= torch.nn.functional.logsigmoid(core.alpha - 0.1001)).all()
    assert ((angle - core.omega).abs() <= 0.1 + 1e-6).all()
    r, energy, _ = core(x)
    assert torch.isfinite(r).all() and torch.isfinite(energy).all()


def energy_and_bound(core: EigenstateCore, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    beta, log_mag, angle = core.spectrum(x)
    c, _ = eigen_scan(beta, log_mag, angle, chunk_size=8)
    E = EigenstateCore.energy(c)  # (B, T)
    B = beta.abs().square().sum(-1).sqrt().amax(dim=1, keepdim=True)  # (B, 1): max_t ‖β(t)‖
    t = torch.arange(x.shape[1], dtype=torch.float32)
    return E, (E[:, :1].sqrt() + t * B).square()


@pytest.mark.parametrize("input_scale", [1.0, 30.0, 1e4])
def test_energy_bound(input_scale):
    """‖c(t)‖ ≤ ‖c(t−1)‖ + ‖β(t)‖ when |λ| ≤ 1, so E(t) ≤ (√E(0) + t·B)², B = max_t ‖β(t)‖."""
    torch.manual_seed(0)
    core = EigenstateCore(16, 8, 2)
    with torch.no_grad():
        core.alpha[:4] = 8.0  # |λ| ≈ 1 for half the states: the tightest case for the bound
    E, bound = energy_and_bound(core, input_scale * torch.randn(4, 50, 16))
    assert torch.isfinite(E).all()
    assert (E <= bound * (1 + 1e-5)).all()


def test_energy_bound_is_tight_for_coherent_input():
    """|λ| → 1, no rotation, constant input: β adds up coherently and E(t) meets the bound."""
    core = EigenstateCore(16, 8, 2)
    with torch.no_grad():
        core.alpha.fill_(30.0)  # |λ| = σ(30) ≈ 1 − 1e-13
        core.omega.zero_()  # no rotation
        core.in_proj.weight[16:].zero_()  # no selectivity: Δα = Δω = 0
    E, bound = energy_and_bound(core, torch.randn(1, 1, 16).expand(2, 50, 16))
    assert (E <= bound * (1 + 1e-5)).all() and (E >= 0.99 * bound).all()


@pytest.mark.parametrize("use_hten", [False, True])
def test_compute_loss_total_is_ce_plus_weighted_energy(use_hten):
    torch.manual_seed(0)
    cfg = TENConfig(d_model=32, n_layers=2, n_eigen=16, n_heads=2, energy_reg_weight=0.37,
                    use_hten=use_hten, hten_scales=(1, 4))
    model = TENLM(cfg)
    x = torch.randint(0, 256, (2, 24))
    out = model.compute_loss(x[:, :-1], x[:, 1:], return_dict=True)
    assert set(out) >= {"loss", "ce_loss", "energy_loss"}
    torch.testing.assert_close(out["loss"], out["ce_loss"] + 0.37 * out["energy_loss"])
    assert out["energy_loss"] > 0
    # ce in nats per byte, near ln 256 for an untrained model
    assert abs(out["ce_loss"].item() - math.log(256)) < 0.5
    # energy_loss = mean over batch, time and layers of Σ_k |c_k|²
    torch.testing.assert_close(out["energy_loss"], out["energy"].mean())
    loss_only = model.compute_loss(x[:, :-1], x[:, 1:], return_dict=False)
    torch.testing.assert_close(loss_only, out["loss"])


def test_losses_cover_only_rows_with_targets():
    """Appended probe rows change neither ce_loss nor energy_loss of the data rows."""
    torch.manual_seed(0)
    model = TENLM(TENConfig(d_model=32, n_layers=1, n_eigen=16, n_heads=2))
    x = torch.randint(0, 256, (3, 17))
    probes = torch.full((2, 16), 7)
    plain = model(x[:, :-1], x[:, 1:])
    mixed = model(torch.cat([x[:, :-1], probes]), x[:, 1:])
    torch.testing.assert_close(mixed["ce_loss"], plain["ce_loss"])
    torch.testing.assert_close(mixed["energy_loss"], plain["energy_loss"])
    assert mixed["logits"].shape[0] == 5


@pytest.mark.parametrize("use_hten", [False, True])
def test_gradients_reach_every_parameter(use_hten):
    torch.manual_seed(0)
    cfg = TENConfig(d_model=32, n_layers=2, n_eigen=16, n_heads=2, use_hten=use_hten,
                    hten_scales=(1, 2, 4, 8))
    model = TENLM(cfg)
    x = torch.randint(0, 256, (2, 33))
    model.compute_loss(x[:, :-1], x[:, 1:])["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_optimizer_groups_keep_eigenvalues_out_of_weight_decay():
    model = TENLM(TENConfig(use_hten=True, hten_scales=(1, 2)))
    opt = model.configure_optimizers(lr=1e-3, weight_decay=0.1)
    groups = {g["name"]: g for g in opt.param_groups}
    eigen = {id(p) for p in groups["eigenvalues"]["params"]}
    assert groups["eigenvalues"]["weight_decay"] == 0.0
    named = dict(model.named_parameters())
    for name, p in named.items():
        if name.endswith((".alpha", ".omega")):
            assert id(p) in eigen, name
    n_grouped = sum(len(g["params"]) for g in opt.param_groups)
    assert n_grouped == len(named) == len({id(p) for p in model.parameters()})


def test_init_matches_the_documented_spectrum():
    core = EigenstateCore(64, 16, 4)
    assert (core.alpha >= -3).all() and (core.alpha <= 0).all()
    assert (core.omega >= 0).all() and (core.omega < 2 * math.pi).all()
    assert len(set(core.omega.tolist())) == 16  # spread, no duplicates
    V = core.eigvec.detach().view(32, 64)  # 2K × d
    torch.testing.assert_close(V @ V.T, torch.eye(32), atol=1e-5, rtol=0)  # orthonormal rows


def test_generate_matches_greedy_forward():
    """Recurrent generation (one-step API) continues a prompt exactly like re-running forward."""
    torch.manual_seed(0)
    model = TENLM(TENConfig(d_model=32, n_layers=2, n_eigen=24, n_heads=2, use_hten=True,
                            hten_scales=(1, 2, 4))).eval()
    prompt = torch.randint(0, 256, (2, 7))
    out = model.generate(prompt, 6, temperature=1e-6)  # ~greedy
    assert out.shape == (2, 13) and torch.equal(out[:, :7], prompt)
    seq = prompt
    with torch.no_grad():
        for _ in range(6):
            nxt = model(seq)["logits"][:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
    assert torch.equal(out, seq)
