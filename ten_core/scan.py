"""The eigenstate recurrence c_k(t) = λ_k(t)·c_k(t−1) + β_k(t): chunked scan, reference, one step.

Every eigenstate k evolves independently (the transition is diagonal), with a complex,
input-dependent eigenvalue written in log-polar form

    λ_k(t) = exp(a_k(t) + i·θ_k(t)),   a = log|λ| ≤ 0 (so |λ| ≤ 1),   θ = the rotation angle.

Three implementations of the same map, which must agree
(tests/ten_core/test_ten_scan_equivalence.py):

* `eigen_scan`      — training / evaluation. Linear in T; Python loops only over the L steps
                      of a chunk and the log_L(T) recursion levels, never over T.
* `eigen_scan_ref`  — the plain Python loop over t: the reference twin, obviously right.
* `eigen_step`      — one step, for generation with a carried state.

How the fast form works (and why it is numerically safe):

1. Rotating frame. With Θ(t) = Σ_{u≤t} θ(u), the rotated state c̃(t) = e^{−iΘ(t)} c(t) obeys
   c̃(t) = |λ(t)|·c̃(t−1) + e^{−iΘ(t)} β(t): the rotation drops out and the decay is *real*.
   Θ grows without bound (≈ 2π per step), so its running sum is taken in float64 and reduced
   mod 2π before the fp32 cos/sin — fp32 would lose ~1e-3 rad after a few thousand steps.
2. Chunks of L steps, all chunks in parallel, each started from a zero state. Two ways to do
   the inside of a chunk (`method`):
   * "matmul": c̃(t) = Σ_{s≤t} exp(A(t) − A(s))·x(s), A the running sum of a inside the chunk —
     an (L × L) lower-triangular decay matrix per eigenstate, applied by one batched matmul to
     the (re, im) pair. Above the diagonal A(t) − A(s) ≥ 0 could overflow, so it is set to −inf
     *before* exp; below it is ≤ 0, so exp ∈ [0, 1]. A(t) − A(s) in fp32 is off by ~|A|·6e-8,
     with |A| ≈ |a|·L: one more reason for short chunks. Costs T·L·K, and because every
     eigenstate has its own decays (λ is diagonal and input-selective) the "matmul" is L×L by
     L×2 — a batched matrix-vector product, memory-bound, with no large GEMM to exploit.
   * "unrolled" (default): the L steps of the recurrence, each one multiply-add over all
     chunks at once — L small vectorized ops, T·K work, the same fp32 arithmetic as the
     reference. The scan alone is ~2.5× faster than "matmul" on CPU at T = 16384, K = 64.
3. Between chunks: chunk j's end state (from zero) plus exp(A_chunk(j)) times the state
   entering it. That is the same kind of recurrence, L times shorter, so it is solved by a
   recursive call (depth log_L T); the state entering chunk j is then added to every step of
   the chunk with its decay exp(A(t)) ∈ [0, 1].

All scan math runs in fp32 (fp64 for the phase sum) with autocast disabled, whatever the
caller's autocast state. Every quantity at step t depends on steps ≤ t only, so outputs are
causal bit for bit, not just up to rounding. Time-major layout throughout, so splitting T into
(n, L) chunks is a free view. Shapes: B batch, T time, K eigenstates, n = ⌈T/L⌉ chunks.
"""
from __future__ import annotations

import math
from typing import Literal

import torch

TWO_PI = 2.0 * math.pi
ScanMethod = Literal["unrolled", "matmul"]
SCAN_METHODS: tuple[str, ...] = ("unrolled", "matmul")


