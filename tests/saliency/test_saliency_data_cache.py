"""saliency/data.py's on-disk cache of decoded data: a hit equals a fresh load bit for bit, any
change to the data files or the arguments misses, a torn entry is recomputed, "off" disables."""
import os
import warnings

import pytest
import torch

from saliency import data as SD
from saliency import synthetic

S = 24


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = str(tmp_path_factory.mktemp("planted") / "d")
    synthetic.ensure_generated(r, seed=5, num_images=16, ood_images=8, fixations_per_image=20)
    return r


def args(root, **over):
    kw = dict(split_seed=0, skip_bad=False, cb_bandwidth=0.05, cb_uniform=0.01,
              centerbias_input="blurred", blur_bandwidth=0.25,
              content_dir=os.path.join(root, "CAT2000_content"), oracle=True)
    kw.update(over)
    return (os.path.join(root, "MIT1003"), os.path.join(root, "CAT2000"), S), kw


def same(a: SD.SaliencyData, b: SD.SaliencyData) -> bool:
    def eq(x, y):
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(eq(x[k], y[k]) for k in x)
        if torch.is_tensor(x):
            return x.dtype == y.dtype and torch.equal(x, y)
        return x == y or (x != x and y != y)  # NaN oracle for real data
    return eq(SD._to_record(a), SD._to_record(b))


def entries(cache):
    return sorted(f for f in os.listdir(cache) if f.endswith(".pt") and not f.startswith("."))


def test_hit_is_identical_and_changes_miss(root, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    monkeypatch.setenv(SD.CACHE_ENV, cache)
    pos, kw = args(root)
    fresh = SD.load_data(*pos, **kw)
    first = SD.load_data_cached(*pos, **kw)   # miss: computes and stores
    assert len(entries(cache)) == 1
    hit = SD.load_data_cached(*pos, **kw)
    assert same(fresh, first) and same(fresh, hit)
    assert len(entries(cache)) == 1

    pos2, kw2 = args(root, centerbias_input="sharp")  # another argument: another entry
    assert same(SD.load_data_cached(*pos2, **kw2), SD.load_data(*pos2, **kw2))
    assert len(entries(cache)) == 2

    # a data file changes (here: its mtime) -> the key changes
    some = os.path.join(root, "MIT1003", "ALLFIXATIONMAPS")
    f = os.path.join(some, sorted(os.listdir(some))[0])
    st = os.stat(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    SD.load_data_cached(*pos, **kw)
    assert len(entries(cache)) == 3


def test_torn_entry_is_recomputed_and_off_disables(root, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    monkeypatch.setenv(SD.CACHE_ENV, cache)
    pos, kw = args(root)
    SD.load_data_cached(*pos, **kw)
    (name,) = entries(cache)
    with open(os.path.join(cache, name), "wb") as fh:
        fh.write(b"not a torch file")
    assert same(SD.load_data_cached(*pos, **kw), SD.load_data(*pos, **kw))
    assert torch.load(os.path.join(cache, name), weights_only=True)  # replaced

    monkeypatch.setenv(SD.CACHE_ENV, "off")
    other = str(tmp_path / "unused")
    assert SD.cache_dir() is None
    SD.load_data_cached(*pos, **kw)
    assert not os.path.exists(other)


def test_skip_bad_warning_is_repeated_on_a_hit(root, tmp_path, monkeypatch):
    import shutil
    bad_root = str(tmp_path / "bad")
    shutil.copytree(root, bad_root)
    stim = os.path.join(bad_root, "MIT1003", "ALLSTIMULI")
    with open(os.path.join(stim, sorted(os.listdir(stim))[0]), "wb") as fh:
        fh.write(b"broken")
    monkeypatch.setenv(SD.CACHE_ENV, str(tmp_path / "cache"))
    pos, kw = args(bad_root, skip_bad=True)
    for _ in range(2):  # miss, then hit: the same warning both times
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            SD.load_data_cached(*pos, **kw)
        assert any("skipped 1 bad stimulus" in str(w.message) for w in caught)


def test_probe_pool_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv(SD.CACHE_ENV, str(tmp_path / "cache"))
    a = SD.neutral_probe_pool(torch.zeros(1), 6, S, 7, generated=True)
    b = SD.neutral_probe_pool(torch.zeros(1), 6, S, 7, generated=True)
    assert torch.equal(a, b) and torch.equal(a, synthetic.neutral_probe_images(6, S, 7))
    assert len(entries(str(tmp_path / "cache"))) == 1
