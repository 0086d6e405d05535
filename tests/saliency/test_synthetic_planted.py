"""Planted-prior synthetic data: the priors, the fixations they leave, the cache key, the
three datasets through the real loaders, the oracle densities and the neutral probes."""
import dataclasses as dc
import json
import os
import threading

import numpy as np
import pytest
from scipy.special import logsumexp

from saliency import datasets as D
from saliency import synthetic as S
from saliency.errors import DataError

N_IN, N_OOD = 30, 24
LOADERS = {"mit1003": D.load_mit1003, "cat2000": D.load_cat2000}
SPECS = S.dataset_specs()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = str(tmp_path_factory.mktemp("planted") / "data")
    return S.ensure_generated(r, seed=11, num_images=N_IN, ood_images=N_OOD)


def _gt(root, spec):
    return S.load_ground_truth(os.path.join(root, spec.dirname, "ground_truth.npz"))


def _bits(gt, a_of, b_of):
    """Mean over all fixations of log2 a(fix) - log2 b(fix); a_of, b_of: image index → map."""
    d = [a_of(i)[ys, xs] - b_of(i)[ys, xs] for i, (ys, xs) in enumerate(gt["fixations"])]
    return float(np.concatenate(d).mean() / np.log(2))


def test_priors_differ_as_documented(root):
    shape = S.IN_STYLE.shape
    p_in, p_out = S.prior_density(S.PRIOR_IN, shape), S.prior_density(S.PRIOR_OUT, shape)
    rows = (np.arange(shape[0]) + 0.5) / shape[0]
    com_in, com_out = (p_in.sum(1) * rows).sum(), (p_out.sum(1) * rows).sum()
    assert com_in < 0.45 < 0.55 < com_out  # π_in high in the frame, π_out low
    assert (p_out * np.log2(p_out / p_in)).sum() > 1.0  # KL(π_out ‖ π_in), bits
    assert np.isclose(p_in.sum(), 1) and p_in.min() > 0
    # which set shifts what; each stores its own prior
    assert S.OUT_OF_DOMAIN is S.PRIOR_SHIFT and S.PRIOR_SHIFT.dirname == "CAT2000"
    assert S.PRIOR_SHIFT.style == S.IN_DOMAIN.style and S.PRIOR_SHIFT.prior != S.IN_DOMAIN.prior
    assert S.CONTENT_SHIFT.style != S.IN_DOMAIN.style and S.CONTENT_SHIFT.prior == S.PRIOR_IN
    for spec in SPECS:
        stored = _gt(root, spec)["prior_log_density"]
        assert np.allclose(stored, np.log(S.prior_density(spec.prior, spec.shape)))


def test_the_planted_prior_is_in_the_fixations(root):
    gi, gp, gc = (_gt(root, s) for s in SPECS)
    log_in, log_out = (np.log(S.prior_density(p, S.IN_STYLE.shape))
                       for p in (S.PRIOR_IN, S.PRIOR_OUT))
    uniform = np.full(S.IN_STYLE.shape, -np.log(np.prod(S.IN_STYLE.shape)))
    truth_over_prior = _bits(gi, lambda i: gi["log_density"][i], lambda i: log_in)
    prior_over_uniform = _bits(gi, lambda i: log_in, lambda i: uniform)
    shift_penalty = _bits(gp, lambda i: log_in, lambda i: log_out)
    in_domain_margin = _bits(gi, lambda i: log_in, lambda i: log_out)
    print(f"IG truth/π_in {truth_over_prior:.3f}, π_in/uniform {prior_over_uniform:.3f}, "
          f"prior shift π_in - π_out {shift_penalty:.3f}, in-domain {in_domain_margin:.3f} bits")
    assert truth_over_prior > 0.8        # content adds to the prior
    assert prior_over_uniform > 0.3      # a positional prior really exists
    assert shift_penalty < -0.7          # under the prior shift, π_in is the wrong prior
    assert in_domain_margin > 0.7
    cw = S.CONTENT_SHIFT.shape
    c_in, c_out = (np.log(S.prior_density(p, cw)) for p in (S.PRIOR_IN, S.PRIOR_OUT))
    assert _bits(gc, lambda i: c_in, lambda i: c_out) > 0.7  # content shift keeps π_in


def _perturb(v):
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)):
        return v + (1 if isinstance(v, int) else 0.01)
    if isinstance(v, str):
        return v + "x"
    return (_perturb(v[0]),) + tuple(v[1:])  # a tuple: change its first element


def _one_change_each(obj):
    """(path, obj with exactly one leaf field perturbed), for every leaf field."""
    for f in dc.fields(obj):
        v = getattr(obj, f.name)
        subs = _one_change_each(v) if dc.is_dataclass(v) else [("", _perturb(v))]
        for path, new in subs:
            yield f"{f.name}.{path}".rstrip("."), dc.replace(obj, **{f.name: new})


