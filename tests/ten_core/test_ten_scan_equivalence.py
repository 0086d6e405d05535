"""The chunked scan, its sequential reference twin and the one-step API compute the same map."""
import math

import pytest
import torch

from ten_core import DECAY_INITS, TENConfig, TENLM
from ten_core.scan import SCAN_METHODS, eigen_scan, eigen_scan_ref, eigen_step
from ten_core.ten import EigenstateCore

torch.set_num_threads(1)
TOL = dict(rtol=1e-5, atol=1e-5)  # fp32


def selective_inputs(B=2, T=37, d=16, K=12, seed=0, decay_init="paper"):
    """β, log|λ|, angle from a real EigenstateCore on random input: selectivity on (Δα, Δω ≠ 0)."""
    torch.manual_seed(seed)
    core = EigenstateCore(d, K, 2, decay_init=decay_init, memory_range=(1.05, 64.0))
    with torch.no_grad():
        core.in_proj.weight[2 * K:].mul_(20.0)  # (Δα, Δω) rows: make them vary a lot
    x = torch.randn(B, T, d)
    beta, log_mag, angle = core.spectrum(x)
    assert (angle - core.omega).abs().amax() > 0.05  # input-selective
    return beta, log_mag, angle


def run_steps(beta, log_mag, angle, state=None):
    B, T, K = beta.shape
    c = state if state is not None else torch.zeros(B, K, dtype=torch.complex64)
    out = []
    for t in range(T):
        c = eigen_step(beta[:, t], log_mag[:, t], angle[:, t], c)
        out.append(c)
    return torch.stack(out, 1)


@pytest.mark.parametrize("decay_init", DECAY_INITS)
@pytest.mark.parametrize("method", SCAN_METHODS)
@pytest.mark.parametrize("chunk", [2, 3, 8, 16, 64])
@pytest.mark.parametrize("T", [1, 37, 64])
def test_chunked_equals_sequential_equals_steps(method, chunk, T, decay_init):
    beta, log_mag, angle = selective_inputs(T=T, decay_init=decay_init)
    fast, last = eigen_scan(beta, log_mag, angle, chunk_size=chunk, method=method)
    ref, ref_last = eigen_scan_ref(beta, log_mag, angle)
    steps = run_steps(beta, log_mag, angle)
    assert fast.shape == ref.shape == (2, T, 12) and fast.dtype == torch.complex64
    torch.testing.assert_close(fast, ref, **TOL)
    torch.testing.assert_close(steps, ref, **TOL)
    torch.testing.assert_close(last, ref_last, **TOL)


@pytest.mark.parametrize("method", SCAN_METHODS)
@pytest.mark.parametrize("chunk", [4, 8])
def test_carried_state_splits_a_sequence(method, chunk):
    """scan(x[:t]) then scan(x[t:], state) == scan(x): the carried state is c(t − 1)."""
    beta, log_mag, angle = selective_inputs(T=45)
    kw = dict(chunk_size=chunk, method=method)
    full, _ = eigen_scan(beta, log_mag, angle, **kw)
    a, state = eigen_scan(beta[:, :19], log_mag[:, :19], angle[:, :19], **kw)
    b, _ = eigen_scan(beta[:, 19:], log_mag[:, 19:], angle[:, 19:], state, **kw)
    torch.testing.assert_close(torch.cat([a, b], 1), full, **TOL)
    ref, _ = eigen_scan_ref(beta[:, 19:], log_mag[:, 19:], angle[:, 19:], state)
    torch.testing.assert_close(b, ref, **TOL)


@pytest.mark.parametrize("method", SCAN_METHODS)
def test_gradients_match_reference(method):
    beta, log_mag, angle = (t.detach().requires_grad_() for t in selective_inputs(T=29))
    w = torch.randn(2, 29, 12, 2)
    grads = []
    for fn in (lambda *a: eigen_scan(*a, chunk_size=8, method=method)[0],
               lambda *a: eigen_scan_ref(*a)[0]):
        (torch.view_as_real(fn(beta, log_mag, angle)) * w).sum().backward()
        grads.append([t.grad.clone() for t in (beta, log_mag, angle)])
        for t in (beta, log_mag, angle):
            t.grad = None
    for g_fast, g_ref in zip(*grads):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", SCAN_METHODS)
