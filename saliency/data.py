"""The saliency workload's data as tensors: a MIT1003-layout train/val split, CAT2000-layout
out-of-domain sets, the center bias each set gives the model as input, and the center bias each
set is scored against (plain PyTorch/numpy; datasets.py reads the files).

Center-bias input (`centerbias_input`), the knob that decides how much of the positional prior
the model must learn *implicitly*:

    sharp     the training fixations' histogram, lightly smoothed (cb_bandwidth): the model is
              handed the prior — the control arm
    blurred   the same histogram smoothed with a wide kernel (blur_bandwidth): the model has to
              learn the rest of the prior from the images — where an implicit bias can form
    uniform   no positional input: the whole prior is implicit

An out-of-domain set is scored by information gain over *its own* sharp center bias (leave one
image out), as Kümmerer et al. score a model on a dataset; the validation split, drawn from the
training distribution, is scored over the training center bias. For the out-of-domain sets the
model gets the set's own center-bias input (same recipe, leave one out): a deployed model is
told the target's center bias, and whatever bias it learned implicitly is what remains to
hurt it (`ood`). `ood_transfer` gives it the in-domain input instead.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from saliency import datasets as D
from saliency import synthetic
from saliency.errors import DataError
from saliency.metrics import finalize, metric_sums
from saliency.regularizer import patch_shuffled

CENTERBIAS_INPUTS = ("sharp", "blurred", "uniform")


@dataclass
class EvalSet:
    images: torch.Tensor            # (N, 3, S, S) uint8
    counts: torch.Tensor            # (N, S, S) float32 fixations per pixel
    model_input: torch.Tensor       # (S, S) or (N, S, S): center-bias log-density fed to the model
    baseline: torch.Tensor          # (S, S) or (N, S, S): what IG is measured against
    oracle_ig: float = math.nan     # IG of the true density (synthetic data), the ceiling


@dataclass
class SaliencyData:
    train_images: torch.Tensor      # (N, 3, S, S) uint8
    train_counts: torch.Tensor      # (N, S, S)
    train_input: torch.Tensor       # (S, S) center-bias input during training
    val: EvalSet
    ood: EvalSet                    # out-of-domain (CAT2000 layout), own center-bias input
    ood_transfer: EvalSet           # the same images, in-domain center-bias input
    content: Optional[EvalSet]      # synthetic content-shift set (None for real data)


@dataclass(frozen=True)
class CenterBiasRecipe:
    kind: str                       # one of CENTERBIAS_INPUTS
    bandwidth: float                # sharp: the IG baseline's; blurred: the wide one
    uniform_weight: float

    def full(self, samples: Sequence[D.Sample], size: int) -> np.ndarray:      # (S, S)
        if self.kind == "uniform":
            return np.full((size, size), -math.log(size * size))
        return D.center_bias(samples, (size, size), bandwidth=self.bandwidth,
                             uniform_weight=self.uniform_weight)

    def leave_one_out(self, samples: Sequence[D.Sample], size: int) -> np.ndarray:  # (N, S, S)
        if self.kind == "uniform":
            return np.full((len(samples), size, size), -math.log(size * size))
        return D.leave_one_out_center_bias(samples, (size, size), bandwidth=self.bandwidth,
                                           uniform_weight=self.uniform_weight)


def oracle_ig(dataset_dir: str, samples: Sequence[D.Sample], counts: torch.Tensor,
              baseline: torch.Tensor, size: int) -> float:
    """IG (bits/fixation) of the ground-truth density over `baseline` on these samples."""
    truth = torch.from_numpy(synthetic.oracle_log_densities(dataset_dir, size,
                                                            [s.name for s in samples]))
    base = baseline if baseline.ndim == 3 else baseline.expand(len(samples), size, size)
    return finalize(metric_sums(truth, base, counts), "x")["x_ig"]


def load_data(mit_dir: str, cat_dir: str, image_size: int, *, split_seed: int, skip_bad: bool,
              cb_bandwidth: float, cb_uniform: float, centerbias_input: str = "sharp",
              blur_bandwidth: float = 0.25, content_dir: Optional[str] = None,
              oracle: bool = False) -> SaliencyData:
    """Read the sets at image_size², split MIT1003 902/101-proportionally by split_seed.

    `oracle`: the directories hold synthetic data with ground truth (synthetic.py)."""
    s = image_size
    t = D.log_density_to_torch
    sharp = CenterBiasRecipe("sharp", cb_bandwidth, cb_uniform)
    recipe = {"sharp": sharp, "blurred": CenterBiasRecipe("blurred", blur_bandwidth, cb_uniform),
              "uniform": CenterBiasRecipe("uniform", 0.0, 1.0)}[centerbias_input]

    mit = D.load_mit1003(mit_dir, s, skip_bad=skip_bad)
    train_idx, val_idx = D.split_indices(len(mit), split_seed)
    train, val = [mit[i] for i in train_idx], [mit[i] for i in val_idx]
    (ti, tc), (vi, vc) = D.stack(train), D.stack(val)
    train_input = t(recipe.full(train, s))
    val_base = t(sharp.full(train, s))  # the val images' own prior is the training one
    val_set = EvalSet(vi, vc, train_input, val_base,
                      oracle_ig(mit_dir, val, vc, val_base, s) if oracle else math.nan)

    def shifted(directory: str) -> tuple[EvalSet, EvalSet]:
        samples = D.load_cat2000(directory, s, skip_bad=skip_bad)
        images, counts = D.stack(samples)
        base = t(sharp.leave_one_out(samples, s))
        ceiling = oracle_ig(directory, samples, counts, base, s) if oracle else math.nan
        own = EvalSet(images, counts, t(recipe.leave_one_out(samples, s)), base, ceiling)
        return own, EvalSet(images, counts, train_input, base, ceiling)

    ood, ood_transfer = shifted(cat_dir)
    content = shifted(content_dir)[0] if content_dir and os.path.isdir(content_dir) else None
    return SaliencyData(ti, tc, train_input, val_set, ood, ood_transfer, content)


# --------------------------------------------------------------------------------------------
# Decoded data, cached on disk (once per machine and dataset, not once per worker per trial)
# --------------------------------------------------------------------------------------------
CACHE_ENV = "SALIENCY_DATA_CACHE"  # a directory; "off" disables; unset: <tmp>/saliency_cache
CACHE_VERSION = 1                  # the key also holds a hash of the modules computing it
CACHE_KEEP = 8                     # most recently used entries kept (MIT1003 at 64²: ~180 MB)


def cache_dir() -> Optional[str]:
    value = os.environ.get(CACHE_ENV, "")
    if value.lower() == "off":
        return None
    return value or os.path.join(tempfile.gettempdir(), "saliency_cache")


_CODE_VERSION: list[str] = []


def _code_version() -> str:
    """Hash of the modules that decide the cached values: an edit invalidates the cache."""
    if not _CODE_VERSION:
        h = hashlib.sha256()
        for module in (D, synthetic, __import__("saliency.metrics", fromlist=["_"])):
            with open(module.__file__, "rb") as f:
                h.update(f.read())
        with open(__file__, "rb") as f:
            h.update(f.read())
        _CODE_VERSION.append(h.hexdigest()[:16])
    return _CODE_VERSION[0]


def _files_fingerprint(root: Optional[str]) -> list:
    """(relative path, size, mtime_ns) of every file under root: a changed, added or removed
    file changes the cache key."""
    if not root or not os.path.isdir(root):
        return [root, None]
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            entries.append((os.path.relpath(path, root), st.st_size, st.st_mtime_ns))
    return [os.path.abspath(root), entries]


def _to_record(data: SaliencyData) -> dict:
    def es(e: Optional[EvalSet]) -> Optional[dict]:
        return None if e is None else dataclasses.asdict(e)
    return {"train_images": data.train_images, "train_counts": data.train_counts,
            "train_input": data.train_input, "val": es(data.val), "ood": es(data.ood),
            "ood_transfer": es(data.ood_transfer), "content": es(data.content)}


def _from_record(r: dict) -> SaliencyData:
    def es(d: Optional[dict]) -> Optional[EvalSet]:
        return None if d is None else EvalSet(**d)
    return SaliencyData(r["train_images"], r["train_counts"], r["train_input"], es(r["val"]),
                        es(r["ood"]), es(r["ood_transfer"]), es(r["content"]))


def _disk_cached(kind: str, key_doc: dict, compute: Callable[[], dict]) -> dict:
    """compute(), a dict of tensors / floats / strings, memoized in cache_dir() under a hash
    of key_doc; unreadable entries are recomputed, writes are atomic (concurrent workers may
    both compute; either rename leaves a complete file)."""
    root = cache_dir()
    if root is None:
        return compute()
    doc = json.dumps({"kind": kind, "version": CACHE_VERSION, "code": _code_version(),
                      **key_doc}, sort_keys=True, default=str)
    path = os.path.join(root, f"{kind}-{hashlib.sha256(doc.encode()).hexdigest()[:32]}.pt")
    try:
        record = torch.load(path, weights_only=True)
        os.utime(path)  # recently used: kept by _prune
        return record
    except Exception:  # noqa: BLE001 — absent, torn or foreign: recompute (and replace it)
        pass
    record = compute()
    try:
        os.makedirs(root, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=root)
        with os.fdopen(fd, "wb") as f:
            torch.save(record, f)
        os.replace(tmp, path)
        _prune(root)
    except OSError:
        pass  # a read-only or full disk: the cache is an optimisation only
    return record


def load_data_cached(mit_dir: str, cat_dir: str, image_size: int, **kwargs: Any) -> SaliencyData:
    """`load_data`, memoized on disk (SALIENCY_DATA_CACHE): the decoded, resized tensors are
    keyed by every argument and by the path, size and mtime of every file under the data
    directories, so a dataset is decoded once per machine instead of once per worker per
    trial. A hit is bit-identical to a fresh load and repeats the load's warnings (skip_bad)."""
    key = {"image_size": image_size, "kwargs": kwargs, "mit": _files_fingerprint(mit_dir),
           "cat": _files_fingerprint(cat_dir),
           "content": _files_fingerprint(kwargs.get("content_dir"))}

    def compute() -> dict:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = load_data(mit_dir, cat_dir, image_size, **kwargs)
        return {**_to_record(data), "warnings": [str(w.message) for w in caught]}

    record = dict(_disk_cached("data", key, compute))
    for message in record.pop("warnings"):
        warnings.warn(message, stacklevel=2)
    return _from_record(record)