def test_the_cache_key_covers_every_parameter(monkeypatch):
    args = (0, 300, 120, 40)
    base = S.default_root(*args)
    assert base == S.default_root(*args, design=S.Design(prior_in=S.PRIOR_IN))  # reused
    roots = {"base": base}
    for i in range(4):  # seed, sizes, fixations per image
        changed = list(args)
        changed[i] += 1
        roots[f"arg{i}"] = S.default_root(*changed)
    variants = list(_one_change_each(S.Design()))
    assert {"prior_in.center", "prior_out.uniform", "in_style.floor", "jpeg_quality",
            "content_style.shape", "categories"} <= {p for p, _ in variants}
    for path, design in variants:
        roots[path] = S.default_root(*args, design=design)
    monkeypatch.setattr(S, "FORMAT_VERSION", S.FORMAT_VERSION + 1)
    roots["format_version"] = S.default_root(*args)
    assert len(set(roots.values())) == len(roots)  # every change, its own directory


def test_reuse_regenerate_and_refuse(tmp_path):
    r = str(tmp_path / "d")
    gen = dict(seed=1, num_images=3, ood_images=3, fixations_per_image=10)
    S.ensure_generated(r, **gen)
    gt_path = os.path.join(r, "CAT2000", "ground_truth.npz")
    inode = os.stat(gt_path).st_ino
    S.ensure_generated(r, **gen)
    assert os.stat(gt_path).st_ino == inode  # same parameters: reused untouched
    moved = S.Design(prior_out=dc.replace(S.PRIOR_OUT, center=(0.8, 0.5)))
    errors = []

    def regenerate():  # same path, a prior changed: regenerated, also by concurrent callers
        try:
            S.ensure_generated(r, **gen, design=moved)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=regenerate) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    with open(os.path.join(r, "SYNTHETIC.json")) as f:
        assert json.load(f) == S.generator_params(**gen, design=moved)
    prior = S.load_ground_truth(gt_path)["prior_log_density"]
    assert np.allclose(prior, np.log(S.prior_density(moved.prior_out, S.IN_STYLE.shape)))
    assert sorted(os.listdir(tmp_path)) == ["d"]  # nothing stale or temporary left behind
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="refusing"):
        S.ensure_generated(str(foreign), **gen)
    assert (foreign / "keep.txt").read_text() == "mine"
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(DataError, match="refusing"):
        S.ensure_generated(str(tmp_path / "afile"), **gen)


@pytest.mark.parametrize("spec", SPECS, ids=[s.role for s in SPECS])
def test_loaders_and_oracle_densities(root, spec):
    size = 32
    d = os.path.join(root, spec.dirname)
    samples = LOADERS[spec.layout](d, size)
    gt = _gt(root, spec)
    assert [s.name for s in samples] == gt["names"]
    assert len(samples) == (N_IN if spec.role == "in_domain" else N_OOD)
    oracle = S.oracle_log_densities(d, size)                                # (N, S, S)
    assert oracle.shape == (len(samples), size, size)
    assert np.allclose(logsumexp(oracle, axis=(1, 2)), 0.0, atol=1e-9)
    # exact: the mass of the native pixels that the loader maps into each working pixel
    h, w = spec.shape
    yy, xx = np.mgrid[0:h, 0:w]
    sy, sx = D.scale_fixations(yy.ravel(), xx.ravel(), (h, w), size)
    mass = np.zeros((size, size))
    np.add.at(mass, (sy, sx), np.exp(gt["log_density"][0].astype(np.float64)).ravel())
    assert np.allclose(np.exp(oracle[0]), mass / mass.sum())
    # aligned with the loader: each image's truth explains its own fixations far better
    prior = S.prior_log_density(d, size)
    own = np.mean([np.mean(oracle[i][s.ys, s.xs] - prior[s.ys, s.xs])
                   for i, s in enumerate(samples)]) / np.log(2)
    other = np.mean([np.mean(oracle[i - 1][s.ys, s.xs] - prior[s.ys, s.xs])
                     for i, s in enumerate(samples)]) / np.log(2)
    assert own > 0.8 and own > other + 1.0
    names = [s.name for s in samples][::-1]
    assert np.array_equal(S.oracle_log_densities(d, size, names), oracle[::-1])
    with pytest.raises(DataError, match="no ground truth"):
        S.oracle_log_densities(d, size, ["nope"])
    big = S.oracle_log_densities(d, 100)  # S > H: unreachable pixels stay finite
    assert np.isfinite(big).all() and np.allclose(logsumexp(big, axis=(1, 2)), 0.0)


def test_oracle_accepts_the_trainset_directory(root):
    d = os.path.join(root, "CAT2000")
    assert np.array_equal(S.oracle_log_densities(os.path.join(d, "trainSet"), 16),
                          S.oracle_log_densities(d, 16))


def test_neutral_probes_are_deterministic_and_position_free():
    a = S.neutral_probe_images(4, 32, seed=5)
    assert a.shape == (4, 3, 32, 32) and str(a.dtype) == "torch.uint8"
    assert (a == S.neutral_probe_images(4, 32, seed=5)).all()
    assert not (a == S.neutral_probe_images(4, 32, seed=6)).all()
    # objects are saturated colors on a near-gray background: channel spread marks them
    objectness = S.neutral_probe_images(300, 32, seed=0).float().std(dim=1)  # (n, S, S)
    mean = objectness.mean(0)                                                  # (S, S)

    def unevenness(m):
        return float(m.std() / m.mean())
    assert unevenness(mean) < 0.3 * unevenness(objectness[0])
    rows = (np.arange(32) + 0.5) / 32
    com = float((mean.sum(1).numpy() * rows).sum() / mean.sum())
    assert abs(com - 0.5) < 0.03  # no vertical prior (π_in would put it at ≈ 0.35)
