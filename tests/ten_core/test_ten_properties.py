"""Stability, energy, losses and gradients of the TEN layer and model; the decay inits and the
learned-spectrum summary; the energy's invariance to rescaling β against the read-out."""
import math

import pytest
import torch

from ten_core import DECAY_INITS, TENConfig, TENLM, spectrum, spectrum_summary
from ten_core.hten import HTENLayer
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


@pytest.mark.parametrize("decay_init", DECAY_INITS)
@pytest.mark.parametrize("input_scale", [1.0, 30.0, 1e4])
def test_energy_bound(input_scale, decay_init):
    """‖c(t)‖ ≤ ‖c(t−1)‖ + ‖β(t)‖ when |λ| ≤ 1, so E(t) ≤ (√E(0) + t·B)², B = max_t ‖β(t)‖."""
    torch.manual_seed(0)
    core = EigenstateCore(16, 8, 2, decay_init=decay_init)
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
    assert core.decay_init == "paper"  # the model package's default: the paper's init
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


# ---- decay inits ------------------------------------------------------------------------------
def memory(alpha: torch.Tensor) -> torch.Tensor:
    """1/(1 − σ(α)) = 1 + e^α: the memory in steps."""
    return 1.0 + alpha.double().exp()


def test_paper_init_lambda_range():
    """α ~ U(−3, 0): |λ| ∈ [σ(−3), σ(0)] = [0.047, 0.5], memory ∈ [1.05, 2] steps."""
    torch.manual_seed(0)
    lam = torch.sigmoid(EigenstateCore(16, 4096, 2, decay_init="paper").alpha.detach())
    assert lam.min() >= 0.0474 and lam.max() <= 0.5
    assert lam.min() < 0.06 and lam.max() > 0.49  # the whole range is used
    mem = 1.0 / (1.0 - lam.double())
    assert mem.max() <= 2.0 + 1e-9


def test_long_init_spreads_memories_log_uniformly():
    """decay_init="long": memory 1/(1−|λ|) log-uniform on memory_range; α = ln(τ − 1), so
    (1.05, 128) gives |λ| ∈ [1 − 1/1.05, 1 − 1/128] = [0.048, 0.992]."""
    torch.manual_seed(0)
    core = EigenstateCore(16, 4096, 2, decay_init="long", memory_range=(1.05, 128.0))
    lam = torch.sigmoid(core.alpha.detach().double())
    assert lam.min() >= 1 - 1 / 1.05 - 1e-6 and lam.max() <= 1 - 1 / 128 + 1e-6
    assert lam.min() < 0.06 and lam.max() > 0.99
    log_mem = memory(core.alpha.detach()).log()
    lo, hi = math.log(1.05), math.log(128.0)
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):  # quantiles of log τ on the straight line
        assert abs(float(torch.quantile(log_mem, q)) - (lo + q * (hi - lo))) < 0.1, q
    torch.testing.assert_close(1.0 / (1.0 - lam), memory(core.alpha))  # α = ln(τ − 1)


def test_hten_long_init_stretches_each_scale_to_the_same_token_range():
    """A scale-s core steps over s tokens: its memories in steps span [1.05, 128/s], so every
    scale reaches the same longest memory in tokens, and coarse scales start longer."""
    torch.manual_seed(0)
    cfg = TENConfig(d_model=32, n_layers=2, n_eigen=512, n_heads=2, use_hten=True,
                    hten_scales=(1, 2, 4, 8), decay_init="long", memory_range=(1.05, 128.0))
    for s, alpha in spectrum(TENLM(cfg)).items():
        tokens = s * memory(alpha)
        assert tokens.min() >= 1.05 * s - 1e-6 and tokens.max() <= 128.0 + 1e-6, s
        assert tokens.max() > 100.0, s


@pytest.mark.parametrize("use_hten", [False, True])
def test_spectrum_summary_reports_quantiles_in_tokens(use_hten):
    torch.manual_seed(0)
    cfg = TENConfig(d_model=32, n_layers=2, n_eigen=16, n_heads=2, use_hten=use_hten,
                    hten_scales=(1, 4))
    model = TENLM(cfg)
    with torch.no_grad():
        for p in (p for n, p in model.named_parameters() if n.endswith(".alpha")):
            p.fill_(math.log(9.0))  # |λ| = 0.9: memory 10 steps
    out = spectrum_summary(model)
    assert out["lambda_abs_p50"] == pytest.approx(0.9)
    if use_hten:  # scale 4: 40 tokens
        assert out["memory_p50_s1"] == pytest.approx(10.0) and out["memory_p90_s4"] == \
            pytest.approx(40.0)
        assert out["memory_p10"] == pytest.approx(10.0) and out["memory_p90"] == pytest.approx(40.0)
    else:
        assert out["memory_p50"] == pytest.approx(10.0) and "memory_p50_s1" not in out


# ---- energy: invariant to rescaling β against the read-out ---------------------------------
def cores(model: TENLM) -> list[EigenstateCore]:
    return [c for b in model.blocks for c in (b.mixer.cores if isinstance(b.mixer, HTENLayer)
                                               else [b.mixer.core])]


