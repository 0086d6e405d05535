"""Synthetic saliency datasets written in the *real* MIT1003 and CAT2000 layouts.

The workload's embedded default: with no data paths configured, `ensure_generated` writes

    <root>/MIT1003/ALLSTIMULI/i0000.jpeg, ALLFIXATIONMAPS/i0000_fixPts.jpg   (in-domain)
    <root>/MIT1003/ground_truth.npz
    <root>/CAT2000/trainSet/Stimuli/<Category>/000.jpg,
                   trainSet/FIXATIONLOCS/<Category>/000.mat (variable fixLocs)  (out-of-domain)
    <root>/CAT2000/ground_truth.npz
    <root>/SYNTHETIC.json                                                      (parameters)

and the sweep reads them back with the same loaders it would use on the real datasets.

Each image has a few salient objects on a background. Its ground-truth fixation density is

    p = (1 - w_cb) · Σ_k a_k N(center_k, (0.7 r_k)²) / Σ_k a_k  +  w_cb · N(cb_center, cb_sigma²)

(normalized over pixels), and `fixations_per_image` fixations are drawn from it; the binary
point maps keep each fixated pixel once. The in-domain style (MIT1003 layout, 96×72) has
smooth low-contrast backgrounds, colored disks and a central center bias; the out-of-domain
style (CAT2000 layout, 128×72) has noisy darker backgrounds, squares in other colors and a
center bias lower in the frame and wider. `ground_truth.npz` holds, per dataset, `names`,
`log_density` (N, H, W) (natural log, normalized) and the fixations written (`fix_y`, `fix_x`,
split by `fix_offsets`) so tests can check the loaders and score the ground truth.

Everything is a function of `seed` (numpy Generators seeded by [seed, domain]).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass

import numpy as np
import scipy.io
from PIL import Image
from scipy.ndimage import gaussian_filter

FORMAT_VERSION = 1
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Style:
    shape: tuple[int, int]                  # native (H, W)
    background_sigma: float                 # smoothing of the background noise (pixels)
    background_mean: float
    background_contrast: float
    object_kind: str                        # "disk" | "square"
    colors: tuple[tuple[float, float, float], ...]
    n_objects: tuple[int, int]              # inclusive range
    radius: tuple[float, float]             # fraction of the width
    cb_center: tuple[float, float]          # (y, x) as fractions of (H, W)
    cb_sigma: tuple[float, float]           # (y, x) as fractions of (H, W)
    cb_weight: float


IN_DOMAIN = Style(shape=(72, 96), background_sigma=6.0, background_mean=0.45,
                  background_contrast=0.08, object_kind="disk",
                  colors=((0.95, 0.15, 0.1), (0.1, 0.8, 0.2), (0.15, 0.3, 0.95),
                          (0.95, 0.9, 0.1)),
                  n_objects=(1, 3), radius=(0.05, 0.09), cb_center=(0.5, 0.5),
                  cb_sigma=(0.2, 0.2), cb_weight=0.35)
OUT_OF_DOMAIN = Style(shape=(72, 128), background_sigma=0.8, background_mean=0.3,
                      background_contrast=0.12, object_kind="square",
                      colors=((1.0, 0.55, 0.0), (0.0, 0.9, 0.9), (0.9, 0.1, 0.9)),
                      n_objects=(1, 3), radius=(0.035, 0.06), cb_center=(0.62, 0.5),
                      cb_sigma=(0.16, 0.3), cb_weight=0.35)
CAT_CATEGORIES = ("Cartoon", "Noisy", "Pattern")


def _gaussian(shape: tuple[int, int], cy: float, cx: float, sy: float, sx: float) -> np.ndarray:
    y = np.arange(shape[0])[:, None] + 0.5
    x = np.arange(shape[1])[None, :] + 0.5
    return np.exp(-0.5 * (((y - cy) / sy) ** 2 + ((x - cx) / sx) ** 2))


def render(rng: np.random.Generator, style: Style) -> tuple[np.ndarray, np.ndarray]:
    """One stimulus (H, W, 3) uint8 and its ground-truth log-density (H, W) float64."""
    h, w = style.shape
    noise = gaussian_filter(rng.normal(size=(h, w, 3)), sigma=(style.background_sigma,) * 2 + (0,))
    noise /= noise.std() + 1e-12
    image = style.background_mean + style.background_contrast * noise
    objects = np.zeros((h, w))
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    for _ in range(rng.integers(style.n_objects[0], style.n_objects[1] + 1)):
        r = rng.uniform(*style.radius) * w
        cy, cx = rng.uniform(r + 1, h - r - 1), rng.uniform(r + 1, w - r - 1)
        color = np.asarray(style.colors[rng.integers(len(style.colors))])
        if style.object_kind == "disk":
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2
        else:
            inside = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
        image[inside] = color * rng.uniform(0.85, 1.0)
        weight = rng.uniform(0.5, 1.5)
        objects += weight * _gaussian((h, w), cy, cx, 0.7 * r, 0.7 * r) / (2 * np.pi * (0.7 * r) ** 2)
    cb = _gaussian((h, w), style.cb_center[0] * h, style.cb_center[1] * w,
                   style.cb_sigma[0] * h, style.cb_sigma[1] * w)
    p = (1 - style.cb_weight) * objects / objects.sum() + style.cb_weight * cb / cb.sum()
    p = np.clip(p, 1e-300, None)
    image8 = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    return image8, np.log(p / p.sum())


def sample_fixations(rng: np.random.Generator, log_density: np.ndarray,
                     n: int) -> tuple[np.ndarray, np.ndarray]:
    """n draws from the density, de-duplicated (a binary point map stores a pixel once)."""
    p = np.exp(log_density).ravel()
    idx = np.unique(rng.choice(p.size, size=n, p=p / p.sum()))
    ys, xs = np.unravel_index(idx, log_density.shape)
    return ys.astype(np.int64), xs.astype(np.int64)


def _save_jpeg(path: str, array: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=JPEG_QUALITY)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def _save_ground_truth(path: str, names: list[str], densities: list[np.ndarray],
                       fixations: list[tuple[np.ndarray, np.ndarray]]) -> None:
    offsets = np.cumsum([0] + [len(y) for y, _ in fixations])
    np.savez_compressed(path, names=np.asarray(names), log_density=np.stack(densities).astype(
        np.float32), fix_y=np.concatenate([y for y, _ in fixations]),
        fix_x=np.concatenate([x for _, x in fixations]), fix_offsets=offsets)


def write_mit1003(root: str, n_images: int, seed: int, fixations_per_image: int = 40,
                  style: Style = IN_DOMAIN) -> None:
    """A MIT1003-layout dataset of `n_images` stimuli under `root`."""
    rng = np.random.default_rng([seed, 0])
    stim, fix = os.path.join(root, "ALLSTIMULI"), os.path.join(root, "ALLFIXATIONMAPS")
    os.makedirs(stim, exist_ok=True)
    os.makedirs(fix, exist_ok=True)
    names, dens, fixs = [], [], []
    for i in range(n_images):
        name = f"i{i:04d}"
        image, log_p = render(rng, style)
        ys, xs = sample_fixations(rng, log_p, fixations_per_image)
        points = np.zeros(style.shape, dtype=np.uint8)
        points[ys, xs] = 255
        _save_jpeg(os.path.join(stim, f"{name}.jpeg"), image)
        _save_jpeg(os.path.join(fix, f"{name}_fixPts.jpg"), points)
        names.append(name), dens.append(log_p), fixs.append((ys, xs))
    _save_ground_truth(os.path.join(root, "ground_truth.npz"), names, dens, fixs)


def write_cat2000(root: str, n_images: int, seed: int, fixations_per_image: int = 40,
                  style: Style = OUT_OF_DOMAIN,
                  categories: tuple[str, ...] = CAT_CATEGORIES) -> None:
    """A CAT2000-trainSet-layout dataset of `n_images` stimuli, dealt round-robin to categories."""
    rng = np.random.default_rng([seed, 1])
    base = os.path.join(root, "trainSet")
    for cat in categories:
        os.makedirs(os.path.join(base, "Stimuli", cat), exist_ok=True)
        os.makedirs(os.path.join(base, "FIXATIONLOCS", cat), exist_ok=True)
    records = []
    for i in range(n_images):
        cat, stem = categories[i % len(categories)], f"{i // len(categories):03d}"
        image, log_p = render(rng, style)
        ys, xs = sample_fixations(rng, log_p, fixations_per_image)
        locs = np.zeros(style.shape, dtype=np.uint8)
        locs[ys, xs] = 1
        _save_jpeg(os.path.join(base, "Stimuli", cat, f"{stem}.jpg"), image)
        scipy.io.savemat(os.path.join(base, "FIXATIONLOCS", cat, f"{stem}.mat"),
                         {"fixLocs": locs}, do_compression=True)
        records.append((f"{cat}/{stem}", log_p, (ys, xs)))
    records.sort(key=lambda r: r[0])  # the loader's order: category, then name
    _save_ground_truth(os.path.join(root, "ground_truth.npz"), [r[0] for r in records],
                       [r[1] for r in records], [r[2] for r in records])


def load_ground_truth(path: str) -> dict:
    """ground_truth.npz → {names, log_density (N, H, W), fixations: [(ys, xs), ...]}."""
    with np.load(path) as z:
        off = z["fix_offsets"]
        fix = [(z["fix_y"][a:b], z["fix_x"][a:b]) for a, b in zip(off[:-1], off[1:])]
        return {"names": [str(n) for n in z["names"]], "log_density": z["log_density"],
                "fixations": fix}


def default_root(seed: int, num_images: int, ood_images: int, fixations_per_image: int) -> str:
    return os.path.join(tempfile.gettempdir(), "saliency_synth",
                        f"v{FORMAT_VERSION}-seed{seed}-n{num_images}-ood{ood_images}"
                        f"-f{fixations_per_image}")


def ensure_generated(root: str, *, seed: int, num_images: int, ood_images: int,
                     fixations_per_image: int = 40) -> str:
    """Write both datasets under `root` unless present; atomic (temp dir + rename).

    Concurrent callers (trials, ranks) may race: each writes its own temporary directory and
    the first rename wins; the others discard theirs. A present `root` is never rewritten.
    """
    params = {"format_version": FORMAT_VERSION, "seed": seed, "num_images": num_images,
              "ood_images": ood_images, "fixations_per_image": fixations_per_image,
              "in_domain": asdict(IN_DOMAIN), "out_of_domain": asdict(OUT_OF_DOMAIN)}
    if os.path.isdir(root):
        return root
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(root) + ".tmp-", dir=parent)
    try:
        write_mit1003(os.path.join(tmp, "MIT1003"), num_images, seed, fixations_per_image)
        write_cat2000(os.path.join(tmp, "CAT2000"), ood_images, seed, fixations_per_image)
        with open(os.path.join(tmp, "SYNTHETIC.json"), "w") as f:
            json.dump(params, f, indent=1)
        try:
            os.rename(tmp, root)
        except OSError:
            if not os.path.isdir(root):
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return root
