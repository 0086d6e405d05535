"""Loaders on generated data in both real layouts, bad data, split, center bias, ground truth."""
import os
import shutil
import threading
import warnings

import numpy as np
import pytest
import scipy.io
from PIL import Image

from saliency import datasets as D
from saliency import metrics as M
from saliency import synthetic
from saliency.errors import DataError

N_MIT, N_CAT = 14, 9


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = str(tmp_path_factory.mktemp("synth") / "data")
    synthetic.ensure_generated(r, seed=3, num_images=N_MIT, ood_images=N_CAT)
    return r


@pytest.fixture
def copy(root, tmp_path):
    """A private copy of one dataset to break."""
    def make(name):
        dst = tmp_path / name
        shutil.copytree(os.path.join(root, name), dst)
        return str(dst)
    return make


def _same_points(a_y, a_x, b_y, b_x) -> bool:
    return sorted(zip(a_y.tolist(), a_x.tolist())) == sorted(zip(b_y.tolist(), b_x.tolist()))


@pytest.mark.parametrize("name,loader,shape", [
    ("MIT1003", D.load_mit1003, synthetic.IN_DOMAIN.shape),
    ("CAT2000", D.load_cat2000, synthetic.OUT_OF_DOMAIN.shape)])
def test_loaders_round_trip_generated_data(root, name, loader, shape):
    gt = synthetic.load_ground_truth(os.path.join(root, name, "ground_truth.npz"))
    native = loader(os.path.join(root, name))
    assert [s.name for s in native] == gt["names"]
    assert len(native) == (N_MIT if name == "MIT1003" else N_CAT)
    for s, (ys, xs) in zip(native, gt["fixations"]):
        assert s.image.shape == (*shape, 3) and s.native_shape == shape
        assert len(s.ys) == len(ys) > 0 and _same_points(s.ys, s.xs, ys, xs)
    work = loader(os.path.join(root, name), 32)
    for s, n in zip(work, native):
        assert s.image.shape == (32, 32, 3)
        ys, xs = D.scale_fixations(n.ys, n.xs, shape, 32)
        assert _same_points(s.ys, s.xs, ys, xs) and len(s.ys) == len(n.ys)


def test_cat2000_accepts_the_trainset_directory_itself(root):
    assert len(D.load_cat2000(os.path.join(root, "CAT2000", "trainSet"))) == N_CAT


def test_generation_is_deterministic_and_atomic(root, tmp_path):
    other = str(tmp_path / "again")
    errors = []

    def gen():
        try:
            synthetic.ensure_generated(other, seed=3, num_images=N_MIT, ood_images=N_CAT)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=gen) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert sorted(os.listdir(tmp_path)) == ["again"]  # no temporary directory left behind
    for name in ("MIT1003", "CAT2000"):
        a = synthetic.load_ground_truth(os.path.join(root, name, "ground_truth.npz"))
        b = synthetic.load_ground_truth(os.path.join(other, name, "ground_truth.npz"))
        assert np.array_equal(a["log_density"], b["log_density"])
    a = np.asarray(Image.open(os.path.join(root, "MIT1003", "ALLSTIMULI", "i0003.jpeg")))
    b = np.asarray(Image.open(os.path.join(other, "MIT1003", "ALLSTIMULI", "i0003.jpeg")))
    assert np.array_equal(a, b)


def test_split_is_902_101_for_mit1003_and_seeded():
    tr, va = D.split_indices(1003, seed=0)
    assert (len(tr), len(va)) == (902, 101) and not set(tr) & set(va)
    assert np.array_equal(D.split_indices(1003, seed=0)[1], va)
    assert not np.array_equal(D.split_indices(1003, seed=1)[1], va)
    assert [len(v) for v in (D.split_indices(300, 0)[1], D.split_indices(5, 0)[1])] == [30, 1]


def test_center_bias_is_normalized_and_leave_one_out_excludes_the_image(root):
    samples = D.load_mit1003(os.path.join(root, "MIT1003"), 24)
    cb = D.center_bias(samples, (24, 24))
    assert np.exp(cb).sum() == pytest.approx(1.0)
    loo = D.leave_one_out_center_bias(samples, (24, 24))
    assert loo.shape == (N_MIT, 24, 24)
    assert np.allclose(loo[0], D.center_bias(samples[1:], (24, 24)))


@pytest.mark.parametrize("name,loader", [("MIT1003", D.load_mit1003),
                                         ("CAT2000", D.load_cat2000)])
