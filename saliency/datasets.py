"""Loaders for the real MIT1003 and CAT2000 layouts, the split, and the center-bias baseline.

MIT1003 (Judd et al. 2009, http://people.csail.mit.edu/tjudd/WherePeopleLook/)::

    <root>/ALLSTIMULI/<name>.jpeg                  the 1003 stimuli (mostly 1024×768 / 768×1024)
    <root>/ALLFIXATIONMAPS/<name>_fixPts.jpg       fixation *points*: grayscale JPEG, same size
                                                   as the stimulus, 255 at every fixated pixel
    <root>/ALLFIXATIONMAPS/<name>_fixMap.jpg       blurred fixation map (not used here)

  The points map is a JPEG, so compression leaves faint non-zero halos: a pixel is a fixation
  when its value is > 127 (`FIXPTS_THRESHOLD`). Being a binary map, several observers fixating
  the same pixel count once.

CAT2000 training set (Borji & Itti 2015, http://saliency.mit.edu/, `trainSet.zip`)::

    <root>/trainSet/Stimuli/<Category>/<nnn>.jpg           1920×1080 stimuli, 20 categories
    <root>/trainSet/FIXATIONLOCS/<Category>/<nnn>.mat      MATLAB .mat, variable `fixLocs`: a
                                                           binary H×W matrix, non-zero = fixated
    <root>/trainSet/FIXATIONMAPS/<Category>/<nnn>.jpg      blurred maps (not used here)

  Read with `scipy.io.loadmat` (MATLAB v5/v7 files; v7.3/HDF5 files are rejected by name).
  `<root>` may also be the `trainSet` directory itself. Sample names are `<Category>/<nnn>`.

Working resolution: every stimulus is resized to `image_size × image_size` (bilinear; the
aspect ratio is not kept, so batches stack and the center bias lives in normalized image
coordinates). A fixation at native pixel (y, x) of an H×W stimulus maps to working pixel
(floor((y + 0.5) · S / H), floor((x + 0.5) · S / W)); several fixations may share a working
pixel and then all count.

Bad data never yields a silent wrong number: a missing directory, a stimulus without its
fixation file, an unreadable image or fixation file, a fixation map whose size differs from
its stimulus, or a fixation map without fixations raises `DataError` naming the file. With
`skip_bad=True` the bad stimuli are dropped and one warning reports how many (missing
directories and an empty dataset are always errors).

Split: `split_indices` draws a seeded permutation; for MIT1003 (1003 images) it is the usual
902 train / 101 validation; smaller sets keep the same proportion (round(n · 101/1003), at
least 1 image on each side).

Center bias: the fixation histogram of the training images at working resolution, smoothed
with a Gaussian of σ = `bandwidth` × the side (default 0.05; mass beyond the border is dropped),
normalized, and mixed with a uniform density (weight `uniform_weight`, default 0.01) so no
pixel has zero probability; returned as a normalized natural-log density.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import scipy.io
import torch
from PIL import Image, UnidentifiedImageError
from scipy.ndimage import gaussian_filter

from saliency.errors import DataError

FIXPTS_THRESHOLD = 127
MIT_VAL_FRACTION = 101 / 1003
_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError,
                 Image.DecompressionBombError)


@dataclass
class Sample:
    name: str
    image: np.ndarray                # (H, W, 3) uint8, working (or native) resolution
    ys: np.ndarray                   # (F,) int64 fixation rows at the same resolution
    xs: np.ndarray                   # (F,) int64 fixation columns
    native_shape: tuple[int, int]    # (H, W) of the stimulus on disk


# --------------------------------------------------------------------------------------------
# Reading single files
# --------------------------------------------------------------------------------------------
def _read_image(path: str, image_size: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    try:
        with Image.open(path) as img:
            native = (img.height, img.width)
            if image_size is not None:
                img.draft("RGB", (image_size, image_size))  # fast JPEG DCT downscale, ≥ size
                img = img.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
            else:
                img = img.convert("RGB")
            return np.asarray(img, dtype=np.uint8), native
    except _IMAGE_ERRORS as e:
        raise DataError(f"{path}: unreadable image ({e})") from e


def read_fixpts(path: str) -> np.ndarray:
    """MIT1003 `_fixPts.jpg` → boolean (H, W) fixation mask (pixel value > 127)."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L")) > FIXPTS_THRESHOLD
    except _IMAGE_ERRORS as e:
        raise DataError(f"{path}: unreadable fixation map ({e})") from e