def rescale(core: EigenstateCore, z: torch.Tensor) -> None:
    """β_k ← z_k·β_k (complex z, through the β rows of in_proj) and V_k ← V_k / z_k."""
    K = core.n_eigen
    with torch.no_grad():
        w = core.in_proj.weight[:2 * K].view(K, 2, -1)  # β_k = w[k,0]·x + i·w[k,1]·x
        wc = torch.complex(w[:, 0], w[:, 1]) * z.view(K, 1)
        w.copy_(torch.stack([wc.real, wc.imag], dim=1))
        v = torch.complex(core.eigvec[:, 0], core.eigvec[:, 1]) / z.view(K, 1)
        core.eigvec.copy_(torch.stack([v.real, v.imag], dim=1))


@pytest.mark.parametrize("decay_init", DECAY_INITS)
@pytest.mark.parametrize("use_hten", [False, True])
@pytest.mark.parametrize("s", [10.0, 0.1])
def test_logits_and_energy_unchanged_when_beta_and_readout_are_rescaled(s, use_hten,
                                                                       decay_init):
    """β·s with eigenvectors / s leaves every logit unchanged — and now the energy too, so
    energy_reg_weight cannot be met by moving scale from one weight to another."""
    torch.manual_seed(0)
    cfg = TENConfig(d_model=32, n_layers=2, n_eigen=24, n_heads=2, use_hten=use_hten,
                    hten_scales=(1, 2, 4), decay_init=decay_init, memory_range=(1.05, 40.0))
    model = TENLM(cfg).eval()
    x = torch.randint(0, 256, (3, 41), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(x[:, :-1], x[:, 1:])
        for core in cores(model):
            rescale(core, torch.full((core.n_eigen,), s, dtype=torch.complex64))
        after = model(x[:, :-1], x[:, 1:])
    torch.testing.assert_close(after["logits"], before["logits"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(after["energy"], before["energy"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(after["energy_loss"], before["energy_loss"], rtol=1e-5, atol=0)
    torch.testing.assert_close(after["ce_loss"], before["ce_loss"], rtol=1e-5, atol=1e-6)


def test_raw_energy_would_be_gamed_but_the_relative_energy_is_not():
    """The per-eigenstate (complex) gauge too: the raw Σ|c|² moves by |z|², the returned
    (relative) energy and the read-out do not."""
    torch.manual_seed(0)
    core = EigenstateCore(16, 8, 2, resonance_eps=0.0)  # R = I: V_k pairs with c_k alone
    x = torch.randn(2, 30, 16)
    with torch.no_grad():
        r0, e0, _ = core(x)
        raw0 = EigenstateCore.energy(eigen_scan(*core.spectrum(x))[0])
        z = torch.polar(torch.logspace(-1, 1, 8), torch.linspace(0, 3, 8))  # |z| 0.1 … 10
        rescale(core, z)
        r1, e1, _ = core(x)
        raw1 = EigenstateCore.energy(eigen_scan(*core.spectrum(x))[0])
    torch.testing.assert_close(r1, r0, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(e1, e0, rtol=1e-4, atol=1e-6)
    assert (raw1 / raw0).mean() > 3.0  # the raw energy is not a property of the behaviour


@pytest.mark.parametrize("use_hten", [False, True])
def test_energy_gradient_has_no_component_along_the_rescaling(use_hten):
    """The same, to first order, as training sees it: along the direction (W_β·s, V/s) of every
    core the energy term's gradient vanishes (⟨∇_{W_β}E, W_β⟩ − ⟨∇_V E, V⟩ = 0), so weighting
    it can only change the spectrum or the direction of β — the function."""
    torch.manual_seed(0)
    cfg = TENConfig(d_model=32, n_layers=2, n_eigen=16, n_heads=2, use_hten=use_hten,
                    hten_scales=(1, 2), decay_init="long", memory_range=(1.05, 32.0))
    model = TENLM(cfg)
    x = torch.randint(0, 256, (2, 33))
    model(x[:, :-1], x[:, 1:])["energy_loss"].backward()
    for core in cores(model):
        K = core.n_eigen
        w, gw = core.in_proj.weight.detach()[:2 * K], core.in_proj.weight.grad[:2 * K]
        v = core.eigvec.detach()
        gv = core.eigvec.grad if core.eigvec.grad is not None else torch.zeros_like(v)
        along = float((w * gw).sum() - (v * gv).sum())
        assert abs(along) < 1e-4 * (float(gw.norm() * w.norm()) + float(gv.norm() * v.norm()))
        assert float(core.alpha.grad.abs().max()) > 0  # it does act on the spectrum


def test_relative_energy_is_the_power_gain_of_the_eigenstate_filter():
    """Uncorrelated input, |λ| = 0.9 fixed: E → 1/(1 − |λ|²) = 5.26 (the filter's power gain),
    whatever the input's scale."""
    torch.manual_seed(0)
    core = EigenstateCore(16, 8, 2)
    with torch.no_grad():
        core.alpha.fill_(math.log(9.0))  # σ(ln 9) = 0.9
        core.in_proj.weight[16:].zero_()  # no selectivity
    for scale in (1.0, 1e3):
        with torch.no_grad():
            _, e, _ = core(scale * torch.randn(4, 4000, 16))
        assert float(e[:, 100:].mean()) == pytest.approx(1.0 / (1.0 - 0.81), rel=0.05), scale
