"""Byte-level data: deterministic generated corpus, text and token files, windows."""
import numpy as np
import pytest
import torch

from workloads.contract import ConfigError
from workloads.text_data import ByteWindows, generate_corpus, load_bytes, load_corpus, split


def test_generated_corpus_is_deterministic_and_exact_size():
    a = generate_corpus(50_000, 3)
    assert a.dtype == np.uint8 and a.shape == (50_000,)
    assert np.array_equal(a, generate_corpus.__wrapped__(50_000, 3))  # not just the cache
    assert not np.array_equal(a, generate_corpus(50_000, 4))
    text = bytes(a).decode("ascii")
    assert text.startswith("= ") and "end of " in text  # section header / footer structure


def test_text_and_token_files(tmp_path):
    txt = tmp_path / "t.txt"
    txt.write_text("héllo")
    assert bytes(load_bytes(str(txt))) == "héllo".encode()
    npy = tmp_path / "t.npy"
    np.save(npy, np.array([1, 2, 255], dtype=np.int64))
    assert load_bytes(str(npy)).tolist() == [1, 2, 255]
    np.save(npy, np.array([1, 256]))
    with pytest.raises(ConfigError, match="data_path"):
        load_bytes(str(npy))
    with pytest.raises(ConfigError, match="data_path"):
        load_corpus(str(tmp_path / "missing.txt"), 0, 0)


def test_windows_shift_targets_by_one():
    data = np.arange(100, dtype=np.uint8)
    train, val = split(data, 0.2)
    assert len(train) == 80 and len(val) == 20
    ds = ByteWindows(train, 10)
    assert len(ds) == 7  # (80 − 1) // 10
    x, y = ds[2]
    assert torch.equal(x, torch.arange(20, 30)) and torch.equal(y, torch.arange(21, 31))