def read_fixlocs(path: str) -> np.ndarray:
    """CAT2000 `FIXATIONLOCS/*.mat` → boolean (H, W) fixation mask (variable `fixLocs` != 0)."""
    try:
        mat = scipy.io.loadmat(path)
    except NotImplementedError as e:  # scipy raises this for v7.3 (HDF5) files
        raise DataError(f"{path}: MATLAB v7.3 file; re-save as v7 (save -v7) ({e})") from e
    except (ValueError, OSError, TypeError) as e:
        raise DataError(f"{path}: unreadable .mat file ({e})") from e
    if "fixLocs" not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"{path}: no variable 'fixLocs' (found {found})")
    locs = np.asarray(mat["fixLocs"])
    if locs.ndim != 2:
        raise DataError(f"{path}: 'fixLocs' must be a 2-D matrix (got shape {locs.shape})")
    return locs != 0


def scale_fixations(ys: np.ndarray, xs: np.ndarray, native: tuple[int, int],
                    size: int) -> tuple[np.ndarray, np.ndarray]:
    """Native pixel indices of an H×W stimulus → pixel indices on the size×size grid."""
    h, w = native
    sy = np.minimum(np.floor((ys + 0.5) * size / h), size - 1).astype(np.int64)
    sx = np.minimum(np.floor((xs + 0.5) * size / w), size - 1).astype(np.int64)
    return sy, sx


def _load_sample(name: str, image_path: str, fix_path: str,
                 read_fix: Callable[[str], np.ndarray], image_size: int | None) -> Sample:
    if not os.path.isfile(fix_path):
        raise DataError(f"{image_path}: stimulus without fixations (expected {fix_path})")
    image, native = _read_image(image_path, image_size)
    mask = read_fix(fix_path)
    if mask.shape != native:
        raise DataError(f"{fix_path}: fixation map is {mask.shape[1]}x{mask.shape[0]} but its "
                        f"stimulus {image_path} is {native[1]}x{native[0]} (W x H)")
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise DataError(f"{fix_path}: empty fixation map (no fixated pixel)")
    ys, xs = ys.astype(np.int64), xs.astype(np.int64)
    if image_size is not None:
        ys, xs = scale_fixations(ys, xs, native, image_size)
    return Sample(name, image, ys, xs, native)


