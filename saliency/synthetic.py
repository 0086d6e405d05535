"""Planted-prior synthetic saliency data, written in the *real* MIT1003 and CAT2000 layouts.

Why: a benchmark for regularizing a model's *implicit* spatial bias needs data whose answer is
known. Each image's fixation density is content saliency times a dataset-level positional prior

    p(x | I) ∝ s_I(x) · π_D(x)        (normalized over the pixels of the image)

    s_I = (1 - floor) · Σ_k a_k N(c_k, (bump·r_k)²) / Σ_k a_k + floor / (H·W)   objects placed
          uniformly at random (content carries no position), floor > 0 so p > 0 everywhere
    π_D = (1 - uniform) · N(center, sigma²) + uniform / (H·W)        center, sigma: fractions
          of (H, W); π_in is centered HIGH in the frame (y = 0.35 H), π_out LOW (y = 0.65 H)

`fixations_per_image` fixations are drawn from p; binary point maps keep a pixel once.
`ensure_generated(root, ...)` writes three datasets, read back by the real loaders:

    <root>/MIT1003/          in-domain      MIT1003 layout   in-domain content   π_in
    <root>/CAT2000/          prior shift    CAT2000 layout   in-domain content   π_out
    <root>/CAT2000_content/  content shift  CAT2000 layout   CAT2000-like content π_in
    <root>/SYNTHETIC.json    every generator parameter (checked on reuse)

`<root>/CAT2000` is the prior-shift set, so code that reads "the OOD set" there (the workload's
`ood_*` metrics) measures exactly the shift an implicit-bias regularizer targets; `OUT_OF_DOMAIN`
names that set (an alias of `PRIOR_SHIFT`). In-domain content (72×96): smooth low-contrast
backgrounds, colored disks. CAT2000-like content (72×128): noisy darker backgrounds, squares.
Each dataset's `ground_truth.npz` holds `names` (loader order), `log_density` (N, H, W) (natural
log, normalized), `prior_log_density` (H, W) (log π_D) and the fixations (`fix_y`, `fix_x`, split
by `fix_offsets`). `oracle_log_densities` / `prior_log_density` give them at working resolution.

Cache: `default_root` names the directory by a hash of every generator parameter
(`generator_params`); `ensure_generated` reuses a directory only when its SYNTHETIC.json equals
them, otherwise regenerates atomically (temp dir + rename). Everything is a function of `seed`
(numpy Generators seeded by [seed, stream], one stream per dataset).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import scipy.io
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.special import logsumexp

from saliency.datasets import scale_fixations
from saliency.errors import DataError

FORMAT_VERSION = 2
JPEG_QUALITY = 90
CAT_CATEGORIES = ("Cartoon", "Noisy", "Pattern")
GROUND_TRUTH = "ground_truth.npz"
PROBE_STREAM = 99  # rng stream of the neutral probes: disjoint from the datasets' streams


@dataclass(frozen=True)
class Style:
    """Content only: nothing here depends on position (objects are placed uniformly)."""
    shape: tuple[int, int]                  # native (H, W)
    background_sigma: float                 # smoothing of the background noise (pixels)
    background_mean: float
    background_contrast: float
    object_kind: str                        # "disk" | "square"
    colors: tuple[tuple[float, float, float], ...]
    n_objects: tuple[int, int]              # inclusive range
    radius: tuple[float, float]             # fraction of the width
    weight: tuple[float, float] = (0.5, 1.5)  # range of an object's share a_k of s_I
    bump: float = 0.7                       # salience bump sigma as a fraction of the radius
    floor: float = 0.25                     # mass fraction of s_I spread uniformly (p > 0)


@dataclass(frozen=True)
class Prior:
    """Positional prior π_D: anisotropic Gaussian plus a uniform floor, normalized coordinates."""
    center: tuple[float, float]             # (y, x) as fractions of (H, W)
    sigma: tuple[float, float]              # (y, x) as fractions of (H, W)
    uniform: float                          # mass fraction spread uniformly


IN_STYLE = Style(shape=(72, 96), background_sigma=6.0, background_mean=0.45,
                 background_contrast=0.08, object_kind="disk",
                 colors=((0.95, 0.15, 0.1), (0.1, 0.8, 0.2), (0.15, 0.3, 0.95),
                         (0.95, 0.9, 0.1)), n_objects=(1, 3), radius=(0.05, 0.09))
CAT_STYLE = Style(shape=(72, 128), background_sigma=0.8, background_mean=0.3,
                  background_contrast=0.12, object_kind="square",
                  colors=((1.0, 0.55, 0.0), (0.0, 0.9, 0.9), (0.9, 0.1, 0.9)),
                  n_objects=(1, 3), radius=(0.035, 0.06))
PRIOR_IN = Prior(center=(0.35, 0.5), sigma=(0.13, 0.22), uniform=0.1)
PRIOR_OUT = Prior(center=(0.65, 0.5), sigma=(0.13, 0.22), uniform=0.1)


@dataclass(frozen=True)
class Design:
    """Every generator parameter except the seed and the sizes."""
    in_style: Style = IN_STYLE
    content_style: Style = CAT_STYLE
    prior_in: Prior = PRIOR_IN
    prior_out: Prior = PRIOR_OUT
    categories: tuple[str, ...] = CAT_CATEGORIES
    jpeg_quality: int = JPEG_QUALITY


@dataclass(frozen=True)
class DatasetSpec:
    role: str                               # "in_domain" | "prior_shift" | "content_shift"
    dirname: str                            # under the root
    layout: str                             # "mit1003" | "cat2000"
    style: Style
    prior: Prior
    stream: int                             # rng stream: independent images per dataset

    @property
    def shape(self) -> tuple[int, int]:
        return self.style.shape


def dataset_specs(design: Design = Design()) -> tuple[DatasetSpec, DatasetSpec, DatasetSpec]:
    """(in-domain, prior shift, content shift) as written under the root."""
    return (DatasetSpec("in_domain", "MIT1003", "mit1003", design.in_style, design.prior_in, 0),
            DatasetSpec("prior_shift", "CAT2000", "cat2000", design.in_style, design.prior_out, 1),
            DatasetSpec("content_shift", "CAT2000_content", "cat2000", design.content_style,
                        design.prior_in, 2))


IN_DOMAIN, PRIOR_SHIFT, CONTENT_SHIFT = dataset_specs()
OUT_OF_DOMAIN = PRIOR_SHIFT  # what <root>/CAT2000 holds


# --- Densities and rendering ----------------------------------------------------------------
def _gaussian(shape: tuple[int, int], cy: float, cx: float, sy: float, sx: float) -> np.ndarray:
    y = np.arange(shape[0])[:, None] + 0.5                                  # (H, 1) centers
    x = np.arange(shape[1])[None, :] + 0.5                                  # (1, W)
    return np.exp(-0.5 * (((y - cy) / sy) ** 2 + ((x - cx) / sx) ** 2))    # (H, W)


def prior_density(prior: Prior, shape: tuple[int, int]) -> np.ndarray:
    """π_D on an (H, W) grid, float64, sums to 1."""
    h, w = shape
    g = _gaussian(shape, prior.center[0] * h, prior.center[1] * w,
                  prior.sigma[0] * h, prior.sigma[1] * w)                   # (H, W)
    return (1 - prior.uniform) * g / g.sum() + prior.uniform / g.size


def render_content(rng: np.random.Generator, style: Style) -> tuple[np.ndarray, np.ndarray]:
    """One stimulus (H, W, 3) uint8 and its content saliency s_I (H, W) float64 (sums to 1)."""
    h, w = style.shape
    noise = gaussian_filter(rng.normal(size=(h, w, 3)),
                            sigma=(style.background_sigma,) * 2 + (0,))    # (H, W, 3)
    noise /= noise.std() + 1e-12
    image = style.background_mean + style.background_contrast * noise      # (H, W, 3)
    objects = np.zeros((h, w))
    yy, xx = np.mgrid[0:h, 0:w] + 0.5                                       # (2, H, W)
    for _ in range(rng.integers(style.n_objects[0], style.n_objects[1] + 1)):
        r = rng.uniform(*style.radius) * w
        # uniform over every position where the object fits: content carries no position
        cy, cx = rng.uniform(r + 1, h - r - 1), rng.uniform(r + 1, w - r - 1)
        color = np.asarray(style.colors[rng.integers(len(style.colors))])
        if style.object_kind == "disk":
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2
        else:
            inside = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
        image[inside] = color * rng.uniform(0.85, 1.0)
        sb = style.bump * r
        objects += rng.uniform(*style.weight) * _gaussian((h, w), cy, cx, sb, sb) / (
            2 * np.pi * sb ** 2)                                            # unit-mass bump
    objects = objects / objects.sum() if objects.sum() > 0 else np.full((h, w), 1.0 / (h * w))
    saliency = (1 - style.floor) * objects + style.floor / (h * w)         # (H, W) > 0
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8), saliency


def sample_fixations(rng: np.random.Generator, log_density: np.ndarray,
                     n: int) -> tuple[np.ndarray, np.ndarray]:
    """n draws from the density, de-duplicated (a binary point map stores a pixel once)."""
    p = np.exp(log_density).ravel()
    idx = np.unique(rng.choice(p.size, size=n, p=p / p.sum()))
    ys, xs = np.unravel_index(idx, log_density.shape)
    return ys.astype(np.int64), xs.astype(np.int64)


# --- Writing the layouts --------------------------------------------------------------------
def _save_jpeg(path: str, array: np.ndarray, quality: int) -> None:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def _write(root: str, layout: str, n_images: int, seed: int, fixations_per_image: int,
           style: Style, prior: Prior, stream: int, categories: tuple[str, ...],
           quality: int) -> None:
    rng = np.random.default_rng([seed, stream])
    log_prior = np.log(prior_density(prior, style.shape))                  # (H, W)
    subdirs = (["ALLSTIMULI", "ALLFIXATIONMAPS"] if layout == "mit1003" else
               [os.path.join("trainSet", d, c) for d in ("Stimuli", "FIXATIONLOCS")
                for c in categories])
    for d in subdirs:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    records = []  # (the loader's sort key, name, log p, fixations)
    for i in range(n_images):
        image, saliency = render_content(rng, style)
        log_p = np.log(saliency) + log_prior                                # (H, W) ∝ s·π
        log_p -= logsumexp(log_p)
        ys, xs = sample_fixations(rng, log_p, fixations_per_image)
        if layout == "mit1003":
            name = f"i{i:04d}"
            points = np.zeros(style.shape, dtype=np.uint8)
            points[ys, xs] = 255
            _save_jpeg(os.path.join(root, "ALLSTIMULI", f"{name}.jpeg"), image, quality)
            _save_jpeg(os.path.join(root, "ALLFIXATIONMAPS", f"{name}_fixPts.jpg"), points,
                       quality)
            key = (f"{name}.jpeg",)
        else:  # CAT2000 trainSet: dealt round-robin to the categories
            cat, stem = categories[i % len(categories)], f"{i // len(categories):03d}"
            name, locs = f"{cat}/{stem}", np.zeros(style.shape, dtype=np.uint8)
            locs[ys, xs] = 1
            stim, fix = (os.path.join(root, "trainSet", d, cat)
                         for d in ("Stimuli", "FIXATIONLOCS"))
            _save_jpeg(os.path.join(stim, f"{stem}.jpg"), image, quality)
            scipy.io.savemat(os.path.join(fix, f"{stem}.mat"), {"fixLocs": locs},
                             do_compression=True)
            key = (cat, f"{stem}.jpg")
        records.append((key, name, log_p, (ys, xs)))
    records.sort(key=lambda r: r[0])  # the loaders' order: sorted file names (per category)
    fix = [r[3] for r in records]
    np.savez_compressed(
        os.path.join(root, GROUND_TRUTH), names=np.asarray([r[1] for r in records]),
        log_density=np.stack([r[2] for r in records]).astype(np.float32),  # (N, H, W)
        prior_log_density=log_prior,                                        # (H, W) float64
        fix_y=np.concatenate([y for y, _ in fix]), fix_x=np.concatenate([x for _, x in fix]),
        fix_offsets=np.cumsum([0] + [len(y) for y, _ in fix]))


def write_mit1003(root: str, n_images: int, seed: int, fixations_per_image: int = 40,
                  style: Style = IN_STYLE, *, prior: Prior = PRIOR_IN, stream: int = 0,
                  quality: int = JPEG_QUALITY) -> None:
    """A MIT1003-layout dataset of `n_images` stimuli (defaults: the in-domain set)."""
    _write(root, "mit1003", n_images, seed, fixations_per_image, style, prior, stream, (), quality)


def write_cat2000(root: str, n_images: int, seed: int, fixations_per_image: int = 40,
                  style: Style = IN_STYLE, categories: tuple[str, ...] = CAT_CATEGORIES, *,
                  prior: Prior = PRIOR_OUT, stream: int = 1,
                  quality: int = JPEG_QUALITY) -> None:
    """A CAT2000 trainSet-layout dataset (defaults: the prior-shift set)."""
    _write(root, "cat2000", n_images, seed, fixations_per_image, style, prior, stream,
           tuple(categories), quality)


# --- Cache: directory name and reuse check cover every generator parameter ------------------
def generator_params(seed: int, num_images: int, ood_images: int, fixations_per_image: int = 40,
                     *, design: Design = Design()) -> dict:
    """Every input of the generator as canonical JSON data (what SYNTHETIC.json holds)."""
    params = {"format_version": FORMAT_VERSION, "seed": seed, "num_images": num_images,
              "ood_images": ood_images, "fixations_per_image": fixations_per_image,
              "design": asdict(design),
              "datasets": [asdict(s) for s in dataset_specs(design)]}
    return json.loads(json.dumps(params))  # tuples → lists, as read back from the file


def default_root(seed: int, num_images: int, ood_images: int, fixations_per_image: int, *,
                 design: Design = Design()) -> str:
    params = generator_params(seed, num_images, ood_images, fixations_per_image, design=design)
    key = hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode())
    return os.path.join(tempfile.gettempdir(), "saliency_synth",
                        f"v{FORMAT_VERSION}-seed{seed}-n{num_images}-ood{ood_images}"
                        f"-f{fixations_per_image}-{key.hexdigest()[:12]}")


def _stored_params(root: str) -> dict | None:
    """SYNTHETIC.json of `root`; None if `root` is absent or empty. Refuses foreign data."""
    try:
        if not os.listdir(root):
            return None
        with open(os.path.join(root, "SYNTHETIC.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        if not os.path.exists(root):
            return None  # absent, or just moved aside by a concurrent regeneration
        problem = "no SYNTHETIC.json"
    except (OSError, ValueError) as e:  # a file, unreadable, not JSON
        problem = str(e)
    raise DataError(f"{root}: not synthetic data ({problem}); refusing to replace it")


def ensure_generated(root: str, *, seed: int, num_images: int, ood_images: int,
                     fixations_per_image: int = 40, design: Design = Design()) -> str:
    """Write the three datasets under `root` unless its SYNTHETIC.json already matches.

    Atomic: each caller writes its own temporary directory and renames it into place; with
    concurrent callers (trials, ranks) the first rename wins and the others discard theirs. A
    `root` generated with other parameters is moved aside and replaced (readers of that old
    data at that moment lose it: with `default_root`, whose name is the parameter hash, this
    only happens after a hand edit).
    """
    params = generator_params(seed, num_images, ood_images, fixations_per_image, design=design)
    if _stored_params(root) == params:
        return root
    parent, base = os.path.split(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=base + ".tmp-", dir=parent)
    try:
        n = {"in_domain": num_images, "prior_shift": ood_images, "content_shift": ood_images}
        for s in dataset_specs(design):
            _write(os.path.join(tmp, s.dirname), s.layout, n[s.role], seed, fixations_per_image,
                   s.style, s.prior, s.stream, design.categories, design.jpeg_quality)
        with open(os.path.join(tmp, "SYNTHETIC.json"), "w") as f:
            json.dump(params, f, indent=1)
        for _ in range(3):
            try:
                os.rename(tmp, root)  # POSIX: fails on a non-empty directory, never merges
                break
            except OSError:
                if _stored_params(root) == params:  # a concurrent caller won
                    break
                stale = tempfile.mkdtemp(prefix=base + ".stale-", dir=parent)
                try:
                    os.rename(root, stale)  # replaces the empty placeholder
                except FileNotFoundError:
                    pass                    # a concurrent caller moved it already
                shutil.rmtree(stale, ignore_errors=True)
        else:
            raise DataError(f"{root}: could not install generated data (concurrent writers "
                            f"with other parameters?)")
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return root


# --- Reading the truth back -----------------------------------------------------------------
def load_ground_truth(path: str) -> dict:
    """ground_truth.npz → {names, log_density (N, H, W), prior_log_density (H, W) or None,
    fixations: [(ys, xs), ...]} (native resolution, loader order)."""
    with np.load(path) as z:
        off = z["fix_offsets"]
        fix = [(z["fix_y"][a:b], z["fix_x"][a:b]) for a, b in zip(off[:-1], off[1:])]
        prior = z["prior_log_density"] if "prior_log_density" in z.files else None
        return {"names": [str(n) for n in z["names"]], "log_density": z["log_density"],
                "prior_log_density": prior, "fixations": fix}


def to_working_resolution(log_density: np.ndarray, size: int) -> np.ndarray:
    """(..., H, W) native log-density → (..., S, S) normalized float64 log-density of the
    working pixel a fixation lands in: the mass of the native pixels that the loaders'
    `scale_fixations` maps there (exact, not an interpolation)."""
    ld = np.asarray(log_density, dtype=np.float64)
    h, w = ld.shape[-2:]
    ry, rx = scale_fixations(np.arange(h), np.arange(w), (h, w), size)    # (H,), (W,)
    ay = (ry[None, :] == np.arange(size)[:, None]).astype(np.float64)     # (S, H) one-hot
    ax = (rx[None, :] == np.arange(size)[:, None]).astype(np.float64)     # (S, W)
    p = np.exp(ld - logsumexp(ld, axis=(-2, -1), keepdims=True))           # (..., H, W)
    mass = ay @ p @ ax.T                                                    # (..., S, S)
    # S > H or W: some working pixels get no native pixel and can never hold a fixation; a
    # tiny floor keeps their log finite
    mass = np.maximum(mass, 1e-12 / size ** 2)
    return np.log(mass / mass.sum(axis=(-2, -1), keepdims=True))


def _ground_truth_of(dataset_root: str) -> dict:
    d = os.path.normpath(dataset_root)
    if os.path.basename(d) == "trainSet" and not os.path.isfile(os.path.join(d, GROUND_TRUTH)):
        d = os.path.dirname(d)  # a CAT2000 root given as its trainSet directory, as loaders allow
    path = os.path.join(d, GROUND_TRUTH)
    if not os.path.isfile(path):
        raise DataError(f"{dataset_root}: no {GROUND_TRUTH} (not a synthetic dataset?)")
    return load_ground_truth(path)


def oracle_log_densities(dataset_root: str, image_size: int,
                         names: Sequence[str] | None = None) -> np.ndarray:
    """(N, S, S) true log-densities at working resolution, in the loader's order, or in the
    order of `names` (e.g. `[s.name for s in samples]` after `skip_bad` dropped some)."""
    gt = _ground_truth_of(dataset_root)
    ld = gt["log_density"]                                                  # (N, H, W)
    if names is not None:
        index = {n: i for i, n in enumerate(gt["names"])}
        missing = [n for n in names if n not in index]
        if missing:
            raise DataError(f"{dataset_root}: no ground truth for {missing[:3]}")
        ld = ld[[index[n] for n in names]]
    return to_working_resolution(ld, image_size)


def prior_log_density(dataset_root: str, image_size: int) -> np.ndarray:
    """(S, S) the dataset's positional prior log π_D at working resolution."""
    prior = _ground_truth_of(dataset_root)["prior_log_density"]
    if prior is None:
        raise DataError(f"{dataset_root}: {GROUND_TRUTH} predates prior_log_density; regenerate")
    return to_working_resolution(prior, image_size)


def neutral_probe_images(n: int, size: int, seed: int, style: Style = IN_STYLE) -> torch.Tensor:
    """(n, 3, S, S) uint8 fresh in-domain-style images with uniformly placed objects: content
    without positional information. Resized like the loaders do (PIL bilinear, no JPEG)."""
    rng = np.random.default_rng([seed, PROBE_STREAM])
    out = np.empty((n, size, size, 3), dtype=np.uint8)                      # (n, S, S, 3)
    for i in range(n):
        image, _ = render_content(rng, style)
        out[i] = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()         # (n, 3, S, S)