def test_long_sequence_phase_stays_accurate(method):
    """Θ(t) ≈ 2π·t reaches ~1e4 rad; fp64 accumulation keeps the rotating frame exact."""
    torch.manual_seed(1)
    B, T, K = 1, 2000, 4
    beta = torch.randn(B, T, K, dtype=torch.complex64)
    log_mag = torch.full((B, T, K), math.log(0.999))  # long memory: errors would accumulate
    angle = torch.full((B, T, K), 6.0) + 0.1 * torch.rand(B, T, K)
    fast, _ = eigen_scan(beta, log_mag, angle, chunk_size=8, method=method)
    # eigen_step computes in complex64, so the trustworthy reference is an fp64 loop
    c, out = torch.zeros(B, K, dtype=torch.complex128), []
    for t in range(T):
        c = torch.exp(torch.complex(log_mag[:, t].double(), angle[:, t].double())) * c \
            + beta[:, t].to(torch.complex128)
        out.append(c)
    ref64 = torch.stack(out, 1)
    err = (fast.to(torch.complex128) - ref64).abs().max() / ref64.abs().max()
    assert err < 1e-5


@pytest.mark.parametrize("method", SCAN_METHODS)
def test_extreme_decays_stay_finite_with_gradients(method):
    """a = −80 per step: A(t) − A(s) above the diagonal is +640 and must be masked before exp."""
    B, T, K = 1, 40, 3
    beta = torch.randn(B, T, K, dtype=torch.complex64, requires_grad=True)
    log_mag = torch.tensor([-80.0, -1e-6, 0.0]).expand(B, T, K).clone().requires_grad_()
    angle = torch.randn(B, T, K, requires_grad=True)
    c, _ = eigen_scan(beta, log_mag, angle, chunk_size=16, method=method)
    torch.view_as_real(c).sum().backward()
    for t in (c, beta.grad, log_mag.grad, angle.grad):
        assert torch.isfinite(torch.view_as_real(t) if t.is_complex() else t).all()
    ref, _ = eigen_scan_ref(beta, log_mag, angle)
    torch.testing.assert_close(c, ref, rtol=1e-5, atol=1e-4)  # |c| grows to ~T with |λ| = 1


@pytest.mark.parametrize("decay_init", DECAY_INITS)
@pytest.mark.parametrize("method", SCAN_METHODS)
@pytest.mark.parametrize("use_hten", [False, True])
def test_model_forward_equals_reference_and_steps(use_hten, method, decay_init):
    """Whole model: chunked forward == sequential-scan forward == token-by-token step(), for
    short (paper) and long (|λ| up to 0.97 here) memories."""
    torch.manual_seed(0)
    cfg = TENConfig(d_model=32, n_layers=2, n_eigen=16, n_heads=2, chunk_size=4,
                    scan_method=method, use_hten=use_hten, hten_scales=(1, 2, 4, 8),
                    decay_init=decay_init, memory_range=(1.05, 29.0))
    model = TENLM(cfg).eval()
    x = torch.randint(0, 256, (2, 29))
    with torch.no_grad():
        fast = model(x)["logits"]
        ref = model(x, reference=True)["logits"]
        state, steps = model.init_state(2), []
        for t in range(x.shape[1]):
            logits, state = model.step(x[:, t], state)
            steps.append(logits)
    torch.testing.assert_close(fast, ref, **TOL)
    torch.testing.assert_close(torch.stack(steps, 1), ref, **TOL)


def test_scan_runs_in_fp32_under_autocast():
    beta, log_mag, angle = selective_inputs(T=16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        c, _ = eigen_scan(beta, log_mag.bfloat16(), angle.bfloat16(), chunk_size=8)
    assert c.dtype == torch.complex64


def test_bad_chunk_size():
    beta, log_mag, angle = selective_inputs(T=4)
    with pytest.raises(ValueError, match="chunk_size"):
        eigen_scan(beta, log_mag, angle, chunk_size=1)
    with pytest.raises(ValueError, match="method"):
        eigen_scan(beta, log_mag, angle, method="fft")