def eigenvalue(log_mag: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """λ = exp(a + iθ) as complex64 from its log-magnitude a (≤ 0) and angle θ."""
    return torch.exp(torch.complex(log_mag.float(), angle.float()))


def eigen_step(beta: torch.Tensor, log_mag: torch.Tensor, angle: torch.Tensor,
               state: torch.Tensor) -> torch.Tensor:
    """One recurrence step: c(t) = λ(t)·c(t−1) + β(t). All (B, K); returns the new state (B, K)."""
    with torch.autocast(device_type=beta.device.type, enabled=False):
        return eigenvalue(log_mag, angle) * state + beta.to(torch.complex64)


def eigen_scan_ref(beta: torch.Tensor, log_mag: torch.Tensor, angle: torch.Tensor,
                   state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference twin, a Python loop over time: (B, T, K) -> states (B, T, K), last state (B, K)."""
    B, T, K = beta.shape
    c = state if state is not None else beta.new_zeros(B, K, dtype=torch.complex64)
    out = []
    for t in range(T):
        c = eigen_step(beta[:, t], log_mag[:, t], angle[:, t], c)  # (B, K)
        out.append(c)
    return torch.stack(out, dim=1), c  # (B, T, K), (B, K)


def eigen_scan(beta: torch.Tensor, log_mag: torch.Tensor, angle: torch.Tensor,
               state: torch.Tensor | None = None, *, chunk_size: int = 16,
               method: ScanMethod = "unrolled") -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked parallel scan. (B, T, K) -> states (B, T, K) complex64, final state (B, K).

    `state` is c(−1), the state before the first step (zeros when None), so a long sequence can
    be processed in pieces: eigen_scan(x[:, :t]) then eigen_scan(x[:, t:], state=final).
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 2:
        raise ValueError(f"chunk_size must be an int >= 2 (got {chunk_size!r})")
    if method not in SCAN_METHODS:
        raise ValueError(f"method must be one of {SCAN_METHODS} (got {method!r})")
    with torch.autocast(device_type=beta.device.type, enabled=False):
        beta, a, theta = beta.to(torch.complex64), log_mag.float(), angle.float()
        phase = torch.remainder(torch.cumsum(theta.double(), dim=1), TWO_PI).float()  # (B, T, K)
        rot = torch.polar(torch.ones_like(phase), phase)  # e^{iΘ(t)}, |·| = 1  (B, T, K)
        x = torch.view_as_real(beta * rot.conj())  # (B, T, K, 2): inputs in the rotating frame
        h0 = torch.view_as_real(state.to(torch.complex64)) if state is not None else None
        y = _decay_scan(x, a, h0, chunk_size, method)  # (B, T, K, 2); Θ(−1) = 0: c̃(−1) = c(−1)
        c = torch.view_as_complex(y) * rot  # (B, T, K), back out of the rotating frame
    return c, c[:, -1]


def _decay_scan(x: torch.Tensor, a: torch.Tensor, h0: torch.Tensor | None, L: int,
                method: str) -> torch.Tensor:
    """y(t) = exp(a(t))·y(t−1) + x(t), y(−1) = h0, real a ≤ 0: (B, T, K, 2) -> (B, T, K, 2)."""
    B, T, K, _ = x.shape
    n = math.ceil(T / L)
    if n * L != T:
        # Pad the end with x = 0, a = 0 (|λ| = 1): earlier steps are untouched.
        x = torch.cat([x, x.new_zeros(B, n * L - T, K, 2)], dim=1)
        a = torch.cat([a, a.new_zeros(B, n * L - T, K)], dim=1)
    x, a = x.view(B, n, L, K, 2), a.view(B, n, L, K)  # chunking time is a free view
    # A(t) = Σ_{u≤t in chunk} a(u) ≤ 0, non-increasing. The carry below only needs exp(A(t)):
    # an fp32 running-sum error δ ≲ L·|A|·6e-8 moves it by δ·e^A ≤ L·2e-8 (|A|e^A ≤ 1/e).
    # "matmul" needs differences A(t) − A(s) of large numbers, so there A is summed in fp64.
    if method == "matmul":
        A = torch.cumsum(a.double(), dim=2).float()  # (B, n, L, K)
        y = _intra_matmul(x, A)
    else:
        A = torch.cumsum(a, dim=2)  # (B, n, L, K)
        y = _intra_unrolled(x, a)  # (B, n, L, K, 2)

    if n > 1 or h0 is not None:
        ends = y[:, :, -1]  # (B, n, K, 2): chunk-end states, each chunk from zero
        chunk_a = A[:, :, -1]  # (B, n, K): log-decay across each whole chunk
        if n > 1:  # the chunk-end states obey the same recurrence, n steps long
            ends = _decay_scan(ends, chunk_a, h0, L, method)  # (B, n, K, 2): true end states
        else:
            ends = ends + chunk_a.exp().unsqueeze(-1) * h0.unsqueeze(1)
        first = h0.unsqueeze(1) if h0 is not None else ends.new_zeros(B, 1, K, 2)
        carry = torch.cat([first, ends[:, :-1]], dim=1)  # (B, n, K, 2): state entering chunk
        # every step of chunk j gets the entering state, decayed by exp(A(t)) ∈ [0, 1]
        y = torch.addcmul(y, A.exp().unsqueeze(-1), carry.unsqueeze(2))  # (B, n, L, K, 2)
    return y.reshape(B, n * L, K, 2)[:, :T]


def _intra_matmul(x: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Zero-start chunk states via the masked decay matrix: (B, n, L, K, 2), (B, n, L, K)."""
    L = A.shape[2]
    A = A.transpose(2, 3)  # (B, n, K, L): one L × L matrix per eigenstate
    upper = torch.ones(L, L, dtype=torch.bool, device=x.device).triu(1)  # (L, L), s > t
    diff = (A.unsqueeze(-1) - A.unsqueeze(-2)).masked_fill_(upper, -math.inf)  # (B, n, K, L, L)
    y = torch.matmul(diff.exp(), x.transpose(2, 3))  # (B, n, K, L, 2): D[t, s] = e^{A(t) − A(s)}
    return y.transpose(2, 3)  # (B, n, L, K, 2)


def _intra_unrolled(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Zero-start chunk states by L multiply-adds over all chunks at once: (B, n, L, K, 2)."""
    decay = a.exp().unsqueeze(-1).unbind(dim=2)  # L × (B, n, K, 1), each in [0, 1]
    xs = x.unbind(dim=2)  # L × (B, n, K, 2)
    h, out = xs[0], [xs[0]]
    for t in range(1, len(xs)):
        h = decay[t] * h + xs[t]
        out.append(h)
    return torch.stack(out, dim=2)  # (B, n, L, K, 2)