def test_ground_truth_beats_center_bias(root, name, loader):
    samples = loader(os.path.join(root, name))
    gt = synthetic.load_ground_truth(os.path.join(root, name, "ground_truth.npz"))
    shape = samples[0].image.shape[:2]
    loo = D.leave_one_out_center_bias(samples, shape)
    ig_gt = ig_cb = n = 0.0
    for i, s in enumerate(samples):
        k = len(s.ys)
        ig_gt += M.information_gain(gt["log_density"][i].astype(np.float64), loo[i], s.ys, s.xs) * k
        ig_cb += M.information_gain(loo[i], loo[i], s.ys, s.xs) * k
        n += k
    assert ig_cb == 0.0
    assert ig_gt / n > 0.5  # bits/fixation


# ------------------------------------------------------------------------------------ bad data
def _mit_paths(d, stem="i0002"):
    return (os.path.join(d, "ALLSTIMULI", f"{stem}.jpeg"),
            os.path.join(d, "ALLFIXATIONMAPS", f"{stem}_fixPts.jpg"))


def test_missing_directories(tmp_path, copy):
    with pytest.raises(DataError, match="nowhere"):
        D.load_mit1003(str(tmp_path / "nowhere"))
    d = copy("MIT1003")
    shutil.rmtree(os.path.join(d, "ALLFIXATIONMAPS"))
    with pytest.raises(DataError, match="ALLFIXATIONMAPS.*missing"):
        D.load_mit1003(d)
    c = copy("CAT2000")
    shutil.rmtree(os.path.join(c, "trainSet", "FIXATIONLOCS"))
    with pytest.raises(DataError, match="FIXATIONLOCS.*missing"):
        D.load_cat2000(c)


def test_stimulus_without_fixations(copy):
    d = copy("MIT1003")
    image, fix = _mit_paths(d)
    os.remove(fix)
    with pytest.raises(DataError, match="stimulus without fixations") as e:
        D.load_mit1003(d)
    assert image in str(e.value) and fix in str(e.value)


def test_unreadable_image(copy):
    d = copy("MIT1003")
    image, _ = _mit_paths(d)
    with open(image, "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(DataError, match="unreadable image") as e:
        D.load_mit1003(d, 32)
    assert image in str(e.value)


def test_empty_fixation_map(copy):
    d = copy("MIT1003")
    _, fix = _mit_paths(d)
    Image.new("L", synthetic.IN_DOMAIN.shape[::-1]).save(fix, format="JPEG")
    with pytest.raises(DataError, match="empty fixation map") as e:
        D.load_mit1003(d)
    assert fix in str(e.value)


def test_fixation_map_of_the_wrong_size(copy):
    d = copy("MIT1003")
    _, fix = _mit_paths(d)
    Image.new("L", (10, 10), 255).save(fix, format="JPEG")
    with pytest.raises(DataError, match="does not match|but its") as e:
        D.load_mit1003(d)
    assert fix in str(e.value)


@pytest.mark.parametrize("content,match", [
    ("garbage", "unreadable .mat"), ("zeros", "empty fixation map"),
    ("wrong_name", "no variable 'fixLocs'"), ("missing", "stimulus without fixations")])
def test_bad_cat2000_fixation_files(copy, content, match):
    c = copy("CAT2000")
    cat = synthetic.CAT_CATEGORIES[1]
    mat = os.path.join(c, "trainSet", "FIXATIONLOCS", cat, "001.mat")
    if content == "garbage":
        with open(mat, "wb") as f:
            f.write(b"\x00garbage" * 10)
    elif content == "zeros":
        scipy.io.savemat(mat, {"fixLocs": np.zeros(synthetic.OUT_OF_DOMAIN.shape)})
    elif content == "wrong_name":
        scipy.io.savemat(mat, {"fixations": np.ones(synthetic.OUT_OF_DOMAIN.shape)})
    else:
        os.remove(mat)
    with pytest.raises(DataError, match=match) as e:
        D.load_cat2000(c)
    assert os.path.join(cat, "001.") in str(e.value)


def test_skip_bad_warns_with_the_count(copy):
    d = copy("MIT1003")
    os.remove(_mit_paths(d, "i0001")[1])
    with open(_mit_paths(d, "i0004")[0], "wb") as f:
        f.write(b"broken")
    with pytest.warns(UserWarning, match="skipped 2 bad stimulus file") as rec:
        samples = D.load_mit1003(d, 32, skip_bad=True)
    assert len(rec) == 1
    assert len(samples) == N_MIT - 2
    assert "i0001" not in [s.name for s in samples] and "i0004" not in [s.name for s in samples]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError):
            D.load_mit1003(d, 32)  # skip_bad off: the first bad file is an error