def _prune(root: str) -> None:
    entries = sorted((e for e in os.scandir(root) if e.name.endswith(".pt")
                      and not e.name.startswith(".")), key=lambda e: e.stat().st_mtime,
                     reverse=True)
    for e in entries[CACHE_KEEP:]:
        try:
            os.unlink(e.path)
        except OSError:
            pass


def neutral_probe_pool(train_images: torch.Tensor, n: int, size: int, seed: int, *,
                       generated: bool) -> torch.Tensor:
    """n position-neutral probe images (n, 3, S, S) uint8: freshly generated in-domain-style
    images with uniformly placed objects for the synthetic benchmark, else patch-shuffled
    training images (content without its place in the frame; no fixations used)."""
    if generated:  # deterministic in (n, size, seed) and the generator: made once per machine
        key = {"n": n, "size": size, "seed": seed, "generator": synthetic.FORMAT_VERSION}
        return _disk_cached("probes", key, lambda: {
            "images": synthetic.neutral_probe_images(n, size, seed)})["images"]
    return patch_shuffled(train_images, n, grid=4, seed=seed)


def data_problems(mit_dir: Optional[str], cat_dir: Optional[str], *,
                  skip_bad: bool) -> list[str]:
    """One line per data directory that is missing or holds a file that does not decode (read
    at 16×16, so a whole dataset is checked in seconds)."""
    problems = []
    for knob, root, load in (("mit1003_dir", mit_dir, D.load_mit1003),
                             ("cat2000_dir", cat_dir, D.load_cat2000)):
        if root is not None:
            try:
                load(root, 16, skip_bad=skip_bad)
            except DataError as e:
                problems.append(f"knob {knob!r}: {str(e)[:300]}")
    return problems