def _require_dir(path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise DataError(f"{path}: missing {what} directory")


def _collect(dataset: str, root: str, jobs: list[tuple[str, str, str]],
             read_fix: Callable[[str], np.ndarray], image_size: int | None,
             skip_bad: bool) -> list[Sample]:
    samples, bad = [], []
    for name, image_path, fix_path in jobs:
        try:
            samples.append(_load_sample(name, image_path, fix_path, read_fix, image_size))
        except DataError as e:
            if not skip_bad:
                raise
            bad.append(str(e))
    if bad:
        warnings.warn(f"{dataset} {root}: skipped {len(bad)} bad stimulus file(s) of "
                      f"{len(jobs)} (skip_bad=true); first: {bad[0]}", stacklevel=3)
    if not samples:
        raise DataError(f"{root}: no usable {dataset} stimuli")
    return samples


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------
def load_mit1003(root: str, image_size: int | None = None, *,
                 skip_bad: bool = False) -> list[Sample]:
    """All stimuli of a MIT1003-layout directory, sorted by name (see the module docstring)."""
    _require_dir(root, "MIT1003 root")
    stim_dir, fix_dir = os.path.join(root, "ALLSTIMULI"), os.path.join(root, "ALLFIXATIONMAPS")
    _require_dir(stim_dir, "MIT1003 ALLSTIMULI")
    _require_dir(fix_dir, "MIT1003 ALLFIXATIONMAPS")
    files = sorted(f for f in os.listdir(stim_dir)
                   if f.lower().endswith((".jpeg", ".jpg")) and not f.startswith("."))
    if not files:
        raise DataError(f"{stim_dir}: no .jpeg stimuli")
    jobs = []
    for f in files:
        stem = os.path.splitext(f)[0]
        jobs.append((stem, os.path.join(stim_dir, f),
                     os.path.join(fix_dir, f"{stem}_fixPts.jpg")))
    return _collect("MIT1003", root, jobs, read_fixpts, image_size, skip_bad)


def load_cat2000(root: str, image_size: int | None = None, *,
                 skip_bad: bool = False) -> list[Sample]:
    """All stimuli of a CAT2000 `trainSet` layout, sorted by category then name."""
    _require_dir(root, "CAT2000 root")
    base = os.path.join(root, "trainSet")
    if not os.path.isdir(base) and os.path.isdir(os.path.join(root, "Stimuli")):
        base = root
    stim_dir, fix_dir = os.path.join(base, "Stimuli"), os.path.join(base, "FIXATIONLOCS")
    _require_dir(stim_dir, "CAT2000 trainSet/Stimuli")
    _require_dir(fix_dir, "CAT2000 trainSet/FIXATIONLOCS")
    categories = sorted(d for d in os.listdir(stim_dir)
                        if os.path.isdir(os.path.join(stim_dir, d)))
    if not categories:
        raise DataError(f"{stim_dir}: no category directories")
    jobs = []
    for cat in categories:
        _require_dir(os.path.join(fix_dir, cat), f"CAT2000 FIXATIONLOCS/{cat}")
        for f in sorted(os.listdir(os.path.join(stim_dir, cat))):
            if f.lower().endswith(".jpg") and not f.startswith("."):
                stem = os.path.splitext(f)[0]
                jobs.append((f"{cat}/{stem}", os.path.join(stim_dir, cat, f),
                             os.path.join(fix_dir, cat, f"{stem}.mat")))
    if not jobs:
        raise DataError(f"{stim_dir}: no .jpg stimuli in any category")
    return _collect("CAT2000", root, jobs, read_fixlocs, image_size, skip_bad)


def split_indices(n: int, seed: int, n_val: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, val) index split; 902/101 for n = 1003, the same proportion otherwise."""
    if n < 2:
        raise ValueError(f"`n >= 2` must hold to split into train and validation (got {n})")
    if n_val is None:
        n_val = min(max(1, round(n * MIT_VAL_FRACTION)), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# --------------------------------------------------------------------------------------------
# Tensors and the center-bias baseline
# --------------------------------------------------------------------------------------------
def count_map(sample: Sample, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float64 number of fixations per pixel."""
    c = np.zeros(shape, dtype=np.float64)
    np.add.at(c, (sample.ys, sample.xs), 1.0)
    return c


def stack(samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    """images (N, 3, S, S) uint8 and fixation counts (N, S, S) float32 (same-size samples)."""
    shape = samples[0].image.shape[:2]
    images = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2)
    counts = torch.from_numpy(np.stack([count_map(s, shape) for s in samples])).float()
    return images.contiguous(), counts


def _smooth_to_log_density(hist: np.ndarray, bandwidth: float,
                           uniform_weight: float) -> np.ndarray:
    h, w = hist.shape
    smooth = np.clip(gaussian_filter(hist, sigma=(bandwidth * h, bandwidth * w),
                                     mode="constant"), 0.0, None)
    total = smooth.sum()
    p = smooth / total if total > 0 else np.full_like(smooth, 1.0 / smooth.size)
    p = (1.0 - uniform_weight) * p + uniform_weight / p.size
    return np.log(p / p.sum())


def center_bias(samples: Sequence[Sample], shape: tuple[int, int], *, bandwidth: float = 0.05,
                uniform_weight: float = 0.01) -> np.ndarray:
    """Normalized center-bias log-density (H, W) from the fixations of `samples`."""
    if not 0.0 < uniform_weight <= 1.0:
        raise ValueError(f"`0 < uniform_weight <= 1` must hold (got {uniform_weight})")
    hist = sum(count_map(s, shape) for s in samples)
    return _smooth_to_log_density(hist, bandwidth, uniform_weight)


def leave_one_out_center_bias(samples: Sequence[Sample], shape: tuple[int, int], *,
                              bandwidth: float = 0.05,
                              uniform_weight: float = 0.01) -> np.ndarray:
    """(N, H, W): for each image the center bias of all *other* images' fixations.

    The baseline for scoring a set whose own fixations define its center bias (the
    out-of-domain set): an in-sample histogram would partly memorize the scored fixations.
    """
    counts = [count_map(s, shape) for s in samples]
    total = sum(counts)
    return np.stack([_smooth_to_log_density(total - c, bandwidth, uniform_weight)
                     for c in counts])


def log_density_to_torch(log_density: np.ndarray) -> torch.Tensor:
    """(..., H, W) log-densities → float32 tensor renormalized over the last two dims."""
    t = torch.from_numpy(np.asarray(log_density, dtype=np.float64))
    return (t - torch.logsumexp(t.flatten(-2), -1)[..., None, None]).float()
